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

use std::sync::Arc;

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;
use tokio::sync::watch;

use crate::entry::{Entry, KeyHash};

/// How a flight ended.
#[derive(Clone, Debug)]
pub(crate) enum FlightEnd {
    Shared(Arc<Entry>),
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

/// The flights in progress, by key.
#[derive(Default)]
pub(crate) struct Coalescer {
    flights: DashMap<KeyHash, Arc<Flight>>,
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

    /// Number of flights in the table (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.flights.len()
    }

    /// Requests currently waiting on a flight of this table.
    pub(crate) fn waiting(&self) -> usize {
        self.flights
            .iter()
            .map(|flight| flight.outcome.receiver_count())
            .sum()
    }
}

/// The leader's duty to report an outcome. Dropping it unreported reports
/// `Abandoned`; dropping it after `share` takes the flight out of the table.
pub(crate) struct FlightGuard {
    coalescer: Arc<Coalescer>,
    key: KeyHash,
    flight: Arc<Flight>,
    reported: bool,
}

impl FlightGuard {
    /// Hands the entry to the waiters. Keep the guard until the entry is in
    /// the store, then drop it.
    pub(crate) fn share(&mut self, entry: Arc<Entry>) {
        self.reported = true;
        self.flight
            .outcome
            .send_replace(Some(FlightEnd::Shared(entry)));
    }

    /// Tells the waiters to call the origin themselves.
    pub(crate) fn not_shareable(mut self) {
        self.reported = true;
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
        guard.not_shareable();
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
        first.not_shareable();
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
}
