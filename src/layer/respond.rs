//! Building responses from entries and decorating passed-through ones.

use http::header::{AGE, CONTENT_LENGTH};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::body::CacheBody;
use super::header_values::age_value;
use crate::entry::{own_value, Entry};
use crate::semantics::conditional::{if_none_match_hits, NOT_MODIFIED_HEADERS};

/// The `Cache-Status` header (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Placeholder value of the `Cache-Status` slot in stored headers.
pub(crate) const SLOT: HeaderValue = HeaderValue::from_static("-");

/// The headers to store for a response: copies of the origin's (see
/// [`own_value`]), plus slots for `Age` and `Cache-Status` at the end, so
/// answering a hit overwrites them in place instead of growing the cloned
/// map (an allocation per hit).
pub(crate) fn with_slots(headers: &HeaderMap) -> HeaderMap {
    // Room for the two slots and a `Content-Length` added at the end of the
    // fill, so neither the stored map nor a hit's clone ever regrows.
    let mut stored = HeaderMap::with_capacity(headers.len() + 3);
    for (name, value) in headers {
        stored.append(name.clone(), own_value(value));
    }
    if !stored.contains_key(AGE) {
        stored.insert(AGE, HeaderValue::from_static("0"));
    }
    if !stored.contains_key(CACHE_STATUS) {
        stored.insert(CACHE_STATUS, SLOT);
    }
    stored
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

/// The 504 of a request that asked for a stored response only
/// (`only-if-cached`, RFC 9111 §5.2.1.7) when none could answer.
pub(crate) fn only_if_cached<B>(cache_status: HeaderValue) -> Response<CacheBody<B>> {
    let mut response = Response::new(CacheBody::empty());
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response.headers_mut().insert(CACHE_STATUS, cache_status);
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
    use bytes::Bytes;
    use http_body::Body as _;

    /// A stale answer's `ttl` is negative, in whole seconds rounded up, and
    /// never zero (which would read as still fresh).
    #[test]
    fn stale_ttls_count_whole_seconds_past_freshness() {
        assert_eq!(stale_ttl(0), -1);
        assert_eq!(stale_ttl(1), -1);
        assert_eq!(stale_ttl(1_000_000), -1);
        assert_eq!(stale_ttl(1_000_001), -2);
        assert_eq!(stale_ttl(5_000_000), -5);
    }

    /// A HEAD answered from a stored GET announces the stored body's
    /// length, once, and sends no body.
    #[test]
    fn head_answers_announce_the_stored_length() {
        let lengths = |entry: &Entry| {
            let response = from_entry::<axum_core::body::Body>(
                entry,
                &HeaderMap::new(),
                true,
                0,
                HeaderValue::from_static("c; hit"),
            );
            assert!(response.body().is_end_stream());
            let lengths: Vec<_> = response
                .headers()
                .get_all(CONTENT_LENGTH)
                .iter()
                .cloned()
                .collect();
            lengths
        };
        let entry = Entry {
            body: Bytes::from_static(b"hello"),
            ..Entry::for_test()
        };
        assert_eq!(lengths(&entry), ["5"]);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(lengths(&Entry { headers, ..entry }), ["5"]);
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
