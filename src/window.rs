//! Recent history of the counters: what the last minute or five looked
//! like, per route and overall, for the admin statistics and health.
//!
//! Kept entirely off the request path. Requests only bump the relaxed
//! atomic counters they always did ([`RouteMetrics`](crate::metrics)); a
//! sampler task reads them once a second and keeps the readings in
//! fixed-size rings (five minutes of one-second samples), so a window is
//! the difference between two readings. The sampler also publishes the
//! store's gauges. It runs only once started ([`Cache::track_history`](crate::Cache::track_history),
//! which the admin router does), holds the cache weakly and ends with it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// How many seconds of samples are kept: five minutes, plus the reading
/// they are measured from.
pub(crate) const KEPT_SECONDS: usize = 5 * 60 + 1;

/// The readings of a cache: per route, and overall (all routes and the
/// store's evictions).
#[derive(Debug, Default)]
pub(crate) struct History {
    pub(crate) routes: HashMap<Arc<str>, Ring>,
    pub(crate) overall: Ring,
}

/// One reading of cumulative counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reading {
    /// Answered without an origin call: hits, stale answers, collapsed.
    pub(crate) answered: u64,
    /// Went to the origin as a fill (or a pass).
    pub(crate) misses: u64,
    /// Every request the route saw: the above plus bypasses.
    pub(crate) requests: u64,
    /// Failed store operations.
    pub(crate) store_errors: u64,
    /// Evictions of the store (overall readings only).
    pub(crate) evictions: u64,
}

// The windows are read by the admin statistics only.
#[cfg(feature = "admin")]
impl Reading {
    fn minus(self, earlier: Reading) -> Reading {
        Reading {
            answered: self.answered.saturating_sub(earlier.answered),
            misses: self.misses.saturating_sub(earlier.misses),
            requests: self.requests.saturating_sub(earlier.requests),
            store_errors: self.store_errors.saturating_sub(earlier.store_errors),
            evictions: self.evictions.saturating_sub(earlier.evictions),
        }
    }

    /// The share of cacheable requests answered without an origin call,
    /// `None` without any.
    pub(crate) fn hit_ratio(self) -> Option<f64> {
        let cacheable = self.answered + self.misses;
        (cacheable > 0).then(|| self.answered as f64 / cacheable as f64)
    }
}

/// What happened over a window: the counters' growth and how many seconds
/// that covers (less than asked while the history is younger).
#[cfg(feature = "admin")]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Window {
    pub(crate) delta: Reading,
    pub(crate) seconds: u64,
}

#[cfg(feature = "admin")]
impl Window {
    /// Events per second of `count` over the window, 0 for an empty one.
    pub(crate) fn per_second(&self, count: u64) -> f64 {
        match self.seconds {
            0 => 0.0,
            s => count as f64 / s as f64,
        }
    }
}

/// The last [`KEPT_SECONDS`] readings of one set of counters, taken at
/// whole seconds since the sampler started.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    samples: VecDeque<(u64, Reading)>,
}

impl Ring {
    /// Records the reading taken at `second`; the oldest falls out.
    pub(crate) fn push(&mut self, second: u64, reading: Reading) {
        if self.samples.back().is_some_and(|(last, _)| *last >= second) {
            // Two ticks in one second (a late tick caught up): keep the
            // newer reading only.
            self.samples.pop_back();
        }
        if self.samples.len() == KEPT_SECONDS {
            self.samples.pop_front();
        }
        self.samples.push_back((second, reading));
    }

    /// When the last reading was taken.
    pub(crate) fn last_second(&self) -> Option<u64> {
        self.samples.back().map(|(second, _)| *second)
    }

    /// The counters' growth over the last `seconds` (or as much of it as
    /// is kept).
    #[cfg(feature = "admin")]
    pub(crate) fn window(&self, seconds: u64) -> Window {
        let Some(&(now, latest)) = self.samples.back() else {
            return Window::default();
        };
        let since = now.saturating_sub(seconds);
        let &(from, earlier) = self
            .samples
            .iter()
            .find(|(second, _)| *second >= since)
            .unwrap_or(&(now, latest));
        Window {
            delta: latest.minus(earlier),
            seconds: now - from,
        }
    }

    /// Per-second growth over the last `seconds` readings, oldest first:
    /// one point per pair of consecutive readings (for charts).
    #[cfg(feature = "admin")]
    pub(crate) fn series(&self, seconds: usize) -> Vec<(u64, Reading)> {
        let skip = self.samples.len().saturating_sub(seconds + 1);
        let kept: Vec<_> = self.samples.iter().skip(skip).collect();
        kept.windows(2)
            .map(|pair| {
                let (_, before) = pair[0];
                let (second, after) = pair[1];
                (*second, after.minus(*before))
            })
            .collect()
    }

    /// How many readings are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(answered: u64, misses: u64) -> Reading {
        Reading {
            answered,
            misses,
            requests: answered + misses,
            ..Reading::default()
        }
    }

    #[test]
    fn a_window_is_the_growth_since_the_reading_that_old() {
        let mut ring = Ring::default();
        for second in 0..=120u64 {
            // One answered and one miss a second until 60, then 3 answered.
            let answered = second.min(60) + 3 * second.saturating_sub(60);
            ring.push(second, reading(answered, second.min(60)));
        }
        let last_minute = ring.window(60);
        assert_eq!(last_minute.seconds, 60);
        assert_eq!(last_minute.delta, reading(180, 0));
        assert_eq!(last_minute.delta.hit_ratio(), Some(1.0));
        let five = ring.window(300);
        assert_eq!(five.seconds, 120, "only two minutes are known");
        assert_eq!(five.delta.hit_ratio(), Some(240.0 / 300.0));
        assert_eq!(five.per_second(five.delta.requests), 300.0 / 120.0);
    }

    #[test]
    fn the_ring_keeps_five_minutes_and_one_reading() {
        let mut ring = Ring::default();
        for second in 0..1000u64 {
            ring.push(second, reading(second, 0));
        }
        assert_eq!(ring.len(), KEPT_SECONDS);
        let five = ring.window(300);
        assert_eq!((five.seconds, five.delta.answered), (300, 300));
        assert_eq!(ring.window(10_000).seconds, 300);
    }

    #[test]
    fn a_second_reading_in_one_second_replaces_the_first() {
        let mut ring = Ring::default();
        ring.push(0, reading(0, 0));
        ring.push(1, reading(1, 0));
        ring.push(1, reading(5, 0));
        assert_eq!(ring.series(10), vec![(1, reading(5, 0))]);
    }

    #[test]
    fn empty_windows_have_no_ratio() {
        let ring = Ring::default();
        assert_eq!(ring.window(60), Window::default());
        assert_eq!(ring.window(60).delta.hit_ratio(), None);
        assert_eq!(ring.window(60).per_second(5), 0.0);
        assert!(ring.series(60).is_empty());
    }

    #[test]
    fn series_are_per_second_growth_oldest_first() {
        let mut ring = Ring::default();
        for second in 0..100u64 {
            ring.push(second, reading(second * 2, second));
        }
        let series = ring.series(3);
        assert_eq!(
            series,
            vec![
                (97, reading(2, 1)),
                (98, reading(2, 1)),
                (99, reading(2, 1))
            ]
        );
    }
}
