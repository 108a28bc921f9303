//! Whether a response may be stored, and for how long.

use std::time::Duration;

use http::header::SET_COOKIE;
use http::response::Parts;
use http::StatusCode;

use super::cache_control::CacheControl;
use super::cache_status::NotStoredReason;
use super::vary::{Vary, MAX_VARY_HEADERS};

/// The route options that decide storability.
#[derive(Debug, Clone)]
pub struct StoreRules {
    /// Statuses the route stores.
    pub statuses: Vec<StatusCode>,
    /// The route names the identity in its key, so `private` may be stored.
    pub per_user: bool,
    /// The route's TTL.
    pub ttl: Duration,
    /// The route's stale-while-revalidate window.
    pub stale_while_revalidate: Duration,
    /// The route's stale-if-error window.
    pub stale_if_error: Duration,
    /// Let the response's `Cache-Control` shorten the TTL and set stale windows.
    pub respect_response_ttl: bool,
    /// Largest body stored.
    pub max_body_bytes: usize,
}

/// How long a stored response stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Fresh for this long.
    pub ttl: Duration,
    /// Then servable while one refresh runs, for this long.
    pub stale_while_revalidate: Duration,
    /// Then servable when the origin fails, for this long.
    pub stale_if_error: Duration,
}

/// Decides from the status and headers (the body is checked as it streams).
/// Returns the freshness and the response's `Vary`.
pub fn decide(rules: &StoreRules, head: &Parts) -> Result<(Freshness, Vary), NotStoredReason> {
    if !rules.statuses.contains(&head.status) {
        return Err(NotStoredReason::Status);
    }
    let cc = CacheControl::parse(&head.headers);
    if cc.no_store {
        return Err(NotStoredReason::NoStore);
    }
    if cc.no_cache {
        return Err(NotStoredReason::NoCache);
    }
    if cc.private && !rules.per_user {
        return Err(NotStoredReason::Private);
    }
    if head.headers.contains_key(SET_COOKIE) {
        return Err(NotStoredReason::SetCookie);
    }
    let vary = Vary::parse(&head.headers);
    match &vary {
        Vary::Any => return Err(NotStoredReason::VaryAny),
        Vary::Headers(names) if names.len() > MAX_VARY_HEADERS => {
            return Err(NotStoredReason::VaryTooWide)
        }
        _ => {}
    }
    if let Some(len) = content_length(&head.headers) {
        if len > rules.max_body_bytes as u64 {
            return Err(NotStoredReason::TooLarge);
        }
    }
    let mut freshness = Freshness {
        ttl: rules.ttl,
        stale_while_revalidate: rules.stale_while_revalidate,
        stale_if_error: rules.stale_if_error,
    };
    if rules.respect_response_ttl {
        // The response may shorten, never lengthen, what the route allows.
        if let Some(max_age) = cc.shared_max_age() {
            freshness.ttl = freshness.ttl.min(max_age);
        }
        if let Some(swr) = cc.stale_while_revalidate {
            freshness.stale_while_revalidate = swr;
        }
        if let Some(sie) = cc.stale_if_error {
            freshness.stale_if_error = sie;
        }
    }
    // The origin forbids stale answers: `must-revalidate`, `proxy-revalidate`,
    // or `s-maxage` (which implies proxy-revalidate, RFC 9111 §5.2.2.10)
    // unless the response itself grants stale windows.
    let grants_stale = cc.stale_while_revalidate.is_some() || cc.stale_if_error.is_some();
    if cc.must_revalidate || cc.proxy_revalidate || (cc.s_maxage.is_some() && !grants_stale) {
        freshness.stale_while_revalidate = Duration::ZERO;
        freshness.stale_if_error = Duration::ZERO;
    }
    if freshness.ttl.is_zero() {
        return Err(NotStoredReason::ZeroTtl);
    }
    Ok((freshness, vary))
}

