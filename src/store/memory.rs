//! The embedded in-memory store.
//!
//! Built on [`quick_cache`]: a sharded, lock-per-shard cache with CLOCK-Pro
//! style eviction and a byte weighter. It was chosen over `moka` because its
//! synchronous `get` is a short critical section with no background
//! maintenance threads or async bookkeeping, which keeps a hit a plain
//! function call; `benchmarks/benches/store_choice.rs` measures both side by
//! side (see BENCHMARKS.md). Per-entry TTL, which quick_cache lacks, is not
//! needed from the cache crate: every entry carries its own freshness and
//! the layer decides what an expired entry may still be used for.

use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache as QuickCache;
use quick_cache::Weighter;

use crate::entry::{Entry, KeyHash, Tag};
use crate::stamp::{Clock, InvalidationMode, Stamp, TagBoard, Validity};
use crate::store::{Store, StoreFuture};

pub use crate::stamp::{DEFAULT_MAX_ENTRY_LIFE, DEFAULT_MAX_TAGS};

/// Default byte budget: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    weight: u64,
}

#[derive(Clone, Copy)]
struct ByWeight;

impl Weighter<KeyHash, Stored> for ByWeight {
    fn weight(&self, _key: &KeyHash, value: &Stored) -> u64 {
        value.weight
    }
}

/// An in-process store bounded by bytes, with O(1) tag invalidation.
///
/// ```
/// use tagcache::MemoryStore;
///
/// let store = MemoryStore::builder().max_bytes(16 * 1024 * 1024).build();
/// assert_eq!(store.entry_count(), 0);
/// ```
pub struct MemoryStore {
    entries: QuickCache<KeyHash, Stored, ByWeight>,
    clock: Clock,
    board: TagBoard,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.len())
            .field("bytes", &self.entries.weight())
            .field("tag_stamps", &self.board.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::builder().build()
    }
}

/// Options for a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_bytes: u64,
    max_entry_life: Duration,
    max_tags: usize,
}

impl MemoryStoreBuilder {
    /// Upper bound on the bytes held (bodies, headers, keys and tags).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1024);
        self
    }

    /// No entry lives longer than this after its fill started, whatever its
    /// TTL and stale windows; tag stamps older than this are dropped.
    pub fn max_entry_life(mut self, life: Duration) -> Self {
        self.max_entry_life = life;
        self
    }

    /// Cap on the number of tag stamps held at once.
    pub fn max_tags(mut self, tags: usize) -> Self {
        self.max_tags = tags;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        // quick_cache sizes its tables from an item estimate; 4 KiB per
        // entry is a middle guess for JSON API responses.
        let estimated_items = (self.max_bytes / 4096).clamp(64, 1 << 22) as usize;
        MemoryStore {
            entries: QuickCache::with_weighter(estimated_items, self.max_bytes, ByWeight),
            clock: Clock::new(),
            board: TagBoard::new(self.max_entry_life, self.max_tags),
        }
    }
}

impl MemoryStore {
    /// Options, starting from the defaults (64 MiB, 1 day, 1 M tag stamps).
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entry_life: DEFAULT_MAX_ENTRY_LIFE,
            max_tags: DEFAULT_MAX_TAGS,
        }
    }

    /// Number of entries held (including expired ones not yet evicted).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held, by the store's weighing.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }

    /// Number of tag stamps held.
    pub fn tag_stamp_count(&self) -> usize {
        self.board.len()
    }
}

impl Store for MemoryStore {
    fn get(&self, key: KeyHash) -> StoreFuture<Option<Arc<Entry>>> {
        StoreFuture::ready(Ok(self.entries.get(&key).map(|stored| stored.entry)))
    }

    fn put(&self, key: KeyHash, entry: Arc<Entry>) -> StoreFuture<()> {
        let weight = entry.weight();
        self.entries.insert(key, Stored { entry, weight });
        StoreFuture::ready(Ok(()))
    }

    fn remove(&self, key: KeyHash) -> StoreFuture<()> {
        self.entries.remove(&key);
        StoreFuture::ready(Ok(()))
    }

    fn fill_stamp(&self) -> StoreFuture<Stamp> {
        StoreFuture::ready(Ok(self.clock.next()))
    }

    fn invalidate(&self, tags: &[Tag], mode: InvalidationMode) -> StoreFuture<Stamp> {
        let stamp = self.clock.next();
        self.board.apply(tags, stamp, mode);
        StoreFuture::ready(Ok(stamp))
    }

    fn invalidate_all(&self) -> StoreFuture<Stamp> {
        let stamp = self.clock.next();
        self.board.invalidate_all(stamp);
        // Dropping the bodies now frees the memory at once; the floor is
        // what guarantees no fill in flight is served afterwards.
        self.entries.clear();
        StoreFuture::ready(Ok(stamp))
    }

    fn validity(&self, entry: &Entry) -> Validity {
        self.board.validity(&entry.tags, entry.fill_stamp)
    }

    fn max_entry_life(&self) -> Duration {
        self.board.max_entry_life()
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// The memory store answers synchronously.
    fn ready<T>(future: StoreFuture<T>) -> T {
        match future.now_or_later() {
            Ok(result) => result.expect("memory store operations succeed"),
            Err(_) => panic!("memory store answered asynchronously"),
        }
    }

    fn entry(body: usize) -> Arc<Entry> {
        Arc::new(Entry {
            body: Bytes::from(vec![0; body]),
            ..Entry::for_test()
        })
    }

    #[test]
    fn bounded_by_bytes_not_entries() {
        let store = MemoryStore::builder().max_bytes(256 * 1024).build();
        for i in 0..1000u128 {
            ready(store.put(KeyHash(i), entry(4096)));
        }
        assert!(store.weight() <= 256 * 1024, "weight {}", store.weight());
        assert!(store.entry_count() < 1000);
        assert!(store.entry_count() > 10, "count {}", store.entry_count());
    }

    #[test]
    fn invalidation_touches_one_stamp_however_many_entries() {
        let store = MemoryStore::default();
        let tagged = |fill: Stamp| {
            let mut e = (*entry(10)).clone();
            e.tags = vec!["teacher:7".into()].into_boxed_slice();
            e.fill_stamp = fill;
            Arc::new(e)
        };
        for i in 0..10_000u128 {
            let fill = store.clock.next();
            ready(store.put(KeyHash(i), tagged(fill)));
        }
        ready(store.invalidate(&["teacher:7".into()], InvalidationMode::Hard));
        // Nothing was scanned or deleted: one stamp decides for every entry.
        assert_eq!(store.tag_stamp_count(), 1);
        assert_eq!(store.entry_count(), 10_000);
        for i in [0u128, 5_000, 9_999] {
            let found = store.entries.get(&KeyHash(i)).unwrap().entry;
            assert_eq!(store.validity(&found), Validity::Invalid);
        }
        let later = tagged(store.clock.next());
        assert_eq!(store.validity(&later), Validity::Valid);
    }
}
