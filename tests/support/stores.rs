//! Stores the tests build: Redis stores with timeouts meant for a loaded
//! machine, and [`TestStore`], an in-memory store whose clock runs ahead
//! and whose invalidations can be held at a gate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tagcache::stamp::{now_micros, Clock, TagBoard};
#[cfg(feature = "redis")]
use tagcache::{Cache, MemoryStore, RedisStore, TieredStore};
use tagcache::{Entry, InvalidationMode, KeyHash, Stamp, Store, StoreFuture, Tag, Validity};

#[cfg(feature = "redis")]
use super::deadline::{eventually, Lazy};
use super::harness::Gate;

/// A `RedisStore` on `url` in namespace `ns`. Generous timeouts where a
/// test is not about timeouts: a loaded CI box must not turn hits into
/// store errors.
#[cfg(feature = "redis")]
pub async fn redis_store(url: &str, ns: &str) -> RedisStore {
    RedisStore::builder(url)
        .namespace(ns)
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("store builds")
}

/// Waits until every write `store` has sent is answered. Until then a
/// fill's `SET` may still be on its way: a snapshot of the server
/// (`INFO commandstats`, `KEYS`) could miss it, and a write from outside
/// could land before it and be overwritten.
#[cfg(feature = "redis")]
#[track_caller]
pub fn writes_answered(store: &RedisStore) -> impl std::future::Future<Output = ()> + '_ {
    let what = Lazy(move || {
        let in_flight = store.writes_in_flight();
        format!(
            "the writes of namespace {} answered by Redis ({in_flight} in flight at the deadline)",
            store.namespace()
        )
    });
    eventually(what, move || async move { store.writes_in_flight() == 0 })
}

/// A cache over a local memory tier over [`redis_store`], and that
/// Redis store (a clone: the same connections and diagnostics).
#[cfg(feature = "redis")]
pub async fn tiered_over_redis(url: &str, ns: &str) -> (Cache, RedisStore) {
    let remote = redis_store(url, ns).await;
    let cache = Cache::new(TieredStore::new(MemoryStore::default(), remote.clone()));
    (cache, remote)
}

/// A `RedisStore` over the Redis Cluster at `urls`, connected and
/// subscribed.
#[cfg(feature = "redis")]
pub async fn cluster_store(urls: Vec<String>, ns: &str) -> RedisStore {
    let store = RedisStore::builder(urls)
        .cluster(true)
        .namespace(ns)
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("store builds");
    assert!(store.is_in_sync(), "connected and subscribed");
    store
}

/// A store whose invalidation clock runs `ahead` of this machine (like a
/// shared clock on another host), and whose invalidations can be held at a
/// gate (like a slow network store).
pub struct TestStore {
    entries: Mutex<HashMap<KeyHash, Arc<Entry>>>,
    clock: Arc<Clock>,
    board: Arc<TagBoard>,
    ahead: Duration,
    invalidate_gate: Option<Gate>,
}

impl TestStore {
    pub fn new(ahead: Duration, invalidate_gate: Option<Gate>) -> Self {
        TestStore {
            entries: Mutex::default(),
            clock: Arc::new(Clock::new()),
            board: Arc::new(TagBoard::new(Duration::from_secs(3600), 10_000)),
            ahead,
            invalidate_gate,
        }
    }

    fn stamp(clock: &Clock, ahead: Duration) -> Stamp {
        clock.observe(Stamp(now_micros() + ahead.as_micros() as u64));
        clock.next()
    }
}

impl Store for TestStore {
    fn get(&self, key: KeyHash) -> StoreFuture<Option<Arc<Entry>>> {
        StoreFuture::ready(Ok(self.entries.lock().unwrap().get(&key).cloned()))
    }
    fn put(&self, key: KeyHash, entry: Arc<Entry>) -> StoreFuture<()> {
        self.entries.lock().unwrap().insert(key, entry);
        StoreFuture::ready(Ok(()))
    }
    fn remove(&self, key: KeyHash) -> StoreFuture<()> {
        self.entries.lock().unwrap().remove(&key);
        StoreFuture::ready(Ok(()))
    }
    fn fill_stamp(&self) -> StoreFuture<Stamp> {
        StoreFuture::ready(Ok(Self::stamp(&self.clock, self.ahead)))
    }
    fn invalidate(&self, tags: &[Tag], mode: InvalidationMode) -> StoreFuture<Stamp> {
        let (clock, board, ahead) = (self.clock.clone(), self.board.clone(), self.ahead);
        let tags = tags.to_vec();
        match self.invalidate_gate.clone() {
            None => {
                let stamp = Self::stamp(&clock, ahead);
                board.apply(&tags, stamp, mode);
                StoreFuture::ready(Ok(stamp))
            }
            Some(gate) => StoreFuture::pending(async move {
                gate.pass().await;
                let stamp = Self::stamp(&clock, ahead);
                board.apply(&tags, stamp, mode);
                Ok(stamp)
            }),
        }
    }
    fn invalidate_all(&self) -> StoreFuture<Stamp> {
        let stamp = Self::stamp(&self.clock, self.ahead);
        self.board.invalidate_all(stamp);
        StoreFuture::ready(Ok(stamp))
    }
    fn validity(&self, entry: &Entry) -> Validity {
        self.board.validity(&entry.tags, entry.fill_stamp)
    }
    fn max_entry_life(&self) -> Duration {
        Duration::from_secs(3600)
    }
    fn kind(&self) -> &'static str {
        "test"
    }
}
