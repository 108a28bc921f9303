//! When which fault happens: a fixed plan computed from the run's length
//! alone, so that two runs of the same length inject the same faults at the
//! same moments (only the load around them varies).
//!
//! The run opens with a quiet warm-up (every instance fills its cache) and
//! closes with a quiet tail (propagation without faults); between them,
//! equal slots each hold one fault, cycling through every kind. A fault
//! lasts half its slot at most, so every instance has time to recover
//! before the next one.

use std::fmt;
use std::time::Duration;

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `CLIENT KILL TYPE normal` again and again: the data connections.
    KillNormal,
    /// `CLIENT KILL TYPE pubsub` again and again: the invalidation feeds.
    KillPubsub,
    /// One instance's link to Redis forwards nothing (timeouts).
    Stall(usize),
    /// One instance's link to Redis is closed and refused (resets).
    Cut(usize),
    /// `SIGSTOP` of redis-server, then `SIGCONT`.
    Pause,
    /// redis-server killed, down for the hold, then started again empty.
    Restart,
}

impl Fault {
    /// The kind without its instance, for counting.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::KillNormal => "CLIENT KILL normal",
            Fault::KillPubsub => "CLIENT KILL pubsub",
            Fault::Stall(_) => "partition (stall)",
            Fault::Cut(_) => "partition (cut)",
            Fault::Pause => "SIGSTOP/SIGCONT",
            Fault::Restart => "restart",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Stall(i) | Fault::Cut(i) => write!(f, "{} of i{i}", self.kind()),
            other => f.write_str(other.kind()),
        }
    }
}

/// One fault: when it starts (from the start of the run) and how long it
/// holds.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
    pub hold: Duration,
}

/// The kinds, in the order each cycle injects them.
pub const KINDS: usize = 6;

/// A slot is about this long when the run is long enough.
const SLOT: Duration = Duration::from_millis(2500);
/// No fault holds longer than this.
const MAX_HOLD: Duration = Duration::from_millis(1200);

/// The plan for a run of `total` over `instances` instances.
pub fn plan(total: Duration, instances: usize) -> Vec<Step> {
    let warm = (total / 10).min(Duration::from_secs(2));
    let tail = (total * 3 / 20).min(Duration::from_secs(3));
    let window = total.saturating_sub(warm + tail);
    let cycles =
        ((window.as_secs_f64() / (SLOT * KINDS as u32).as_secs_f64()).round() as u32).max(1);
    let slots = cycles * KINDS as u32;
    let slot = window / slots;
    let hold = (slot / 2).min(MAX_HOLD);
    (0..slots)
        .map(|n| {
            let cycle = (n / KINDS as u32) as usize;
            // The partitions take each instance in turn, cycle after cycle.
            let fault = match n as usize % KINDS {
                0 => Fault::KillNormal,
                1 => Fault::Stall(cycle % instances),
                2 => Fault::Pause,
                3 => Fault::KillPubsub,
                4 => Fault::Cut((cycle + 1) % instances),
                _ => Fault::Restart,
            };
            Step {
                at: warm + slot * n,
                fault,
                hold,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_has_every_kind_once_and_ends_quiet() {
        let total = Duration::from_secs(6);
        let steps = plan(total, 3);
        assert_eq!(steps.len(), KINDS);
        let kinds: std::collections::BTreeSet<_> = steps.iter().map(|s| s.fault.kind()).collect();
        assert_eq!(kinds.len(), KINDS);
        let last = steps.last().unwrap();
        assert!(last.at + last.hold < total - Duration::from_millis(800));
        assert!(steps[0].at > Duration::ZERO);
    }

    #[test]
    fn a_long_run_cycles_and_moves_the_partition() {
        let steps = plan(Duration::from_secs(60), 3);
        assert_eq!(steps.len(), 4 * KINDS);
        let stalled: Vec<_> = steps
            .iter()
            .filter_map(|s| match s.fault {
                Fault::Stall(i) => Some(i),
                _ => None,
            })
            .collect();
        assert_eq!(stalled, [0, 1, 2, 0]);
        assert!(steps.windows(2).all(|w| w[0].at + w[0].hold < w[1].at));
    }
}
