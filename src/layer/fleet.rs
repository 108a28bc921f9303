//! One origin call per key across instances: before calling the origin,
//! the request leading the key's flight on this instance asks the store's
//! lease (see [`crate::store::lease`]), and either leads for the whole
//! fleet, or waits for the instance that does and answers from its entry.
//!
//! Only a flight's leader talks to the store, so an instance sends one
//! lease request per key however many of its requests wait: the others
//! wait on the in-process flight, which shares whatever the leader got.
//!
//! **Waiting.** A waiter listens for the lease's end before asking for it
//! (so an end in between is not missed), then waits for the end or the
//! lease's expiry, whichever comes first, and asks again. Redis delivers
//! ends by pub/sub, and only to leases somebody waits on, so an uncontended
//! miss publishes nothing; if a notification is lost (the subscription
//! dropped), the wait still ends when the lease expires. Stores that cannot
//! notify are polled with a backoff instead. Waiting never outlasts the
//! route's `coalesce_timeout`: past it the request calls the origin itself.
//!
//! **What a waiter takes.** Only an entry the store holds, judged by the
//! same rules as any lookup: the tag stamps (an entry filled before an
//! invalidation this instance has seen is a miss), the key, the identity
//! and `Vary`. A response the holder could not share never reaches a
//! waiter: the holder ends the lease as not shareable, or passing, and the
//! waiters go to the origin at once instead of waiting out the lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::route::CacheRoute;
use crate::coalesce::{FlightGuard, HeldLease};
use crate::entry::{Entry, KeyHash};
use crate::metrics::StoreOp;
use crate::semantics::verdict::{Selector, Verdict};
use crate::stamp::now_micros;
use crate::store::{Acquired, LeaseEnd, LeaseToken, StoreResult};

/// First and longest pause between two asks to a store that cannot notify.
const FIRST_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(64);

/// A lease's expiry is only certain a little after its time to live.
const EXPIRY_SLACK: Duration = Duration::from_millis(2);

