//! Whether a response may be stored, and for how long.

use std::time::Duration;

use http::header::{ETAG, LAST_MODIFIED, SET_COOKIE};
use http::response::Parts;
use http::{HeaderMap, HeaderName, StatusCode};

use super::cache_control::CacheControl;
use super::cache_status::NotStoredReason;
use super::freshness::{
    explicit_lifetime, heuristic_lifetime, initial_age, upstream_age, Exchange, Heuristic,
};
use super::vary::{Vary, MAX_VARY_HEADERS};

/// Where a route's freshness comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Freshness {
    /// The route declares it: responses are stored for the route's TTL,
    /// which the response's `Cache-Control`, `Expires` and `Age` can only
    /// shorten. For an application's own routes. The default.
    #[default]
    Route,
    /// The origin's headers declare it, and the route is a shared cache as
    /// RFC 9111 defines it: only responses with a lifetime of their own
    /// (explicit or heuristic) are stored, stale ones are revalidated with
    /// conditional requests, request directives are followed, unsafe
    /// requests invalidate their target, and targeted fields such as
    /// `CDN-Cache-Control` (RFC 9213) take precedence. For a cache in
    /// front of another service; see the [layer docs](crate::layer#origin-mode).
    Origin,
}

/// The route options that decide storability.
#[derive(Debug, Clone)]
pub struct StoreRules {
    /// Statuses the route stores.
    pub statuses: Vec<StatusCode>,
    /// The route names the identity in its key, so `private` may be stored.
    pub per_user: bool,
    /// The route's TTL (in [`Freshness::Origin`], the lifetime given to a
    /// `public` response that names none and has no `Last-Modified`).
    pub ttl: Duration,
    /// The route's stale-while-revalidate window.
    pub stale_while_revalidate: Duration,
    /// The route's stale-if-error window.
    pub stale_if_error: Duration,
    /// Let the response's `Cache-Control`, `Expires` and `Age` shorten the
    /// TTL and set stale windows ([`Freshness::Route`] only).
    pub respect_response_ttl: bool,
    /// Largest body stored.
    pub max_body_bytes: usize,
    /// Where the freshness comes from.
    pub mode: Freshness,
    /// Heuristic freshness ([`Freshness::Origin`]).
    pub heuristic: Heuristic,
    /// The longest lifetime a response may claim ([`Freshness::Origin`]).
    pub max_ttl: Duration,
    /// How long an expired response with a validator is kept to be
    /// revalidated ([`Freshness::Origin`]).
    pub keep_for_validation: Duration,
    /// Fields that replace `Cache-Control` for this cache, first present
    /// first ([`Freshness::Origin`], RFC 9213).
    pub targeted: Vec<HeaderName>,
}

/// How long a stored response stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Fresh for this long after it was generated.
    pub ttl: Duration,
    /// How old it already was when it arrived (the corrected initial age),
    /// counted against `ttl`.
    pub age: Duration,
    /// Then servable while one refresh runs, for this long.
    pub stale_while_revalidate: Duration,
    /// Then servable when the origin fails, for this long.
    pub stale_if_error: Duration,
    /// Then kept for this long to be revalidated with a conditional request.
    pub validate_for: Duration,
    /// Never served stale without validation, whatever a client accepts.
    pub must_revalidate: bool,
}

/// What is known of the request a response answers.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// When it went to the origin and when the answer came.
    pub exchange: Exchange,
    /// It carried `Authorization` (RFC 9111 §3.5).
    pub authorization: bool,
}

