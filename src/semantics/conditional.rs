//! Conditional requests: answered from the cache (`If-None-Match`, RFC 9110
//! §13.1.2, against a stored `ETag`), and made by it to revalidate a stored
//! response (RFC 9111 §4.3), whose headers a 304 then updates (§3.2).

use http::header::{
    AGE, CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_LOCATION,
    CONTENT_RANGE, DATE, ETAG, EXPIRES, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED,
    PROXY_AUTHENTICATE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VARY,
};
use http::{HeaderMap, HeaderName};

/// Whether the request's `If-None-Match` matches the stored response's
/// `ETag` by weak comparison, so a 304 may be sent instead of the body.
pub fn if_none_match_hits(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let mut conditions = request.get_all(IF_NONE_MATCH).iter().peekable();
    if conditions.peek().is_none() {
        return false;
    }
    let Some(etag) = stored.get(ETAG).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let etag = opaque(etag);
    conditions
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || opaque(candidate) == etag)
}

/// The opaque part of an entity tag, so `W/"x"` and `"x"` compare equal.
fn opaque(tag: &str) -> &str {
    tag.trim().strip_prefix("W/").unwrap_or(tag.trim())
}

/// Headers a 304 carries from the stored response (RFC 9110 §15.4.5).
pub const NOT_MODIFIED_HEADERS: [HeaderName; 6] =
    [CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, VARY];

/// Turns a request into the conditional request that revalidates a stored
/// response (RFC 9111 §4.3.1): the client's own validators give way to the
/// stored response's `ETag` (`If-None-Match`) and `Last-Modified`
/// (`If-Modified-Since`). The client's conditions are answered from the
/// stored response afterwards.
pub fn make_conditional(request: &mut HeaderMap, stored: &HeaderMap) {
    request.remove(IF_NONE_MATCH);
    request.remove(IF_MODIFIED_SINCE);
    request.remove(IF_RANGE);
    if let Some(etag) = stored.get(ETAG) {
        request.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = stored.get(LAST_MODIFIED) {
        request.insert(IF_MODIFIED_SINCE, modified.clone());
    }
}

/// Fields a 304 never updates in a stored response (RFC 9111 §3.2): the
/// length and coding of the stored body it does not carry, hop-by-hop
/// fields, and the `Age` and `Cache-Status` that the cache writes itself.
const NOT_UPDATED: [HeaderName; 11] = [
    CONTENT_LENGTH,
    CONTENT_ENCODING,
    CONTENT_RANGE,
    TRANSFER_ENCODING,
    CONNECTION,
    TE,
    TRAILER,
    UPGRADE,
    PROXY_AUTHENTICATE,
    AGE,
    HeaderName::from_static("cache-status"),
];

/// The stored response's headers updated by a 304 (RFC 9111 §3.2, §4.3.4):
/// each field the 304 carries replaces the stored field of that name,
/// except the length and coding of the body it does not carry, hop-by-hop
/// fields, and `Age` and `Cache-Status`; the others are kept.
pub fn updated_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut updated = stored.clone();
    let updates = |name: &HeaderName| !NOT_UPDATED.contains(name);
    for name in not_modified.keys().filter(|name| updates(name)) {
        updated.remove(name);
    }
    for (name, value) in not_modified.iter().filter(|(name, _)| updates(name)) {
        updated.append(name.clone(), value.clone());
    }
    updated
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(name: HeaderName, values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn conditional_requests_carry_the_stored_validators_only() {
        let mut request = map(IF_NONE_MATCH, &["\"client\""]);
        request.insert(
            IF_MODIFIED_SINCE,
            "Mon, 01 Jan 2024 00:00:00 GMT".parse().unwrap(),
        );
        request.insert(IF_RANGE, "\"client\"".parse().unwrap());
        let mut stored = map(ETAG, &["W/\"v1\""]);
        make_conditional(&mut request, &stored);
        assert_eq!(request.get(IF_NONE_MATCH).unwrap(), "W/\"v1\"");
        assert!(!request.contains_key(IF_MODIFIED_SINCE));
        assert!(!request.contains_key(IF_RANGE));
        stored.insert(
            LAST_MODIFIED,
            "Tue, 02 Jan 2024 00:00:00 GMT".parse().unwrap(),
        );
        make_conditional(&mut request, &stored);
        assert_eq!(
            request.get(IF_MODIFIED_SINCE).unwrap(),
            "Tue, 02 Jan 2024 00:00:00 GMT"
        );
    }

    #[test]
    fn a_304_updates_the_stored_fields_it_carries() {
        let mut stored = HeaderMap::new();
        for (n, v) in [
            ("content-length", "5"),
            ("content-type", "text/plain"),
            ("cache-control", "max-age=1"),
            ("x-kept", "a"),
            ("x-multi", "1"),
            ("x-multi", "2"),
            ("age", "0"),
        ] {
            stored.append(n, v.parse().unwrap());
        }
        let mut not_modified = HeaderMap::new();
        for (n, v) in [
            ("content-length", "0"),
            ("cache-control", "max-age=60"),
            ("x-multi", "3"),
            ("x-new", "n"),
            ("age", "30"),
            ("connection", "close"),
        ] {
            not_modified.append(n, v.parse().unwrap());
        }
        let updated = updated_headers(&stored, &not_modified);
        let all = |name: &str| -> Vec<String> {
            updated
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(all("content-length"), ["5"]);
        assert_eq!(all("content-type"), ["text/plain"]);
        assert_eq!(all("cache-control"), ["max-age=60"]);
        assert_eq!(all("x-kept"), ["a"]);
        assert_eq!(all("x-multi"), ["3"]);
        assert_eq!(all("x-new"), ["n"]);
        assert_eq!(all("age"), ["0"]);
        assert!(all("connection").is_empty());
    }

    #[test]
    fn weak_comparison_lists_and_star() {
        let stored = map(ETAG, &["\"v1\""]);
        assert!(if_none_match_hits(
            &map(IF_NONE_MATCH, &["\"v1\""]),
            &stored
        ));
        assert!(if_none_match_hits(
            &map(IF_NONE_MATCH, &["W/\"v1\""]),
            &stored
        ));
        assert!(if_none_match_hits(
            &map(IF_NONE_MATCH, &["\"a\", \"v1\""]),
            &stored
        ));
        assert!(if_none_match_hits(
            &map(IF_NONE_MATCH, &["\"a\"", "\"v1\""]),
            &stored
        ));
        assert!(if_none_match_hits(&map(IF_NONE_MATCH, &["*"]), &stored));
        assert!(!if_none_match_hits(
            &map(IF_NONE_MATCH, &["\"v2\""]),
            &stored
        ));
        assert!(!if_none_match_hits(&HeaderMap::new(), &stored));
        assert!(!if_none_match_hits(
            &map(IF_NONE_MATCH, &["*"]),
            &HeaderMap::new()
        ));
    }
}
