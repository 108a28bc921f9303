//! This instance's writes still on their way, so that its own reads never
//! go back in time (the same rule as the Redis store's).
//!
//! A `put` spawned by the layer may reach the connection after a `get`
//! issued later; without this, the `get` could answer from before the
//! write and the layer would refill a key it just filled. Each write is
//! recorded here before its statement is sent; a read notes when it
//! starts and, when the database answers, prefers a recorded write that is
//! not yet answered or was answered after the read started (the read's
//! statement may have reached the database before the write's). Every call
//! is bounded by the response timeout, so a record can be dropped once its
//! write has been answered for that long.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::entry::{Entry, KeyHash};

struct Record {
    /// `None` for a removal.
    entry: Option<Arc<Entry>>,
    seq: u64,
    answered_at: Option<Instant>,
}

/// The recent writes of one store.
pub(crate) struct Recent {
    records: DashMap<KeyHash, Record>,
    seq: AtomicU64,
    keep: Duration,
    since_sweep: AtomicU64,
}

/// Writes between two sweeps of answered records.
const SWEEP_EVERY: u64 = 64;

impl Recent {
    /// Records are kept `keep` after their write was answered.
    pub(crate) fn new(keep: Duration) -> Recent {
        Recent {
            records: DashMap::new(),
            seq: AtomicU64::new(0),
            keep,
            since_sweep: AtomicU64::new(0),
        }
    }

    /// Records a write of `entry` (`None`: a removal) about to be sent;
    /// returns its sequence number.
    pub(crate) fn write(&self, key: KeyHash, entry: Option<Arc<Entry>>) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        self.records.insert(
            key,
            Record {
                entry,
                seq,
                answered_at: None,
            },
        );
        if self.since_sweep.fetch_add(1, Ordering::Relaxed) + 1 >= SWEEP_EVERY {
            self.since_sweep.store(0, Ordering::Relaxed);
            let now = Instant::now();
            self.records.retain(|_, r| {
                r.answered_at
                    .is_none_or(|at| now.duration_since(at) < self.keep)
            });
        }
        seq
    }

    /// The write `seq` of `key` was answered: it succeeded, or it failed
    /// and never happened.
    pub(crate) fn answered(&self, key: KeyHash, seq: u64, succeeded: bool) {
        if succeeded {
            if let Some(mut record) = self.records.get_mut(&key) {
                if record.seq == seq {
                    record.answered_at = Some(Instant::now());
                }
            }
        } else {
            self.records.remove_if(&key, |_, r| r.seq == seq);
        }
    }

    /// When a read starting now started.
    pub(crate) fn read_started(&self) -> Instant {
        Instant::now()
    }

    /// What a read of `key` that started at `started` answers, given what
    /// the database said: a local write not answered before the read
    /// started wins.
    pub(crate) fn resolve(
        &self,
        key: KeyHash,
        started: Instant,
        found: Option<Arc<Entry>>,
    ) -> Option<Arc<Entry>> {
        match self.records.get(&key) {
            Some(r) if r.answered_at.is_none_or(|at| at >= started) => r.entry.clone(),
            _ => found,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &'static str) -> Arc<Entry> {
        let mut entry = Entry::for_test();
        entry.body = bytes::Bytes::from_static(body.as_bytes());
        Arc::new(entry)
    }

    #[test]
    fn a_read_prefers_writes_not_answered_before_it_started() {
        let recent = Recent::new(Duration::from_secs(60));
        let key = KeyHash(7);
        let old = Some(entry("old"));
        let started = recent.read_started();
        assert_eq!(
            recent.resolve(key, started, old.clone()).unwrap().body,
            "old"
        );

        let seq = recent.write(key, Some(entry("new")));
        // In flight: whatever the database said, the write wins.
        assert_eq!(
            recent.resolve(key, started, old.clone()).unwrap().body,
            "new"
        );
        recent.answered(key, seq, true);
        // Answered after the read started: the read may have been
        // answered from before it, so the write still wins.
        assert_eq!(
            recent.resolve(key, started, old.clone()).unwrap().body,
            "new"
        );
        // A read started after the answer trusts the database.
        std::thread::sleep(Duration::from_millis(1));
        let later = recent.read_started();
        assert_eq!(recent.resolve(key, later, old.clone()).unwrap().body, "old");

        // A removal in flight hides the row; a failed write is forgotten.
        let seq = recent.write(key, None);
        assert!(recent.resolve(key, later, old.clone()).is_none());
        recent.answered(key, seq, false);
        let after = recent.read_started();
        assert_eq!(recent.resolve(key, after, old).unwrap().body, "old");
    }
}
