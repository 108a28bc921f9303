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

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

use crate::entry::{Entry, KeyHash, Tag};
use crate::inspect::{ScanOutcome, ScanPage, ScanRequest, StoreUsage};
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

/// Counts the entries quick_cache drops to stay within the budget, for
/// [`Store::usage`]. Evicted values are kept until the shard lock is
/// released, as quick_cache's default lifecycle does, so that freeing a
/// large body never lengthens a critical section.
#[derive(Clone, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<KeyHash, Stored> for CountEvictions {
    type RequestState = [Option<(KeyHash, Stored)>; 2];

    fn on_evict(&self, state: &mut Self::RequestState, key: KeyHash, val: Stored) {
        self.0.fetch_add(1, Ordering::Relaxed);
        if state[0].is_none() {
            state[0] = Some((key, val));
        } else if state[1].is_none() {
            state[1] = Some((key, val));
        }
    }
}

type Entries = QuickCache<KeyHash, Stored, ByWeight, DefaultHashBuilder, CountEvictions>;

/// An in-process store bounded by bytes, with O(1) tag invalidation.
///
/// ```
/// use tagcache::MemoryStore;
///
/// let store = MemoryStore::builder().max_bytes(16 * 1024 * 1024).build();
/// assert_eq!(store.entry_count(), 0);
/// ```
pub struct MemoryStore {
    entries: Entries,
    clock: Clock,
    board: TagBoard,
    budget: u64,
    evictions: Arc<AtomicU64>,
    /// Bumped by every `invalidate_all`, which empties the store: a listing
    /// cursor from before it no longer points anywhere.
    generation: AtomicU64,
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
        let evictions = CountEvictions::default();
        MemoryStore {
            budget: self.max_bytes,
            evictions: evictions.0.clone(),
            entries: QuickCache::with(
                estimated_items,
                self.max_bytes,
                ByWeight,
                DefaultHashBuilder::default(),
                evictions,
            ),
            clock: Clock::new(),
            board: TagBoard::new(self.max_entry_life, self.max_tags),
            generation: AtomicU64::new(0),
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

    /// Entries dropped to stay within the byte budget so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Where a listing stands: the generation it started in (a purge of
    /// everything starts a new one) and the last hash it returned.
    fn cursor(&self, generation: u64, after: KeyHash) -> String {
        format!("m{generation}-{:032x}", after.0)
    }

    fn parse_cursor(&self, cursor: &str) -> Result<KeyHash, String> {
        let malformed = || format!("{cursor:?} is not a cursor of this store");
        let (generation, hash) = cursor
            .strip_prefix('m')
            .and_then(|rest| rest.split_once('-'))
            .ok_or_else(malformed)?;
        let generation: u64 = generation.parse().map_err(|_| malformed())?;
        if hash.len() != 32 {
            return Err(malformed());
        }
        let hash = u128::from_str_radix(hash, 16).map_err(|_| malformed())?;
        if generation != self.generation.load(Ordering::Acquire) {
            return Err("the cache was purged since this listing began; start again".to_owned());
        }
        Ok(KeyHash(hash))
    }

    /// The entries after the cursor, in hash order, so that a listing
    /// neither repeats nor skips an entry that stays in the store while it
    /// runs, whatever the store does meanwhile. Each page walks the whole
    /// store (keeping only `limit + 1` entries at a time): this is for
    /// operators, never the request path.
    fn list(&self, request: &ScanRequest) -> ScanOutcome {
        let generation = self.generation.load(Ordering::Acquire);
        let after = match request.cursor.as_deref().map(|c| self.parse_cursor(c)) {
            None => None,
            Some(Ok(hash)) => Some(hash),
            Some(Err(reason)) => return ScanOutcome::BadCursor(reason),
        };
        let keep = request.limit.saturating_add(1);
        // A max-heap by hash: its top is the largest of the smallest kept.
        let mut smallest: BinaryHeap<ByHash> = BinaryHeap::with_capacity(keep.min(1024));
        for (hash, stored) in self.entries.iter() {
            if after.is_some_and(|after| hash <= after) || !request.selects(&stored.entry) {
                continue;
            }
            if smallest.len() < keep {
                smallest.push(ByHash(hash, stored.entry));
            } else if smallest.peek().is_some_and(|top| hash < top.0) {
                smallest.pop();
                smallest.push(ByHash(hash, stored.entry));
            }
        }
        let mut entries: Vec<_> = smallest
            .into_sorted_vec()
            .into_iter()
            .map(|ByHash(hash, entry)| (hash, entry))
            .collect();
        let next = match entries.len() > request.limit {
            true => {
                entries.truncate(request.limit);
                entries
                    .last()
                    .map(|(hash, _)| self.cursor(generation, *hash))
            }
            false => None,
        };
        ScanOutcome::Page(ScanPage { entries, next })
    }
}

/// An entry ordered by its hash alone.
struct ByHash(KeyHash, Arc<Entry>);

impl PartialEq for ByHash {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for ByHash {}
impl PartialOrd for ByHash {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByHash {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
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
        self.generation.fetch_add(1, Ordering::AcqRel);
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

