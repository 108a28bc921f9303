//! Building responses from entries and decorating passed-through ones.

use std::cell::RefCell;
use std::sync::OnceLock;

use http::header::{AGE, CONTENT_LENGTH};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::body::CacheBody;
use crate::entry::Entry;
use crate::semantics::cache_status::CacheStatus;
use crate::semantics::conditional::{if_none_match_hits, NOT_MODIFIED_HEADERS};

/// The `Cache-Status` header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Placeholder value of the `Cache-Status` slot in stored headers.
const SLOT: HeaderValue = HeaderValue::from_static("-");

/// The headers to store for a response: the origin's, plus slots for `Age`
/// and `Cache-Status` at the end, so answering a hit overwrites them in
/// place instead of growing the cloned map (an allocation per hit).
pub(crate) fn with_slots(headers: &HeaderMap) -> HeaderMap {
    // Room for the two slots and a `Content-Length` added at the end of the
    // fill, so neither the stored map nor a hit's clone ever regrows.
    let mut stored = HeaderMap::with_capacity(headers.len() + 3);
    stored.extend(headers.clone());
    if !stored.contains_key(AGE) {
        stored.insert(AGE, HeaderValue::from_static("0"));
    }
    if !stored.contains_key(CACHE_STATUS) {
        stored.insert(CACHE_STATUS, SLOT);
    }
    stored
}

/// The `Age` header for `seconds`: from a table shared by every response
/// for the first hour (no allocation), formatted beyond that.
fn age_value(seconds: u64) -> HeaderValue {
    const TABLE: usize = 3600;
    static DIGITS: OnceLock<(String, Vec<(u32, u32)>)> = OnceLock::new();
    let Ok(index) = usize::try_from(seconds) else {
        return HeaderValue::from(seconds);
    };
    if index >= TABLE {
        return HeaderValue::from(seconds);
    }
    let (text, spans) = DIGITS.get_or_init(|| {
        let mut text = String::new();
        let spans = (0..TABLE)
            .map(|n| {
                let start = text.len() as u32;
                text.push_str(itoa::Buffer::new().format(n));
                (start, text.len() as u32)
            })
            .collect();
        (text, spans)
    });
    let (start, end) = spans[index];
    HeaderValue::from_static(&text[start as usize..end as usize])
}

