//! Conditional requests answered from the cache: `If-None-Match` (RFC 9110
//! §13.1.2) against a stored `ETag`.

use http::header::{CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, IF_NONE_MATCH, VARY};
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
