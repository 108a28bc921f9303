//! How long a response stays fresh and how old it already is when it
//! arrives (RFC 9111 §4.2): the explicit lifetime (`s-maxage`, `max-age`,
//! `Expires` − `Date`), the heuristic one (§4.2.2), and the corrected
//! initial age (§4.2.3). Times are microseconds since the Unix epoch, as
//! everywhere in the crate; HTTP dates have whole seconds.

use std::time::{Duration, UNIX_EPOCH};

use http::header::{AGE, DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::cache_control::CacheControl;

const SECOND: u64 = 1_000_000;

/// When the request that produced a response went to the origin, and when
/// the response's head came back (µs since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Just before the origin was called (`request_time`, §4.2.3).
    pub request_time: u64,
    /// When the response's head arrived (`response_time`).
    pub response_time: u64,
}

/// How heuristic freshness (§4.2.2) is computed for responses that carry
/// no explicit lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heuristic {
    /// The share of the time since `Last-Modified`, in percent (RFC 9111
    /// suggests 10).
    pub percent: u32,
    /// The longest heuristic lifetime.
    pub max: Duration,
}

impl Default for Heuristic {
    fn default() -> Self {
        Heuristic {
            percent: 10,
            max: Duration::from_secs(24 * 3600),
        }
    }
}

/// Statuses a cache may store with a heuristic lifetime (RFC 9110 §15.1),
/// except 206, since only complete responses are stored.
pub const HEURISTICALLY_CACHEABLE: [StatusCode; 11] = [
    StatusCode::OK,
    StatusCode::NON_AUTHORITATIVE_INFORMATION,
    StatusCode::NO_CONTENT,
    StatusCode::MULTIPLE_CHOICES,
    StatusCode::MOVED_PERMANENTLY,
    StatusCode::PERMANENT_REDIRECT,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::GONE,
    StatusCode::URI_TOO_LONG,
    StatusCode::NOT_IMPLEMENTED,
];

/// An HTTP date (RFC 9110 §5.6.7) as µs since the epoch; `None` if it is
/// not one (the three formats a recipient must accept).
pub fn http_date(value: &HeaderValue) -> Option<u64> {
    let text = value.to_str().ok()?;
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs() * SECOND)
}

/// The only value of a header that must appear once, if it does.
fn single<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<Option<&'a HeaderValue>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    Some(values.next().is_none().then_some(first))
}

/// The response's `Date` (µs), or `response_time` when it has none or an
/// invalid one (RFC 9110 §6.6.1: the recipient assigns one).
fn date_or(headers: &HeaderMap, response_time: u64) -> u64 {
    match single(headers, &DATE) {
        Some(Some(date)) => http_date(date).unwrap_or(response_time),
        _ => response_time,
    }
}

/// The explicit freshness lifetime (§4.2.1): `s-maxage`, else `max-age`,
/// else `Expires` − `Date`. An `Expires` that is not one valid date means
/// "already expired" (a zero lifetime); `None` if the response names no
/// lifetime at all.
pub fn explicit_lifetime(
    cc: &CacheControl,
    headers: &HeaderMap,
    response_time: u64,
) -> Option<Duration> {
    if let Some(lifetime) = cc.shared_max_age() {
        return Some(lifetime);
    }
    let expires = single(headers, &EXPIRES)?;
    let Some(expires) = expires.and_then(http_date) else {
        return Some(Duration::ZERO);
    };
    let date = date_or(headers, response_time);
    Some(Duration::from_micros(expires.saturating_sub(date)))
}

/// The heuristic lifetime (§4.2.2) of a heuristically cacheable status
/// with a valid `Last-Modified`: `percent` of the time between it and the
/// response's `Date`, at most `max`.
pub fn heuristic_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    response_time: u64,
    rule: Heuristic,
) -> Option<Duration> {
    if !HEURISTICALLY_CACHEABLE.contains(&status) {
        return None;
    }
    let modified = http_date(single(headers, &LAST_MODIFIED)??)?;
    let since = date_or(headers, response_time).saturating_sub(modified);
    let share = u128::from(since) * u128::from(rule.percent) / 100;
    let share = Duration::from_micros(u64::try_from(share).unwrap_or(u64::MAX));
    Some(share.min(rule.max))
}

/// The upstream `Age` (§5.1), in whole seconds; 0 when absent or
/// malformed.
pub fn upstream_age(headers: &HeaderMap) -> Duration {
    let seconds = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    Duration::from_secs(seconds.unwrap_or(0))
}