/// Whole seconds between `from` and `to` (µs), rounding towards zero.
pub(crate) fn seconds_between(from: u64, to: u64) -> i64 {
    let seconds = (i128::from(to) - i128::from(from)) / 1_000_000;
    seconds.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The `ttl` of a stale answer: negative whole seconds, never `0`, so a
/// stale answer always reads as stale.
pub(crate) fn stale_ttl(stale_for_micros: u64) -> i64 {
    -(stale_for_micros.div_ceil(1_000_000).max(1) as i64)
}

/// `Cache-Status` of a fresh hit: `<name>; hit; ttl=<remaining>`.
///
/// Hits within the same second of remaining TTL share one value: each
/// thread keeps the last few it built, so a busy entry costs a clone (a
/// reference count) instead of formatting and allocating every time.
pub(crate) fn hit_status(name: &str, entry: &Entry, now: u64) -> HeaderValue {
    const SLOTS: usize = 16;
    thread_local! {
        static RECENT: RefCell<[(i64, Option<HeaderValue>); SLOTS]> =
            RefCell::new(std::array::from_fn(|_| (0, None)));
    }
    let ttl = seconds_between(now, entry.fresh_until_micros());
    let slot = ttl.rem_euclid(SLOTS as i64) as usize;
    // The value is `<name>; hit; ttl=<ttl>`: same TTL and same name (the
    // name followed by `;`) means the same bytes.
    let is_for = |value: &HeaderValue| {
        let bytes = value.as_bytes();
        bytes.starts_with(name.as_bytes()) && bytes.get(name.len()) == Some(&b';')
    };
    let cached = RECENT.with(|recent| match &recent.borrow()[slot] {
        (t, Some(value)) if *t == ttl && is_for(value) => Some(value.clone()),
        _ => None,
    });
    if let Some(value) = cached {
        return value;
    }
    let value = CacheStatus::new(name).hit().ttl(ttl).finish();
    RECENT.with(|recent| recent.borrow_mut()[slot] = (ttl, Some(value.clone())));
    value
}

/// Answers a request from an entry: the stored status, headers and body, or
/// a 304 when `If-None-Match` matches, or no body for HEAD; plus `Age` and
/// `Cache-Status`.
pub(crate) fn from_entry<B>(
    entry: &Entry,
    request: &HeaderMap,
    head_only: bool,
    now: u64,
    cache_status: HeaderValue,
) -> Response<CacheBody<B>> {
    // Preconditions only apply to 2xx responses (RFC 9110 §13.2.1).
    let not_modified = entry.status.is_success() && if_none_match_hits(request, &entry.headers);
    let (status, mut headers, body) = if not_modified {
        let mut headers = HeaderMap::new();
        for name in NOT_MODIFIED_HEADERS {
            for value in entry.headers.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
        (StatusCode::NOT_MODIFIED, headers, CacheBody::empty())
    } else {
        let mut headers = entry.headers.clone();
        let body = if head_only {
            // Without the body, the server would derive `Content-Length: 0`
            // from the empty body; a HEAD answer must describe the GET's.
            if !headers.contains_key(CONTENT_LENGTH) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
            }
            CacheBody::empty()
        } else {
            CacheBody::full(entry.body.clone())
        };
        (entry.status, headers, body)
    };
    let age = now.saturating_sub(entry.stored_at_micros) / 1_000_000;
    headers.insert(AGE, age_value(age));
    // Stored entries keep a slot for our Cache-Status (see `with_slots`):
    // filling it in place does not grow the cloned map. An origin that sent
    // its own Cache-Status keeps it, and ours is appended after it.
    if headers.get(CACHE_STATUS) == Some(&SLOT) {
        headers.insert(CACHE_STATUS, cache_status);
    } else {
        headers.append(CACHE_STATUS, cache_status);
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Adds our `Cache-Status` to a response from the origin.
pub(crate) fn with_status<B>(mut response: Response<B>, cache_status: HeaderValue) -> Response<B> {
    response.headers_mut().append(CACHE_STATUS, cache_status);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_status_values_are_shared_only_between_equal_names_and_ttls() {
        let entry = |ttl: u64| Entry {
            route: "r".into(),
            key: "k".into(),
            identity: None,
            status: http::StatusCode::OK,
            headers: HeaderMap::new(),
            body: bytes::Bytes::new(),
            tags: Box::new([]),
            vary: Box::new([]),
            fill_stamp: crate::Stamp(0),
            stored_at_micros: 0,
            ttl: std::time::Duration::from_secs(ttl),
            stale_while_revalidate: std::time::Duration::ZERO,
            stale_if_error: std::time::Duration::ZERO,
        };
        assert_eq!(hit_status("a", &entry(5), 0), "a; hit; ttl=5");
        assert_eq!(hit_status("a", &entry(5), 0), "a; hit; ttl=5");
        assert_eq!(hit_status("a-b", &entry(5), 0), "a-b; hit; ttl=5");
        assert_eq!(hit_status("a", &entry(5), 0), "a; hit; ttl=5");
        assert_eq!(hit_status("a", &entry(21), 0), "a; hit; ttl=21");
        assert_eq!(hit_status("a", &entry(5), 0), "a; hit; ttl=5");
    }

    #[test]
    fn ages_from_the_table_and_beyond() {
        assert_eq!(age_value(0), "0");
        assert_eq!(age_value(59), "59");
        assert_eq!(age_value(3599), "3599");
        assert_eq!(age_value(3600), "3600");
        assert_eq!(age_value(u64::MAX), u64::MAX.to_string().as_str());
    }

    #[test]
    fn slots_are_added_once_and_origin_status_is_kept() {
        let mut origin = HeaderMap::new();
        origin.append("x", HeaderValue::from_static("1"));
        let stored = with_slots(&origin);
        assert_eq!(stored.len(), 3);
        assert_eq!(stored.get(CACHE_STATUS), Some(&SLOT));
        origin.insert(CACHE_STATUS, HeaderValue::from_static("inner; hit"));
        assert_eq!(with_slots(&origin).get(CACHE_STATUS).unwrap(), "inner; hit");
    }
}
