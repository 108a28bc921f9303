//! [`CacheLayer`]: caches the GET/HEAD responses of one route.
//!
//! # What it does per request
//!
//! 1. Requests other than GET and HEAD pass through (`Cache-Status:
//!    ...; fwd=method`). So do requests with `Authorization` or `Cookie`
//!    (`fwd=bypass; detail=authorization`), unless the route names the
//!    identity in its key with [`CacheLayer::per_user`].
//! 2. The key function (default: path and query, plus the `Host` header)
//!    and the values of the headers the route varies on are hashed to find
//!    the entry; the entry keeps them all and every hit compares them.
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
mod future;
mod policy;
mod respond;
mod service;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::HOST;
use http::request::Parts;
use http::{response, HeaderName, StatusCode};
use tower_layer::Layer;

pub use body::CacheBody;
pub use future::ResponseFuture;
pub use respond::CACHE_STATUS;
pub use service::CacheService;

use crate::cache::Cache;
use crate::semantics::storable::StoreRules;
use policy::{KeyFn, RoutePolicy, TagsFn};
use service::Shared;

/// Default TTL of a route: 60 seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Default largest body stored: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default longest key: 4 KiB (longer keys bypass the cache).
pub const DEFAULT_MAX_KEY_BYTES: usize = 4096;
/// Default longest wait for another request's origin call: 3 seconds.
pub const DEFAULT_COALESCE_TIMEOUT: Duration = Duration::from_secs(3);
/// Default longest a stale-while-revalidate background refresh may take: 30 s.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// Caches one route's responses. Made with [`Cache::layer`]; every option
/// has a safe default, and is fixed when the layer is applied.
#[derive(Clone)]
pub struct CacheLayer {
    cache: Cache,
    route: Arc<str>,
    key: Option<KeyFn>,
    identity: Option<KeyFn>,
    tags: Option<TagsFn>,
    rules: StoreRules,
    vary: Vec<HeaderName>,
    coalesce: bool,
    coalesce_timeout: Duration,
    refresh_timeout: Duration,
    honor_request_no_cache: bool,
    max_key_bytes: usize,
    /// The route's shared state, made on the first `layer` call and reused:
    /// axum may call `layer` once per request (handlers on a `Router<()>`
    /// that was not finalized with `with_state`), and every service of the
    /// route must share one policy, one learned `Vary` and one set of
    /// counters. Every option setter resets it.
    built: Arc<OnceLock<Arc<Shared>>>,
}

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("route", &self.route)
            .field("rules", &self.rules)
            .field("vary", &self.vary)
            .field("coalesce", &self.coalesce)
            .finish()
    }
}

impl CacheLayer {
    pub(crate) fn new(cache: Cache, route: &str) -> Self {
        CacheLayer {
            cache,
            route: route.into(),
            key: None,
            identity: None,
            tags: None,
            rules: StoreRules {
                statuses: vec![StatusCode::OK],
                per_user: false,
                ttl: DEFAULT_TTL,
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                respect_response_ttl: true,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            },
            vary: Vec::new(),
            coalesce: true,
            coalesce_timeout: DEFAULT_COALESCE_TIMEOUT,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            honor_request_no_cache: false,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            built: Arc::default(),
        }
    }

    /// What makes two requests the same. `None` bypasses the cache for that
    /// request.
    ///
    /// The default key is the path and query, and the `Host` header is then
    /// matched as well, so virtual hosts served by one router never share
    /// entries. A key function replaces both: include the host in it if the
    /// router serves several.
    pub fn key<F>(mut self, key: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.key = Some(Arc::new(key));
        self.built = Arc::default();
        self
    }

    /// Makes the route per-user: `identity` names who is asking (a user id
    /// from a verified token, say) and becomes part of the key. Requests with
    /// `Authorization` or `Cookie` are then cached, and `private` responses
    /// may be stored, each only ever served to the same identity. `None`
    /// bypasses the cache for that request.
    ///
    /// The identity must be derived from the credential the handler itself
    /// checks: if two callers can map to one identity, they share responses.
    pub fn per_user<F>(mut self, identity: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.identity = Some(Arc::new(identity));
        self.rules.per_user = true;
        self.built = Arc::default();
        self
    }

