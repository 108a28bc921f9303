//! The shared [`Cache`] handle, and the one place invalidations run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::coalesce::Coalescer;
use crate::entry::Tag;
use crate::invalidation_log::{
    InvalidationKind, InvalidationLog, InvalidationRecord, InvalidationSource,
};
use crate::metrics::{CacheStats, RouteMetrics, StoreOp};
use crate::semantics::cache_status::is_valid_cache_name;
use crate::semantics::query::normalize_target;
use crate::stamp::{InvalidationMode, Stamp};
use crate::store::{MemoryStore, Store, StoreFuture, StoreResult};
use crate::tags::{collect, key_tag};
use crate::window::{History, Reading};

/// The route name under which invalidations made directly on the
/// [`Cache`] handle are counted.
pub const DIRECT_ROUTE: &str = "direct";

/// The route name under which invalidations made through the admin API
/// are counted (once there was one).
pub const ADMIN_ROUTE: &str = "admin-api";

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

struct CacheInner {
    store: Arc<dyn Store>,
    name: Arc<str>,
    coalescer: Arc<Coalescer>,
    routes: Mutex<HashMap<Arc<str>, Arc<RouteMetrics>>>,
    direct: Arc<RouteMetrics>,
    /// How many invalidation sources are out of sync right now (see
    /// [`Cache::hold_out_of_sync`]); while it is not zero every lookup
    /// misses.
    out_of_sync: AtomicUsize,
    /// Made on the admin API's first invalidation.
    admin: OnceLock<Arc<RouteMetrics>>,
    invalidations: Arc<InvalidationLog>,
    /// Readings of the counters, kept by the sampler (see [`crate::window`]).
    history: Mutex<History>,
    /// The sampler's task, while there is one.
    sampler: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What the history's seconds count from (one clock for every sampler
    /// this cache ever runs).
    created: Instant,
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
                out_of_sync: AtomicUsize::new(0),
                admin: OnceLock::new(),
                invalidations: Arc::default(),
                history: Mutex::default(),
                sampler: Mutex::default(),
                created: Instant::now(),
            }),
        }
    }
}

/// A hold on a [`Cache`] by an invalidation source that is out of sync:
/// while it exists, every lookup misses. See [`Cache::hold_out_of_sync`].
#[must_use = "the cache is held out of sync only while the hold exists"]
pub struct OutOfSyncHold {
    cache: Cache,
}

impl std::fmt::Debug for OutOfSyncHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutOfSyncHold")
            .field("cache", &self.cache.inner.name)
            .finish()
    }
}

impl Drop for OutOfSyncHold {
    fn drop(&mut self) {
        // Release: whatever the source invalidated before dropping its hold
        // is seen by a lookup that sees the hold gone.
        self.cache.inner.out_of_sync.fetch_sub(1, Ordering::Release);
    }
}

