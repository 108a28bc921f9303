//! Building responses from entries and decorating passed-through ones.

use http::header::{AGE, CONTENT_LENGTH, CONTENT_RANGE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::body::CacheBody;
use super::header_values::age_value;
use crate::entry::{own_value, Entry};
use crate::semantics::conditional::{if_none_match_hits, NOT_MODIFIED_HEADERS};
use crate::semantics::range::{self, RangeAnswer};

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
/// a 304 when `If-None-Match` matches, or no body for HEAD, or part of a
/// stored 200 for a `Range` request (206, or 416); plus `Age` and
/// `Cache-Status`.
pub(crate) fn from_entry<B>(
    entry: &Entry,
    request: &HeaderMap,
    head_only: bool,
    now: u64,
    cache_status: HeaderValue,
    withheld: &[HeaderName],
) -> Response<CacheBody<B>> {
    // Preconditions only apply to 2xx responses (RFC 9110 §13.2.1), and
    // If-None-Match is evaluated before Range (§13.2.2).
    let not_modified = entry.status.is_success() && if_none_match_hits(request, &entry.headers);
    let (status, mut headers, body) = if not_modified {
        not_modified_parts(entry)
    } else if head_only {
        head_parts(entry)
    } else {
        get_parts(entry, request)
    };
    // Fields kept with the entry for this cache alone (see
    // `Entry::withholds`) never leave it.
    if entry.withholds {
        for name in withheld {
            headers.remove(name);
        }
    }
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

/// A 304: the stored headers a 304 carries, no body.
fn not_modified_parts<B>(entry: &Entry) -> (StatusCode, HeaderMap, CacheBody<B>) {
    let mut headers = HeaderMap::new();
    for name in NOT_MODIFIED_HEADERS {
        for value in entry.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    (StatusCode::NOT_MODIFIED, headers, CacheBody::empty())
}

/// A HEAD answer: the stored status and headers, no body.
fn head_parts<B>(entry: &Entry) -> (StatusCode, HeaderMap, CacheBody<B>) {
    let mut headers = entry.headers.clone();
    // Without the body, the server would derive `Content-Length: 0` from
    // the empty body; a HEAD answer must describe the GET's.
    if !headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
    }
    (entry.status, headers, CacheBody::empty())
}

/// A GET answer: the stored response, or the part of a stored 200 its
/// `Range` asks for. Ranges apply to a 200 only (RFC 9110 §14.2), so other
/// statuses skip even the `Range` lookup.
fn get_parts<B>(entry: &Entry, request: &HeaderMap) -> (StatusCode, HeaderMap, CacheBody<B>) {
    let range = if entry.status == StatusCode::OK {
        range::answer(request, &entry.headers, entry.body.len() as u64)
    } else {
        RangeAnswer::Full
    };
    match range {
        RangeAnswer::Full => (
            entry.status,
            entry.headers.clone(),
            CacheBody::full(entry.body.clone()),
        ),
        RangeAnswer::Partial {
            start,
            end_inclusive,
        } => partial_parts(entry, start, end_inclusive),
        RangeAnswer::Unsatisfiable => unsatisfiable_parts(entry),
    }
}

/// A 206: the stored headers (a 206 carries the 200's validators and
/// caching headers, RFC 9110 §15.3.7) with the part's length and
/// `Content-Range`, and a slice of the stored body (no copy).
fn partial_parts<B>(
    entry: &Entry,
    start: u64,
    end_inclusive: u64,
) -> (StatusCode, HeaderMap, CacheBody<B>) {
    let len = entry.body.len() as u64;
    // Both offsets lie within the body, whose length is a `usize`.
    let body = entry.body.slice(start as usize..=end_inclusive as usize);
    let mut headers = entry.headers.clone();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(
        CONTENT_RANGE,
        range::content_range(start, end_inclusive, len),
    );
    (StatusCode::PARTIAL_CONTENT, headers, CacheBody::full(body))
}

/// A 416 with the current length in `Content-Range` and nothing else from
/// the stored response: its `Content-Type` and `Content-Encoding` would
/// describe a body that is not sent, and its `Cache-Control` would let a
/// downstream cache keep the 416 as if it were the resource.
fn unsatisfiable_parts<B>(entry: &Entry) -> (StatusCode, HeaderMap, CacheBody<B>) {
    // Room for `Age` and `Cache-Status` too.
    let mut headers = HeaderMap::with_capacity(4);
    headers.insert(
        CONTENT_RANGE,
        range::unsatisfied_range(entry.body.len() as u64),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    (
        StatusCode::RANGE_NOT_SATISFIABLE,
        headers,
        CacheBody::empty(),
    )
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
    use futures_util::FutureExt as _;
    use http_body::Body as _;
    use http_body_util::BodyExt as _;

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
                &[],
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

    fn ranged(entry: &Entry, range: &'static str) -> Response<CacheBody<axum_core::body::Body>> {
        let mut request = HeaderMap::new();
        request.insert(http::header::RANGE, HeaderValue::from_static(range));
        from_entry(
            entry,
            &request,
            false,
            0,
            HeaderValue::from_static("c; hit"),
            &[],
        )
    }

    /// A 206 sends a slice of the stored body itself, not a copy of it.
    #[test]
    fn partial_answers_share_the_stored_bytes() {
        let entry = Entry {
            body: Bytes::from_static(b"0123456789"),
            headers: with_slots(&HeaderMap::new()),
            ..Entry::for_test()
        };
        let response = ranged(&entry, "bytes=2-4");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(response.headers()[CONTENT_RANGE], "bytes 2-4/10");
        assert_eq!(response.headers()[CONTENT_LENGTH], "3");
        assert_eq!(response.headers()[CACHE_STATUS], "c; hit");
        let frame = response
            .into_body()
            .frame()
            .now_or_never()
            .expect("a full body is ready")
            .expect("one frame")
            .expect("no error");
        let data = frame.into_data().expect("a data frame");
        assert_eq!(&data[..], b"234");
        assert_eq!(data.as_ptr(), entry.body[2..].as_ptr());
    }

    /// A 416 says the current length and carries nothing that describes
    /// the stored body.
    #[test]
    fn unsatisfiable_answers_carry_only_the_length() {
        let mut stored = HeaderMap::new();
        stored.insert("content-type", HeaderValue::from_static("text/plain"));
        stored.insert("content-length", HeaderValue::from_static("10"));
        let entry = Entry {
            body: Bytes::from_static(b"0123456789"),
            headers: with_slots(&stored),
            ..Entry::for_test()
        };
        let response = ranged(&entry, "bytes=10-");
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert!(response.body().is_end_stream());
        let mut names: Vec<_> = response.headers().keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["age", "cache-status", "content-length", "content-range"]
        );
        assert_eq!(response.headers()[CONTENT_RANGE], "bytes */10");
        assert_eq!(response.headers()[CONTENT_LENGTH], "0");
    }

    /// Only a stored 200 is ranged.
    #[test]
    fn other_statuses_are_answered_whole() {
        let entry = Entry {
            status: StatusCode::NOT_FOUND,
            body: Bytes::from_static(b"0123456789"),
            ..Entry::for_test()
        };
        let response = ranged(&entry, "bytes=2-4");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(!response.headers().contains_key(CONTENT_RANGE));
    }

    /// Fields an entry withholds are removed from its answers, and only
    /// from those of entries that hold some.
    #[test]
    fn withheld_fields_never_leave() {
        let own = HeaderName::from_static("x-own");
        let mut headers = HeaderMap::new();
        headers.insert(&own, HeaderValue::from_static("max-age=60"));
        let answer = |withholds| {
            let entry = Entry {
                headers: headers.clone(),
                withholds,
                ..Entry::for_test()
            };
            let status = HeaderValue::from_static("c; hit");
            let response = from_entry::<axum_core::body::Body>(
                &entry,
                &HeaderMap::new(),
                false,
                0,
                status,
                std::slice::from_ref(&own),
            );
            response.headers().contains_key(&own)
        };
        assert!(!answer(true));
        assert!(answer(false));
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
