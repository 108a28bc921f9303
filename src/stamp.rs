//! The invalidation clock and the tag-stamp rule.
//!
//! Instead of deleting every entry that carries a tag (which needs a per-tag
//! index of keys that grows, leaks and races with fills), tagcache versions
//! tags:
//!
//! * Before an origin call starts, the fill takes a stamp `s0` from the
//!   [`Clock`] and stores it with the entry (its *fill stamp*).
//! * `invalidate(tags)` takes a stamp `s` from the same clock and records
//!   `stamp[tag] = s` for each tag: O(1) per tag, however many entries carry it.
//! * An entry is valid iff every tag it carries has no stamp, or a stamp
//!   older than its fill stamp.
//!
//! Because the clock is strictly monotonic, a fill that started before an
//! invalidation has `s0 < s` and is invalid the moment it lands: a slow fill,
//! a coalesced flight started before the invalidation, or a background
//! refresh can never be served after the invalidation returned.
//!
//! Stamps are microseconds since the Unix epoch, pushed forward by one when
//! two are taken in the same microsecond, so they also tell wall time. That is
//! what keeps the table bounded: no entry lives longer than `max_entry_life`
//! after its fill stamp (the store treats it as dead past that), so a tag
//! stamp older than `now - max_entry_life` can no longer invalidate anything
//! and is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

/// A point on the invalidation clock: microseconds since the Unix epoch,
/// made strictly increasing by [`Clock::next`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(pub u64);

impl Stamp {
    /// The stamp as microseconds since the Unix epoch.
    pub fn as_micros(self) -> u64 {
        self.0
    }
}

/// Microseconds since the Unix epoch according to the system clock.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(micros)
        .unwrap_or(0)
}

/// A duration in whole microseconds, saturating: `Duration::MAX` means "for
/// ever" rather than wrapping around. Every conversion of a duration to
/// stamp units goes through here.
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Default longest life of an entry after its fill started: 1 day.
pub const DEFAULT_MAX_ENTRY_LIFE: Duration = Duration::from_secs(24 * 3600);
/// Default cap on the number of tag stamps held.
pub const DEFAULT_MAX_TAGS: usize = 1_000_000;

/// Whether an entry filled at `fill` is, at `now` (µs), past the longest
/// life any entry may have. Beyond it the tag stamps that could invalidate
/// the entry may have been pruned, so it must not be served.
pub fn outlived(fill: Stamp, now: u64, max_entry_life: Duration) -> bool {
    now.saturating_sub(fill.0) > micros(max_entry_life)
}

/// A strictly monotonic clock: every call to [`Clock::next`] returns a stamp
/// greater than every stamp returned before, and never behind wall time.
#[derive(Debug, Default)]
pub struct Clock {
    last: AtomicU64,
}

impl Clock {
    /// A new clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a fresh stamp: `max(wall time, previous + 1)`.
    pub fn next(&self) -> Stamp {
        let wall = now_micros();
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Stamp(next),
                Err(seen) => prev = seen,
            }
        }
    }

    /// Moves the clock forward to at least `stamp` (used when stamps come
    /// from another source, such as a shared Redis clock).
    pub fn observe(&self, stamp: Stamp) {
        self.last.fetch_max(stamp.0, Ordering::AcqRel);
    }
}

/// What the tag stamps say about an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// No tag of the entry was invalidated after its fill started.
    Valid,
    /// A tag was soft-invalidated after the fill started: the entry counts as
    /// expired from that moment (wall time, microseconds) and may still be
    /// served stale within its stale-while-revalidate window.
    SoftInvalidated {
        /// When the soft invalidation happened, in microseconds since the epoch.
        at_micros: u64,
    },
    /// A tag was invalidated after the fill started: never serve it.
    Invalid,
}

/// How an invalidation treats the entries it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InvalidationMode {
    /// The entries are never served again.
    #[default]
    Hard,
    /// The entries become stale at once but may still be served under
    /// stale-while-revalidate while one background refresh runs (like
    /// Varnish's softpurge).
    Soft,
}

#[derive(Clone, Copy, Debug, Default)]
struct TagStamp {
    hard: u64,
    soft: u64,
}

