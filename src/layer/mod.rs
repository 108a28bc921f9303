//! [`CacheLayer`]: caches the GET/HEAD responses of one route.
//!
//! # What it does per request
//!
//! 1. Requests other than GET and HEAD pass through (`Cache-Status:
//!    ...; fwd=method`). So do requests with `Authorization` or `Cookie`
//!    (`fwd=bypass; detail=authorization`), unless the route names the
//!    identity in its key with [`CacheLayer::per_user`].
//! 2. The key function (default: path and query, plus the `Host` header)
//!    and the values of the headers the route declares in
//!    [`vary`](CacheLayer::vary) are hashed to find the entry. When a
//!    key's responses say `Vary` on other headers, the key's hash holds a
//!    *variant index* naming them, and each variant is stored under a hash
//!    that adds the request's values of them: a second lookup, only for
//!    keys that vary. The entry keeps every selecting value and every hit
//!    compares them.
//! 3. A fresh entry whose tags were not invalidated since its fill started
//!    answers at once, with `Age` and `Cache-Status: ...; hit; ttl=N`, a 304
//!    if `If-None-Match` matches its `ETag`, and no body for HEAD.
//! 4. Otherwise the first request for the key calls the origin; concurrent
//!    requests for the key wait for it and share its response if it may be
//!    shared (`collapsed`). The response is stored if its status, headers and
//!    size allow, with the tags from the tags function and from a
//!    [`Tags`](crate::Tags) response extension.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use tagcache::Cache;
//!
//! async fn sessions() -> &'static str { "[]" }
//!
//! let cache = Cache::default();
//! let app: Router = Router::new().route(
//!     "/api/teachers/{tid}/sessions",
//!     get(sessions).route_layer(
//!         cache
//!             .layer("session-list")
//!             .tags(|req, _res| {
//!                 let tid = req.uri.path().split('/').nth(3).unwrap_or_default();
//!                 [format!("teacher:{tid}"), "sessions".to_owned()]
//!             })
//!             .ttl(Duration::from_secs(300))
//!             .stale_while_revalidate(Duration::from_secs(30)),
//!     ),
//! );
//! # let _ = app;
//! ```

mod body;
mod fill;
mod fleet;
mod flight;
mod future;
mod header_values;
mod lookup;
mod options;
mod outcome;
mod record;
mod resolve;
mod respond;
mod route;
mod service;
mod unsafe_method;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::request::Parts;
use http::{response, HeaderName, StatusCode};
use tower_layer::Layer;

pub use body::CacheBody;
pub use future::ResponseFuture;
pub use options::{
    CDN_CACHE_CONTROL, DEFAULT_COALESCE_TIMEOUT, DEFAULT_KEEP_FOR_VALIDATION,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_TTL, DEFAULT_REFRESH_TIMEOUT,
    DEFAULT_TTL, TAGCACHE_CACHE_CONTROL,
};
pub use respond::CACHE_STATUS;
pub use service::CacheService;

use crate::cache::Cache;
use crate::semantics::storable::Freshness;
use crate::tags::tags_fn;
use options::{QueryKey, RouteOptions};
use route::CacheRoute;

/// Caches one route's responses. Made with [`Cache::layer`]; every option
/// has a safe default, and is fixed when the layer is applied.
#[derive(Clone)]
pub struct CacheLayer {
    cache: Cache,
    name: Arc<str>,
    options: RouteOptions,
    /// The route's state, made on the first `layer` call and reused: axum
    /// may call `layer` once per request (handlers on a `Router<()>` that
    /// was not finalized with `with_state`), and every service of the route
    /// must share one policy and one set of counters. Any option change starts a new one (see `with`).
    built: Arc<OnceLock<Arc<CacheRoute>>>,
}

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("route", &self.name)
            .field("options", &self.options)
            .finish()
    }
}

impl Cache {
    /// Starts a [`CacheLayer`] for one route; `route` names it in metrics
    /// and stats, so keep it short and fixed (never a URL).
    pub fn layer(&self, route: &str) -> CacheLayer {
        CacheLayer {
            cache: self.clone(),
            name: route.into(),
            options: RouteOptions::default(),
            built: Arc::default(),
        }
    }
}

impl CacheLayer {
    /// Applies an option change. The only place options change, so the
    /// only place the built state is dropped.
    fn with(mut self, change: impl FnOnce(&mut RouteOptions)) -> Self {
        change(&mut self.options);
        self.built = Arc::default();
        self
    }

