//! Single flight: at most one origin call per key at a time on this instance.
//!
//! The first request to miss a key becomes the *leader* and holds a
//! [`FlightGuard`]; later requests for the key become *waiters* and await the
//! flight's [`FlightEnd`]. The guard reports exactly one outcome:
//!
//! * `Shared(entry)`: the response was storable; waiters answer from it after
//!   checking it against the tag stamps and their own `Vary` values, so a
//!   waiter never takes a response an invalidation has since overtaken.
//! * `NotShareable`: the response must not be handed to anyone else
//!   (private, `Set-Cookie`, a status not stored, too large...): each waiter
//!   calls the origin itself, like Varnish's hit-for-miss.
//! * `Unstored(entry, generation)`: the response was storable but the store
//!   could not give it a fill stamp (it is down). It is not stored, and
//!   without a fill stamp the tag stamps cannot judge it; so waiters take
//!   it only if the store's [invalidation generation](crate::store::Store::invalidation_generation)
//!   is still the one the leader saw before calling the origin: nothing
//!   known here was invalidated since. Otherwise they call the origin.
//!   Such a flight leaves the table at once: requests arriving after the
//!   response lead a flight of their own.
//! * `Abandoned`: the leader was cancelled, panicked, or its body failed.
//!   Reported from `Drop`, so it cannot be forgotten; waiters race to lead
//!   anew and exactly one wins.
//!
//! A flight that produced `Shared` stays in the table until the store has
//! the entry, so a request arriving in between takes the flight's response
//! instead of missing in the store and calling the origin a second time.
//!
//! The table holds one small record per key with an origin call in
//! progress, removed when the flight ends: it is bounded by the requests in
//! flight, not by the keys clients ask for.
//!
//! # Remembered passes
//!
//! A flight whose response could not be shared for a reason that lasts
//! (`Set-Cookie`, `private`, too large...: see
//! [`NotStoredReason::lasts`](crate::semantics::NotStoredReason::lasts))
//! makes its key *pass* for [`PASS_FOR`]: misses for it go to the origin at
//! once, in parallel, instead of queueing behind a leader whose answer they
//! could not take (the proxies' hit-for-pass). A pass changes nothing
//! else: the response is still judged, and stored if it turns out
//! storable, which ends the pass. At most [`MAX_PASSES`] keys pass at a
//! time; past that, new ones are not remembered (those herds queue as
//! before), so client input cannot grow the table.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;
use tokio::sync::watch;

use crate::entry::{Entry, KeyHash};
use crate::stamp::{micros, now_micros};
use crate::store::LeaseEnd;

mod lease;

pub(crate) use lease::HeldLease;

/// How long a key whose response could not be shared skips its flight.
pub(crate) const PASS_FOR: Duration = Duration::from_secs(60);

/// Most keys remembered as passing at a time (about 40 bytes each).
pub(crate) const MAX_PASSES: usize = 10_000;

/// How a flight ended.
#[derive(Clone, Debug)]
pub(crate) enum FlightEnd {
    Shared(Arc<Entry>),
    Unstored { entry: Arc<Entry>, generation: u64 },
    NotShareable,
    Abandoned,
}

pub(crate) struct Flight {
    outcome: watch::Sender<Option<FlightEnd>>,
}

impl Flight {
    fn new() -> Arc<Self> {
        Arc::new(Flight {
            outcome: watch::Sender::new(None),
        })
    }

    /// Waits for the flight's outcome.
    pub(crate) async fn outcome(&self) -> FlightEnd {
        let mut rx = self.outcome.subscribe();
        let result = rx.wait_for(Option::is_some).await;
        match result {
            Ok(outcome) => outcome.clone().unwrap_or(FlightEnd::Abandoned),
            // The sender lives inside the flight we hold, so it cannot be
            // dropped while we wait; treat the impossible as abandonment.
            Err(_) => FlightEnd::Abandoned,
        }
    }
}

/// The flights in progress, by key, and the keys that pass.
#[derive(Default)]
pub(crate) struct Coalescer {
    flights: DashMap<KeyHash, Arc<Flight>>,
    /// Keys whose misses skip the flight, until the time (µs) given.
    passes: DashMap<KeyHash, u64>,
    /// Leaders waiting for another instance's lease (see
    /// [`crate::store::lease`]).
    waiting_on_fleet: AtomicUsize,
}

pub(crate) enum Role {
    Leader(FlightGuard),
    Waiter(Arc<Flight>),
}

impl Coalescer {
    /// Leads a new flight for `key`, or waits on the one in progress.
    pub(crate) fn join(self: &Arc<Self>, key: KeyHash) -> Role {
        match self.flights.entry(key) {
            MapEntry::Occupied(occupied) => Role::Waiter(occupied.get().clone()),
            MapEntry::Vacant(vacant) => {
                let flight = Flight::new();
                vacant.insert(flight.clone());
                Role::Leader(FlightGuard {
                    coalescer: self.clone(),
                    key,
                    flight,
                    reported: false,
                    lease: None,
                })
            }
        }
    }

