//! Byte ranges answered from a stored 200 (RFC 9110 §14): which part of the
//! stored body a `Range` request gets, under its `If-Range` (§13.1.5).
//!
//! Only a single `bytes` range is answered. Anything else is answered with
//! the whole 200, which a server may always send instead of a 206 (§14.2):
//! several ranges would need a `multipart/byteranges` body built per
//! request, and a malformed or unknown range must be ignored anyway.

use std::cmp::Ordering;
use std::time::{Duration, SystemTime};

use http::header::{DATE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use http::{HeaderMap, HeaderName, HeaderValue};

/// What a request gets from a stored body of a given length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole body, as a 200: no `Range`, one the cache does not answer
    /// (several ranges, another unit, malformed), or an `If-Range` that
    /// does not match.
    Full,
    /// Bytes `start..=end_inclusive` of the body, as a 206; both within it.
    Partial {
        /// Offset of the first byte sent.
        start: u64,
        /// Offset of the last byte sent (`< len`).
        end_inclusive: u64,
    },
    /// A valid range that lies wholly past the body (or a suffix of zero
    /// bytes), as a 416.
    Unsatisfiable,
}

/// What the request's `Range` (under its `If-Range`) asks of a stored body
/// of `len` bytes whose headers are `stored`.
///
/// A request without `Range` costs one header lookup; the rest is only done
/// for range requests.
#[inline]
pub fn answer(request: &HeaderMap, stored: &HeaderMap, len: u64) -> RangeAnswer {
    let mut lines = request.get_all(RANGE).iter();
    let Some(range) = lines.next() else {
        return RangeAnswer::Full;
    };
    // Several `Range` lines make one list whose meaning depends on how the
    // client split it: several ranges at best, so the whole body.
    if lines.next().is_some() {
        return RangeAnswer::Full;
    }
    answer_range(range, request, stored, len)
}

/// [`answer`] once the request has exactly one `Range` line.
fn answer_range(
    range: &HeaderValue,
    request: &HeaderMap,
    stored: &HeaderMap,
    len: u64,
) -> RangeAnswer {
    let Some(spec) = parse(range.as_bytes()) else {
        return RangeAnswer::Full;
    };
    // A failed `If-Range` means the client's partial copy is outdated: it
    // gets the whole current body, even for a range that would be a 416.
    if !if_range_holds(request, stored) {
        return RangeAnswer::Full;
    }
    spec.against(len)
}

/// `Content-Range` of a partial answer: `bytes <start>-<end>/<len>`.
pub fn content_range(start: u64, end_inclusive: u64, len: u64) -> HeaderValue {
    let mut text = String::with_capacity(6 + 3 * 20 + 2);
    text.push_str("bytes ");
    text.push_str(itoa::Buffer::new().format(start));
    text.push('-');
    text.push_str(itoa::Buffer::new().format(end_inclusive));
    text.push('/');
    text.push_str(itoa::Buffer::new().format(len));
    HeaderValue::try_from(text).expect("digits, spaces and punctuation are a valid header value")
}

/// `Content-Range` of a 416 (RFC 9110 §15.5.17): `bytes */<len>`, so the
/// client learns the current length.
pub fn unsatisfied_range(len: u64) -> HeaderValue {
    let mut text = String::with_capacity(8 + 20);
    text.push_str("bytes */");
    text.push_str(itoa::Buffer::new().format(len));
    HeaderValue::try_from(text).expect("digits, spaces and punctuation are a valid header value")
}

/// One `bytes` range-spec (RFC 9110 §14.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-last` or `first-`: `last` is `None` for "to the end".
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl Spec {
    /// The answer for a body of `len` bytes (satisfiability per §14.1.1).
    fn against(self, len: u64) -> RangeAnswer {
        match self {
            Spec::From { first, .. } if first >= len => RangeAnswer::Unsatisfiable,
            Spec::From { first, last } => RangeAnswer::Partial {
                start: first,
                end_inclusive: last.map_or(len - 1, |last| last.min(len - 1)),
            },
            Spec::Suffix(0) => RangeAnswer::Unsatisfiable,
            // A suffix of an empty body is satisfiable but holds no byte,
            // which no `Content-Range` can describe: the (empty) 200 it is.
            Spec::Suffix(_) if len == 0 => RangeAnswer::Full,
            Spec::Suffix(n) => RangeAnswer::Partial {
                start: len.saturating_sub(n),
                end_inclusive: len - 1,
            },
        }
    }
}