    fn usage(&self) -> StoreUsage {
        StoreUsage {
            entries: Some(self.entries.len() as u64),
            bytes: Some(self.entries.weight()),
            budget: Some(self.budget),
            evictions: Some(self.evictions()),
            tag_stamps: Some(self.board.len() as u64),
            ..StoreUsage::unknown("memory")
        }
    }

    fn scan(&self, request: ScanRequest) -> StoreFuture<ScanOutcome> {
        StoreFuture::ready(Ok(self.list(&request)))
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

    fn listed(store: &MemoryStore, request: ScanRequest) -> ScanPage {
        match ready(store.scan(request)) {
            ScanOutcome::Page(page) => page,
            other => panic!("expected a page, got {other:?}"),
        }
    }

    fn keyed(route: &str, key: &str) -> Arc<Entry> {
        Arc::new(Entry {
            route: route.into(),
            key: key.into(),
            ..Entry::for_test()
        })
    }

    #[test]
    fn listing_pages_through_every_entry_once_in_hash_order() {
        let store = MemoryStore::default();
        for i in 0..25u128 {
            // Hashes out of insertion order.
            ready(store.put(KeyHash((i * 7919) % 101), keyed("r", &format!("/k{i}"))));
        }
        let mut seen = Vec::new();
        let mut request = ScanRequest::first(10);
        let mut pages = 0;
        loop {
            let page = listed(&store, request.clone());
            pages += 1;
            assert!(page.entries.len() <= 10);
            seen.extend(page.entries.iter().map(|(hash, _)| *hash));
            match page.next {
                Some(next) => request.cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seen, sorted, "in hash order, no repeats");
        assert_eq!(seen.len(), 25);
    }

    #[test]
    fn listing_filters_by_route_and_key_prefix_and_skips_variant_indexes() {
        let store = MemoryStore::default();
        ready(store.put(KeyHash(1), keyed("list", "/teachers/1")));
        ready(store.put(KeyHash(2), keyed("list", "/students/1")));
        ready(store.put(KeyHash(3), keyed("detail", "/teachers/2")));
        let index = Entry::variant_index(&keyed("list", "/teachers/3"), Box::new([]));
        ready(store.put(KeyHash(4), Arc::new(index)));
        let page = listed(
            &store,
            ScanRequest {
                route: Some("list".into()),
                key_prefix: Some("/teachers/".into()),
                ..ScanRequest::first(10)
            },
        );
        let keys: Vec<_> = page.entries.iter().map(|(_, e)| &*e.key).collect();
        assert_eq!(keys, ["/teachers/1"]);
        assert_eq!(page.next, None);
        assert_eq!(listed(&store, ScanRequest::first(10)).entries.len(), 3);
    }

    #[test]
    fn a_cursor_from_before_a_purge_of_everything_is_refused() {
        let store = MemoryStore::default();
        for i in 0..3u128 {
            ready(store.put(KeyHash(i), keyed("r", "/k")));
        }
        let next = listed(&store, ScanRequest::first(1)).next.expect("more");
        let again = ScanRequest {
            cursor: Some(next.clone()),
            ..ScanRequest::first(1)
        };
        assert_eq!(listed(&store, again.clone()).entries[0].0, KeyHash(1));
        ready(store.invalidate_all());
        match ready(store.scan(again)) {
            ScanOutcome::BadCursor(reason) => assert!(reason.contains("purged"), "{reason}"),
            other => panic!("expected a refused cursor, got {other:?}"),
        }
        for bad in ["", "m", "x0-00", "m0-zz", &next[..next.len() - 1]] {
            let request = ScanRequest {
                cursor: Some(bad.to_owned()),
                ..ScanRequest::first(1)
            };
            assert!(
                matches!(ready(store.scan(request)), ScanOutcome::BadCursor(_)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn usage_counts_entries_bytes_budget_evictions_and_stamps() {
        let store = MemoryStore::builder().max_bytes(256 * 1024).build();
        let empty = store.usage();
        assert_eq!(
            (
                empty.kind,
                empty.entries,
                empty.bytes,
                empty.budget,
                empty.evictions
            ),
            ("memory", Some(0), Some(0), Some(256 * 1024), Some(0))
        );
        for i in 0..1000u128 {
            ready(store.put(KeyHash(i), entry(4096)));
        }
        ready(store.invalidate(&["a".into(), "b".into()], InvalidationMode::Hard));
        let full = store.usage();
        assert_eq!(full.entries, Some(store.entry_count() as u64));
        assert_eq!(full.bytes, Some(store.weight()));
        assert_eq!(full.tag_stamps, Some(2));
        // Every entry put is either still held or was evicted.
        assert_eq!(
            full.evictions.unwrap() + full.entries.unwrap(),
            1000,
            "{full:?}"
        );
        assert_eq!(full.feed, None);
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
