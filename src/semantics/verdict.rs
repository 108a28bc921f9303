//! What a stored entry can do for a request: the verdict, as a pure
//! function of the entry, what the request selects, the tag-stamp
//! [`Validity`] the store reported and the time.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use super::cache_control::CacheControl;
use super::vary;
use crate::entry::Entry;
use crate::stamp::{micros, outlived, Validity};

/// What a stored entry can do for a request.
pub(crate) enum Verdict {
    /// Fresh and valid: answer from it.
    Fresh(Arc<Entry>),
    /// Expired (or soft-invalidated) but inside a stale window.
    Stale(Arc<Entry>),
    /// Not usable as it is, but kept to be revalidated: the origin is
    /// asked with a conditional request whether it still holds (for the
    /// reason given). Where no conditional request is made it is a miss.
    Validate(Arc<Entry>, MissKind),
    /// Nothing usable.
    Miss(MissKind),
}

/// Why nothing usable was found; becomes `Cache-Status: fwd=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissKind {
    /// No entry for the key.
    Absent,
    /// An entry, for other `Vary` values.
    Vary,
    /// An entry whose tags were invalidated after its fill started.
    Invalidated,
    /// An entry past every window (RFC 9211 calls it stale).
    Stale,
    /// The store failed; served from the origin.
    StoreError,
    /// The client asked for a fresh response and the route honours it.
    Request,
}

impl MissKind {
    /// The `fwd` parameter of `Cache-Status` (RFC 9211 §2.2).
    pub(crate) fn fwd(self) -> &'static str {
        match self {
            MissKind::Absent | MissKind::StoreError => "uri-miss",
            MissKind::Vary => "vary-miss",
            MissKind::Invalidated => "miss",
            MissKind::Stale => "stale",
            MissKind::Request => "request",
        }
    }

    /// The `detail` parameter, where `fwd` alone does not say why.
    pub(crate) fn detail(self) -> Option<&'static str> {
        match self {
            MissKind::Invalidated => Some("invalidated"),
            MissKind::StoreError => Some("store-error"),
            _ => None,
        }
    }
}

/// What a request selects: the entry found under its hash must have been
/// stored for exactly this (the hash is only an index).
pub(crate) struct Selector<'a> {
    pub(crate) route: &'a str,
    pub(crate) key: &'a str,
    pub(crate) identity: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
}

impl Selector<'_> {
    /// Whether `entry` is for this key: same route, key and identity.
    #[inline]
    pub(crate) fn same_key(&self, entry: &Entry) -> bool {
        *entry.route == *self.route
            && &*entry.key == self.key
            && entry.identity.as_deref() == self.identity
    }

    /// Whether `entry` is a response stored for this request: same route,
    /// key and identity, and the request presents the header values it was
    /// selected by. (A variant index is no response.)
    #[inline]
    pub(crate) fn selects(&self, entry: &Entry) -> Result<(), MissKind> {
        if entry.variants.is_some() || !self.same_key(entry) {
            return Err(MissKind::Absent);
        }
        if !vary::matches(&entry.vary, self.headers) {
            return Err(MissKind::Vary);
        }
        Ok(())
    }
}

/// Judges a selected entry at `now` (µs): fresh, stale within a window, or
/// a miss, given what the tag stamps say of it.
#[inline]
pub(crate) fn judge(
    entry: Arc<Entry>,
    validity: Validity,
    max_entry_life: Duration,
    now: u64,
) -> Verdict {
    if outlived(entry.fill_stamp, now, max_entry_life) {
        return Verdict::Miss(MissKind::Stale);
    }
    let Some(fresh_until) = fresh_until(&entry, validity, now) else {
        return Verdict::Miss(MissKind::Invalidated);
    };
    if now < fresh_until {
        return Verdict::Fresh(entry);
    }
    let window = entry.stale_while_revalidate.max(entry.stale_if_error);
    let stale_for = now - fresh_until;
    if stale_for < micros(window) {
        Verdict::Stale(entry)
    } else if stale_for < micros(entry.validate_for) {
        Verdict::Validate(entry, MissKind::Stale)
    } else {
        Verdict::Miss(MissKind::Stale)
    }
}