/// The single range of a `Range` value, or `None` for anything the cache
/// does not answer: another unit, several ranges, bad syntax.
fn parse(value: &[u8]) -> Option<Spec> {
    let equals = value.iter().position(|&b| b == b'=')?;
    let (unit, set) = (&value[..equals], &value[equals + 1..]);
    // Range units are case-insensitive (RFC 9110 §14.1).
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    // A list may hold empty elements, which recipients skip (§5.6.1).
    let mut specs = set
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|spec| !spec.is_empty());
    let spec = specs.next()?;
    if specs.next().is_some() {
        return None;
    }
    parse_spec(spec)
}

/// One `int-range` or `suffix-range`.
fn parse_spec(spec: &[u8]) -> Option<Spec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(decimal(last)?));
    }
    let first_value = decimal(first)?;
    if last.is_empty() {
        return Some(Spec::From {
            first: first_value,
            last: None,
        });
    }
    let last_value = decimal(last)?;
    // A last byte before the first makes the range invalid (§14.1.1).
    // Compared as digits: saturated values would call `9…9-9…8` valid.
    if compare_decimal(last, first) == Ordering::Less {
        return None;
    }
    Some(Spec::From {
        first: first_value,
        last: Some(last_value),
    })
}

/// The value of a non-empty run of ASCII digits, saturating at `u64::MAX`
/// (a position that large is past any body); `None` for anything else,
/// signs included.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |value, &digit| {
        value
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    }))
}

