//! The circuit breaker: while Redis is down, fail fast instead of waiting
//! out a timeout on every request.
//!
//! After [`TRIP_AFTER`] consecutive calls fail for want of Redis (timeouts,
//! refused or dropped connections), the breaker opens: every store call
//! fails at once with [`StoreErrorKind::CircuitOpen`] without touching the
//! network, so requests go to the origin at the origin's own latency. A
//! background probe `PING`s Redis with a growing pause (100 ms up to 2 s)
//! and closes the breaker when Redis answers.
//!
//! Opening also stops the instance from trusting what it knew: its view of
//! the tag stamps is marked out of sync (invalidations made elsewhere while
//! Redis was unreachable could not reach it), so every entry, local tier
//! included, is a miss until the feed has resubscribed and reloaded the
//! stamp table after the breaker closed.
//!
//! The opening and the closing are logged once each, with a summary of the
//! calls skipped every [`SUMMARY_EVERY`] while open; the calls the breaker
//! skips are not logged one by one, and are counted in
//! `tagcache_redis_skipped_total{op}`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::store::{StoreError, StoreErrorKind};

/// Consecutive failures that open the breaker.
pub(crate) const TRIP_AFTER: u32 = 3;
/// First pause between two probes while open.
const FIRST_PROBE: Duration = Duration::from_millis(100);
/// Longest pause between two probes.
const MAX_PROBE: Duration = Duration::from_secs(2);
/// How often an open breaker reports what it skipped.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct Breaker {
    open: AtomicBool,
    failures: AtomicU32,
    skipped: AtomicU64,
    /// How many times it has opened: a feed session that saw this change
    /// may have missed invalidations, even if the breaker is closed again.
    openings: AtomicU64,
    opened_at: Mutex<Option<Instant>>,
    /// Woken when the breaker opens (the probe starts) and when it closes
    /// (the feed resyncs, queued invalidations are retried).
    pub(crate) changed: Notify,
}

impl Breaker {
    pub(crate) fn new() -> Breaker {
        Breaker {
            open: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            skipped: AtomicU64::new(0),
            openings: AtomicU64::new(0),
            opened_at: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// How many times the breaker has opened so far.
    pub(crate) fn openings(&self) -> u64 {
        self.openings.load(Ordering::Acquire)
    }

    /// The error of a call the open breaker skipped (and counts it).
    pub(crate) fn skip(&self, op: &'static str) -> StoreError {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tagcache_redis_skipped_total", "op" => op).increment(1);
        StoreError::new(
            StoreErrorKind::CircuitOpen,
            "redis is unreachable (circuit breaker open); not asked",
        )
    }

    /// Takes in a call's outcome; returns true if this failure opened it.
    pub(crate) fn record(&self, result: Result<(), &StoreError>) -> bool {
        match result {
            Ok(()) => {
                self.failures.store(0, Ordering::Relaxed);
                false
            }
            Err(error) if error.kind() == StoreErrorKind::Unavailable => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                failures >= TRIP_AFTER && self.trip(error)
            }
            // Redis answered, if not as hoped: it is reachable.
            Err(_) => {
                self.failures.store(0, Ordering::Relaxed);
                false
            }
        }
    }

    fn trip(&self, error: &StoreError) -> bool {
        if self.open.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.openings.fetch_add(1, Ordering::AcqRel);
        *self.opened_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.skipped.store(0, Ordering::Relaxed);
        metrics::gauge!("tagcache_redis_breaker_open").set(1.0);
        tracing::warn!(%error, "tagcache: Redis unreachable after {TRIP_AFTER} failed calls; serving from the origin without asking Redis until it answers again");
        self.changed.notify_waiters();
        true
    }

    /// Redis answered a probe: close.
    fn close(&self) {
        self.failures.store(0, Ordering::Relaxed);
        let since = self
            .opened_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.open.store(false, Ordering::Release);
        metrics::gauge!("tagcache_redis_breaker_open").set(0.0);
        let skipped = self.skipped.swap(0, Ordering::Relaxed);
        tracing::info!(
            down_for = ?since.map(|t| t.elapsed()),
            skipped,
            "tagcache: Redis answers again; resyncing the invalidation feed before serving entries"
        );
        self.changed.notify_waiters();
    }

    /// Waits until the breaker is closed.
    pub(crate) async fn closed(&self) {
        loop {
            let changed = self.changed.notified();
            if !self.is_open() {
                return;
            }
            changed.await;
        }
    }

    /// Waits until the breaker is open.
    async fn opened(&self) {
        loop {
            let changed = self.changed.notified();
            if self.is_open() {
                return;
            }
            changed.await;
        }
    }

    /// Probes Redis with `ping` while the breaker is open, for as long as
    /// the store lives.
    pub(crate) async fn probe<F, Fut>(&self, ping: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        loop {
            self.opened().await;
            let mut pause = FIRST_PROBE;
            let mut last_summary = Instant::now();
            while self.is_open() {
                tokio::time::sleep(pause).await;
                if ping().await.is_ok() {
                    self.close();
                    break;
                }
                pause = (pause * 2).min(MAX_PROBE);
                if last_summary.elapsed() >= SUMMARY_EVERY {
                    last_summary = Instant::now();
                    tracing::warn!(
                        skipped = self.skipped.swap(0, Ordering::Relaxed),
                        "tagcache: Redis still unreachable; calls skipped in the last {SUMMARY_EVERY:?}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> StoreError {
        StoreError::new(StoreErrorKind::Unavailable, "down")
    }

    #[test]
    fn opens_after_consecutive_unavailable_calls_only() {
        let breaker = Breaker::new();
        for _ in 0..TRIP_AFTER - 1 {
            assert!(!breaker.record(Err(&unavailable())));
        }
        // A success in between starts the count again.
        breaker.record(Ok(()));
        for _ in 0..TRIP_AFTER - 1 {
            breaker.record(Err(&unavailable()));
        }
        assert!(!breaker.is_open());
        // An answer that is an error still proves Redis is there.
        breaker.record(Err(&StoreError::new(StoreErrorKind::Corrupt, "odd")));
        breaker.record(Err(&unavailable()));
        assert!(!breaker.is_open());
        breaker.record(Err(&unavailable()));
        assert!(breaker.record(Err(&unavailable())));
        assert!(breaker.is_open());
        assert!(!breaker.record(Err(&unavailable())), "opens once");
        assert_eq!(breaker.skip("get").kind(), StoreErrorKind::CircuitOpen);
        breaker.close();
        assert!(!breaker.is_open());
    }
}
