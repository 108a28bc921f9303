//! An in-process tier in front of a shared store (Redis).
//!
//! [`TieredStore`] keeps recently used entries in a byte-bounded
//! [`MemoryStore`] on each instance and the shared copy in the remote store.
//! A local hit costs no round trip; everything about invalidation stays with
//! the remote store:
//!
//! * fill stamps, invalidations and the validity of every entry, local or
//!   not, come from the remote store, whose local view of the tag stamps is
//!   kept current by its broadcast (for [`RedisStore`](crate::store::redis),
//!   pub/sub). So a local entry is judged exactly as the same entry read
//!   from Redis would be: an invalidation made on any instance reaches this
//!   instance's local tier as soon as it reaches its stamp view, and never
//!   later.
//! * while the remote store cannot vouch for its view (the Redis feed is
//!   down), it reports every entry invalid, local ones included.
//!
//! * one origin call per key across instances comes from the remote
//!   store's leases (see [`crate::store::lease`]); the entry a lease's
//!   holder stores lands in its local tier too.
//!
//! A local entry that is no longer fresh is looked up in the remote store
//! again before it is used (another instance may have refilled the key);
//! if the remote has nothing, the local copy still serves stale-while-
//! revalidate and stale-if-error.
//!
//! ```
//! use tagcache::store::{MemoryStore, TieredStore};
//!
//! # fn remote() -> MemoryStore { MemoryStore::default() }
//! // In production the remote is a `RedisStore`.
//! let store = TieredStore::new(MemoryStore::builder().max_bytes(32 << 20).build(), remote());
//! let cache = tagcache::Cache::new(store);
//! # let _ = cache;
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::entry::{Entry, KeyHash, Tag};
use crate::stamp::{now_micros, InvalidationMode, Stamp, Validity};
use crate::store::{
    Acquired, LeaseEnd, LeaseToken, LeaseWait, Leases, MemoryStore, Store, StoreFuture,
};

/// A local [`MemoryStore`] tier over a shared remote store.
pub struct TieredStore<R> {
    local: Arc<MemoryStore>,
    remote: R,
}

impl<R: std::fmt::Debug> std::fmt::Debug for TieredStore<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish()
    }
}

impl<R: Store> TieredStore<R> {
    /// `local` keeps this instance's copies (only its entry map and byte
    /// bound are used); `remote` is the shared store.
    pub fn new(local: MemoryStore, remote: R) -> Self {
        TieredStore {
            local: Arc::new(local),
            remote,
        }
    }

    /// The local tier.
    pub fn local(&self) -> &MemoryStore {
        &self.local
    }

    /// The shared store.
    pub fn remote(&self) -> &R {
        &self.remote
    }

    /// The local copy, if it is usable as it is: valid and fresh.
    fn local_hit(&self, key: KeyHash) -> Option<Arc<Entry>> {
        let entry = self.local.get(key).now_or_later().ok()?.ok()??;
        match self.remote.validity(&entry) {
            Validity::Valid if now_micros() < entry.fresh_until_micros() => Some(entry),
            Validity::Invalid => {
                let _ = self.local.remove(key).now_or_later();
                None
            }
            _ => None,
        }
    }
}

impl<R: Store> Store for TieredStore<R> {
    fn get(&self, key: KeyHash) -> StoreFuture<Option<Arc<Entry>>> {
        if let Some(entry) = self.local_hit(key) {
            return StoreFuture::ready(Ok(Some(entry)));
        }
        // A stale local copy still helps if the remote has nothing.
        let local_stale = self
            .local
            .get(key)
            .now_or_later()
            .ok()
            .and_then(Result::ok)
            .flatten();
        let local = self.local.clone();
        // The local copy is compacted first: an entry read from the remote
        // store may be slices of the buffer it was read into, which the
        // local tier would otherwise keep whole for as long as it keeps
        // the entry.
        let keep = move |found: Option<Arc<Entry>>| match found {
            Some(entry) => {
                let _ = local.put(key, Arc::new(entry.compacted())).now_or_later();
                Some(entry)
            }
            None => local_stale,
        };
        match self.remote.get(key).now_or_later() {
            Ok(result) => StoreFuture::ready(result.map(keep)),
            Err(pending) => StoreFuture::pending(async move { pending.await.map(keep) }),
        }
    }

    fn put(&self, key: KeyHash, entry: Arc<Entry>) -> StoreFuture<()> {
        let _ = self.local.put(key, entry.clone()).now_or_later();
        self.remote.put(key, entry)
    }

    fn remove(&self, key: KeyHash) -> StoreFuture<()> {
        let _ = self.local.remove(key).now_or_later();
        self.remote.remove(key)
    }

    fn fill_stamp(&self) -> StoreFuture<Stamp> {
        self.remote.fill_stamp()
    }

    fn invalidate(&self, tags: &[Tag], mode: InvalidationMode) -> StoreFuture<Stamp> {
        // Local copies are judged by the remote's stamps: nothing to do here.
        self.remote.invalidate(tags, mode)
    }

    fn invalidate_all(&self) -> StoreFuture<Stamp> {
        // Frees the local memory at once; validity already follows the remote.
        let _ = self.local.invalidate_all().now_or_later();
        self.remote.invalidate_all()
    }

    fn validity(&self, entry: &Entry) -> Validity {
        self.remote.validity(entry)
    }

    fn max_entry_life(&self) -> Duration {
        self.remote.max_entry_life()
    }

    fn kind(&self) -> &'static str {
        "tiered"
    }

    fn invalidation_generation(&self) -> Option<u64> {
        self.remote.invalidation_generation()
    }

    /// The local tier's memory (what this instance holds), with the shared
    /// store's feed, breaker and stamps.
    fn usage(&self) -> crate::inspect::StoreUsage {
        let local = self.local.usage();
        crate::inspect::StoreUsage {
            kind: "tiered",
            entries: local.entries,
            bytes: local.bytes,
            budget: local.budget,
            evictions: local.evictions,
            ..self.remote.usage()
        }
    }

    /// The shared store's entries: the local tier holds copies of some.
    fn scan(
        &self,
        request: crate::inspect::ScanRequest,
    ) -> StoreFuture<crate::inspect::ScanOutcome> {
        self.remote.scan(request)
    }

    fn leases(&self) -> Option<&dyn Leases> {
        // Leases are the remote's; this tier only keeps a local copy of
        // what a lease's holder stores.
        self.remote.leases().map(|_| self as &dyn Leases)
    }
}

impl<R: Store> TieredStore<R> {
    fn remote_leases(&self) -> &dyn Leases {
        self.remote
            .leases()
            .expect("TieredStore offers leases only when its remote store does")
    }
}

impl<R: Store> Leases for TieredStore<R> {
    fn acquire(
        &self,
        key: KeyHash,
        token: LeaseToken,
        ttl: Duration,
        read_entry: bool,
    ) -> StoreFuture<Acquired> {
        self.remote_leases().acquire(key, token, ttl, read_entry)
    }

    fn renew(&self, key: KeyHash, token: LeaseToken, ttl: Duration) -> StoreFuture<bool> {
        self.remote_leases().renew(key, token, ttl)
    }

    fn release(
        &self,
        key: KeyHash,
        token: LeaseToken,
        end: LeaseEnd,
        entry: Option<Arc<Entry>>,
    ) -> StoreFuture<()> {
        if let Some(entry) = &entry {
            let _ = self.local.put(key, entry.clone()).now_or_later();
        }
        self.remote_leases().release(key, token, end, entry)
    }

    fn ended(&self, key: KeyHash) -> Option<LeaseWait> {
        self.remote_leases().ended(key)
    }
}
