//! Entries this instance has just written, so its own reads never go back
//! in time while a write is on its way to Redis.
//!
//! Without it, a `GET` sent just before a `SET` of the same key (its answer
//! already on the wire) resolves to the old value after the layer has seen
//! the write complete, and the layer would refill a key it just filled. Each
//! `put` is recorded here, with a sequence number, before its command is
//! sent; a `get` notes the sequence number when it starts and, when Redis
//! answers, prefers a local write made after it started (or still in
//! flight). Every store call is bounded by the response timeout, so a record
//! can be dropped once its write has been answered for that long: no read
//! that started before the write can still be waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::entry::{Entry, KeyHash};

struct Record {
    entry: Arc<Entry>,
    seq: u64,
    started_at: Instant,
    answered_at: Option<Instant>,
}

/// The recent writes of one store.
pub(crate) struct Recent {
    records: DashMap<KeyHash, Record>,
    seq: AtomicU64,
    keep: Duration,
    /// Writes since the last sweep: sweeping on every write would make a
    /// burst of writes quadratic in the number of records.
    since_sweep: AtomicU64,
}

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

    /// Where a read starts: writes with a higher sequence number are newer
    /// than anything it can see in Redis.
    pub(crate) fn read_started(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Records a write about to be sent; returns its sequence number.
    pub(crate) fn write_started(&self, key: KeyHash, entry: Arc<Entry>) -> u64 {
        self.prune();
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        self.records.insert(
            key,
            Record {
                entry,
                seq,
                started_at: Instant::now(),
                answered_at: None,
            },
        );
        seq
    }

    /// The write `seq` was answered (stored or failed).
    pub(crate) fn write_answered(&self, key: KeyHash, seq: u64) {
        if let Some(mut record) = self.records.get_mut(&key) {
            if record.seq == seq {
                record.answered_at = Some(Instant::now());
            }
        }
    }

    /// The entry was removed: forget any local write of it.
    pub(crate) fn removed(&self, key: KeyHash) {
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.records.remove(&key);
    }

    /// A local write that supersedes what a read started at `started` got
    /// from Redis: one made after the read started, or one still in flight.
    pub(crate) fn newer_than(&self, key: KeyHash, started: u64) -> Option<Arc<Entry>> {
        if self.records.is_empty() {
            return None;
        }
        let record = self.records.get(&key)?;
        (record.seq > started || record.answered_at.is_none()).then(|| record.entry.clone())
    }

    /// Writes sent whose answer this instance has not yet taken in. Until
    /// then a read of the key returns the written entry, whatever else is
    /// in Redis.
    pub(crate) fn in_flight(&self) -> usize {
        self.records
            .iter()
            .filter(|record| record.answered_at.is_none())
            .count()
    }

    fn prune(&self) {
        if self.records.is_empty() {
            return;
        }
        // Sweep once per 64 writes (or on every write while the map is
        // small): a record kept past its time costs only memory, since reads
        // that start after its write was answered ignore it.
        let writes = self.since_sweep.fetch_add(1, Ordering::Relaxed);
        if self.records.len() > 64 && !writes.is_multiple_of(64) {
            return;
        }
        let now = Instant::now();
        self.records.retain(|_, record| {
            // A write is answered or timed out within `keep` of its start;
            // one never marked (its future was dropped) goes by that bound.
            let answered = record.answered_at.unwrap_or(record.started_at + self.keep);
            now.saturating_duration_since(answered) <= self.keep
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(body: &'static str) -> Arc<Entry> {
        Arc::new(Entry {
            body: Bytes::from_static(body.as_bytes()),
            stored_at_micros: 1,
            ttl: Duration::from_secs(1),
            ..Entry::for_test()
        })
    }

    #[test]
    fn reads_see_writes_made_after_they_started_or_in_flight() {
        let recent = Recent::new(Duration::ZERO);
        let key = KeyHash(1);
        let before = recent.read_started();
        assert!(recent.newer_than(key, before).is_none());
        let seq = recent.write_started(key, entry("new"));
        // Started before the write: the write wins.
        assert_eq!(recent.newer_than(key, before).unwrap().body, "new");
        // Started after, write in flight: the write wins too.
        let after = recent.read_started();
        assert_eq!(recent.newer_than(key, after).unwrap().body, "new");
        recent.write_answered(key, seq);
        // Started after an answered write: Redis has it (or newer).
        assert!(recent.newer_than(key, after).is_none());
        assert_eq!(recent.newer_than(key, before).unwrap().body, "new");
        assert!(recent.newer_than(KeyHash(2), before).is_none());
    }

    #[test]
    fn answered_records_are_pruned_and_removes_forget() {
        let recent = Recent::new(Duration::ZERO);
        let seq = recent.write_started(KeyHash(1), entry("a"));
        recent.write_answered(KeyHash(1), seq);
        std::thread::sleep(Duration::from_millis(2));
        recent.write_started(KeyHash(2), entry("b"));
        assert_eq!(recent.len(), 1);
        let started = recent.read_started();
        recent.removed(KeyHash(2));
        assert!(recent.newer_than(KeyHash(2), started).is_none());
        // An answer for a superseded write does not mark the newer one.
        let first = recent.write_started(KeyHash(3), entry("x"));
        recent.write_started(KeyHash(3), entry("y"));
        recent.write_answered(KeyHash(3), first);
        let now = recent.read_started();
        assert_eq!(recent.newer_than(KeyHash(3), now).unwrap().body, "y");
    }
}