/// What a request's own directives (RFC 9111 §5.2.1) make of a verdict, at
/// `now`: `max-stale` lets an entry the origin did not forbid serving stale
/// answer past its freshness; and, when `fresher` (the route follows the
/// directives that add origin load), `no-cache`, `max-age` and `min-fresh`
/// turn a fresh entry into one to revalidate.
pub(crate) fn as_requested(
    verdict: Verdict,
    asks: &CacheControl,
    fresher: bool,
    validity: Validity,
    now: u64,
) -> Verdict {
    match verdict {
        Verdict::Fresh(entry) | Verdict::Stale(entry) if fresher && refuses(&entry, asks, now) => {
            Verdict::Validate(entry, MissKind::Request)
        }
        Verdict::Stale(entry) | Verdict::Validate(entry, MissKind::Stale)
            if accepts_stale(&entry, asks, validity, now) =>
        {
            Verdict::Fresh(entry)
        }
        other => other,
    }
}

/// Whether the client refuses `entry` at `now` (`no-cache`, older than its
/// `max-age`, or fresh for less than its `min-fresh`).
fn refuses(entry: &Entry, asks: &CacheControl, now: u64) -> bool {
    let age = now.saturating_sub(entry.stored_at_micros);
    let left = entry.fresh_until_micros().saturating_sub(now);
    asks.no_cache
        || asks.max_age.is_some_and(|max| age > micros(max))
        || asks.min_fresh.is_some_and(|min| left < micros(min))
}

/// Whether a client's `max-stale` covers `entry`'s staleness at `now`, and
/// the origin allowed serving it stale at all.
fn accepts_stale(entry: &Entry, asks: &CacheControl, validity: Validity, now: u64) -> bool {
    let (Some(max_stale), false) = (asks.max_stale, entry.must_revalidate) else {
        return false;
    };
    let Some(fresh_until) = fresh_until(entry, validity, now) else {
        return false;
    };
    now.saturating_sub(fresh_until) <= micros(max_stale)
}

/// When `entry` stops being fresh, or `None` if it was invalidated. A soft
/// invalidation ends freshness at once: its stamp comes from the
/// invalidation clock, which may run ahead of this machine's wall time, so
/// it is capped at `now` rather than trusted as a point in time.
fn fresh_until(entry: &Entry, validity: Validity, now: u64) -> Option<u64> {
    match validity {
        Validity::Invalid => None,
        Validity::Valid => Some(entry.fresh_until_micros()),
        Validity::SoftInvalidated { at_micros } => {
            Some(entry.fresh_until_micros().min(at_micros).min(now))
        }
    }
}