/// Compares two runs of ASCII digits as numbers, whatever their size.
fn compare_decimal(a: &[u8], b: &[u8]) -> Ordering {
    let significant = |digits: &[u8]| -> usize {
        digits
            .iter()
            .position(|&d| d != b'0')
            .unwrap_or(digits.len())
    };
    let (a, b) = (&a[significant(a)..], &b[significant(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// `bytes` without leading and trailing spaces and tabs.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Whether the range may be applied (RFC 9110 §13.1.5): no `If-Range`, or
/// one whose validator matches the stored response.
fn if_range_holds(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let mut lines = request.get_all(IF_RANGE).iter();
    let Some(validator) = lines.next() else {
        return true;
    };
    if lines.next().is_some() {
        return false;
    }
    let Ok(validator) = validator.to_str() else {
        return false;
    };
    let validator = validator.trim();
    // An entity tag has a DQUOTE within its first three characters
    // (`"…` or `W/"…`); an HTTP-date never does (§13.1.5).
    if validator.bytes().take(3).any(|b| b == b'"') {
        strong_etag_matches(validator, stored)
    } else {
        date_matches(validator, stored)
    }
}

/// Strong comparison (RFC 9110 §8.8.3.2) of `tag` with the stored `ETag`:
/// both strong and identical. A weak tag never matches, since a weakly
/// equal body may differ byte for byte.
fn strong_etag_matches(tag: &str, stored: &HeaderMap) -> bool {
    let is_strong = |tag: &str| tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"');
    let Some(etag) = stored.get(ETAG).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    is_strong(tag) && etag.trim() == tag
}

/// Whether `date` is exactly the stored `Last-Modified`, and that date is a
/// strong validator: the stored `Date` at least a second later (RFC 9110
/// §8.8.2.2), so the body cannot have changed again within that second.
fn date_matches(date: &str, stored: &HeaderMap) -> bool {
    let Ok(asked) = httpdate::parse_http_date(date) else {
        return false;
    };
    let Some(last_modified) = stored_date(stored, LAST_MODIFIED) else {
        return false;
    };
    let Some(sent) = stored_date(stored, DATE) else {
        return false;
    };
    let strong = last_modified
        .checked_add(Duration::from_secs(1))
        .is_some_and(|one_second_later| sent >= one_second_later);
    asked == last_modified && strong
}

/// The stored header `name` read as an HTTP-date.
fn stored_date(stored: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    let value = stored.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::{Full, Partial, Unsatisfiable};

    const LAST_MODIFIED_AT: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn map(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (name, value) in pairs {
            m.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        m
    }

    /// The stored headers of a response with a strong `ETag` and a strong
    /// `Last-Modified` (a minute before its `Date`).
    fn stored() -> HeaderMap {
        map(&[
            (ETAG, "\"v1\""),
            (LAST_MODIFIED, LAST_MODIFIED_AT),
            (DATE, "Sun, 06 Nov 1994 08:50:37 GMT"),
        ])
    }

    fn ranged(range: &str, len: u64) -> RangeAnswer {
        answer(&map(&[(RANGE, range)]), &stored(), len)
    }

    fn partial(start: u64, end_inclusive: u64) -> RangeAnswer {
        Partial {
            start,
            end_inclusive,
        }
    }

    #[test]
    fn no_range_is_the_whole_body() {
        assert_eq!(answer(&HeaderMap::new(), &stored(), 10), Full);
    }

    #[test]
    fn single_ranges_are_clamped_to_the_body() {
        assert_eq!(ranged("bytes=0-4", 10), partial(0, 4));
        assert_eq!(ranged("bytes=3-3", 10), partial(3, 3));
        assert_eq!(ranged("bytes=5-", 10), partial(5, 9));
        assert_eq!(ranged("bytes=5-100", 10), partial(5, 9));
        assert_eq!(ranged("bytes=0-9", 10), partial(0, 9));
        assert_eq!(ranged("bytes=9-9", 10), partial(9, 9));
        assert_eq!(ranged("bytes=007-008", 10), partial(7, 8));
    }

    #[test]
    fn suffix_ranges_count_from_the_end() {
        assert_eq!(ranged("bytes=-3", 10), partial(7, 9));
        assert_eq!(ranged("bytes=-10", 10), partial(0, 9));
        assert_eq!(ranged("bytes=-11", 10), partial(0, 9));
        assert_eq!(ranged("bytes=-0", 10), Unsatisfiable);
        assert_eq!(ranged("bytes=-000", 10), Unsatisfiable);
    }

    #[test]
    fn ranges_past_the_body_are_unsatisfiable() {
        assert_eq!(ranged("bytes=10-", 10), Unsatisfiable);
        assert_eq!(ranged("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(ranged("bytes=11-11", 10), Unsatisfiable);
    }

    #[test]
    fn empty_bodies() {
        assert_eq!(ranged("bytes=0-", 0), Unsatisfiable);
        assert_eq!(ranged("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(ranged("bytes=-0", 0), Unsatisfiable);
        // Satisfiable in principle, but no byte to send: the empty 200.
        assert_eq!(ranged("bytes=-5", 0), Full);
    }

    #[test]
    fn huge_numbers_saturate_without_overflow() {
        let huge = "99999999999999999999999";
        assert_eq!(ranged(&format!("bytes=0-{huge}"), 10), partial(0, 9));
        assert_eq!(ranged(&format!("bytes=-{huge}"), 10), partial(0, 9));
        assert_eq!(ranged(&format!("bytes={huge}-"), 10), Unsatisfiable);
        assert_eq!(ranged(&format!("bytes={huge}-{huge}9"), 10), Unsatisfiable);
        assert_eq!(ranged(&format!("bytes={huge}9-{huge}"), 10), Full);
        assert_eq!(
            ranged(&format!("bytes=0-{}", u64::MAX), u64::MAX),
            partial(0, u64::MAX - 1)
        );
        assert_eq!(
            ranged("bytes=-1", u64::MAX),
            partial(u64::MAX - 1, u64::MAX - 1)
        );
    }

    #[test]
    fn other_forms_get_the_whole_body() {
        for range in [
            "bytes=5-2",
            "bytes=0-1,3-4",
            "bytes=0-1, 3-4",
            "bytes=-",
            "bytes=",
            "bytes",
            "=0-1",
            "items=0-1",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=--1",
            "bytes=1--2",
            "bytes=1-2-3",
            "bytes = 0-1",
            "bytes=0 - 1",
            "bytes=0x1-2",
            "",
        ] {
            assert_eq!(ranged(range, 10), Full, "{range:?}");
        }
    }

    #[test]
    fn tolerated_spelling() {
        assert_eq!(ranged("BYTES=0-1", 10), partial(0, 1));
        assert_eq!(ranged("bytes= 0-1 ", 10), partial(0, 1));
        assert_eq!(ranged("bytes=0-1,", 10), partial(0, 1));
        assert_eq!(ranged("bytes=, ,0-1", 10), partial(0, 1));
    }

    #[test]
    fn several_range_lines_get_the_whole_body() {
        let request = map(&[(RANGE, "bytes=0-1"), (RANGE, "bytes=3-4")]);
        assert_eq!(answer(&request, &stored(), 10), Full);
    }

    fn with_if_range(validator: &str, stored: &HeaderMap) -> RangeAnswer {
        let request = map(&[(RANGE, "bytes=0-4"), (IF_RANGE, validator)]);
        answer(&request, stored, 10)
    }

    #[test]
    fn if_range_entity_tags_compare_strongly() {
        assert_eq!(with_if_range("\"v1\"", &stored()), partial(0, 4));
        assert_eq!(with_if_range(" \"v1\" ", &stored()), partial(0, 4));
        assert_eq!(with_if_range("\"v0\"", &stored()), Full);
        assert_eq!(with_if_range("W/\"v1\"", &stored()), Full);
        assert_eq!(with_if_range("\"v1", &stored()), Full);
        let weak = map(&[(ETAG, "W/\"v1\"")]);
        assert_eq!(with_if_range("W/\"v1\"", &weak), Full);
        assert_eq!(with_if_range("\"v1\"", &weak), Full);
        assert_eq!(with_if_range("\"v1\"", &HeaderMap::new()), Full);
    }

    #[test]
    fn if_range_dates_match_a_strong_last_modified_exactly() {
        assert_eq!(with_if_range(LAST_MODIFIED_AT, &stored()), partial(0, 4));
        // The same instant in the obsolete RFC 850 form.
        assert_eq!(
            with_if_range("Sunday, 06-Nov-94 08:49:37 GMT", &stored()),
            partial(0, 4)
        );
        assert_eq!(
            with_if_range("Sun, 06 Nov 1994 08:49:38 GMT", &stored()),
            Full
        );
        assert_eq!(
            with_if_range("Sun, 06 Nov 1994 08:49:36 GMT", &stored()),
            Full
        );
        assert_eq!(with_if_range("yesterday", &stored()), Full);
        let no_last_modified = map(&[(ETAG, "\"v1\""), (DATE, LAST_MODIFIED_AT)]);
        assert_eq!(with_if_range(LAST_MODIFIED_AT, &no_last_modified), Full);
    }

    #[test]
    fn if_range_dates_within_a_second_of_date_are_weak() {
        let same_second = map(&[(LAST_MODIFIED, LAST_MODIFIED_AT), (DATE, LAST_MODIFIED_AT)]);
        assert_eq!(with_if_range(LAST_MODIFIED_AT, &same_second), Full);
        let no_date = map(&[(LAST_MODIFIED, LAST_MODIFIED_AT)]);
        assert_eq!(with_if_range(LAST_MODIFIED_AT, &no_date), Full);
    }

    #[test]
    fn if_range_is_one_validator() {
        let request = map(&[
            (RANGE, "bytes=0-4"),
            (IF_RANGE, "\"v1\""),
            (IF_RANGE, "\"v1\""),
        ]);
        assert_eq!(answer(&request, &stored(), 10), Full);
    }

    #[test]
    fn a_failed_if_range_wins_over_an_unsatisfiable_range() {
        let request = map(&[(RANGE, "bytes=50-"), (IF_RANGE, "\"v0\"")]);
        assert_eq!(answer(&request, &stored(), 10), Full);
        let request = map(&[(RANGE, "bytes=50-"), (IF_RANGE, "\"v1\"")]);
        assert_eq!(answer(&request, &stored(), 10), Unsatisfiable);
    }

    /// Every value built from range syntax's pieces, against bodies of
    /// several lengths: never a panic, and a partial answer always lies
    /// within the body.
    #[test]
    fn never_panics_and_stays_within_the_body() {
        let pieces = [
            "",
            "0",
            "1",
            "9",
            "-",
            ",",
            " ",
            "=",
            "bytes",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
        ];
        let lens = [0, 1, 2, 10, u64::MAX - 1, u64::MAX];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for prefix in ["bytes=", ""] {
                        let value = format!("{prefix}{a}{b}{c}");
                        for len in lens {
                            if let Partial {
                                start,
                                end_inclusive,
                            } = ranged(&value, len)
                            {
                                assert!(start <= end_inclusive, "{value:?} {len}");
                                assert!(end_inclusive < len, "{value:?} {len}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(0, 4, 20), "bytes 0-4/20");
        assert_eq!(
            content_range(u64::MAX - 1, u64::MAX - 1, u64::MAX),
            "bytes 18446744073709551614-18446744073709551614/18446744073709551615"
        );
        assert_eq!(unsatisfied_range(20), "bytes */20");
        assert_eq!(unsatisfied_range(0), "bytes */0");
    }
}
