//! Per-route counters: kept as atomics for [`Cache::stats`](crate::Cache::stats)
//! and emitted through the [`metrics`] facade so any exporter picks them up.
//!
//! Labels are bounded: the route name given to the layer and a reason from a
//! fixed list, never the key.
//!
//! Metric names:
//! `tagcache_hits_total`, `tagcache_misses_total`, `tagcache_stale_total`,
//! `tagcache_collapsed_total`, `tagcache_revalidated_total`, `tagcache_passes_total`, `tagcache_lease_waits_total`,
//! `tagcache_lease_takeovers_total`, `tagcache_bypass_total{reason}`,
//! `tagcache_not_stored_total{reason}`, `tagcache_invalidations_total`,
//! `tagcache_store_errors_total{op}` and the histogram
//! `tagcache_store_seconds{op}` (`op` is `get`, `put`, `stamp`, `invalidate`
//! or `lease`); every one carries `route`. The Redis store
//! adds `tagcache_redis_corrupt_entries_total` (stored values that did not
//! decode and were treated as misses). The PostgreSQL listener (feature
//! `postgres`) counts its invalidations under the route `postgres` and adds
//! `tagcache_pg_notifications_total`, `tagcache_pg_rejected_notifications_total`,
//! `tagcache_pg_listener_resyncs_total` and the gauge
//! `tagcache_pg_listener_in_sync`, each labelled `channel`.
//! Once [`Cache::track_history`](crate::Cache::track_history) runs (the
//! admin router starts it), the store's state is published once a second,
//! labelled `cache`: the gauges `tagcache_store_entries`,
//! `tagcache_store_bytes`, `tagcache_store_budget_bytes`,
//! `tagcache_store_tag_stamps`, and the counter
//! `tagcache_store_evictions_total` (each when the store can tell).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use serde::Serialize;

use crate::semantics::{BypassReason, NotStoredReason};

/// A store operation, for latency and error metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Get,
    Put,
    Stamp,
    Invalidate,
    Lease,
}

impl StoreOp {
    const ALL: [StoreOp; 5] = [
        StoreOp::Get,
        StoreOp::Put,
        StoreOp::Stamp,
        StoreOp::Invalidate,
        StoreOp::Lease,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::Put => "put",
            StoreOp::Stamp => "stamp",
            StoreOp::Invalidate => "invalidate",
            StoreOp::Lease => "lease",
        }
    }
}

/// The `metrics` handles of one route, registered on first use so that an
/// exporter installed after the router was built still receives them.
struct Handles {
    hits: Counter,
    misses: Counter,
    stale: Counter,
    collapsed: Counter,
    revalidated: Counter,
    passes: Counter,
    lease_waits: Counter,
    takeovers: Counter,
    bypass: [Counter; BypassReason::ALL.len()],
    not_stored: [Counter; NotStoredReason::ALL.len()],
    invalidations: Counter,
    store_errors: [Counter; StoreOp::ALL.len()],
    store_seconds: [Histogram; StoreOp::ALL.len()],
}

impl Handles {
    fn register(route: &Arc<str>) -> Self {
        let route = route.to_string();
        Handles {
            hits: metrics::counter!("tagcache_hits_total", "route" => route.clone()),
            misses: metrics::counter!("tagcache_misses_total", "route" => route.clone()),
            stale: metrics::counter!("tagcache_stale_total", "route" => route.clone()),
            collapsed: metrics::counter!("tagcache_collapsed_total", "route" => route.clone()),
            revalidated: metrics::counter!("tagcache_revalidated_total", "route" => route.clone()),
            passes: metrics::counter!("tagcache_passes_total", "route" => route.clone()),
            lease_waits: metrics::counter!("tagcache_lease_waits_total", "route" => route.clone()),
            takeovers: metrics::counter!("tagcache_lease_takeovers_total", "route" => route.clone()),
            bypass: BypassReason::ALL.map(|r| {
                metrics::counter!("tagcache_bypass_total", "route" => route.clone(), "reason" => r.as_str())
            }),
            not_stored: NotStoredReason::ALL.map(|r| {
                metrics::counter!("tagcache_not_stored_total", "route" => route.clone(), "reason" => r.as_str())
            }),
            invalidations: metrics::counter!("tagcache_invalidations_total", "route" => route.clone()),
            store_errors: StoreOp::ALL.map(|op| {
                metrics::counter!("tagcache_store_errors_total", "route" => route.clone(), "op" => op.as_str())
            }),
            store_seconds: StoreOp::ALL.map(|op| {
                metrics::histogram!("tagcache_store_seconds", "route" => route.clone(), "op" => op.as_str())
            }),
        }
    }
}

/// Counters of one route.
pub(crate) struct RouteMetrics {
    name: Arc<str>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    collapsed: AtomicU64,
    revalidated: AtomicU64,
    passes: AtomicU64,
    lease_waits: AtomicU64,
    takeovers: AtomicU64,
    /// By reason, in the order of `BypassReason::ALL`.
    bypasses: [AtomicU64; BypassReason::ALL.len()],
    /// By reason, in the order of `NotStoredReason::ALL`.
    not_stored: [AtomicU64; NotStoredReason::ALL.len()],
    invalidations: AtomicU64,
    store_errors: AtomicU64,
    handles: OnceLock<Handles>,
}

