//! What a request allows the cache to do, read from its method and headers
//! alone (RFC 9111 §3, §5.2.1; RFC 9110 §9.2.1).

use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, PRAGMA};
use http::{HeaderMap, Method};

use super::cache_control::CacheControl;
use super::cache_status::BypassReason;

/// Why the request must go to the origin without the cache being consulted,
/// or `None` if it may be looked up. Only GET and HEAD are looked up; a
/// request with credentials only on a route whose key names the identity
/// (`per_user`), since a shared entry must never answer for a credential it
/// did not see.
#[inline]
pub fn bypass_reason(method: &Method, headers: &HeaderMap, per_user: bool) -> Option<BypassReason> {
    if method != Method::GET && method != Method::HEAD {
        return Some(BypassReason::Method);
    }
    if !per_user {
        if headers.contains_key(AUTHORIZATION) {
            return Some(BypassReason::Authorization);
        }
        if headers.contains_key(COOKIE) {
            return Some(BypassReason::Cookie);
        }
    }
    None
}

/// Whether the client asked for a response from the origin
/// (`Cache-Control: no-cache` or `no-store`, or `Pragma: no-cache`).
pub fn wants_origin(headers: &HeaderMap) -> bool {
    let asks = headers.contains_key(CACHE_CONTROL) && {
        let cc = CacheControl::parse(headers);
        cc.no_cache || cc.no_store
    };
    asks || headers
        .get(PRAGMA)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
}

/// Whether the request carries cache directives at all (`Cache-Control`
/// or `Pragma`): the cheap test before [`directives`].
#[inline]
pub fn has_directives(headers: &HeaderMap) -> bool {
    headers.contains_key(CACHE_CONTROL) || headers.contains_key(PRAGMA)
}

/// The request's cache directives (RFC 9111 §5.2.1), with `Pragma:
/// no-cache` read as `no-cache` when there is no `Cache-Control` (§5.4).
pub fn directives(headers: &HeaderMap) -> CacheControl {
    let mut cc = CacheControl::parse(headers);
    if !headers.contains_key(CACHE_CONTROL) {
        cc.no_cache = headers
            .get(PRAGMA)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
    }
    cc
}

/// Whether the client asked that nothing of this exchange be stored
/// (`Cache-Control: no-store`).
pub fn forbids_storing(headers: &HeaderMap) -> bool {
    headers.contains_key(CACHE_CONTROL) && CacheControl::parse(headers).no_store
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_get_and_head_without_credentials_are_looked_up() {
        let none = HeaderMap::new();
        assert_eq!(bypass_reason(&Method::GET, &none, false), None);
        assert_eq!(bypass_reason(&Method::HEAD, &none, false), None);
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert_eq!(
                bypass_reason(&method, &none, true),
                Some(BypassReason::Method)
            );
        }
        let auth = headers(&[("authorization", "Bearer x")]);
        let cookie = headers(&[("cookie", "a=b")]);
        assert_eq!(
            bypass_reason(&Method::GET, &auth, false),
            Some(BypassReason::Authorization)
        );
        assert_eq!(
            bypass_reason(&Method::GET, &cookie, false),
            Some(BypassReason::Cookie)
        );
        assert_eq!(bypass_reason(&Method::GET, &auth, true), None);
        assert_eq!(bypass_reason(&Method::GET, &cookie, true), None);
    }

    #[test]
    fn pragma_counts_only_without_cache_control() {
        assert!(directives(&headers(&[("pragma", "no-cache")])).no_cache);
        assert!(
            !directives(&headers(&[
                ("pragma", "no-cache"),
                ("cache-control", "max-age=5")
            ]))
            .no_cache
        );
        assert!(has_directives(&headers(&[("pragma", "x")])));
        assert!(!has_directives(&HeaderMap::new()));
    }

    #[test]
    fn client_directives() {
        assert!(!wants_origin(&HeaderMap::new()));
        assert!(wants_origin(&headers(&[("cache-control", "no-cache")])));
        assert!(wants_origin(&headers(&[("cache-control", "no-store")])));
        assert!(wants_origin(&headers(&[("pragma", "No-Cache")])));
        assert!(!wants_origin(&headers(&[("cache-control", "max-age=5")])));
        assert!(forbids_storing(&headers(&[("cache-control", "no-store")])));
        assert!(!forbids_storing(&headers(&[("cache-control", "no-cache")])));
        assert!(!forbids_storing(&HeaderMap::new()));
    }
}