/// How long `entry` has been stale at `now`, if it may still be served
/// within `window` (its stale-while-revalidate or stale-if-error window).
pub(crate) fn within_stale_window(
    entry: &Entry,
    validity: Validity,
    now: u64,
    window: Duration,
) -> Option<u64> {
    let stale_for = now.saturating_sub(fresh_until(entry, validity, now)?);
    (stale_for < micros(window)).then_some(stale_for)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::Stamp;

    const SECOND: u64 = 1_000_000;
    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// Stored at 100 s, fresh for 60 s (until 160 s), then stale for 10 s
    /// while revalidating or 20 s on errors.
    fn entry() -> Arc<Entry> {
        Arc::new(Entry {
            stored_at_micros: 100 * SECOND,
            fill_stamp: Stamp(100 * SECOND),
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(20),
            ..Entry::for_test()
        })
    }

    fn verdict_at(validity: Validity, now: u64) -> &'static str {
        match judge(entry(), validity, DAY, now) {
            Verdict::Fresh(_) => "fresh",
            Verdict::Stale(_) => "stale",
            Verdict::Validate(..) => "validate",
            Verdict::Miss(MissKind::Stale) => "miss: stale",
            Verdict::Miss(MissKind::Invalidated) => "miss: invalidated",
            Verdict::Miss(_) => "miss: other",
        }
    }

    /// Fresh up to the last microsecond of the TTL, then stale within the
    /// longer window (20 s), then a miss.
    #[test]
    fn an_entry_is_fresh_then_stale_then_a_miss() {
        let at = |now| verdict_at(Validity::Valid, now);
        assert_eq!(at(100 * SECOND), "fresh");
        assert_eq!(at(160 * SECOND - 1), "fresh");
        assert_eq!(at(160 * SECOND), "stale");
        assert_eq!(at(180 * SECOND - 1), "stale");
        assert_eq!(at(180 * SECOND), "miss: stale");
    }

    /// An entry with a revalidation window is kept for a conditional
    /// request after its stale windows, for that long.
    #[test]
    fn an_entry_is_revalidated_within_its_window() {
        let validating = Arc::new(Entry {
            validate_for: Duration::from_secs(100),
            ..(*entry()).clone()
        });
        let at = |now| match judge(validating.clone(), Validity::Valid, DAY, now) {
            Verdict::Validate(_, MissKind::Stale) => "validate",
            Verdict::Stale(_) => "stale",
            Verdict::Miss(MissKind::Stale) => "miss",
            _ => "other",
        };
        assert_eq!(at(179 * SECOND), "stale");
        assert_eq!(at(180 * SECOND), "validate");
        assert_eq!(at(260 * SECOND - 1), "validate");
        assert_eq!(at(260 * SECOND), "miss");
    }

    fn asks(line: &'static str) -> CacheControl {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", http::HeaderValue::from_static(line));
        CacheControl::parse(&headers)
    }

    fn requested(entry: Arc<Entry>, line: &'static str, fresher: bool, now: u64) -> &'static str {
        let verdict = judge(entry, Validity::Valid, DAY, now);
        match as_requested(verdict, &asks(line), fresher, Validity::Valid, now) {
            Verdict::Fresh(_) => "use",
            Verdict::Stale(_) => "stale",
            Verdict::Validate(_, MissKind::Request) => "validate: request",
            Verdict::Validate(_, _) => "validate",
            Verdict::Miss(_) => "miss",
        }
    }

    /// `no-cache`, `max-age` and `min-fresh` refuse a fresh entry only on
    /// a route that follows them; at the limit it is still used.
    #[test]
    fn requests_can_refuse_fresh_entries() {
        let at = |line, fresher, now| requested(entry(), line, fresher, now);
        assert_eq!(at("no-cache", true, 120 * SECOND), "validate: request");
        assert_eq!(at("no-cache", false, 120 * SECOND), "use");
        assert_eq!(at("max-age=20", true, 120 * SECOND), "use");
        assert_eq!(at("max-age=19", true, 120 * SECOND), "validate: request");
        assert_eq!(at("min-fresh=40", true, 120 * SECOND), "use");
        assert_eq!(at("min-fresh=41", true, 120 * SECOND), "validate: request");
        assert_eq!(at("max-stale=5", true, 120 * SECOND), "use");
        // A stale entry is refused alike, rather than served stale.
        assert_eq!(at("no-cache", true, 165 * SECOND), "validate: request");
        assert_eq!(at("max-age=10", true, 165 * SECOND), "validate: request");
        assert_eq!(at("no-cache", false, 165 * SECOND), "stale");
    }

    /// `max-stale` accepts staleness up to its value, any without one,
    /// never when the origin said `must-revalidate`.
    #[test]
    fn max_stale_accepts_what_the_origin_allows() {
        let long = Arc::new(Entry {
            validate_for: Duration::from_secs(1000),
            ..(*entry()).clone()
        });
        let at = |line, now| requested(long.clone(), line, false, now);
        assert_eq!(at("max-stale=5", 165 * SECOND), "use");
        assert_eq!(at("max-stale=5", 166 * SECOND), "stale");
        assert_eq!(at("max-stale=30", 190 * SECOND), "use");
        assert_eq!(at("max-stale", 1000 * SECOND), "use");
        assert_eq!(at("max-stale=30", 200 * SECOND), "validate");
        let strict = Arc::new(Entry {
            must_revalidate: true,
            ..(*long).clone()
        });
        assert_eq!(requested(strict, "max-stale", false, 165 * SECOND), "stale");
    }

    #[test]
    fn tag_stamps_end_freshness() {
        assert_eq!(
            verdict_at(Validity::Invalid, 120 * SECOND),
            "miss: invalidated"
        );
        // Soft-invalidated at 110 s: stale from then on, for the window.
        let soft = Validity::SoftInvalidated {
            at_micros: 110 * SECOND,
        };
        assert_eq!(verdict_at(soft, 120 * SECOND), "stale");
        assert_eq!(verdict_at(soft, 130 * SECOND), "miss: stale");
    }

    #[test]
    fn an_entry_past_its_max_life_is_a_miss() {
        let judged = judge(
            entry(),
            Validity::Valid,
            Duration::from_secs(30),
            140 * SECOND,
        );
        assert!(matches!(judged, Verdict::Miss(MissKind::Stale)));
    }

    /// How long an entry has been stale, while within the window given.
    #[test]
    fn the_stale_window_counts_from_the_end_of_freshness() {
        let entry = entry();
        let window = Duration::from_secs(10);
        let within = |now| within_stale_window(&entry, Validity::Valid, now, window);
        assert_eq!(within(150 * SECOND), Some(0));
        assert_eq!(within(165 * SECOND), Some(5 * SECOND));
        assert_eq!(within(170 * SECOND - 1), Some(10 * SECOND - 1));
        assert_eq!(within(170 * SECOND), None);
        assert_eq!(
            within_stale_window(&entry, Validity::Invalid, 150 * SECOND, window),
            None
        );
    }

    /// An entry answers only the route, key and identity it was stored for.
    #[test]
    fn selectors_select_their_own_key_only() {
        let headers = HeaderMap::new();
        let selector = |route, key, identity| Selector {
            route,
            key,
            identity,
            headers: &headers,
        };
        let entry = Entry {
            identity: Some("u1".into()),
            ..Entry::for_test()
        };
        assert_eq!(selector("r", "k", Some("u1")).selects(&entry), Ok(()));
        for (route, key, identity) in [
            ("other", "k", Some("u1")),
            ("r", "other", Some("u1")),
            ("r", "k", Some("u2")),
            ("r", "k", None),
        ] {
            assert!(!selector(route, key, identity).same_key(&entry));
            assert_eq!(
                selector(route, key, identity).selects(&entry),
                Err(MissKind::Absent)
            );
        }
        let index = Entry::variant_index(&entry, Box::new([]));
        assert_eq!(
            selector("r", "k", Some("u1")).selects(&index),
            Err(MissKind::Absent)
        );
    }

    /// `Cache-Status` parameters of each kind of miss (RFC 9211 §2.2).
    #[test]
    fn misses_name_their_kind() {
        let named = |kind: MissKind| (kind.fwd(), kind.detail());
        assert_eq!(named(MissKind::Absent), ("uri-miss", None));
        assert_eq!(
            named(MissKind::StoreError),
            ("uri-miss", Some("store-error"))
        );
        assert_eq!(named(MissKind::Vary), ("vary-miss", None));
        assert_eq!(named(MissKind::Invalidated), ("miss", Some("invalidated")));
        assert_eq!(named(MissKind::Stale), ("stale", None));
        assert_eq!(named(MissKind::Request), ("request", None));
    }
}
