//! Where entries live: the [`Store`] trait and its implementations.
//!
//! A store knows bytes, keys, tags, stamps and TTLs, and nothing about tower
//! or HTTP. The layers only ever talk to `dyn Store`, so the in-memory store,
//! the Redis store and a tiered store are interchangeable.
//!
//! Store methods return a [`StoreFuture`], which is either already resolved
//! or a boxed future: an in-memory hit answers without allocating or
//! awaiting, while a network store is free to do I/O.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::entry::{Entry, KeyHash, Tag};
use crate::stamp::{InvalidationMode, Stamp, Validity};

pub mod codec;
pub mod lease;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod tiered;

#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
pub use lease::{Acquired, LeaseEnd, LeaseToken, LeaseWait, Leases};
pub use memory::MemoryStore;
pub use tiered::TieredStore;

/// The error a store reports. Stores fail open: the layers answer from the
/// origin when a store errors, so this is for metrics, logs and direct
/// callers of [`Cache::invalidate`](crate::Cache::invalidate).
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

/// The broad class of a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store could not be reached or did not answer in time.
    Unavailable,
    /// The store is known to be unreachable and was not asked (a circuit
    /// breaker is open). The outage was logged when it began; such errors
    /// are counted but not logged one by one.
    CircuitOpen,
    /// The store answered with something that could not be understood.
    Corrupt,
    /// Any other failure.
    Other,
}

impl StoreError {
    /// A new error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The class of the failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache store error ({:?}): {}", self.kind, self.message)
    }
}

impl std::error::Error for StoreError {}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A store operation's outcome: resolved at once, or a future to await.
///
/// Futures are `'static`: a network store clones its (cheap, shared)
/// connection handle into them, so callers may spawn them.
pub enum StoreFuture<T> {
    /// Already resolved (taken on first poll).
    Ready(Option<StoreResult<T>>),
    /// Still to do.
    Pending(Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'static>>),
}

impl<T> StoreFuture<T> {
    /// A resolved outcome.
    pub fn ready(result: StoreResult<T>) -> Self {
        StoreFuture::Ready(Some(result))
    }

    /// A future to await.
    pub fn pending(future: impl Future<Output = StoreResult<T>> + Send + 'static) -> Self {
        StoreFuture::Pending(Box::pin(future))
    }

    /// The outcome if it is already known, or the future back.
    pub fn now_or_later(self) -> Result<StoreResult<T>, Self> {
        match self {
            StoreFuture::Ready(Some(result)) => Ok(result),
            other => Err(other),
        }
    }
}

// Neither variant needs pinning: the value sits in an `Option` and the
// future is already boxed.
impl<T> Unpin for StoreFuture<T> {}

impl<T> Future for StoreFuture<T> {
    type Output = StoreResult<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            StoreFuture::Ready(result) => {
                Poll::Ready(result.take().expect("StoreFuture polled after completion"))
            }
            StoreFuture::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

/// Storage for cached responses and the tag stamps that invalidate them.
///
/// Implementations must uphold the tag-stamp rule (see [`crate::stamp`]):
/// `fill_stamp` and `invalidate` draw from one strictly monotonic clock, and
/// `validity` reports an entry as invalid once any of its tags was
/// invalidated at a stamp at or after its fill stamp, as soon as the
/// `invalidate` future has resolved on this instance.
pub trait Store: Send + Sync + 'static {
    /// Looks an entry up. Expired entries may be returned; the caller decides
    /// what it may still use them for (stale windows).
    fn get(&self, key: KeyHash) -> StoreFuture<Option<Arc<Entry>>>;

    /// Stores an entry, replacing any entry under the same key. The store
    /// keeps it at least for [`Entry::retention`] unless it must evict.
    fn put(&self, key: KeyHash, entry: Arc<Entry>) -> StoreFuture<()>;

    /// Removes one entry.
    fn remove(&self, key: KeyHash) -> StoreFuture<()>;

    /// Takes the stamp a fill records before calling the origin.
    fn fill_stamp(&self) -> StoreFuture<Stamp>;

    /// Invalidates the tags; returns the invalidation's stamp once every
    /// later `validity` call on this instance sees it.
    fn invalidate(&self, tags: &[Tag], mode: InvalidationMode) -> StoreFuture<Stamp>;

    /// Invalidates every entry (a fresh start, without a scan).
    fn invalidate_all(&self) -> StoreFuture<Stamp>;

    /// Checks an entry's tags against the invalidation stamps known here.
    fn validity(&self, entry: &Entry) -> Validity;

    /// The longest any entry may live after its fill stamp: tag stamps
    /// older than that are pruned, so an entry past it is never served
    /// (see [`stamp::outlived`](crate::stamp::outlived)).
    fn max_entry_life(&self) -> Duration;

    /// A short name for logs and metrics (`memory`, `redis`).
    fn kind(&self) -> &'static str;

    /// A number that changes whenever what this instance knows of
    /// invalidations may have changed (one applied here or heard from
    /// another instance, a resync). It lets a response that could not be
    /// stored (the store failed to give a fill stamp) still be shared with
    /// the requests waiting for it, as long as it did not change while the
    /// origin answered. `None`, the default: the store cannot tell, and
    /// such responses are not shared.
    fn invalidation_generation(&self) -> Option<u64> {
        None
    }

    /// Leases for one origin call per key across every instance sharing
    /// this store (see [`lease`]). `None`, the default, for a store local
    /// to one process, where the in-process coalescing is enough.
    fn leases(&self) -> Option<&dyn Leases> {
        None
    }

    /// How full the store is, for operators (see [`crate::inspect`]).
    /// Cheap: no I/O. By default only the kind is known.
    fn usage(&self) -> crate::inspect::StoreUsage {
        crate::inspect::StoreUsage::unknown(self.kind())
    }

    /// One page of the entries held, for operators (see
    /// [`crate::inspect`]). Never used on the request path; by default the
    /// store cannot list.
    fn scan(
        &self,
        request: crate::inspect::ScanRequest,
    ) -> StoreFuture<crate::inspect::ScanOutcome> {
        let _ = request;
        StoreFuture::ready(Ok(crate::inspect::ScanOutcome::Unsupported))
    }
}