/// How long a lease lives unless renewed: half the route's coalesce
/// timeout (so a waiter sees a vanished holder's lease expire and takes
/// over well before it would give up waiting), between 100 ms and 30 s. The
/// holder renews it every third of that while its origin call lasts.
pub(crate) fn lease_ttl(coalesce_timeout: Duration) -> Duration {
    (coalesce_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// How long to wait for a lease that expires in `expires_in`, so that it
/// has certainly expired when the waiter asks again.
fn past_expiry(expires_in: Duration) -> Duration {
    expires_in + EXPIRY_SLACK
}

/// The pause after `poll` when polling a store that cannot notify: twice
/// as long, up to [`MAX_POLL`].
fn next_poll(poll: Duration) -> Duration {
    (poll * 2).min(MAX_POLL)
}

/// The request leading a key's flight on this instance, as the fleet sees
/// it: only what a lookup reads (all of it `Sync`, so the futures here stay
/// `Send` whatever the inner service and request body are).
pub(crate) struct Leader<'a> {
    pub(crate) route: &'a Arc<CacheRoute>,
    pub(crate) selector: Selector<'a>,
    /// The hash the flight (and the lease) is for.
    pub(crate) hash: KeyHash,
    pub(crate) primary: KeyHash,
}

/// What the leader is to do.
pub(crate) enum Settled {
    /// Answer from this entry (stored by another request or instance since
    /// this one looked); `waited` if it came from another instance's
    /// origin call this request waited for.
    Found { entry: Arc<Entry>, waited: bool },
    /// Call the origin for everyone: holding the fleet's lease (then in the
    /// guard), or alone when the store offers none or did not answer.
    Lead,
    /// Another instance holds the lease, and this request does not wait.
    Elsewhere,
    /// The key's response cannot be shared now: call the origin without
    /// sharing it; `lasting` if the key passes (see [`crate::coalesce`]).
    Alone { lasting: bool },
}

impl Leader<'_> {
    /// Settles who calls the origin for the key. With `wait`, a lease held
    /// by another instance is waited for; without, that is `Elsewhere`.
    pub(crate) async fn settle(&self, guard: &mut FlightGuard, wait: bool) -> Settled {
        let store = self.route.cache.store();
        let Some(leases) = store.leases() else {
            // Only this process shares the key: a previous leader may still
            // have stored it between this request's lookup and its join.
            return match self.fresh(self.look_again().await) {
                Some(entry) => Settled::Found {
                    entry,
                    waited: false,
                },
                None => Settled::Lead,
            };
        };
        let options = &self.route.options;
        let ttl = lease_ttl(options.coalesce_timeout);
        let deadline = Instant::now() + options.coalesce_timeout;
        let token = LeaseToken::fresh();
        let mut read_entry = true;
        let mut waited = false;
        let mut taking_over = false;
        let mut poll = FIRST_POLL;
        loop {
            let ended = leases.ended(self.hash);
            let started = Instant::now();
            let acquired = leases.acquire(self.hash, token, ttl, read_entry).await;
            self.route
                .metrics
                .store_latency(StoreOp::Lease, started.elapsed());
            let expires_in = match acquired {
                // Without the store, this instance's own flight is all the
                // coalescing there is.
                Err(error) => {
                    self.route.store_failed(StoreOp::Lease, &error);
                    return Settled::Lead;
                }
                Ok(Acquired::Entry(entry)) => {
                    if let Some(entry) = self.fresh(self.follow(entry).await) {
                        return Settled::Found { entry, waited };
                    }
                    // Not usable (invalidated, stale, another variant):
                    // this request refills it, under the lease.
                    read_entry = false;
                    continue;
                }
                Ok(Acquired::Taken) => {
                    if taking_over {
                        self.route.metrics.takeover();
                    }
                    let lease = HeldLease::new(store.clone(), self.hash, token, ttl);
                    guard.hold(lease);
                    return Settled::Lead;
                }
                Ok(Acquired::Passing { .. }) => return Settled::Alone { lasting: true },
                Ok(Acquired::Held { expires_in }) => expires_in,
            };
            if !wait {
                return Settled::Elsewhere;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Waited as long as the route allows: call the origin (this
                // instance's own waiters still share the answer).
                return Settled::Lead;
            }
            if !waited {
                waited = true;
                self.route.metrics.lease_wait();
            }
            let _waiting = self.route.cache.coalescer().wait_on_fleet();
            let until_expiry = past_expiry(expires_in);
            let heard = match ended {
                Some(ended) => tokio::time::timeout(until_expiry.min(left), ended)
                    .await
                    .ok(),
                None => {
                    tokio::time::sleep(poll.min(until_expiry).min(left)).await;
                    poll = next_poll(poll);
                    None
                }
            };
            read_entry = true;
            taking_over = match heard {
                Some(LeaseEnd::Filled) => false,
                Some(LeaseEnd::NotShareable) => return Settled::Alone { lasting: false },
                Some(LeaseEnd::Pass(_)) => return Settled::Alone { lasting: true },
                Some(LeaseEnd::Abandoned) => true,
                // Expired (its holder vanished) or still held: whoever
                // takes it next takes over.
                None => true,
            };
        }
    }

    /// `found` if it answers this request as a fresh hit.
    fn fresh(&self, found: Option<Arc<Entry>>) -> Option<Arc<Entry>> {
        match self.route.judge(found, &self.selector, now_micros()) {
            Verdict::Fresh(entry) => Some(entry),
            _ => None,
        }
    }

    /// Looks the request up again from its primary hash.
    async fn look_again(&self) -> Option<Arc<Entry>> {
        let step = self.route.lookup(self.primary, &self.selector);
        ok_entry(self.route.finish_lookup(step, &self.selector).await.1)
    }

    /// What `entry`, read under the flight's hash, gives this request:
    /// itself, or the request's variant when it is the key's variant index.
    async fn follow(&self, entry: Arc<Entry>) -> Option<Arc<Entry>> {
        let primary = self.hash == self.primary;
        let step = self
            .route
            .found(self.hash, primary, Ok(Some(entry)), &self.selector);
        ok_entry(self.route.finish_lookup(step, &self.selector).await.1)
    }
}

fn ok_entry(result: StoreResult<Option<Arc<Entry>>>) -> Option<Arc<Entry>> {
    result.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_live_half_the_coalesce_timeout_within_bounds() {
        assert_eq!(
            lease_ttl(Duration::from_secs(3)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            lease_ttl(Duration::from_millis(10)),
            Duration::from_millis(100)
        );
        assert_eq!(lease_ttl(Duration::from_secs(600)), Duration::from_secs(30));
    }

    #[test]
    fn polls_back_off_to_a_ceiling() {
        assert_eq!(next_poll(FIRST_POLL), Duration::from_millis(4));
        assert_eq!(next_poll(Duration::from_millis(48)), MAX_POLL);
        assert_eq!(next_poll(MAX_POLL), MAX_POLL);
    }
}
