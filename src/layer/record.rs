//! The [`Recorder`]: collects a response body as it streams to the client
//! and, when it ends within the limit, stores the entry and hands it to the
//! flight's waiters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue};

use super::route::CacheRoute;
use crate::coalesce::FlightGuard;
use crate::entry::{Entry, KeyHash};
use crate::metrics::StoreOp;
use crate::semantics::NotStoredReason;
use crate::stamp::Validity;
use crate::store::{StoreFuture, StoreResult};

/// Where a key's variant index goes, and what it names.
pub(crate) struct IndexAt {
    /// The key's primary hash.
    pub(crate) primary: KeyHash,
    /// The request headers the key's responses vary on.
    pub(crate) names: Box<[HeaderName]>,
}

/// What becomes of the entry when the body ends.
pub(crate) enum Keep {
    /// Stored, and shared with the flight's waiters.
    Store,
    /// Only shared with the flight's waiters, valid for them while the
    /// store's invalidation generation is still `generation` (the store
    /// could not give a fill stamp: see [`crate::coalesce`]).
    ShareOnly { generation: u64 },
}

pub(crate) struct Recorder {
    /// The body's chunks as they went by (reference counts, not copies);
    /// copied once, into one allocation of the body's exact size, when the
    /// body ends (see [`own_value`](crate::entry::own_value) for why).
    chunks: Vec<Bytes>,
    len: usize,
    /// The announced length, if any: reaching it completes the body.
    expected: Option<usize>,
    route: Arc<CacheRoute>,
    hash: KeyHash,
    template: Entry,
    /// The key's variant index to store too, when the response varies.
    index: Option<IndexAt>,
    guard: Option<FlightGuard>,
    keep: Keep,
}

impl Recorder {
    /// Records the body of the response `template` was made from, to store
    /// under `hash` (and a variant index under the key's primary hash, if
    /// `index` says so); `expected` is the length it announced.
    pub(crate) fn new(
        route: Arc<CacheRoute>,
        hash: KeyHash,
        template: Entry,
        index: Option<IndexAt>,
        guard: Option<FlightGuard>,
        keep: Keep,
        expected: Option<u64>,
    ) -> Self {
        Recorder {
            chunks: Vec::new(),
            len: 0,
            expected: expected.and_then(|n| usize::try_from(n).ok()),
            route,
            hash,
            template,
            index,
            guard,
            keep,
        }
    }

    /// Keeps a copy of `data`, or says why the response will not be stored.
    pub(crate) fn push(&mut self, data: &Bytes) -> Result<(), NotStoredReason> {
        self.len += data.len();
        if self.len > self.route.options.rules.max_body_bytes {
            return Err(NotStoredReason::TooLarge);
        }
        if !data.is_empty() {
            self.chunks.push(data.clone());
        }
        Ok(())
    }

    /// Whether every announced byte has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.expected == Some(self.len)
    }

    /// The response will not be stored: waiters go to the origin themselves.
    pub(crate) fn give_up(self, reason: NotStoredReason) {
        self.route.metrics.not_stored(reason);
        tracing::debug!(route = %self.route.name, reason = reason.as_str(), "tagcache not storing response");
        if let Some(guard) = self.guard {
            guard.not_shareable(reason.lasts());
        }
    }

    /// The body ended: store the entry and share it.
    pub(crate) fn finish(mut self) {
        let mut body = Vec::with_capacity(self.len);
        for chunk in std::mem::take(&mut self.chunks) {
            body.extend_from_slice(&chunk);
        }
        self.finish_with(Bytes::from(body));
    }

    /// Stores the entry with `body` (a body of its own allocation, exactly
    /// its size) and shares it; returns it.
    pub(crate) fn finish_with(self, body: Bytes) -> Arc<Entry> {
        let Recorder {
            route,
            hash,
            mut template,
            index,
            mut guard,
            keep,
            ..
        } = self;
        template.body = body;
        // The stored body is complete, so say how long it is: otherwise the
        // server adds `Content-Length` to every hit's cloned map (a regrow).
        if !template.headers.contains_key(CONTENT_LENGTH)
            && !template.headers.contains_key(TRANSFER_ENCODING)
        {
            template
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(template.body.len()));
        }
        let entry = Arc::new(template);
        if let Keep::ShareOnly { generation } = keep {
            if let Some(guard) = guard {
                guard.share_unstored(entry.clone(), generation);
            }
            return entry;
        }
        if route.validity(&entry) == Validity::Invalid {
            // Invalidated while the origin was answering: never stored. The
            // waiters still get it and, finding it invalid, start afresh.
            route.metrics.not_stored(NotStoredReason::Invalidated);
            if let Some(guard) = guard.as_mut() {
                guard.share(entry.clone());
            }
            return entry;
        }
        if let Some(guard) = guard.as_mut() {
            guard.share(entry.clone());
        }
        // Storable after all: the key no longer passes (see
        // `crate::coalesce`), so its next herd shares one origin call.
        let coalescer = route.cache.coalescer();
        coalescer.forget_pass(hash);
        if let Some(at) = &index {
            coalescer.forget_pass(at.primary);
        }
        // The variant goes in before the index that leads to it, so a
        // request that finds the index finds the variant too (until either
        // is evicted).
        let store = route.cache.store();
        let index = index.map(|at| (at.primary, Arc::new(Entry::variant_index(&entry, at.names))));
        let started = Instant::now();
        let mut pending = Vec::new();
        for (hash, entry) in std::iter::once((hash, entry.clone())).chain(index) {
            // The write of the key the fleet-wide lease is held on also
            // releases it, so other instances waiting on it find the entry.
            let write = match guard.as_mut().and_then(|guard| guard.lease_for(hash)) {
                Some(lease) => lease.put_releasing(entry),
                None => store.put(hash, entry),
            };
            match write.now_or_later() {
                Ok(result) => record_put(&route, result, started.elapsed()),
                Err(write) => pending.push(write),
            }
        }
        if !pending.is_empty() {
            spawn_puts(route, pending, started, guard);
        }
        entry
    }
}

/// Finishes a store write off the response path, holding the flight guard
/// until the entry is in, so requests meanwhile join the flight rather than
/// miss in the store.
fn spawn_puts(
    route: Arc<CacheRoute>,
    pending: Vec<StoreFuture<()>>,
    started: Instant,
    guard: Option<FlightGuard>,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        for write in pending {
            let result = write.await;
            record_put(&route, result, started.elapsed());
        }
        drop(guard);
    });
}

fn record_put(route: &CacheRoute, result: StoreResult<()>, elapsed: Duration) {
    route.metrics.store_latency(StoreOp::Put, elapsed);
    if let Err(error) = result {
        route.store_failed(StoreOp::Put, &error);
    }
}
