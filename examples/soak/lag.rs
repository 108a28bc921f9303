//! Cross-instance propagation: how long after a write came back each other
//! instance first served the new version.
//!
//! Every write leaves, for each other instance, a note (item, version, when
//! it came back). A read on that instance that sees the version or a later
//! one settles the notes it covers, and their lag is recorded: from the
//! write coming back to that read *starting* (zero if it started before),
//! i.e. how late a request arriving there was still answered the old
//! version, not how long a miss takes. The lag includes the gap until some
//! reader asked for the item, which the readers keep short by asking,
//! every other read, for the item with the oldest unserved write
//! ([`Lags::oldest`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Writes to one item an instance has not served yet: (version, when the
/// write came back), oldest first.
type Notes = Mutex<Vec<(u64, Instant)>>;

/// The notes and the lags, per instance.
pub struct Lags {
    /// `open[instance][item]`: writes that instance has not served yet.
    open: Vec<Vec<Notes>>,
    /// `done[instance]`: settled lags.
    done: Vec<Mutex<Vec<Duration>>>,
}

impl Lags {
    pub fn new(instances: usize, items: usize) -> Lags {
        Lags {
            open: (0..instances)
                .map(|_| (0..items).map(|_| Mutex::default()).collect())
                .collect(),
            done: (0..instances).map(|_| Mutex::default()).collect(),
        }
    }

    /// Instance `writer` wrote `version` of `item`; the write came back at
    /// `at`.
    pub fn written(&self, writer: usize, item: usize, version: u64, at: Instant) {
        for (instance, items) in self.open.iter().enumerate() {
            if instance != writer {
                lock(&items[item]).push((version, at));
            }
        }
    }

    /// A read on `instance` of `item` that started at `at` answered
    /// `version`.
    pub fn served(&self, instance: usize, item: usize, version: u64, at: Instant) {
        let mut open = lock(&self.open[instance][item]);
        if open.iter().all(|&(v, _)| v > version) {
            return;
        }
        let mut done = lock(&self.done[instance]);
        open.retain(|&(v, written)| {
            let covered = v <= version;
            if covered {
                done.push(at.saturating_duration_since(written));
            }
            !covered
        });
    }

    /// The item with the oldest write `instance` has not served yet, if
    /// any.
    pub fn oldest(&self, instance: usize) -> Option<usize> {
        self.open[instance]
            .iter()
            .enumerate()
            .filter_map(|(item, notes)| Some((lock(notes).first()?.1, item)))
            .min()
            .map(|(_, item)| item)
    }

    /// Writes some instance has not served yet.
    pub fn unsettled(&self) -> usize {
        self.open
            .iter()
            .flatten()
            .map(|notes| lock(notes).len())
            .sum()
    }

    /// The settled lags of `instance`.
    pub fn of(&self, instance: usize) -> Vec<Duration> {
        lock(&self.done[instance]).clone()
    }
}

/// A poisoned lock only means another task panicked; the data is plain.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
