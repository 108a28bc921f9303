//! What the readers and writers of one instance counted. The first few
//! stale reads and failures are printed as they happen, with what was
//! expected: a count alone would not say where to look.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many stale reads and failures are printed, per instance.
const PRINTED: u64 = 5;

#[derive(Default)]
pub struct Tally {
    pub reads: AtomicU64,
    /// Reads answered from a fresh entry.
    pub hits: AtomicU64,
    pub writes: AtomicU64,
    /// Reads older than a write this instance had already answered.
    pub stale: AtomicU64,
    /// Reads older than a write another instance had already answered
    /// (propagation lag: counted, not an error).
    pub behind: AtomicU64,
    /// Requests answered with a non-2xx, an error, or not in time.
    pub failed: AtomicU64,
}

impl Tally {
    pub fn read(&self, hit: bool) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn behind(&self) {
        self.behind.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stale(&self, what: impl FnOnce() -> String) {
        if self.stale.fetch_add(1, Ordering::SeqCst) < PRINTED {
            eprintln!("STALE: {}", what());
        }
    }

    pub fn failed(&self, what: impl FnOnce() -> String) {
        if self.failed.fetch_add(1, Ordering::SeqCst) < PRINTED {
            eprintln!("FAILED: {}", what());
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}
