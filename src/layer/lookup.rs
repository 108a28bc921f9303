//! Looking a request up: under its key's primary hash, then, when that
//! holds a variant index, under the hash of the request's variant. Both
//! steps resolve at once with a store that answers at once (the memory
//! store), so a hit on it never leaves `call`.

use std::sync::Arc;
use std::time::Instant;

use super::route::CacheRoute;
use crate::entry::{Entry, KeyHash};
use crate::metrics::StoreOp;
use crate::semantics::verdict::Selector;
use crate::store::{StoreFuture, StoreResult};

/// Where a lookup stands.
pub(crate) enum Step {
    /// What the store holds under `hash`, the request's own hash (its
    /// variant's, if the key has variants).
    Found {
        hash: KeyHash,
        result: StoreResult<Option<Arc<Entry>>>,
    },
    /// The store is answering for `hash` (the primary hash if `primary`).
    Pending {
        hash: KeyHash,
        primary: bool,
        future: StoreFuture<Option<Arc<Entry>>>,
        started: Instant,
    },
}

impl CacheRoute {
    /// Starts looking the request up under its primary hash.
    #[inline]
    pub(crate) fn lookup(&self, primary: KeyHash, selector: &Selector<'_>) -> Step {
        self.ask(primary, true, selector)
    }

    /// Takes in what the store answered for `hash`, following a variant
    /// index found under the primary hash.
    #[inline]
    pub(crate) fn found(
        &self,
        hash: KeyHash,
        primary: bool,
        result: StoreResult<Option<Arc<Entry>>>,
        selector: &Selector<'_>,
    ) -> Step {
        if let (true, Ok(Some(entry))) = (primary, &result) {
            if let Some(variant) = self.follow_index(entry, selector) {
                return self.ask(variant, false, selector);
            }
        }
        Step::Found { hash, result }
    }

    /// Waits for pending steps (recording the store's latency) until
    /// something is found: the request's hash and what it holds.
    pub(crate) async fn finish_lookup(
        &self,
        mut step: Step,
        selector: &Selector<'_>,
    ) -> (KeyHash, StoreResult<Option<Arc<Entry>>>) {
        loop {
            match step {
                Step::Found { hash, result } => return (hash, result),
                Step::Pending {
                    hash,
                    primary,
                    future,
                    started,
                } => {
                    let result = future.await;
                    // Only stores that answer asynchronously have a latency
                    // worth recording; an in-memory lookup is not timed.
                    self.metrics.store_latency(StoreOp::Get, started.elapsed());
                    step = self.found(hash, primary, result, selector);
                }
            }
        }
    }

    #[inline]
    fn ask(&self, hash: KeyHash, primary: bool, selector: &Selector<'_>) -> Step {
        match self.cache.store().get(hash).now_or_later() {
            Ok(result) => self.found(hash, primary, result, selector),
            Err(future) => Step::Pending {
                hash,
                primary,
                future,
                started: Instant::now(),
            },
        }
    }
}