/// Decides from the status and headers (the body is checked as it streams).
/// Returns the lifetime and the response's `Vary`.
pub fn decide(
    rules: &StoreRules,
    head: &Parts,
    asked: Asked,
) -> Result<(Lifetime, Vary), NotStoredReason> {
    if !rules.statuses.contains(&head.status) {
        return Err(NotStoredReason::Status);
    }
    let origin = rules.mode == Freshness::Origin;
    let cc = match origin {
        true => CacheControl::for_cache(&head.headers, &rules.targeted),
        false => CacheControl::parse(&head.headers),
    };
    if cc.no_store {
        return Err(NotStoredReason::NoStore);
    }
    let validator = has_validator(&head.headers);
    // `no-cache` may be stored only to be revalidated before each use.
    if cc.no_cache && !(origin && validator) {
        return Err(NotStoredReason::NoCache);
    }
    if cc.private && !rules.per_user {
        return Err(NotStoredReason::Private);
    }
    if head.headers.contains_key(SET_COOKIE) {
        return Err(NotStoredReason::SetCookie);
    }
    // §3.5: a shared cache stores an answer to a request with credentials
    // only when the origin said it may be shared. (It is still only served
    // to the same identity: such requests are cached on per-user routes.)
    if origin && asked.authorization && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NotStoredReason::Authorization);
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
    let follows_response = origin || rules.respect_response_ttl;
    let response_time = asked.exchange.response_time;
    let explicit = match follows_response {
        true => explicit_lifetime(&cc, &head.headers, response_time),
        false => None,
    };
    let ttl = if origin && cc.no_cache {
        // Stored only to be revalidated: never fresh.
        Duration::ZERO
    } else if origin {
        let heuristic =
            || heuristic_lifetime(head.status, &head.headers, response_time, rules.heuristic);
        let public = || cc.public.then_some(rules.ttl);
        let ttl = explicit.or_else(heuristic).or_else(public);
        ttl.ok_or(NotStoredReason::NoFreshness)?.min(rules.max_ttl)
    } else {
        // The response may shorten, never lengthen, what the route allows.
        explicit.map_or(rules.ttl, |lifetime| lifetime.min(rules.ttl))
    };
    // A route's own handler is the origin: only an `Age` it passes on
    // from further upstream makes its response old. (The time the handler
    // took, which §4.2.3 also counts, would keep a slow handler on a short
    // TTL from ever being stored.)
    let age = match (origin, rules.respect_response_ttl) {
        (true, _) => initial_age(&head.headers, asked.exchange),
        (false, true) => upstream_age(&head.headers),
        (false, false) => Duration::ZERO,
    };
    let mut lifetime = Lifetime {
        ttl,
        age,
        stale_while_revalidate: rules.stale_while_revalidate,
        stale_if_error: rules.stale_if_error,
        validate_for: Duration::ZERO,
        must_revalidate: false,
    };
    if follows_response {
        if let Some(swr) = cc.stale_while_revalidate {
            lifetime.stale_while_revalidate = swr;
        }
        if let Some(sie) = cc.stale_if_error {
            lifetime.stale_if_error = sie;
        }
    }
    // The origin forbids stale answers: `must-revalidate`, `proxy-revalidate`,
    // `no-cache`, or `s-maxage` (which implies proxy-revalidate, RFC 9111
    // §5.2.2.10) unless the response itself grants stale windows.
    let grants_stale = cc.stale_while_revalidate.is_some() || cc.stale_if_error.is_some();
    if cc.must_revalidate
        || cc.proxy_revalidate
        || (cc.no_cache && origin)
        || (cc.s_maxage.is_some() && !grants_stale)
    {
        lifetime.must_revalidate = true;
        lifetime.stale_while_revalidate = Duration::ZERO;
        lifetime.stale_if_error = Duration::ZERO;
    }
    if origin && validator {
        lifetime.validate_for = rules.keep_for_validation;
    }
    if lifetime.ttl <= lifetime.age && lifetime.validate_for.is_zero() {
        return Err(NotStoredReason::ZeroTtl);
    }
    Ok((lifetime, vary))
}

