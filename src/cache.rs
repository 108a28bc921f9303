//! The shared [`Cache`] handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::coalesce::Coalescer;
use crate::entry::Tag;
use crate::invalidate::InvalidateLayer;
use crate::layer::CacheLayer;
use crate::metrics::{CacheStats, RouteMetrics, StoreOp};
use crate::semantics::cache_status::is_valid_cache_name;
use crate::stamp::{InvalidationMode, Stamp};
use crate::store::{MemoryStore, Store, StoreError};

/// The route name under which invalidations made directly on the
/// [`Cache`] handle are counted.
pub const DIRECT_ROUTE: &str = "direct";

/// Reserved tag prefix: every entry carries `#key:<its key>`, which is how
/// [`Cache::purge`] reaches all variants of a key without a scan.
pub(crate) const KEY_TAG_PREFIX: &str = "#key:";

pub(crate) fn key_tag(key: &str) -> Tag {
    let mut tag = String::with_capacity(KEY_TAG_PREFIX.len() + key.len());
    tag.push_str(KEY_TAG_PREFIX);
    tag.push_str(key);
    tag.into_boxed_str()
}

/// A cheap-to-clone handle to one response cache: its store, its in-flight
/// origin calls and its metrics. Build layers from it, and keep a clone
/// wherever data changes so that code can invalidate.
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::{get, post}, Router};
/// use tagcache::Cache;
///
/// # async fn list() -> &'static str { "[]" }
/// # async fn create() -> &'static str { "{}" }
/// let cache = Cache::builder().cache_name("app").build();
/// let app: Router = Router::new()
///     .route("/teachers/{tid}/sessions", get(list).route_layer(
///         cache
///             .layer("session-list")
///             .tags(|req, _res| vec![format!("teacher:{}", req.uri.path().split('/').nth(2).unwrap_or(""))])
///             .ttl(Duration::from_secs(300)),
///     ))
///     .route("/teachers/{tid}/sessions/new", post(create).route_layer(
///         cache
///             .invalidate_layer("create-session")
///             .tags(|req, _res| vec![format!("teacher:{}", req.uri.path().split('/').nth(2).unwrap_or(""))]),
///     ));
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

pub(crate) struct CacheInner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) name: Arc<str>,
    pub(crate) coalescer: Arc<Coalescer>,
    routes: Mutex<HashMap<Arc<str>, Arc<RouteMetrics>>>,
    direct: Arc<RouteMetrics>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .field("store", &self.inner.store.kind())
            .finish()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::builder().build()
    }
}

/// Options for a [`Cache`].
pub struct CacheBuilder {
    store: Option<Arc<dyn Store>>,
    name: String,
}

impl CacheBuilder {
    /// The store (default: a [`MemoryStore`] with its defaults).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The store, already shared.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The cache's name in `Cache-Status` (default `tagcache`).
    ///
    /// # Panics
    /// If `name` is not an RFC 8941 token (letters, digits and
    /// `!#$%&'*+-.^_`|~:/`, starting with a letter), since it could not be
    /// written into the header.
    pub fn cache_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        assert!(
            is_valid_cache_name(&name),
            "tagcache: cache name {name:?} is not a valid Cache-Status token; \
             use letters, digits and - . _ starting with a letter"
        );
        self.name = name;
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Cache {
        Cache {
            inner: Arc::new(CacheInner {
                store: self
                    .store
                    .unwrap_or_else(|| Arc::new(MemoryStore::default())),
                name: self.name.into(),
                coalescer: Arc::default(),
                routes: Mutex::default(),
                direct: Arc::new(RouteMetrics::new(DIRECT_ROUTE.into())),
            }),
        }
    }
}

/// Result of a direct invalidation.
pub type InvalidateResult = Result<Stamp, StoreError>;

impl Cache {
    /// Options, starting from an in-memory store named `tagcache`.
    pub fn builder() -> CacheBuilder {
        CacheBuilder {
            store: None,
            name: "tagcache".to_owned(),
        }
    }

    /// A cache over `store` with default options.
    pub fn new(store: impl Store) -> Cache {
        Cache::builder().store(store).build()
    }

    /// Starts a [`CacheLayer`] for one route; `route` names it in metrics
    /// and stats, so keep it short and fixed (never a URL).
    pub fn layer(&self, route: &str) -> CacheLayer {
        CacheLayer::new(self.clone(), route)
    }

    /// Starts an [`InvalidateLayer`] for one mutating route.
    pub fn invalidate_layer(&self, route: &str) -> InvalidateLayer {
        InvalidateLayer::new(self.clone(), route)
    }

