//! The holder's side of a fleet-wide lease (see [`crate::store::lease`]):
//! renewing it while the origin call lasts, and ending it exactly once.

use std::sync::Arc;
use std::time::Duration;

use crate::entry::{Entry, KeyHash};
use crate::store::{LeaseEnd, LeaseToken, Store, StoreFuture};

/// A lease this instance holds for a key. It is renewed every third of its
/// time to live until it ends; dropped without being ended, it is released
/// as [`LeaseEnd::Abandoned`] so that another instance takes over at once
/// instead of waiting for it to expire.
pub(crate) struct HeldLease {
    store: Arc<dyn Store>,
    key: KeyHash,
    token: LeaseToken,
    renewal: Option<tokio::task::AbortHandle>,
    ended: bool,
}

impl HeldLease {
    /// Takes charge of the lease `token` holds on `key` for `ttl`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        key: KeyHash,
        token: LeaseToken,
        ttl: Duration,
    ) -> Self {
        let renewal = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let store = store.clone();
            runtime
                .spawn(async move {
                    let mut every = tokio::time::interval(ttl / 3);
                    every.tick().await;
                    loop {
                        every.tick().await;
                        let Some(leases) = store.leases() else { return };
                        // Lost (expired and perhaps taken over): stop; the
                        // release will find it gone and do nothing.
                        if let Ok(false) = leases.renew(key, token, ttl).await {
                            return;
                        }
                    }
                })
                .abort_handle()
        });
        HeldLease {
            store,
            key,
            token,
            renewal,
            ended: false,
        }
    }

    /// The key it is held on.
    pub(crate) fn key(&self) -> KeyHash {
        self.key
    }

    /// Stores `entry` under the key and releases the lease in one step, so
    /// a waiter that hears of the release finds the entry.
    pub(crate) fn put_releasing(mut self, entry: Arc<Entry>) -> StoreFuture<()> {
        self.ended = true;
        match self.store.leases() {
            Some(leases) => leases.release(self.key, self.token, LeaseEnd::Filled, Some(entry)),
            None => self.store.put(self.key, entry),
        }
    }

    /// Ends the lease, telling the waiters how.
    pub(crate) fn end(mut self, end: LeaseEnd) {
        self.release(end);
    }

    fn release(&mut self, end: LeaseEnd) {
        self.ended = true;
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let Some(leases) = self.store.leases() else {
            return;
        };
        let release = leases.release(self.key, self.token, end, None);
        // The store started the call already; finish it off the request's
        // path. Without a runtime the lease simply expires.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = release.await;
            });
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if !self.ended {
            self.release(LeaseEnd::Abandoned);
        }
    }
}