/// The `Content-Length` a response announces, if it is a valid number.
pub(crate) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Response};

    fn rules() -> StoreRules {
        StoreRules {
            statuses: vec![StatusCode::OK],
            per_user: false,
            ttl: Duration::from_secs(300),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            respect_response_ttl: true,
            max_body_bytes: 1024,
        }
    }

    fn head(status: u16, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Response::builder().status(status);
        for (n, v) in headers {
            builder = builder.header(*n, HeaderValue::from_str(v).unwrap());
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn stores_plain_200_for_route_ttl() {
        let (fresh, vary) = decide(&rules(), &head(200, &[])).unwrap();
        assert_eq!(fresh.ttl, Duration::from_secs(300));
        assert_eq!(vary, Vary::None);
    }

    #[test]
    fn refuses_what_must_not_be_shared() {
        let r = rules();
        assert_eq!(
            decide(&r, &head(404, &[])).unwrap_err(),
            NotStoredReason::Status
        );
        assert_eq!(
            decide(&r, &head(200, &[("cache-control", "no-store")])).unwrap_err(),
            NotStoredReason::NoStore
        );
        assert_eq!(
            decide(&r, &head(200, &[("cache-control", "no-cache")])).unwrap_err(),
            NotStoredReason::NoCache
        );
        assert_eq!(
            decide(&r, &head(200, &[("cache-control", "private")])).unwrap_err(),
            NotStoredReason::Private
        );
        assert_eq!(
            decide(&r, &head(200, &[("set-cookie", "a=b")])).unwrap_err(),
            NotStoredReason::SetCookie
        );
        assert_eq!(
            decide(&r, &head(200, &[("vary", "*")])).unwrap_err(),
            NotStoredReason::VaryAny
        );
        assert_eq!(
            decide(&r, &head(200, &[("content-length", "4096")])).unwrap_err(),
            NotStoredReason::TooLarge
        );
        assert_eq!(
            decide(&r, &head(200, &[("cache-control", "max-age=0")])).unwrap_err(),
            NotStoredReason::ZeroTtl
        );
    }

    /// The limits are inclusive: a body of exactly `max_body_bytes` and a
    /// `Vary` of exactly `MAX_VARY_HEADERS` names are stored.
    #[test]
    fn limits_refuse_only_what_is_over_them() {
        let r = rules();
        assert!(decide(&r, &head(200, &[("content-length", "1024")])).is_ok());
        assert_eq!(
            decide(&r, &head(200, &[("content-length", "1025")])).unwrap_err(),
            NotStoredReason::TooLarge
        );
        let names = |n: usize| {
            (0..n)
                .map(|i| format!("x-h{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let widest = names(MAX_VARY_HEADERS);
        assert!(decide(&r, &head(200, &[("vary", &widest)])).is_ok());
        let wider = names(MAX_VARY_HEADERS + 1);
        assert_eq!(
            decide(&r, &head(200, &[("vary", &wider)])).unwrap_err(),
            NotStoredReason::VaryTooWide
        );
    }

    /// Without a revalidation directive the route's stale windows stand.
    #[test]
    fn the_route_stale_windows_stand_unless_forbidden() {
        let r = StoreRules {
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(40),
            ..rules()
        };
        for cc in ["max-age=60", "public"] {
            let (fresh, _) = decide(&r, &head(200, &[("cache-control", cc)])).unwrap();
            assert_eq!(
                fresh.stale_while_revalidate,
                Duration::from_secs(30),
                "{cc}"
            );
            assert_eq!(fresh.stale_if_error, Duration::from_secs(40), "{cc}");
        }
    }

    #[test]
    fn revalidation_directives_forbid_stale() {
        let r = StoreRules {
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(30),
            ..rules()
        };
        for cc in [
            "max-age=60, must-revalidate",
            "proxy-revalidate",
            "s-maxage=60",
        ] {
            let (fresh, _) = decide(&r, &head(200, &[("cache-control", cc)])).unwrap();
            assert_eq!(fresh.stale_while_revalidate, Duration::ZERO, "{cc}");
            assert_eq!(fresh.stale_if_error, Duration::ZERO, "{cc}");
        }
        let granted = head(200, &[("cache-control", "s-maxage=60, stale-if-error=10")]);
        assert_eq!(
            decide(&r, &granted).unwrap().0.stale_if_error,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn private_is_stored_on_per_user_routes() {
        let r = StoreRules {
            per_user: true,
            ..rules()
        };
        assert!(decide(&r, &head(200, &[("cache-control", "private, max-age=60")])).is_ok());
    }

    #[test]
    fn response_caps_ttl_and_sets_stale_windows() {
        let h = head(
            200,
            &[(
                "cache-control",
                "max-age=600, s-maxage=30, stale-while-revalidate=7, stale-if-error=9",
            )],
        );
        let (fresh, _) = decide(&rules(), &h).unwrap();
        assert_eq!(fresh.ttl, Duration::from_secs(30));
        assert_eq!(fresh.stale_while_revalidate, Duration::from_secs(7));
        assert_eq!(fresh.stale_if_error, Duration::from_secs(9));
        let long = head(200, &[("cache-control", "max-age=100000")]);
        assert_eq!(
            decide(&rules(), &long).unwrap().0.ttl,
            Duration::from_secs(300)
        );
        let ignore = StoreRules {
            respect_response_ttl: false,
            ..rules()
        };
        assert_eq!(decide(&ignore, &h).unwrap().0.ttl, Duration::from_secs(300));
    }
}