/// The corrected initial age (§4.2.3), in whole seconds: the larger of the
/// apparent age (`response_time` − `Date`) and the upstream `Age` plus
/// the time the request took. A malformed `Age` is ignored.
pub fn initial_age(headers: &HeaderMap, exchange: Exchange) -> Duration {
    let response_time = exchange.response_time;
    let apparent = match single(headers, &DATE) {
        Some(Some(date)) => http_date(date).map_or(0, |date| {
            (response_time / SECOND * SECOND).saturating_sub(date)
        }),
        _ => 0,
    };
    let age_value = upstream_age(headers).as_secs().saturating_mul(SECOND);
    let delay = response_time.saturating_sub(exchange.request_time);
    let corrected = age_value.saturating_add(delay);
    Duration::from_secs(apparent.max(corrected) / SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000 * SECOND;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn date(at: u64) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_micros(at))
    }

    fn explicit(pairs: &[(&'static str, String)]) -> Option<Duration> {
        let map = headers(pairs);
        explicit_lifetime(&CacheControl::parse(&map), &map, T)
    }

    #[test]
    fn explicit_lifetime_prefers_s_maxage_then_max_age_then_expires() {
        let cc = |v: &str| ("cache-control", v.to_owned());
        let expires = ("expires", date(T + 300 * SECOND));
        assert_eq!(
            explicit(&[cc("max-age=60, s-maxage=30"), expires.clone()]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            explicit(&[cc("max-age=60"), expires.clone()]),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            explicit(std::slice::from_ref(&expires)),
            Some(Duration::from_secs(300))
        );
        // Against the response's own Date, not the time it arrived.
        assert_eq!(
            explicit(&[expires, ("date", date(T - 100 * SECOND))]),
            Some(Duration::from_secs(400))
        );
        assert_eq!(explicit(&[]), None);
    }

    #[test]
    fn a_past_invalid_or_repeated_expires_is_already_expired() {
        let past = ("expires", date(T - 10 * SECOND));
        assert_eq!(explicit(&[past]), Some(Duration::ZERO));
        assert_eq!(explicit(&[("expires", "0".into())]), Some(Duration::ZERO));
        let twice = [
            ("expires", date(T + 10 * SECOND)),
            ("expires", date(T + 20 * SECOND)),
        ];
        assert_eq!(explicit(&twice), Some(Duration::ZERO));
    }

    #[test]
    fn heuristic_lifetime_is_a_share_of_the_last_modified_age_capped() {
        let rule = Heuristic::default();
        let modified = |ago: u64| headers(&[("last-modified", date(T - ago * SECOND))]);
        let at = |status: u16, map: &HeaderMap, rule| {
            heuristic_lifetime(StatusCode::from_u16(status).unwrap(), map, T, rule)
        };
        assert_eq!(
            at(200, &modified(1000), rule),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            at(404, &modified(1000), rule),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            at(200, &modified(10_000_000), rule),
            Some(Duration::from_secs(24 * 3600))
        );
        let half = Heuristic {
            percent: 50,
            max: Duration::from_secs(60),
        };
        assert_eq!(at(200, &modified(100), half), Some(Duration::from_secs(50)));
        assert_eq!(at(302, &modified(1000), rule), None);
        assert_eq!(at(206, &modified(1000), rule), None);
        assert_eq!(at(200, &HeaderMap::new(), rule), None);
        let bad = headers(&[("last-modified", "yesterday".into())]);
        assert_eq!(at(200, &bad, rule), None);
        // Modified "in the future": no time since, no lifetime to speak of.
        assert_eq!(at(200, &modified(0), rule), Some(Duration::ZERO));
    }

    #[test]
    fn initial_age_counts_the_upstream_age_the_delay_and_the_date() {
        let exchange = Exchange {
            request_time: T - 3 * SECOND,
            response_time: T,
        };
        assert_eq!(
            initial_age(&HeaderMap::new(), exchange),
            Duration::from_secs(3)
        );
        let aged = headers(&[("age", "100".into())]);
        assert_eq!(initial_age(&aged, exchange), Duration::from_secs(103));
        let dated = headers(&[("date", date(T - 500 * SECOND)), ("age", "100".into())]);
        assert_eq!(initial_age(&dated, exchange), Duration::from_secs(500));
        let instant = Exchange {
            request_time: T,
            response_time: T + SECOND / 2,
        };
        assert_eq!(initial_age(&HeaderMap::new(), instant), Duration::ZERO);
        // A date ahead of this clock is no age; garbage is ignored.
        let odd = headers(&[("date", date(T + 60 * SECOND)), ("age", "-5".into())]);
        assert_eq!(initial_age(&odd, instant), Duration::ZERO);
        let huge = headers(&[("age", "99999999999999999999".into())]);
        assert_eq!(initial_age(&huge, instant), Duration::ZERO);
        let big = headers(&[("age", u64::MAX.to_string())]);
        assert!(initial_age(&big, instant) > Duration::from_secs(1 << 40));
    }
}