/// Whether a stored response can be revalidated: it has an `ETag` or a
/// `Last-Modified` to send back in a conditional request.
pub fn has_validator(headers: &HeaderMap) -> bool {
    headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED)
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

    const T: u64 = 1_700_000_000_000_000;

    fn rules() -> StoreRules {
        StoreRules {
            statuses: vec![StatusCode::OK],
            per_user: false,
            ttl: Duration::from_secs(300),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            respect_response_ttl: true,
            max_body_bytes: 1024,
            mode: Freshness::Route,
            heuristic: Heuristic::default(),
            max_ttl: Duration::from_secs(86_400),
            keep_for_validation: Duration::from_secs(3600),
            targeted: vec![HeaderName::from_static("cdn-cache-control")],
        }
    }

    fn origin() -> StoreRules {
        StoreRules {
            mode: Freshness::Origin,
            statuses: crate::semantics::freshness::HEURISTICALLY_CACHEABLE.to_vec(),
            ..rules()
        }
    }

    /// Decides for a response that arrived at `T`, as soon as it was asked.
    fn decide_at(rules: &StoreRules, head: &Parts) -> Result<(Lifetime, Vary), NotStoredReason> {
        let exchange = Exchange {
            request_time: T,
            response_time: T,
        };
        decide(
            rules,
            head,
            Asked {
                exchange,
                authorization: false,
            },
        )
    }

    fn date(at: u64) -> String {
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_micros(at))
    }

    const SECOND: u64 = 1_000_000;

    /// Route mode: a past or invalid `Expires` and an upstream `Age`
    /// shorten the route's TTL as `max-age` does.
    #[test]
    fn route_mode_expires_and_age_shorten_the_ttl() {
        let r = rules();
        let past = date(T - 10 * SECOND);
        for expires in [past.as_str(), "0", "soon"] {
            assert_eq!(
                decide_at(&r, &head(200, &[("expires", expires)])).unwrap_err(),
                NotStoredReason::ZeroTtl,
                "{expires}"
            );
        }
        let later = date(T + 100 * SECOND);
        let (life, _) = decide_at(&r, &head(200, &[("expires", &later)])).unwrap();
        assert_eq!(
            (life.ttl, life.age),
            (Duration::from_secs(100), Duration::ZERO)
        );
        let (life, _) = decide_at(&r, &head(200, &[("age", "100")])).unwrap();
        assert_eq!(
            (life.ttl, life.age),
            (Duration::from_secs(300), Duration::from_secs(100))
        );
        assert_eq!(
            decide_at(&r, &head(200, &[("age", "300")])).unwrap_err(),
            NotStoredReason::ZeroTtl
        );
        // Only an upstream `Age` ages it: not the time the handler took,
        // nor a `Date` it set (the route's handler is the origin).
        let slow = Asked {
            exchange: Exchange {
                request_time: T - 3 * SECOND,
                response_time: T,
            },
            authorization: false,
        };
        let dated = date(T - 100 * SECOND);
        let (life, _) = decide(&r, &head(200, &[("date", &dated)]), slow).unwrap();
        assert_eq!(life.age, Duration::ZERO);
        let (life, _) = decide(
            &origin(),
            &head(200, &[("date", &dated), ("cache-control", "max-age=600")]),
            slow,
        )
        .unwrap();
        assert_eq!(life.age, Duration::from_secs(100));
        let ignore = StoreRules {
            respect_response_ttl: false,
            ..rules()
        };
        let (life, _) =
            decide_at(&ignore, &head(200, &[("age", "100"), ("expires", "0")])).unwrap();
        assert_eq!(
            (life.ttl, life.age),
            (Duration::from_secs(300), Duration::ZERO)
        );
    }

    /// Origin mode stores only what has a lifetime: explicit, heuristic
    /// (a share of the `Last-Modified` age) or `public` (the route's TTL).
    #[test]
    fn origin_mode_needs_a_lifetime() {
        let r = origin();
        assert_eq!(
            decide_at(&r, &head(200, &[])).unwrap_err(),
            NotStoredReason::NoFreshness
        );
        let modified = date(T - 1000 * SECOND);
        let (life, _) = decide_at(&r, &head(200, &[("last-modified", &modified)])).unwrap();
        assert_eq!(life.ttl, Duration::from_secs(100));
        let (life, _) = decide_at(&r, &head(404, &[("last-modified", &modified)])).unwrap();
        assert_eq!(life.ttl, Duration::from_secs(100));
        let (life, _) = decide_at(&r, &head(200, &[("cache-control", "public")])).unwrap();
        assert_eq!(life.ttl, Duration::from_secs(300));
        // Longer than the route's TTL: the origin decides, up to max_ttl.
        let (life, _) = decide_at(&r, &head(200, &[("cache-control", "max-age=3600")])).unwrap();
        assert_eq!(life.ttl, Duration::from_secs(3600));
        let (life, _) =
            decide_at(&r, &head(200, &[("cache-control", "max-age=999999999")])).unwrap();
        assert_eq!(life.ttl, Duration::from_secs(86_400));
        assert_eq!(
            decide_at(
                &r,
                &head(200, &[("cache-control", "max-age=60"), ("age", "60")])
            )
            .unwrap_err(),
            NotStoredReason::ZeroTtl
        );
    }

    /// A response with a validator is kept to be revalidated: even when it
    /// is already stale, or `no-cache` (then it is revalidated every time
    /// and never served stale).
    #[test]
    fn origin_mode_keeps_what_can_be_revalidated() {
        let r = origin();
        let (life, _) = decide_at(
            &r,
            &head(200, &[("cache-control", "max-age=0"), ("etag", "\"a\"")]),
        )
        .unwrap();
        assert_eq!(
            (life.ttl, life.validate_for),
            (Duration::ZERO, Duration::from_secs(3600))
        );
        let (life, _) = decide_at(
            &r,
            &head(
                200,
                &[("cache-control", "no-cache, max-age=60"), ("etag", "\"a\"")],
            ),
        )
        .unwrap();
        assert_eq!(life.ttl, Duration::ZERO);
        assert!(life.must_revalidate);
        let bare = head(200, &[("cache-control", "no-cache"), ("etag", "\"a\"")]);
        assert_eq!(decide_at(&r, &bare).unwrap().0.ttl, Duration::ZERO);

        assert_eq!(
            decide_at(&r, &head(200, &[("cache-control", "no-cache, max-age=60")])).unwrap_err(),
            NotStoredReason::NoCache
        );
        let (life, _) = decide_at(&r, &head(200, &[("cache-control", "max-age=60")])).unwrap();
        assert_eq!(life.validate_for, Duration::ZERO);
        assert!(!life.must_revalidate);
    }

    /// §3.5: an answer to a request with `Authorization` is stored only if
    /// the origin said so with `public`, `s-maxage` or `must-revalidate`.
    #[test]
    fn origin_mode_authorization_needs_permission() {
        let r = StoreRules {
            per_user: true,
            ..origin()
        };
        let asked = Asked {
            exchange: Exchange {
                request_time: T,
                response_time: T,
            },
            authorization: true,
        };
        let at = |cc| decide(&r, &head(200, &[("cache-control", cc)]), asked);
        assert_eq!(
            at("max-age=60").unwrap_err(),
            NotStoredReason::Authorization
        );
        for allowed in [
            "public, max-age=60",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            assert!(at(allowed).is_ok(), "{allowed}");
        }
    }

    /// RFC 9213: a targeted field replaces `Cache-Control` in origin mode
    /// only.
    #[test]
    fn targeted_fields_decide_in_origin_mode() {
        let h = head(
            200,
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=30"),
            ],
        );
        assert_eq!(
            decide_at(&origin(), &h).unwrap().0.ttl,
            Duration::from_secs(30)
        );
        assert_eq!(
            decide_at(&rules(), &h).unwrap_err(),
            NotStoredReason::NoStore
        );
        let h = head(
            200,
            &[
                ("cache-control", "max-age=30"),
                ("cdn-cache-control", "no-store"),
            ],
        );
        assert_eq!(
            decide_at(&origin(), &h).unwrap_err(),
            NotStoredReason::NoStore
        );
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
        let (fresh, vary) = decide_at(&rules(), &head(200, &[])).unwrap();
        assert_eq!(fresh.ttl, Duration::from_secs(300));
        assert_eq!(vary, Vary::None);
    }

    #[test]
    fn refuses_what_must_not_be_shared() {
        let r = rules();
        assert_eq!(
            decide_at(&r, &head(404, &[])).unwrap_err(),
            NotStoredReason::Status
        );
        assert_eq!(
            decide_at(&r, &head(200, &[("cache-control", "no-store")])).unwrap_err(),
            NotStoredReason::NoStore
        );
        assert_eq!(
            decide_at(&r, &head(200, &[("cache-control", "no-cache")])).unwrap_err(),
            NotStoredReason::NoCache
        );
        assert_eq!(
            decide_at(&r, &head(200, &[("cache-control", "private")])).unwrap_err(),
            NotStoredReason::Private
        );
        assert_eq!(
            decide_at(&r, &head(200, &[("set-cookie", "a=b")])).unwrap_err(),
            NotStoredReason::SetCookie
        );
        assert_eq!(
            decide_at(&r, &head(200, &[("vary", "*")])).unwrap_err(),
            NotStoredReason::VaryAny
        );
        assert_eq!(
            decide_at(&r, &head(200, &[("content-length", "4096")])).unwrap_err(),
            NotStoredReason::TooLarge
        );
        assert_eq!(
            decide_at(&r, &head(200, &[("cache-control", "max-age=0")])).unwrap_err(),
            NotStoredReason::ZeroTtl
        );
    }

    /// The limits are inclusive: a body of exactly `max_body_bytes` and a
    /// `Vary` of exactly `MAX_VARY_HEADERS` names are stored.
    #[test]
    fn limits_refuse_only_what_is_over_them() {
        let r = rules();
        assert!(decide_at(&r, &head(200, &[("content-length", "1024")])).is_ok());
        assert_eq!(
            decide_at(&r, &head(200, &[("content-length", "1025")])).unwrap_err(),
            NotStoredReason::TooLarge
        );
        let names = |n: usize| {
            (0..n)
                .map(|i| format!("x-h{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let widest = names(MAX_VARY_HEADERS);
        assert!(decide_at(&r, &head(200, &[("vary", &widest)])).is_ok());
        let wider = names(MAX_VARY_HEADERS + 1);
        assert_eq!(
            decide_at(&r, &head(200, &[("vary", &wider)])).unwrap_err(),
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
            let (fresh, _) = decide_at(&r, &head(200, &[("cache-control", cc)])).unwrap();
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
            let (fresh, _) = decide_at(&r, &head(200, &[("cache-control", cc)])).unwrap();
            assert_eq!(fresh.stale_while_revalidate, Duration::ZERO, "{cc}");
            assert_eq!(fresh.stale_if_error, Duration::ZERO, "{cc}");
        }
        let granted = head(200, &[("cache-control", "s-maxage=60, stale-if-error=10")]);
        assert_eq!(
            decide_at(&r, &granted).unwrap().0.stale_if_error,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn private_is_stored_on_per_user_routes() {
        let r = StoreRules {
            per_user: true,
            ..rules()
        };
        assert!(decide_at(&r, &head(200, &[("cache-control", "private, max-age=60")])).is_ok());
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
        let (fresh, _) = decide_at(&rules(), &h).unwrap();
        assert_eq!(fresh.ttl, Duration::from_secs(30));
        assert_eq!(fresh.stale_while_revalidate, Duration::from_secs(7));
        assert_eq!(fresh.stale_if_error, Duration::from_secs(9));
        let long = head(200, &[("cache-control", "max-age=100000")]);
        assert_eq!(
            decide_at(&rules(), &long).unwrap().0.ttl,
            Duration::from_secs(300)
        );
        let ignore = StoreRules {
            respect_response_ttl: false,
            ..rules()
        };
        assert_eq!(
            decide_at(&ignore, &h).unwrap().0.ttl,
            Duration::from_secs(300)
        );
    }
}