/// The per-tag invalidation stamps of one cache (or a store's local view of
/// shared stamps).
///
/// Reads are lock-free in the common case: `latest_hard`/`latest_soft` hold
/// the newest stamp of any tag, so an entry filled after the last
/// invalidation is valid without looking at its tags at all.
#[derive(Debug)]
pub struct TagBoard {
    stamps: DashMap<Arc<str>, TagStamp>,
    latest_hard: AtomicU64,
    latest_soft: AtomicU64,
    /// Entries whose fill stamp is at or below the floor are invalid. Raised
    /// when the table has to shed live stamps to stay under `max_tags`, so
    /// shedding errs towards misses, never towards stale hits.
    floor: AtomicU64,
    max_entry_life: Duration,
    max_tags: usize,
    since_prune: AtomicU64,
}

/// How many invalidations pass between two pruning sweeps of the table.
const PRUNE_EVERY: u64 = 1024;

impl TagBoard {
    /// A board whose entries live at most `max_entry_life` after their fill
    /// stamp, holding at most `max_tags` stamps.
    pub fn new(max_entry_life: Duration, max_tags: usize) -> Self {
        Self {
            stamps: DashMap::new(),
            latest_hard: AtomicU64::new(0),
            latest_soft: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            max_entry_life,
            max_tags: max_tags.max(16),
            since_prune: AtomicU64::new(0),
        }
    }

    /// The longest an entry may live after its fill stamp.
    pub fn max_entry_life(&self) -> Duration {
        self.max_entry_life
    }

    /// Checks an entry filled at `fill` and carrying `tags`.
    pub fn validity<T: AsRef<str>>(&self, tags: &[T], fill: Stamp) -> Validity {
        let fill = fill.0;
        if fill <= self.floor.load(Ordering::Acquire) {
            return Validity::Invalid;
        }
        let hard = self.latest_hard.load(Ordering::Acquire);
        let soft = self.latest_soft.load(Ordering::Acquire);
        if hard < fill && soft < fill {
            return Validity::Valid;
        }
        let mut soft_at = None;
        for tag in tags {
            if let Some(stamp) = self.stamps.get(tag.as_ref()) {
                if stamp.hard >= fill {
                    return Validity::Invalid;
                }
                if stamp.soft >= fill {
                    soft_at = Some(soft_at.unwrap_or(0).max(stamp.soft));
                }
            }
        }
        // Shedding raises the floor *before* it removes stamps: a stamp
        // found missing above may have been shed meanwhile, and the floor
        // read again covers it.
        if fill <= self.floor.load(Ordering::Acquire) {
            return Validity::Invalid;
        }
        match soft_at {
            Some(at_micros) => Validity::SoftInvalidated { at_micros },
            None => Validity::Valid,
        }
    }

    /// Records `stamp` for each tag. Stamps only move forward, so applying
    /// the same or an older invalidation twice (a broadcast echo) is harmless.
    pub fn apply<T: AsRef<str>>(&self, tags: &[T], stamp: Stamp, mode: InvalidationMode) {
        for tag in tags {
            let tag = tag.as_ref();
            // `get_mut` first: re-invalidating a hot tag must not allocate.
            if let Some(mut existing) = self.stamps.get_mut(tag) {
                bump(&mut existing, stamp.0, mode);
                continue;
            }
            let mut entry = self.stamps.entry(Arc::from(tag)).or_default();
            bump(&mut entry, stamp.0, mode);
        }
        // Publish the fast-path bound only after the per-tag stamps are in,
        // so a reader that sees the new bound also finds the tag stamps.
        match mode {
            InvalidationMode::Hard => self.latest_hard.fetch_max(stamp.0, Ordering::AcqRel),
            InvalidationMode::Soft => self.latest_soft.fetch_max(stamp.0, Ordering::AcqRel),
        };
        if self.since_prune.fetch_add(1, Ordering::Relaxed) + 1 >= PRUNE_EVERY
            || self.stamps.len() > self.max_tags
        {
            self.prune(now_micros());
        }
    }

    /// Invalidates every entry filled at or before `stamp`, whatever its tags.
    pub fn invalidate_all(&self, stamp: Stamp) {
        self.floor.fetch_max(stamp.0, Ordering::AcqRel);
    }