/// What one invalidation reaches.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The entries carrying any of these tags.
    Tags(Vec<Tag>, InvalidationMode),
    /// Every entry.
    All,
}

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

    /// Invalidates every entry carrying any of `tags`. Once this returns
    /// `Ok`, no request on this instance is answered with a response whose
    /// origin call started before it.
    ///
    /// The error says the store could not record the invalidation (Redis
    /// unreachable): entries may then stay served until their TTL.
    pub async fn invalidate<I, T>(&self, tags: I) -> StoreResult<Stamp>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let target = Target::Tags(collect(tags), InvalidationMode::Hard);
        self.run_invalidation(target, &self.inner.direct).await
    }

    /// Marks every entry carrying any of `tags` as stale: routes with
    /// stale-while-revalidate may still answer from it while one refresh
    /// runs; other routes treat it as a miss.
    pub async fn invalidate_soft<I, T>(&self, tags: I) -> StoreResult<Stamp>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let target = Target::Tags(collect(tags), InvalidationMode::Soft);
        self.run_invalidation(target, &self.inner.direct).await
    }

    /// Invalidates the entries stored under `key`, in every route and every
    /// `Vary` variant: the value a route's key function returned or, for
    /// routes on the default key, the path and query in any spelling
    /// (`/list?b=1&a=2` purges `/list?a=2&b=1`; with
    /// [`query_keys`](crate::CacheLayer::query_keys), give only those
    /// parameters).
    pub async fn purge(&self, key: &str) -> StoreResult<Stamp> {
        let target = Target::Tags(purge_tags(key), InvalidationMode::Hard);
        self.run_invalidation(target, &self.inner.direct).await
    }

    /// Invalidates every entry.
    pub async fn purge_all(&self) -> StoreResult<Stamp> {
        self.run_invalidation(Target::All, &self.inner.direct).await
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
        if let Some(admin) = self.inner.admin.get() {
            stats
                .routes
                .insert(ADMIN_ROUTE.to_owned(), admin.snapshot());
        }
        stats
    }

    /// The last `limit` invalidations run on this instance (at most the
    /// last [`KEPT_INVALIDATIONS`](crate::invalidation_log::KEPT_INVALIDATIONS)),
    /// newest first, with who asked for each.
    ///
    /// ```
    /// use tagcache::{Cache, InvalidationSource};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = Cache::default();
    /// cache.invalidate(["teacher:7"]).await.unwrap();
    /// let last = &cache.recent_invalidations(10)[0];
    /// assert_eq!(last.tags, ["teacher:7"]);
    /// assert_eq!(last.source, InvalidationSource::Code);
    /// # });
    /// ```
    pub fn recent_invalidations(&self, limit: usize) -> Vec<InvalidationRecord> {
        self.inner.invalidations.recent(limit)
    }

    /// Starts keeping a recent history of the counters, read once a
    /// second off the request path (per-route hit ratios over the last
    /// minute and five, store error and eviction rates), and publishing
    /// the store's gauges through the `metrics` facade:
    /// `tagcache_store_entries`, `tagcache_store_bytes`,
    /// `tagcache_store_budget_bytes`, `tagcache_store_tag_stamps` and the
    /// counter `tagcache_store_evictions_total`, each labelled `cache`.
    ///
    /// The admin router starts it; call it yourself for the gauges alone.
    /// Idempotent; needs a tokio runtime (without one it does nothing and
    /// returns `false`). The task holds the cache weakly and ends with it;
    /// if its runtime ended first, the next call starts it again.
    pub fn track_history(&self) -> bool {
        let mut sampler = self.inner.sampler.lock().unwrap_or_else(|e| e.into_inner());
        if sampler.as_ref().is_some_and(|task| !task.is_finished()) {
            return true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let weak: Weak<CacheInner> = Arc::downgrade(&self.inner);
        *sampler = Some(runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let second = inner.created.elapsed().as_secs();
                Cache { inner }.sample(second);
            }
        }));
        true
    }

    /// Reads every counter into the history, and publishes the store's
    /// gauges.
    fn sample(&self, second: u64) {
        let usage = self.inner.store.usage();
        let routes = self.all_route_metrics();
        let mut overall = Reading {
            evictions: usage.evictions.unwrap_or(0),
            ..Reading::default()
        };
        let mut history = self.history();
        let previous = history.overall.last_second();
        for metrics in &routes {
            let stats = metrics.snapshot();
            let reading = Reading {
                answered: stats.hits + stats.stale + stats.collapsed,
                misses: stats.misses,
                requests: stats.hits
                    + stats.stale
                    + stats.collapsed
                    + stats.misses
                    + stats.bypasses,
                store_errors: stats.store_errors,
                evictions: 0,
            };
            overall.answered += reading.answered;
            overall.misses += reading.misses;
            overall.requests += reading.requests;
            overall.store_errors += reading.store_errors;
            let ring = history.routes.entry(metrics.name().clone()).or_default();
            if let (None, Some(previous)) = (ring.last_second(), previous) {
                // A route made since the last reading counted from zero then.
                ring.push(previous, Reading::default());
            }
            ring.push(second, reading);
        }
        history.overall.push(second, overall);
        drop(history);

        let cache = self.inner.name.to_string();
        let gauge = |name: &'static str, value: Option<u64>| {
            if let Some(value) = value {
                metrics::gauge!(name, "cache" => cache.clone()).set(value as f64);
            }
        };
        gauge("tagcache_store_entries", usage.entries);
        gauge("tagcache_store_bytes", usage.bytes);
        gauge("tagcache_store_budget_bytes", usage.budget);
        gauge("tagcache_store_tag_stamps", usage.tag_stamps);
        if let Some(evictions) = usage.evictions {
            metrics::counter!("tagcache_store_evictions_total", "cache" => cache.clone())
                .absolute(evictions);
        }
    }

    /// The counters' recent history (empty until [`Cache::track_history`]).
    pub(crate) fn history(&self) -> MutexGuard<'_, History> {
        self.inner.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every route's counters, by name (the direct route included, and the
    /// admin's once it invalidated).
    pub(crate) fn all_route_metrics(&self) -> Vec<Arc<RouteMetrics>> {
        let routes = self.inner.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = routes.values().cloned().collect();
        all.push(self.inner.direct.clone());
        all.extend(self.inner.admin.get().cloned());
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// How many requests are waiting right now for another request's
    /// origin call (coalesced misses, here or on another instance sharing
    /// the store), for diagnostics.
    pub fn waiting_requests(&self) -> usize {
        self.inner.coalescer.waiting()
    }

    /// How many keys have a shared origin call in progress on this
    /// instance, counting each until its response is in the store (a
    /// request for the key meanwhile waits for it rather than missing), for
    /// diagnostics: 0 once every such fill has been stored.
    pub fn fills_in_progress(&self) -> usize {
        self.inner.coalescer.len()
    }

    /// Declares that an invalidation source outside the store (a database
    /// feed such as `tagcache::postgres`) may be missing invalidations: until
    /// the returned hold is dropped, every lookup on this instance counts
    /// every entry as invalid (a miss that is not stored), whatever the
    /// store says. Holds from several sources add up.
    ///
    /// Dropping the hold does not make up for what was missed: a source
    /// that lost invalidations first invalidates whatever they could have
    /// reached (typically [`purge_all`](Cache::purge_all)), then drops
    /// its hold.
    pub fn hold_out_of_sync(&self) -> OutOfSyncHold {
        self.inner.out_of_sync.fetch_add(1, Ordering::AcqRel);
        OutOfSyncHold {
            cache: self.clone(),
        }
    }

    /// Whether some invalidation source holds this cache out of sync (see
    /// [`hold_out_of_sync`](Cache::hold_out_of_sync)).
    ///
    /// On every lookup: one load. It is `Acquire` rather than `Relaxed`
    /// so that a lookup seeing a hold released also sees what the source
    /// invalidated before releasing it; on x86-64 both are the same plain
    /// load.
    #[inline]
    pub fn is_out_of_sync(&self) -> bool {
        self.inner.out_of_sync.load(Ordering::Acquire) != 0
    }

    /// The store behind this cache.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The cache's name in `Cache-Status`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This cache's in-flight origin calls.
    pub(crate) fn coalescer(&self) -> &Arc<Coalescer> {
        &self.inner.coalescer
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

    #[cfg(feature = "admin")]
    /// Runs an invalidation the admin API asked for, counted under
    /// [`ADMIN_ROUTE`].
    pub(crate) fn run_admin_invalidation(&self, target: Target) -> StoreFuture<Stamp> {
        let admin = self
            .inner
            .admin
            .get_or_init(|| Arc::new(RouteMetrics::new(ADMIN_ROUTE.into())))
            .clone();
        self.run_invalidation(target, &admin)
    }

    /// Who `metrics` stands for, in the invalidation log.
    fn source_of(&self, metrics: &Arc<RouteMetrics>) -> InvalidationSource {
        if Arc::ptr_eq(metrics, &self.inner.direct) {
            InvalidationSource::Code
        } else if self
            .inner
            .admin
            .get()
            .is_some_and(|admin| Arc::ptr_eq(metrics, admin))
        {
            InvalidationSource::Admin
        } else {
            InvalidationSource::Route(metrics.name().to_string())
        }
    }

    /// Runs one invalidation and times, counts and logs it under `metrics`,
    /// whoever asked for it (a route's [`InvalidateLayer`](crate::InvalidateLayer)
    /// or code holding the handle). Resolved at once when the store answers
    /// at once; otherwise the returned future records the outcome when it
    /// completes, so a caller may spawn it.
    ///
    /// An empty tag list invalidates nothing and returns a fresh stamp.
    pub(crate) fn run_invalidation(
        &self,
        target: Target,
        metrics: &Arc<RouteMetrics>,
    ) -> StoreFuture<Stamp> {
        let store = &self.inner.store;
        let started = Instant::now();
        let pending = match &target {
            Target::Tags(tags, _) if tags.is_empty() => return store.fill_stamp(),
            Target::Tags(tags, mode) => store.invalidate(tags, *mode),
            Target::All => store.invalidate_all(),
        };
        let log = Logged {
            log: self.inner.invalidations.clone(),
            source: self.source_of(metrics),
        };
        match pending.now_or_later() {
            Ok(result) => {
                record_invalidation(metrics, &target, &result, started, log);
                StoreFuture::ready(result)
            }
            Err(pending) => {
                let metrics = metrics.clone();
                StoreFuture::pending(async move {
                    let result = pending.await;
                    record_invalidation(&metrics, &target, &result, started, log);
                    result
                })
            }
        }
    }
}

/// Where an invalidation is written down once it completed, and who asked.
struct Logged {
    log: Arc<InvalidationLog>,
    source: InvalidationSource,
}

/// The tags that reach every entry stored under `key`: its implicit tag,
/// and that of its query's normal form when it differs.
pub(crate) fn purge_tags(key: &str) -> Vec<Tag> {
    let mut tags = vec![key_tag(key)];
    let normal = normalize_target(key);
    if normal != key {
        tags.push(key_tag(&normal));
    }
    tags
}

fn record_invalidation(
    metrics: &RouteMetrics,
    target: &Target,
    result: &StoreResult<Stamp>,
    started: Instant,
    logged: Logged,
) {
    metrics.store_latency(StoreOp::Invalidate, started.elapsed());
    let (tags, mode): (&[Tag], _) = match target {
        Target::Tags(tags, mode) => (tags, Some(*mode)),
        Target::All => (&[], None),
    };
    let kind = match mode {
        Some(InvalidationMode::Hard) => InvalidationKind::Hard,
        Some(InvalidationMode::Soft) => InvalidationKind::Soft,
        None => InvalidationKind::All,
    };
    let error = result.as_ref().err().map(ToString::to_string);
    logged.log.record(kind, tags, logged.source, error);
    match result {
        Ok(stamp) => {
            metrics.invalidated(tags.len());
            tracing::debug!(route = %metrics.name(), ?tags, ?mode, all = mode.is_none(), stamp = stamp.0, "tagcache invalidated");
        }
        Err(error) => {
            metrics.store_error(StoreOp::Invalidate);
            tracing::error!(route = %metrics.name(), ?tags, all = mode.is_none(), %error, "tagcache invalidation failed; affected entries may be served until they expire");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(cache: &Cache) -> Option<u64> {
        cache.history().overall.last_second()
    }

    /// Waits (bounded) for the sampler's first reading.
    async fn first_reading(cache: &Cache) {
        tokio::time::timeout(Duration::from_secs(30), async {
            while readings(cache).is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the sampler never read the counters");
    }

    #[test]
    fn the_sampler_needs_a_runtime_and_starts_again_in_a_new_one() {
        let cache = Cache::default();
        assert!(!cache.track_history(), "no runtime, no sampler");
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        first.block_on(async {
            assert!(cache.track_history());
            assert!(cache.track_history(), "idempotent");
            first_reading(&cache).await;
        });
        drop(first);
        cache.history().overall = Default::default();
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        second.block_on(async {
            assert!(cache.track_history());
            first_reading(&cache).await;
        });
    }
}
