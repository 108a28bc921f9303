//! The load, and the check of every read.
//!
//! Each instance runs readers and one writer. A read is checked against
//! what was known when it started: a version older than a write *this*
//! instance had already answered is stale (the guarantee the cache makes
//! to the instance that changed the data); older than a write another
//! instance had answered is only behind (propagation, measured in
//! [`Lags`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::app::Floor;
use super::instance::{Instance, Outcome};
use super::lag::Lags;
use super::tally::Tally;

/// How hard the load pushes.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Readers per instance.
    pub readers: usize,
    /// Pause after each read. Readers must yield: with the breaker open a
    /// read waits on nothing, and a task that never yields would keep its
    /// worker, and the timers it drives, from everything else.
    pub read_pause: Duration,
    /// Pause after each write, per instance.
    pub write_pause: Duration,
}

/// What the readers and writers share.
pub struct Load {
    pub instances: Vec<Instance>,
    pub tallies: Vec<Tally>,
    pub lags: Lags,
    items: usize,
    /// `own[i]`: what instance `i`'s own answered writes promise its reads.
    own: Vec<Arc<Floor>>,
    /// What any instance's answered writes promise (the latest versions
    /// once the writers stopped).
    any: Arc<Floor>,
    writing: AtomicBool,
    reading: AtomicBool,
    pace: Pace,
}

impl Load {
    pub fn new(instances: Vec<Instance>, items: usize, pace: Pace) -> Arc<Load> {
        let n = instances.len();
        Arc::new(Load {
            tallies: (0..n).map(|_| Tally::default()).collect(),
            lags: Lags::new(n, items),
            own: (0..n).map(|_| Floor::new(items)).collect(),
            any: Floor::new(items),
            writing: AtomicBool::new(true),
            reading: AtomicBool::new(true),
            instances,
            items,
            pace,
        })
    }

    pub fn items(&self) -> usize {
        self.items
    }

    pub fn readers(&self) -> usize {
        self.pace.readers
    }

    /// The latest version written of `item`.
    pub fn latest(&self, item: usize) -> u64 {
        self.any.at_least(item)
    }

    pub fn stop_writing(&self) {
        self.writing.store(false, Ordering::SeqCst);
    }

    pub fn stop_reading(&self) {
        self.reading.store(false, Ordering::SeqCst);
    }
}

/// Reads on instance `me` until told to stop.
pub async fn read_loop(load: Arc<Load>, me: usize, reader: usize) {
    let (instance, tally) = (&load.instances[me], &load.tallies[me]);
    let mut n = reader;
    while load.reading.load(Ordering::SeqCst) {
        // Every other read asks for a write this instance has not served
        // yet (so that propagation is seen as soon as it happens), the
        // others go round the items.
        let unserved = if n.is_multiple_of(2) {
            load.lags.oldest(me)
        } else {
            None
        };
        let item = unserved.unwrap_or(n / 2 % load.items);
        n += 1;
        let (own, any) = (load.own[me].at_least(item), load.any.at_least(item));
        let started = Instant::now();
        let outcome = instance.get(item).await;
        tally.read(matches!(outcome, Outcome::Ok { hit: true, .. }));
        match outcome {
            Outcome::Ok { version, hit } => {
                if version < own {
                    tally.stale(|| {
                        format!("i{me} GET item {item} answered v{version} (hit: {hit}) after its own write of v{own} came back")
                    });
                } else if version < any {
                    tally.behind();
                }
                load.lags.served(me, item, version, started);
            }
            Outcome::Failed(why) => tally.failed(|| format!("i{me} GET item {item}: {why}")),
        }
        tokio::time::sleep(load.pace.read_pause).await;
    }
}

/// Writes on instance `me` until told to stop: items in a fixed
/// pseudo-random order of its own.
pub async fn write_loop(load: Arc<Load>, me: usize) {
    let (instance, tally) = (&load.instances[me], &load.tallies[me]);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(me as u64 + 1);
    while load.writing.load(Ordering::SeqCst) {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let item = (seed >> 33) as usize % load.items;
        match instance.put(item).await {
            Outcome::Ok { version, .. } => {
                let at = Instant::now();
                load.own[me].written(item, version);
                load.any.written(item, version);
                load.lags.written(me, item, version, at);
                tally.wrote();
            }
            Outcome::Failed(why) => tally.failed(|| format!("i{me} PUT item {item}: {why}")),
        }
        tokio::time::sleep(load.pace.write_pause).await;
    }
}