    /// Invalidates every entry carrying any of `tags`. Once this returns
    /// `Ok`, no request on this instance is answered with a response whose
    /// origin call started before it.
    ///
    /// The error says the store could not record the invalidation (Redis
    /// unreachable): entries may then stay served until their TTL.
    pub async fn invalidate<I, T>(&self, tags: I) -> InvalidateResult
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let tags = collect_tags(tags);
        self.invalidate_tags(&tags, InvalidationMode::Hard, &self.inner.direct)
            .await
    }

    /// Marks every entry carrying any of `tags` as stale: routes with
    /// stale-while-revalidate may still answer from it while one refresh
    /// runs; other routes treat it as a miss.
    pub async fn invalidate_soft<I, T>(&self, tags: I) -> InvalidateResult
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let tags = collect_tags(tags);
        self.invalidate_tags(&tags, InvalidationMode::Soft, &self.inner.direct)
            .await
    }

    /// Invalidates the entries stored under `key` (the value a route's key
    /// function returned), in every route and every `Vary` variant.
    pub async fn purge(&self, key: &str) -> InvalidateResult {
        let tags = [key_tag(key)];
        self.invalidate_tags(&tags, InvalidationMode::Hard, &self.inner.direct)
            .await
    }

    /// Invalidates every entry.
    pub async fn purge_all(&self) -> InvalidateResult {
        self.inner.store.invalidate_all().await
    }

    /// A snapshot of every route's counters.
    pub fn stats(&self) -> CacheStats {
        let routes = self.inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut stats = CacheStats::default();
        for (name, metrics) in routes.iter() {
            stats.routes.insert(name.to_string(), metrics.snapshot());
        }
        stats
            .routes
            .insert(DIRECT_ROUTE.to_owned(), self.inner.direct.snapshot());
        stats
    }

    /// How many requests are waiting right now for another request's
    /// origin call (coalesced misses), for diagnostics.
    pub fn waiting_requests(&self) -> usize {
        self.inner.coalescer.waiting()
    }

    /// The store behind this cache.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn inner(&self) -> &CacheInner {
        &self.inner
    }

    /// The counters of `route`, shared by every layer with that name.
    pub(crate) fn route_metrics(&self, route: &str) -> Arc<RouteMetrics> {
        let mut routes = self.inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = routes.get(route) {
            return existing.clone();
        }
        let name: Arc<str> = route.into();
        let metrics = Arc::new(RouteMetrics::new(name.clone()));
        routes.insert(name, metrics.clone());
        metrics
    }

    pub(crate) async fn invalidate_tags(
        &self,
        tags: &[Tag],
        mode: InvalidationMode,
        metrics: &RouteMetrics,
    ) -> InvalidateResult {
        if tags.is_empty() {
            return self.inner.store.fill_stamp().await;
        }
        let started = Instant::now();
        let result = self.inner.store.invalidate(tags, mode).await;
        metrics.store_latency(StoreOp::Invalidate, started.elapsed());
        match &result {
            Ok(stamp) => {
                metrics.invalidated(tags.len());
                tracing::debug!(route = %metrics.name(), ?tags, ?mode, stamp = stamp.0, "tagcache invalidated");
            }
            Err(error) => {
                metrics.store_error(StoreOp::Invalidate);
                tracing::error!(route = %metrics.name(), ?tags, %error, "tagcache invalidation failed; entries with these tags may be served until they expire");
            }
        }
        result
    }
}

pub(crate) fn collect_tags<I, T>(tags: I) -> Vec<Tag>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    let mut out: Vec<Tag> = Vec::new();
    for tag in tags {
        let tag = tag.as_ref();
        if !out.iter().any(|t| &**t == tag) {
            out.push(tag.into());
        }
    }
    out
}

/// Handlers can take the [`Cache`] as an extractor: routes behind a
/// [`CacheLayer`] or [`InvalidateLayer`] receive it automatically, other
/// routes need `.layer(axum::Extension(cache.clone()))`.
impl<S: Send + Sync> FromRequestParts<S> for Cache {
    type Rejection = MissingCache;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Cache>().cloned().ok_or(MissingCache)
    }
}

/// Rejection when a handler asks for the [`Cache`] but no layer provided it.
#[derive(Debug, Clone, Copy)]
pub struct MissingCache;

impl IntoResponse for MissingCache {
    fn into_response(self) -> Response {
        tracing::error!("tagcache::Cache extractor used on a route without the cache: add `.layer(axum::Extension(cache.clone()))` to the router");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "tagcache::Cache is not available to this handler: add `.layer(axum::Extension(cache.clone()))` to the router, or put the route behind a CacheLayer or InvalidateLayer",
        )
            .into_response()
    }
}