    /// Removes `flight` from the table if it is still the one for `key`, so
    /// the next request leads a fresh flight instead of joining it. Done by
    /// the leader's guard when the flight ends, and by a waiter that found
    /// the flight's response invalidated or gave up waiting (a leader whose
    /// client reads slowly, or whose origin hangs, must not hold every later
    /// miss for the key). The old leader's guard still reports to its own
    /// waiters and cannot remove a newer flight.
    pub(crate) fn retire(&self, key: KeyHash, flight: &Arc<Flight>) {
        self.flights
            .remove_if(&key, |_, current| Arc::ptr_eq(current, flight));
    }

    /// Whether misses for `key` should go to the origin without joining
    /// its flight (see the module docs).
    pub(crate) fn passes(&self, key: KeyHash) -> bool {
        let Some(until) = self.passes.get(&key).map(|until| *until) else {
            return false;
        };
        if until > now_micros() {
            return true;
        }
        self.passes
            .remove_if(&key, |_, until| *until <= now_micros());
        false
    }

    /// Makes `key` pass for [`PASS_FOR`] (unless [`MAX_PASSES`] keys
    /// already do, even after dropping the expired ones).
    pub(crate) fn remember_pass(&self, key: KeyHash) {
        let now = now_micros();
        if self.passes.len() >= MAX_PASSES && !self.passes.contains_key(&key) {
            self.passes.retain(|_, until| *until > now);
            if self.passes.len() >= MAX_PASSES {
                return;
            }
        }
        self.passes.insert(key, now + micros(PASS_FOR));
    }

    /// Ends `key`'s pass: its response was stored.
    pub(crate) fn forget_pass(&self, key: KeyHash) {
        self.passes.remove(&key);
    }

    /// Number of flights in the table.
    pub(crate) fn len(&self) -> usize {
        self.flights.len()
    }

    /// Requests currently waiting on a flight of this table, or on
    /// another instance's lease.
    pub(crate) fn waiting(&self) -> usize {
        let on_flights: usize = self
            .flights
            .iter()
            .map(|flight| flight.outcome.receiver_count())
            .sum();
        on_flights + self.waiting_on_fleet.load(Ordering::Relaxed)
    }

    /// Counts a leader as waiting for another instance's lease until the
    /// returned guard is dropped.
    pub(crate) fn wait_on_fleet(&self) -> FleetWait<'_> {
        self.waiting_on_fleet.fetch_add(1, Ordering::Relaxed);
        FleetWait(&self.waiting_on_fleet)
    }
}

/// A leader waiting for another instance's lease (see
/// [`Coalescer::wait_on_fleet`]).
pub(crate) struct FleetWait<'a>(&'a AtomicUsize);

impl Drop for FleetWait<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The leader's duty to report an outcome. Dropping it unreported reports
/// `Abandoned`; dropping it after `share` takes the flight out of the table.
///
/// When the store is shared by several instances, the guard also carries
/// the key's fleet-wide lease (if this instance holds it), and ends it the
/// way the flight ends: released with the stored entry, as not shareable
/// or passing, or abandoned.
pub(crate) struct FlightGuard {
    coalescer: Arc<Coalescer>,
    key: KeyHash,
    flight: Arc<Flight>,
    reported: bool,
    lease: Option<HeldLease>,
}

impl FlightGuard {
    /// Gives the guard the key's fleet-wide lease to end with the flight.
    pub(crate) fn hold(&mut self, lease: HeldLease) {
        self.lease = Some(lease);
    }

    /// The lease, if it is held on `key`: the write that stores `key`
    /// releases it (see [`HeldLease::put_releasing`]).
    pub(crate) fn lease_for(&mut self, key: KeyHash) -> Option<HeldLease> {
        match &self.lease {
            Some(lease) if lease.key() == key => self.lease.take(),
            _ => None,
        }
    }

    /// Hands the entry to the waiters. Keep the guard until the entry is in
    /// the store, then drop it.
    pub(crate) fn share(&mut self, entry: Arc<Entry>) {
        self.reported = true;
        self.flight
            .outcome
            .send_replace(Some(FlightEnd::Shared(entry)));
    }

    /// Hands the waiters a response that could not be stored, valid for
    /// them while the store's invalidation generation is `generation`
    /// (see the module docs), and ends the flight.
    pub(crate) fn share_unstored(mut self, entry: Arc<Entry>, generation: u64) {
        self.reported = true;
        self.coalescer.retire(self.key, &self.flight);
        self.flight
            .outcome
            .send_replace(Some(FlightEnd::Unstored { entry, generation }));
    }

