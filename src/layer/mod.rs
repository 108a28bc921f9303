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
//! # Origin mode
//!
//! With [`freshness(Freshness::Origin)`](CacheLayer::freshness) the route
//! stops declaring freshness and follows the origin's headers, as a shared
//! cache (RFC 9111). For a cache in front of another service: responses
//! proxied from elsewhere, framework-generated assets, a gateway built from
//! tower layers. Wrap the whole service (`Router::layer`), so the layer
//! sees unsafe requests too:
//!
//! ```
//! use axum::{routing::get, Router};
//! use axum::http::HeaderName;
//! use tagcache::{Cache, Freshness};
//!
//! # async fn upstream() -> &'static str { "" }
//! let cache = Cache::default();
//! let app: Router = Router::new()
//!     .route("/{*path}", get(upstream).post(upstream))
//!     .layer(
//!         cache
//!             .layer("upstream")
//!             .freshness(Freshness::Origin)
//!             .tags_from_header(HeaderName::from_static("surrogate-key")),
//!     );
//! # let _ = app;
//! ```
//!
//! Each rule, and the case of the store suite (`tests/suites/origin.rs`,
//! run against every store; `tests/range.rs` for ranges) that shows it:
//!
//! | RFC | Behaviour | Test |
//! |---|---|---|
//! | 9111 §3 | Stored only with explicit freshness (`s-maxage`, `max-age`, `Expires`) or heuristically cacheable (a status of [`HEURISTICALLY_CACHEABLE`](crate::semantics::freshness::HEURISTICALLY_CACHEABLE) with `Last-Modified`, or `public`); the origin's lifetime holds whatever the route's TTL | `a_response_without_freshness_is_not_stored`, `explicit_freshness_is_stored_whatever_the_route_ttl`, `a_heuristically_cacheable_response_is_stored_for_a_share_of_its_age`, `a_public_response_without_a_lifetime_gets_the_route_ttl` |
//! | 9111 §3 | Never `no-store`, `Vary: *`, or `private` unless per-user | `what_must_not_be_shared_is_not_stored` |
//! | 9111 §3.5 | With `Authorization`: stored only if `public`, `s-maxage` or `must-revalidate`, on per-user routes, never across identities | `authorized_requests_are_stored_only_with_permission_and_per_identity` |
//! | 9111 §4.2.1 | Lifetime from `s-maxage`, then `max-age`, then `Expires` − `Date`; an invalid `Expires` means already stale | `s_maxage_wins_over_max_age_which_wins_over_expires`, `an_invalid_or_past_expires_means_already_stale` |
//! | 9111 §4.2.2 | Heuristic lifetime: a share of the `Last-Modified` age ([`heuristic_freshness`](CacheLayer::heuristic_freshness), 10 % by default), capped | `a_heuristically_cacheable_response_is_stored_for_a_share_of_its_age` |
//! | 9111 §4.2.3 | Age counts the upstream `Age`, the response delay and the `Date`; `Age` on hits | `the_upstream_age_and_date_count_against_the_lifetime` |
//! | 9111 §4.2.4, §5.2.2 | Stale served only where allowed: never after `must-revalidate`, `proxy-revalidate`, `s-maxage`; RFC 5861 windows otherwise | `stale_is_served_only_where_the_origin_allows` |
//! | 9111 §4.3.1 | A stale entry with a validator is revalidated with `If-None-Match` / `If-Modified-Since` (the client's own validators are answered from the result) | `a_stale_entry_is_revalidated_and_a_304_refreshes_it`, `last_modified_is_sent_back_as_if_modified_since`, `the_clients_condition_is_answered_after_revalidation` |
//! | 9111 §3.2, §4.3.4 | A 304 updates the stored headers and lifetime, and the stored body answers; a 200 replaces the entry | `a_stale_entry_is_revalidated_and_a_304_refreshes_it`, `a_changed_response_replaces_the_entry`, `a_revalidated_entry_keeps_its_tags`, `a_revalidation_is_judged_by_the_targeted_field`, `a_304_that_forbids_storing_removes_the_entry` |
//! | 9111 §5.2.2.4 | `no-cache` responses with a validator are stored and revalidated before every use | `a_no_cache_response_is_revalidated_every_time` |
//! | — | Revalidations are coalesced like fills: one conditional request for a herd | `validations_are_coalesced_like_fills` |
//! | 9111 §5.2.1 | Request `max-stale` (not past `must-revalidate`), `only-if-cached` (504), `no-store`; `no-cache`, `max-age`, `min-fresh` only with [`honor_request_no_cache`](CacheLayer::honor_request_no_cache), then as a conditional request | `max_stale_takes_a_stale_entry_the_origin_did_not_forbid`, `only_if_cached_answers_504_when_nothing_is_stored`, `a_no_store_request_stores_nothing`, `fresher_requests_are_followed_only_where_configured`, `fresher_requests_refuse_stale_entries` |
//! | 9111 §4.4 | After a 2xx/3xx to an unsafe method, the target URI's entries (every variant, and those the route's key for it reaches) and same-host `Location`/`Content-Location` are invalidated before the response goes out; a failed one invalidates nothing; tags still apply | `a_successful_unsafe_request_invalidates_its_target`, `an_unsafe_request_reaches_its_target_by_key`, `every_variant_of_the_target_is_invalidated`, `location_and_content_location_on_the_same_host_are_invalidated`, `a_failed_unsafe_request_invalidates_nothing`, `tag_invalidation_still_applies` |
//! | 9213 | `Tagcache-Cache-Control`, then `CDN-Cache-Control` (configurable: [`targeted_fields`](CacheLayer::targeted_fields)) replace `Cache-Control` for this cache; ours is removed, the others with [`strip_targeted_fields`](CacheLayer::strip_targeted_fields) | `targeted_fields_take_precedence_over_cache_control` |
//! | 9110 §14 | A single range of a stored 200 is answered with a 206 (416 past the end), `If-Range` respected; other range requests get the 200 | `a_range_of_a_stored_response_comes_from_the_cache`, `a_background_refresh_asks_for_the_whole_response`, `tests/range.rs` |
//! | — | Tags from a response header ([`tags_from_header`](CacheLayer::tags_from_header): `Surrogate-Key`, `Cache-Tag`, `xkey`), removed before the client; a response with more than 1024 tags is not stored | `tags_come_from_a_response_header_which_is_removed`, `a_response_with_too_many_tags_is_not_stored` |
//!
//! In [`Freshness::Route`] the response's `Expires` and `Age` shorten the
//! route's TTL as `max-age` does (`expires_and_age_shorten_the_route_ttl`).
//!
//! Limits of this mode: requests with `Cookie` or `Authorization` still
//! bypass the cache unless the route is [per-user](CacheLayer::per_user)
//! (a public response to a request with cookies is not shared); `Vary` is
//! limited as in the other mode; a lifetime is capped by
//! [`max_ttl`](CacheLayer::max_ttl) (a day), and an expired entry is kept
//! for revalidation [`keep_for_validation`](CacheLayer::keep_for_validation)
//! (an hour); a 304 is taken to be about the stored response (its `ETag`,
//! if it carries another, replaces the stored one); `Location` and
//! `Content-Location` are followed only as absolute paths or absolute URIs
//! on the request's host; responses to unsafe requests and to range
//! requests are never stored.
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
pub use crate::semantics::storable::Freshness;
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
    /// [module docs](self#origin-mode)).
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