    /// Number of tag stamps held.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    /// Whether no tag stamp is held.
    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }

    /// Drops stamps too old to matter, then, if the table is still over its
    /// cap, sheds the oldest half and raises the floor to cover them.
    fn prune(&self, now: u64) {
        self.since_prune.store(0, Ordering::Relaxed);
        let horizon = now.saturating_sub(micros(self.max_entry_life));
        self.stamps
            .retain(|_, stamp| stamp.hard.max(stamp.soft) >= horizon);
        if self.stamps.len() <= self.max_tags {
            return;
        }
        let mut newest: Vec<u64> = self.stamps.iter().map(|s| s.hard.max(s.soft)).collect();
        newest.sort_unstable();
        let cut = newest[newest.len() / 2];
        // Raise the floor before removing, so no reader ever sees a removed
        // stamp without the floor that replaces it.
        self.floor.fetch_max(cut, Ordering::AcqRel);
        self.stamps
            .retain(|_, stamp| stamp.hard.max(stamp.soft) > cut);
    }
}

fn bump(stamp: &mut TagStamp, value: u64, mode: InvalidationMode) {
    match mode {
        InvalidationMode::Hard => stamp.hard = stamp.hard.max(value),
        InvalidationMode::Soft => stamp.soft = stamp.soft.max(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> TagBoard {
        TagBoard::new(Duration::from_secs(3600), 1000)
    }

    #[test]
    fn a_stamp_is_its_microseconds() {
        assert_eq!(Stamp(1_234_567).as_micros(), 1_234_567);
    }

    #[test]
    fn entries_live_a_day_by_default() {
        assert_eq!(DEFAULT_MAX_ENTRY_LIFE, Duration::from_secs(86_400));
    }

    /// An entry may be served up to exactly `max_entry_life` after its
    /// fill stamp, and not a microsecond later.
    #[test]
    fn entries_outlive_their_max_life_only_past_it() {
        let life = Duration::from_secs(10);
        let fill = Stamp(5_000_000);
        assert!(!outlived(fill, 5_000_000, life));
        assert!(!outlived(fill, 15_000_000, life));
        assert!(outlived(fill, 15_000_001, life));
        assert!(outlived(fill, 60_000_000, life));
        // A fill stamp ahead of this machine's clock is not outlived.
        assert!(!outlived(fill, 1_000_000, life));
    }

    #[test]
    fn clock_is_strictly_monotonic() {
        let clock = Clock::new();
        let mut prev = clock.next();
        for _ in 0..10_000 {
            let next = clock.next();
            assert!(next > prev);
            prev = next;
        }
        clock.observe(Stamp(prev.0 + 1_000_000));
        assert!(clock.next().0 > prev.0 + 1_000_000);
    }

    #[test]
    fn fill_before_invalidation_is_invalid_and_after_is_valid() {
        let clock = Clock::new();
        let board = board();
        let before = clock.next();
        board.apply(&["teacher:7"], clock.next(), InvalidationMode::Hard);
        let after = clock.next();
        assert_eq!(board.validity(&["teacher:7"], before), Validity::Invalid);
        assert_eq!(board.validity(&["teacher:7"], after), Validity::Valid);
        assert_eq!(board.validity(&["teacher:8"], before), Validity::Valid);
        assert_eq!(
            board.validity(&["teacher:8", "teacher:7"], before),
            Validity::Invalid
        );
    }

    /// An entry filled at exactly its tag's invalidation stamp is invalid
    /// (`s0 < s` is the rule, not `s0 <= s`). The clock never hands out one
    /// stamp twice, so only a test with chosen stamps can hold this line,
    /// through the fast path (the newest stamp of any tag) and through the
    /// per-tag check (when another tag's stamp is newer).
    #[test]
    fn a_fill_at_the_invalidation_stamp_is_invalid() {
        let board = board();
        board.apply(&["t"], Stamp(100), InvalidationMode::Hard);
        assert_eq!(board.validity(&["t"], Stamp(100)), Validity::Invalid);
        assert_eq!(board.validity(&["t"], Stamp(101)), Validity::Valid);
        board.apply(&["other"], Stamp(200), InvalidationMode::Hard);
        assert_eq!(board.validity(&["t"], Stamp(100)), Validity::Invalid);
        assert_eq!(board.validity(&["t"], Stamp(150)), Validity::Valid);
        assert_eq!(board.validity(&["other"], Stamp(200)), Validity::Invalid);

        let soft = TagBoard::new(Duration::from_secs(3600), 1000);
        soft.apply(&["t"], Stamp(100), InvalidationMode::Soft);
        assert_eq!(
            soft.validity(&["t"], Stamp(100)),
            Validity::SoftInvalidated { at_micros: 100 }
        );
        assert_eq!(soft.validity(&["t"], Stamp(101)), Validity::Valid);
        soft.apply(&["other"], Stamp(200), InvalidationMode::Soft);
        assert_eq!(
            soft.validity(&["t"], Stamp(100)),
            Validity::SoftInvalidated { at_micros: 100 }
        );
    }

    #[test]
    fn soft_invalidation_marks_stale_and_hard_wins() {
        let clock = Clock::new();
        let board = board();
        let fill = clock.next();
        let soft = clock.next();
        board.apply(&["t"], soft, InvalidationMode::Soft);
        assert_eq!(
            board.validity(&["t"], fill),
            Validity::SoftInvalidated { at_micros: soft.0 }
        );
        board.apply(&["t"], clock.next(), InvalidationMode::Hard);
        assert_eq!(board.validity(&["t"], fill), Validity::Invalid);
    }

    #[test]
    fn stamps_never_move_backwards() {
        let board = board();
        board.apply(&["t"], Stamp(100), InvalidationMode::Hard);
        board.apply(&["t"], Stamp(50), InvalidationMode::Hard);
        assert_eq!(board.validity(&["t"], Stamp(99)), Validity::Invalid);
        assert_eq!(board.validity(&["t"], Stamp(101)), Validity::Valid);
    }

    #[test]
    fn old_stamps_are_pruned_without_reviving_live_entries() {
        let board = TagBoard::new(Duration::from_secs(10), 1000);
        let now = now_micros();
        let ancient = Stamp(now - 60_000_000);
        board.apply(&["old"], ancient, InvalidationMode::Hard);
        board.prune(now);
        assert_eq!(board.len(), 0);
        // An entry filled before the ancient stamp is past max_entry_life;
        // the store treats it as dead, so dropping the stamp is safe.
        let recent = Stamp(now - 1_000_000);
        board.apply(&["new"], recent, InvalidationMode::Hard);
        board.prune(now);
        assert_eq!(board.len(), 1);
        assert_eq!(
            board.validity(&["new"], Stamp(recent.0 - 1)),
            Validity::Invalid
        );
    }

    #[test]
    fn a_board_is_empty_until_a_tag_is_invalidated() {
        let board = board();
        assert!(board.is_empty());
        board.apply(&["t"], Stamp(now_micros()), InvalidationMode::Hard);
        assert!(!board.is_empty());
    }

    /// Over its cap the table sheds the older half of its stamps, covered
    /// by the floor, and keeps the newer half in force.
    #[test]
    fn over_cap_sheds_the_older_half_and_keeps_the_newer() {
        let board = TagBoard::new(Duration::from_secs(3600), 16);
        let clock = Clock::new();
        // An entry filled just before each invalidation, and the stamp of
        // the invalidation.
        let mut fills = Vec::new();
        let mut stamps = Vec::new();
        for i in 0..17 {
            fills.push(clock.next());
            stamps.push(clock.next());
            board.apply(&[format!("tag:{i}")], stamps[i], InvalidationMode::Hard);
        }
        // The 17th stamp went over the cap of 16: the nine oldest (up to
        // the median) are gone, the eight newest are kept.
        assert_eq!(board.len(), 8);
        assert_eq!(board.validity(&["untouched"], fills[8]), Validity::Invalid);
        assert_eq!(board.validity(&["untouched"], fills[9]), Validity::Valid);
        assert_eq!(board.validity(&["tag:9"], fills[9]), Validity::Invalid);
        assert_eq!(board.validity(&["tag:16"], fills[16]), Validity::Invalid);
        assert_eq!(board.validity(&["tag:15"], fills[16]), Validity::Valid);
    }

    #[test]
    fn over_cap_sheds_towards_misses() {
        let board = TagBoard::new(Duration::from_secs(3600), 16);
        let clock = Clock::new();
        let early = clock.next();
        for i in 0..40 {
            board.apply(&[format!("tag:{i}")], clock.next(), InvalidationMode::Hard);
        }
        assert!(board.len() <= 16 + 1);
        // Whatever was shed, an entry filled before those stamps is invalid.
        assert_eq!(board.validity(&["tag:0"], early), Validity::Invalid);
        assert_eq!(board.validity(&["untouched"], early), Validity::Invalid);
        assert_eq!(
            board.validity(&["untouched"], clock.next()),
            Validity::Valid
        );
    }
}