    /// What makes two requests the same. `None` bypasses the cache for that
    /// request.
    ///
    /// The default key is the path and the query in normal form (empty
    /// pairs dropped, escapes of unreserved characters decoded, parameters
    /// sorted by name; see [`semantics::query`](crate::semantics::query)
    /// for exactly what and why it is safe), so `?b=1&a=2`, `?a=2&b=1&` and
    /// `?%61=2&b=1` share one entry; and the `Host` header is matched as
    /// well, so virtual hosts served by one router never share entries. A
    /// key function replaces all of it, including
    /// [`query_keys`](Self::query_keys) and
    /// [`ignore_query`](Self::ignore_query): include the host in it if the
    /// router serves several.
    pub fn key<F>(self, key: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.with(|o| o.key = Some(Arc::new(key)))
    }

    /// Only these query parameters select the response; the default key
    /// ignores every other (a tracking parameter such as `utm_source`, or
    /// anything a client adds to bypass the cache). A request is still
    /// answered by its handler with its whole query on a miss, and that
    /// answer is then served for every request that differs only in the
    /// ignored parameters: name every parameter the handler reads.
    pub fn query_keys<I, T>(self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.with(|o| o.query = QueryKey::Only(names))
    }

    /// The query string never selects the response: the default key is the
    /// path alone. For routes whose handler reads no query parameter.
    pub fn ignore_query(self) -> Self {
        self.with(|o| o.query = QueryKey::Ignored)
    }

    /// Makes the route per-user: `identity` names who is asking (a user id
    /// from a verified token, say) and becomes part of the key. Requests with
    /// `Authorization` or `Cookie` are then cached, and `private` responses
    /// may be stored, each only ever served to the same identity. `None`
    /// bypasses the cache for that request.
    ///
    /// The identity must be derived from the credential the handler itself
    /// checks: if two callers can map to one identity, they share responses.
    pub fn per_user<F>(self, identity: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.with(|o| {
            o.identity = Some(Arc::new(identity));
            o.rules.per_user = true;
        })
    }