    /// The tags a response depends on, from the request and the response
    /// head. Tags a handler puts in a [`Tags`](crate::Tags) response
    /// extension are added.
    pub fn tags<F, I, T>(mut self, tags: F) -> Self
    where
        F: Fn(&Parts, &response::Parts) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = Some(Arc::new(move |req: &Parts, res: &response::Parts| {
            tags(req, res).into_iter().map(Into::into).collect()
        }));
        self.built = Arc::default();
        self
    }

    /// How long a response stays fresh (default 60 s). The response's own
    /// `Cache-Control: s-maxage`/`max-age` can shorten it, see
    /// [`respect_response_ttl`](Self::respect_response_ttl).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.rules.ttl = ttl;
        self.built = Arc::default();
        self
    }

    /// Statuses that are stored (default: 200 only).
    pub fn statuses<I: IntoIterator<Item = StatusCode>>(mut self, statuses: I) -> Self {
        self.rules.statuses = statuses.into_iter().collect();
        self.built = Arc::default();
        self
    }

    /// Largest body stored (default 1 MiB). Larger responses stream through
    /// to the client unchanged and are not stored.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.rules.max_body_bytes = bytes;
        self.built = Arc::default();
        self
    }

    /// Request headers that always select the response, even before a
    /// response said so in `Vary` (`Vary` on responses is honoured anyway).
    pub fn vary<I: IntoIterator<Item = HeaderName>>(mut self, headers: I) -> Self {
        self.vary = headers.into_iter().collect();
        self.built = Arc::default();
        self
    }

    /// After expiry, answer from the stale entry for up to `window` while one
    /// background request refreshes it.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.rules.stale_while_revalidate = window;
        self.built = Arc::default();
        self
    }

    /// After expiry, answer from the stale entry for up to `window` when the
    /// origin errors or answers 5xx.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.rules.stale_if_error = window;
        self.built = Arc::default();
        self
    }

    /// Whether the response's `Cache-Control` may shorten the TTL
    /// (`s-maxage`, then `max-age`) and set the stale windows
    /// (`stale-while-revalidate`, `stale-if-error`). Default: yes.
    pub fn respect_response_ttl(mut self, respect: bool) -> Self {
        self.rules.respect_response_ttl = respect;
        self.built = Arc::default();
        self
    }

    /// Whether concurrent misses for one key share one origin call
    /// (default: yes).
    pub fn coalesce(mut self, coalesce: bool) -> Self {
        self.coalesce = coalesce;
        self.built = Arc::default();
        self
    }

    /// Longest a request waits for another request's origin call before
    /// calling the origin itself (default 3 s). A wait that runs out also
    /// takes the slow flight out of the way, so later requests do not queue
    /// behind it.
    pub fn coalesce_timeout(mut self, timeout: Duration) -> Self {
        self.coalesce_timeout = timeout;
        self.built = Arc::default();
        self
    }

    /// Longest a stale-while-revalidate background refresh may take before
    /// it is dropped, so a hung origin cannot block later refreshes
    /// (default 30 s).
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self.built = Arc::default();
        self
    }

    /// Whether a client's `Cache-Control: no-cache` (or `Pragma: no-cache`)
    /// makes the request go to the origin. Default: no, so clients cannot
    /// force load on the origin; the response is stored as usual.
    pub fn honor_request_no_cache(mut self, honor: bool) -> Self {
        self.honor_request_no_cache = honor;
        self.built = Arc::default();
        self
    }

    /// Longest key (user key, in bytes) that is cached (default 4 KiB).
    pub fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.max_key_bytes = bytes;
        self.built = Arc::default();
        self
    }
}

impl CacheLayer {
    /// The request headers that select a response on every request: the
    /// declared ones, plus `Host` under the default key.
    fn selecting_headers(&self) -> Vec<HeaderName> {
        let mut headers = self.vary.clone();
        if self.key.is_none() && !headers.contains(&HOST) {
            headers.insert(0, HOST);
        }
        headers
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = self.built.get_or_init(|| {
            Arc::new(Shared {
                cache: self.cache.clone(),
                policy: RoutePolicy {
                    route: self.route.clone(),
                    metrics: self.cache.route_metrics(&self.route),
                    key: self.key.clone(),
                    identity: self.identity.clone(),
                    tags: self.tags.clone(),
                    rules: self.rules.clone(),
                    vary: self.selecting_headers(),
                    learned_vary: Default::default(),
                    coalesce: self.coalesce,
                    coalesce_timeout: self.coalesce_timeout,
                    refresh_timeout: self.refresh_timeout,
                    honor_request_no_cache: self.honor_request_no_cache,
                    max_key_bytes: self.max_key_bytes,
                },
            })
        });
        CacheService {
            inner,
            shared: shared.clone(),
        }
    }
}
