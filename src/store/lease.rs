//! Leases: one origin call per key across every instance sharing a store.
//!
//! Within one process the coalescer already lets one
//! request per key call the origin. A store shared by several instances
//! (Redis) can extend that to the fleet with a *lease* per key: the first
//! instance to miss takes it, calls the origin, stores the entry and
//! releases the lease in the same step; the others wait for the release,
//! then read the entry.
//!
//! A store that is not shared has nothing to coordinate and offers no
//! leases ([`Store::leases`](super::Store::leases) returns `None`, the
//! default): its in-process coalescing is already all of the fleet.
//!
//! # The protocol, as the layers use it
//!
//! 1. The request leading the key's in-process flight calls
//!    [`ended`](Leases::ended) first (so a release between the next two
//!    steps cannot be missed), then [`acquire`](Leases::acquire).
//! 2. [`Acquired::Entry`]: another instance filled the key since this one
//!    looked; it is judged like any entry (tag stamps, `Vary`, identity).
//!    [`Acquired::Taken`]: this instance holds the lease; it calls the
//!    origin, renews the lease while the call lasts, and ends it with
//!    [`release`](Leases::release), storing the entry in the same step
//!    when there is one. [`Acquired::Held`]: another instance holds it;
//!    wait for its end (or its expiry), then go back to 1.
//!    [`Acquired::Passing`]: the key's last response could not be shared;
//!    go to the origin at once.
//! 3. How the holder ended the lease ([`LeaseEnd`]) tells waiters whether
//!    to read the entry, go to the origin themselves, or take over.
//!
//! A lease is only ever an optimisation: every failure (the store down, a
//! lost release, an expired lease) degrades to more origin calls, never to
//! a wrong answer, because what a waiter reads is judged by the same rules
//! as any other entry.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::entry::{Entry, KeyHash};

use super::StoreFuture;

/// Identifies one holding of a lease, so that only its holder can renew or
/// release it (an expired lease taken over by another instance is not
/// released by the first holder's late answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub u64);

impl LeaseToken {
    /// A token no other holding in this process or, with overwhelming
    /// likelihood, in the fleet uses: a per-process random seed and a
    /// counter, mixed.
    pub fn fresh() -> LeaseToken {
        use std::hash::{BuildHasher, Hasher};
        static SEED: std::sync::LazyLock<std::collections::hash_map::RandomState> =
            std::sync::LazyLock::new(Default::default);
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = SEED.build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        LeaseToken(hasher.finish())
    }
}

/// What [`Leases::acquire`] found.
#[derive(Debug)]
pub enum Acquired {
    /// The key's entry (asked for, and present): no lease was taken.
    Entry(Arc<Entry>),
    /// The lease is now held under the caller's token.
    Taken,
    /// Another holder has it, for at most `expires_in` unless renewed.
    Held {
        /// Time left before the lease expires.
        expires_in: Duration,
    },
    /// The key's last response could not be shared: go to the origin
    /// without waiting, for at most `expires_in` more.
    Passing {
        /// Time left before the key stops passing.
        expires_in: Duration,
    },
}

/// How a lease ended, as its waiters hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// The holder is done: the entry is stored if it was storable; read it.
    Filled,
    /// The holder's response could not be shared this time (a 5xx, the
    /// store failing): each waiter goes to the origin itself.
    NotShareable,
    /// The holder's response could not be shared for a reason that lasts
    /// (`Set-Cookie`, `private`, too large...): waiters go to the origin,
    /// and the key passes for the given time across the fleet, as it does
    /// within one process.
    Pass(Duration),
    /// The holder gave up (cancelled, failed): the lease is free, and one
    /// waiter takes it over.
    Abandoned,
}

impl LeaseEnd {
    /// The one-letter form used on the wire.
    pub fn code(self) -> u8 {
        match self {
            LeaseEnd::Filled => b'f',
            LeaseEnd::NotShareable => b'n',
            LeaseEnd::Pass(_) => b'p',
            LeaseEnd::Abandoned => b'a',
        }
    }

    /// Reads [`code`](Self::code) back (a pass's duration is not carried:
    /// waiters ask the store when they need it).
    pub fn from_code(code: u8) -> Option<LeaseEnd> {
        Some(match code {
            b'f' => LeaseEnd::Filled,
            b'n' => LeaseEnd::NotShareable,
            b'p' => LeaseEnd::Pass(Duration::ZERO),
            b'a' => LeaseEnd::Abandoned,
            _ => return None,
        })
    }
}

/// Waits for the end of a key's lease, as the store hears of it. Dropping
/// it stops listening.
pub struct LeaseWait {
    future: Pin<Box<dyn Future<Output = LeaseEnd> + Send>>,
}

impl LeaseWait {
    /// Wraps a future that resolves when the store hears the lease end.
    pub fn new(future: impl Future<Output = LeaseEnd> + Send + 'static) -> Self {
        LeaseWait {
            future: Box::pin(future),
        }
    }
}

impl Future for LeaseWait {
    type Output = LeaseEnd;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LeaseEnd> {
        self.future.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for LeaseWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseWait")
    }
}

/// Per-key leases in a store shared by several instances (see the
/// [module documentation](self)).
///
/// Implementations must make `acquire` atomic (at most one token holds a
/// key's lease at a time), expire a lease by itself after its `ttl` unless
/// renewed, and only let the token that holds a lease renew or release it.
pub trait Leases: Send + Sync {
    /// Reads `key`'s entry when `read_entry` is set and returns it if there
    /// is one; otherwise takes the key's lease for `ttl` under `token` if
    /// nobody holds it, or says who does.
    fn acquire(
        &self,
        key: KeyHash,
        token: LeaseToken,
        ttl: Duration,
        read_entry: bool,
    ) -> StoreFuture<Acquired>;

    /// Extends the lease by `ttl` if `token` still holds it; `false` if it
    /// was lost (expired, and perhaps taken over).
    fn renew(&self, key: KeyHash, token: LeaseToken, ttl: Duration) -> StoreFuture<bool>;

    /// Ends the lease `token` holds (nothing happens to a lease it no longer
    /// holds), after storing `entry` under `key` in the same step when
    /// given, and lets the instances waiting on it know how it ended.
    fn release(
        &self,
        key: KeyHash,
        token: LeaseToken,
        end: LeaseEnd,
        entry: Option<Arc<Entry>>,
    ) -> StoreFuture<()>;

    /// Starts listening for the end of `key`'s lease. `None` if the store
    /// cannot tell (waiters then poll [`acquire`](Self::acquire) with a
    /// backoff). Call it before `acquire`, so an end in between is heard.
    fn ended(&self, key: KeyHash) -> Option<LeaseWait>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_round_trip_through_their_codes() {
        for end in [
            LeaseEnd::Filled,
            LeaseEnd::NotShareable,
            LeaseEnd::Pass(Duration::ZERO),
            LeaseEnd::Abandoned,
        ] {
            assert_eq!(LeaseEnd::from_code(end.code()), Some(end));
        }
        assert_eq!(LeaseEnd::from_code(b'x'), None);
    }

    #[test]
    fn tokens_differ() {
        let a = LeaseToken::fresh();
        let b = LeaseToken::fresh();
        assert_ne!(a, b);
    }
}