impl RouteMetrics {
    pub(crate) fn new(name: Arc<str>) -> Self {
        RouteMetrics {
            name,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            collapsed: AtomicU64::new(0),
            revalidated: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            lease_waits: AtomicU64::new(0),
            takeovers: AtomicU64::new(0),
            bypasses: Default::default(),
            not_stored: Default::default(),
            invalidations: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            handles: OnceLock::new(),
        }
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| Handles::register(&self.name))
    }

    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.handles().hits.increment(1);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.handles().misses.increment(1);
    }

    pub(crate) fn stale(&self) {
        self.stale.fetch_add(1, Ordering::Relaxed);
        self.handles().stale.increment(1);
    }

    pub(crate) fn collapsed(&self) {
        self.collapsed.fetch_add(1, Ordering::Relaxed);
        self.handles().collapsed.increment(1);
    }

    /// A stale entry was revalidated: the origin answered a conditional
    /// request with 304, and the stored body answered.
    pub(crate) fn revalidated(&self) {
        self.revalidated.fetch_add(1, Ordering::Relaxed);
        self.handles().revalidated.increment(1);
    }

    /// A miss went to the origin outside the key's flight, because the
    /// key's last response could not be shared (see [`crate::coalesce`]).
    pub(crate) fn pass(&self) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.handles().passes.increment(1);
    }

    /// A miss found the key's fleet-wide lease held by another instance
    /// and waited for it (see [`crate::store::lease`]).
    pub(crate) fn lease_wait(&self) {
        self.lease_waits.fetch_add(1, Ordering::Relaxed);
        self.handles().lease_waits.increment(1);
    }

    /// A miss took over a lease whose holder gave up or vanished.
    pub(crate) fn takeover(&self) {
        self.takeovers.fetch_add(1, Ordering::Relaxed);
        self.handles().takeovers.increment(1);
    }

    pub(crate) fn bypass(&self, reason: BypassReason) {
        let index = BypassReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.bypasses[index].fetch_add(1, Ordering::Relaxed);
        self.handles().bypass[index].increment(1);
    }

    pub(crate) fn not_stored(&self, reason: NotStoredReason) {
        let index = NotStoredReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.not_stored[index].fetch_add(1, Ordering::Relaxed);
        self.handles().not_stored[index].increment(1);
    }

    pub(crate) fn invalidated(&self, tags: usize) {
        self.invalidations.fetch_add(tags as u64, Ordering::Relaxed);
        self.handles().invalidations.increment(tags as u64);
    }

    pub(crate) fn store_error(&self, op: StoreOp) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
        self.handles().store_errors[op as usize].increment(1);
    }

    pub(crate) fn store_latency(&self, op: StoreOp, elapsed: Duration) {
        self.handles().store_seconds[op as usize].record(elapsed.as_secs_f64());
    }

    #[cfg(feature = "admin")]
    /// Bypasses so far, by reason (every reason, zeros included).
    pub(crate) fn bypasses_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        BypassReason::ALL
            .iter()
            .zip(&self.bypasses)
            .map(|(reason, count)| (reason.as_str(), count.load(Ordering::Relaxed)))
    }

    #[cfg(feature = "admin")]
    /// Responses not stored so far, by reason (every reason, zeros
    /// included).
    pub(crate) fn not_stored_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        NotStoredReason::ALL
            .iter()
            .zip(&self.not_stored)
            .map(|(reason, count)| (reason.as_str(), count.load(Ordering::Relaxed)))
    }

    pub(crate) fn snapshot(&self) -> RouteStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let hits = load(&self.hits);
        let stale = load(&self.stale);
        let collapsed = load(&self.collapsed);
        let misses = load(&self.misses);
        let served = hits + stale + collapsed + misses;
        RouteStats {
            hits,
            misses,
            stale,
            collapsed,
            revalidated: load(&self.revalidated),
            passes: load(&self.passes),
            lease_waits: load(&self.lease_waits),
            takeovers: load(&self.takeovers),
            bypasses: self.bypasses.iter().map(load).sum(),
            not_stored: self.not_stored.iter().map(load).sum(),
            invalidations: load(&self.invalidations),
            store_errors: load(&self.store_errors),
            hit_ratio: if served == 0 {
                0.0
            } else {
                (hits + stale + collapsed) as f64 / served as f64
            },
        }
    }
}

/// A snapshot of one route's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RouteStats {
    /// Answered from a fresh entry.
    pub hits: u64,
    /// Went to the origin as the leader of a fill (or alone).
    pub misses: u64,
    /// Answered from a stale entry (stale-while-revalidate or stale-if-error).
    pub stale: u64,
    /// Waited for another request's origin call and shared its response.
    pub collapsed: u64,
    /// Stale entries revalidated with a conditional request that the
    /// origin answered with 304, so the stored body answered (counted in
    /// `misses` too: the origin was called).
    pub revalidated: u64,
    /// Misses that went to the origin without joining the key's flight,
    /// because the key's last response could not be shared (counted in
    /// `misses` too).
    pub passes: u64,
    /// Misses that found the key's lease held by another instance sharing
    /// the store, and waited for its response (one count per wait).
    pub lease_waits: u64,
    /// Misses that took over a lease whose holder gave up or vanished.
    pub takeovers: u64,
    /// Went to the origin without consulting the cache.
    pub bypasses: u64,
    /// Origin responses that were not stored.
    pub not_stored: u64,
    /// Tags invalidated through this route (or directly, under `direct`).
    pub invalidations: u64,
    /// Store operations that failed (the request was served from the origin).
    pub store_errors: u64,
    /// `(hits + stale + collapsed) / (hits + stale + collapsed + misses)`:
    /// the share of cacheable requests answered without an origin call.
    pub hit_ratio: f64,
}

/// A snapshot of every route's counters, from [`Cache::stats`](crate::Cache::stats).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct CacheStats {
    /// Counters by route name.
    pub routes: BTreeMap<String, RouteStats>,
}

impl CacheStats {
    /// The counters of one route, zero if it has seen nothing.
    pub fn route(&self, name: &str) -> RouteStats {
        self.routes.get(name).copied().unwrap_or_default()
    }
}