    /// The tags a response depends on, from the request and the response
    /// head. Tags a handler puts in a [`Tags`](crate::Tags) response
    /// extension are added.
    pub fn tags<F, I, T>(self, tags: F) -> Self
    where
        F: Fn(&Parts, &response::Parts) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.with(|o| o.tags = Some(tags_fn(tags)))
    }

    /// How long a response stays fresh (default 60 s). The response's own
    /// `Cache-Control: s-maxage`/`max-age` can shorten it, see
    /// [`respect_response_ttl`](Self::respect_response_ttl).
    pub fn ttl(self, ttl: Duration) -> Self {
        self.with(|o| o.rules.ttl = ttl)
    }

    /// Statuses that are stored (default: 200 only; in
    /// [`Freshness::Origin`], the statuses RFC 9110 calls heuristically
    /// cacheable, see [`HEURISTICALLY_CACHEABLE`](crate::semantics::freshness::HEURISTICALLY_CACHEABLE)).
    pub fn statuses<I: IntoIterator<Item = StatusCode>>(self, statuses: I) -> Self {
        self.with(|o| {
            o.rules.statuses = statuses.into_iter().collect();
            o.statuses_chosen = true;
        })
    }

    /// Where freshness comes from: the route's TTL
    /// ([`Freshness::Route`], the default) or the origin's own headers, as
    /// a shared cache following RFC 9111 ([`Freshness::Origin`]; see the
    /// [module docs](self#freshnessorigin-a-shared-cache-as-rfc-9111-defines-it)).
    pub fn freshness(self, freshness: Freshness) -> Self {
        self.with(|o| o.rules.mode = freshness)
    }

    /// Heuristic freshness in [`Freshness::Origin`] (RFC 9111 §4.2.2): a
    /// response with no explicit lifetime but a `Last-Modified` stays
    /// fresh for `percent` of the time since it was modified, at most
    /// `max` (default 10 %, at most a day).
    pub fn heuristic_freshness(self, percent: u32, max: Duration) -> Self {
        self.with(|o| o.rules.heuristic = crate::semantics::freshness::Heuristic { percent, max })
    }

    /// The longest lifetime a response may claim in [`Freshness::Origin`]
    /// (default [`DEFAULT_MAX_TTL`], a day). Keep it within the store's
    /// `max_entry_life`, past which an entry is never served.
    pub fn max_ttl(self, max: Duration) -> Self {
        self.with(|o| o.rules.max_ttl = max)
    }

    /// How long an expired response with a validator (`ETag`,
    /// `Last-Modified`) is kept in [`Freshness::Origin`], so that the next
    /// request revalidates it with a conditional request instead of
    /// fetching it whole (default [`DEFAULT_KEEP_FOR_VALIDATION`], an hour).
    pub fn keep_for_validation(self, window: Duration) -> Self {
        self.with(|o| o.rules.keep_for_validation = window)
    }

    /// The targeted fields (RFC 9213) that replace `Cache-Control` for
    /// this cache in [`Freshness::Origin`], first present first (default:
    /// [`TAGCACHE_CACHE_CONTROL`], then [`CDN_CACHE_CONTROL`]).
    pub fn targeted_fields<I: IntoIterator<Item = HeaderName>>(self, names: I) -> Self {
        self.with(|o| o.rules.targeted = names.into_iter().collect())
    }

    /// Whether every targeted field is removed from responses before they
    /// leave (default: only [`TAGCACHE_CACHE_CONTROL`], which concerns no
    /// one else; `CDN-Cache-Control` goes on to any CDN in front).
    pub fn strip_targeted_fields(self, strip: bool) -> Self {
        self.with(|o| o.strip_targeted = strip)
    }

    /// Takes tags from a response header too (`Surrogate-Key`,
    /// `Cache-Tag`, `xkey`: tags separated by spaces or commas), and
    /// removes the header before the response leaves. For an origin that
    /// names its own tags; they add to those of [`tags`](Self::tags).
    pub fn tags_from_header(self, name: HeaderName) -> Self {
        self.with(|o| o.tags_header = Some(name))
    }

    /// Largest body stored (default 1 MiB). Larger responses stream through
    /// to the client unchanged and are not stored.
    pub fn max_body_bytes(self, bytes: usize) -> Self {
        self.with(|o| o.rules.max_body_bytes = bytes)
    }

    /// Request headers that always select the response, even before a
    /// response said so in `Vary` (`Vary` on responses is honoured anyway).
    pub fn vary<I: IntoIterator<Item = HeaderName>>(self, headers: I) -> Self {
        self.with(|o| o.vary = headers.into_iter().collect())
    }

    /// After expiry, answer from the stale entry for up to `window` while one
    /// background request refreshes it.
    pub fn stale_while_revalidate(self, window: Duration) -> Self {
        self.with(|o| o.rules.stale_while_revalidate = window)
    }

    /// After expiry, answer from the stale entry for up to `window` when the
    /// origin errors or answers 5xx.
    pub fn stale_if_error(self, window: Duration) -> Self {
        self.with(|o| o.rules.stale_if_error = window)
    }

    /// Whether the response's `Cache-Control` may shorten the TTL
    /// (`s-maxage`, then `max-age`) and set the stale windows
    /// (`stale-while-revalidate`, `stale-if-error`). Default: yes.
    pub fn respect_response_ttl(self, respect: bool) -> Self {
        self.with(|o| o.rules.respect_response_ttl = respect)
    }

    /// Whether concurrent misses for one key share one origin call
    /// (default: yes).
    pub fn coalesce(self, coalesce: bool) -> Self {
        self.with(|o| o.coalesce = coalesce)
    }

    /// Longest a request waits for another request's origin call before
    /// calling the origin itself (default 3 s). A wait that runs out also
    /// takes the slow flight out of the way, so later requests do not queue
    /// behind it.
    pub fn coalesce_timeout(self, timeout: Duration) -> Self {
        self.with(|o| o.coalesce_timeout = timeout)
    }

    /// Longest a stale-while-revalidate background refresh may take before
    /// it is dropped, so a hung origin cannot block later refreshes
    /// (default 30 s).
    pub fn refresh_timeout(self, timeout: Duration) -> Self {
        self.with(|o| o.refresh_timeout = timeout)
    }

    /// Whether a client's `Cache-Control: no-cache` (or `Pragma: no-cache`)
    /// makes the request go to the origin. Default: no, so clients cannot
    /// force load on the origin; the response is stored as usual. In
    /// [`Freshness::Origin`] it covers every request directive that asks
    /// for a fresher response than the cache holds (`no-cache`, `max-age`,
    /// `min-fresh`), and the origin is then asked with a conditional
    /// request when the stored response has a validator. Directives that
    /// ask for less (`max-stale`, `only-if-cached`) are always followed.
    pub fn honor_request_no_cache(self, honor: bool) -> Self {
        self.with(|o| o.honor_request_no_cache = honor)
    }

    /// Longest key (user key, in bytes) that is cached (default 4 KiB).
    pub fn max_key_bytes(self, bytes: usize) -> Self {
        self.with(|o| o.max_key_bytes = bytes)
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let route = self.built.get_or_init(|| {
            Arc::new(CacheRoute::new(
                self.cache.clone(),
                self.name.clone(),
                self.options.clone(),
            ))
        });
        CacheService::new(inner, route.clone())
    }
}