    /// Tells the waiters to call the origin themselves; with `lasting`,
    /// the key passes for a while (see the module docs).
    pub(crate) fn not_shareable(mut self, lasting: bool) {
        self.reported = true;
        if lasting {
            self.coalescer.remember_pass(self.key);
        }
        if let Some(lease) = self.lease.take() {
            lease.end(if lasting {
                LeaseEnd::Pass(PASS_FOR)
            } else {
                LeaseEnd::NotShareable
            });
        }
        self.coalescer.retire(self.key, &self.flight);
        self.flight
            .outcome
            .send_replace(Some(FlightEnd::NotShareable));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        // Leave the table first, so that a waiter woken by `Abandoned` and
        // joining again finds the slot free and can lead.
        self.coalescer.retire(self.key, &self.flight);
        if !self.reported {
            self.flight.outcome.send_replace(Some(FlightEnd::Abandoned));
        }
        // Shared, but the write that stores the key did not release the
        // lease (the entry was not stored, or went under another key):
        // waiters look again. Unreported: dropping it abandons it.
        if let Some(lease) = self.lease.take() {
            if self.reported {
                lease.end(LeaseEnd::Filled);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_then_waiters_get_the_outcome() {
        let coalescer = Arc::new(Coalescer::default());
        let key = KeyHash(1);
        let Role::Leader(guard) = coalescer.join(key) else {
            panic!("first must lead")
        };
        let Role::Waiter(flight) = coalescer.join(key) else {
            panic!("second must wait")
        };
        let waiting = tokio::spawn(async move { flight.outcome().await });
        guard.not_shareable(false);
        assert!(matches!(waiting.await.unwrap(), FlightEnd::NotShareable));
        assert_eq!(coalescer.len(), 0);
    }

    /// `waiting` counts the requests awaiting a flight, not the leaders.
    #[tokio::test]
    async fn waiting_counts_the_waiters_of_every_flight() {
        let coalescer = Arc::new(Coalescer::default());
        let Role::Leader(first) = coalescer.join(KeyHash(3)) else {
            panic!("first must lead")
        };
        let Role::Leader(_second) = coalescer.join(KeyHash(4)) else {
            panic!("another key must lead")
        };
        assert_eq!(coalescer.waiting(), 0);
        let mut waiters = Vec::new();
        for key in [3, 3, 4] {
            let Role::Waiter(flight) = coalescer.join(KeyHash(key)) else {
                panic!("a flight is in progress")
            };
            waiters.push(tokio::spawn(async move { flight.outcome().await }));
        }
        // Let the waiters start waiting (this runtime has one thread).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(coalescer.waiting(), 3);
        first.not_shareable(false);
        for waiter in waiters.drain(..2) {
            assert!(matches!(waiter.await.unwrap(), FlightEnd::NotShareable));
        }
        assert_eq!(coalescer.waiting(), 1);
    }

    #[tokio::test]
    async fn dropped_leader_reports_abandoned_and_frees_the_slot() {
        let coalescer = Arc::new(Coalescer::default());
        let key = KeyHash(2);
        let Role::Leader(guard) = coalescer.join(key) else {
            panic!()
        };
        let Role::Waiter(flight) = coalescer.join(key) else {
            panic!()
        };
        drop(guard);
        assert!(matches!(flight.outcome().await, FlightEnd::Abandoned));
        assert!(matches!(coalescer.join(key), Role::Leader(_)));
    }

    #[test]
    fn a_lasting_refusal_makes_the_key_pass_until_forgotten() {
        let coalescer = Arc::new(Coalescer::default());
        let key = KeyHash(3);
        let Role::Leader(guard) = coalescer.join(key) else {
            panic!()
        };
        guard.not_shareable(true);
        assert!(coalescer.passes(key));
        assert!(!coalescer.passes(KeyHash(4)));
        coalescer.forget_pass(key);
        assert!(!coalescer.passes(key));
        let Role::Leader(guard) = coalescer.join(key) else {
            panic!()
        };
        guard.not_shareable(false);
        assert!(
            !coalescer.passes(key),
            "a passing refusal is not remembered"
        );
    }

    #[test]
    fn passes_are_bounded_and_expire() {
        let coalescer = Coalescer::default();
        for n in 0..MAX_PASSES as u128 + 10 {
            coalescer.remember_pass(KeyHash(n));
        }
        assert_eq!(coalescer.passes.len(), MAX_PASSES);
        assert!(!coalescer.passes(KeyHash(MAX_PASSES as u128 + 5)));
        // A key that already passes is renewed even when the table is full.
        coalescer
            .passes
            .insert(KeyHash(1), now_micros() + 1_000_000);
        coalescer.remember_pass(KeyHash(1));
        let renewed = *coalescer.passes.get(&KeyHash(1)).unwrap();
        assert!(renewed > now_micros() + micros(PASS_FOR) / 2);
        // An expired pass no longer counts, and is dropped when asked for.
        coalescer.passes.insert(KeyHash(0), now_micros() - 1);
        assert!(!coalescer.passes(KeyHash(0)));
        assert_eq!(coalescer.passes.len(), MAX_PASSES - 1);
        coalescer.remember_pass(KeyHash(u128::MAX));
        assert!(coalescer.passes(KeyHash(u128::MAX)));
    }
}
