//! `Cache-Control` parsing (RFC 9111 §5.2), for the directives a shared cache
//! acts on.

use std::time::Duration;

use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderName};

/// The directives of one or more `Cache-Control` header lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`
    pub no_store: bool,
    /// `no-cache` (unqualified or qualified: both mean "revalidate first" to us)
    pub no_cache: bool,
    /// `private`
    pub private: bool,
    /// `public`
    pub public: bool,
    /// `must-revalidate`: never serve it stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: never serve it stale from a shared cache.
    pub proxy_revalidate: bool,
    /// `max-age`
    pub max_age: Option<Duration>,
    /// `s-maxage`
    pub s_maxage: Option<Duration>,
    /// `stale-while-revalidate`
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error`
    pub stale_if_error: Option<Duration>,
    /// `max-stale` (a request directive): any staleness when it has no
    /// value (`Duration::MAX`).
    pub max_stale: Option<Duration>,
    /// `min-fresh` (a request directive).
    pub min_fresh: Option<Duration>,
    /// `only-if-cached` (a request directive).
    pub only_if_cached: bool,
}

impl CacheControl {
    /// Parses every `Cache-Control` line in `headers`. Unknown directives are
    /// ignored; a malformed delta-seconds value is treated as 0 for the
    /// freshness directives (the conservative reading, RFC 9111 §4.2.1).
    pub fn parse(headers: &HeaderMap) -> Self {
        Self::parse_field(headers, &CACHE_CONTROL)
    }

    /// The directives this cache follows in a response (RFC 9213): those
    /// of the first of the `targeted` fields (`CDN-Cache-Control`, say)
    /// that the response carries, which then replace `Cache-Control`
    /// entirely; else those of `Cache-Control`.
    pub fn for_cache(headers: &HeaderMap, targeted: &[HeaderName]) -> Self {
        match targeted.iter().find(|name| headers.contains_key(*name)) {
            Some(name) => Self::parse_field(headers, name),
            None => Self::parse(headers),
        }
    }

    /// Parses every line of the field `name` as cache directives.
    fn parse_field(headers: &HeaderMap, name: &HeaderName) -> Self {
        let mut cc = CacheControl::default();
        for line in headers.get_all(name) {
            let Ok(line) = line.to_str() else {
                // Opaque bytes: we cannot tell what it says, so assume the
                // strictest reading.
                cc.no_store = true;
                continue;
            };
            for directive in line.split(',') {
                let directive = directive.trim();
                if directive.is_empty() {
                    continue;
                }
                let (name, value) = match directive.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (directive, None),
                };
                let seconds = || Some(delta_seconds(value));
                if name.eq_ignore_ascii_case("no-store") {
                    cc.no_store = true;
                } else if name.eq_ignore_ascii_case("no-cache") {
                    cc.no_cache = true;
                } else if name.eq_ignore_ascii_case("private") {
                    cc.private = true;
                } else if name.eq_ignore_ascii_case("public") {
                    cc.public = true;
                } else if name.eq_ignore_ascii_case("must-revalidate") {
                    cc.must_revalidate = true;
                } else if name.eq_ignore_ascii_case("proxy-revalidate") {
                    cc.proxy_revalidate = true;
                } else if name.eq_ignore_ascii_case("max-age") {
                    cc.max_age = min(cc.max_age, seconds());
                } else if name.eq_ignore_ascii_case("s-maxage") {
                    cc.s_maxage = min(cc.s_maxage, seconds());
                } else if name.eq_ignore_ascii_case("stale-while-revalidate") {
                    cc.stale_while_revalidate = seconds();
                } else if name.eq_ignore_ascii_case("stale-if-error") {
                    cc.stale_if_error = seconds();
                } else if name.eq_ignore_ascii_case("max-stale") {
                    // Without a value: stale responses of any age will do.
                    cc.max_stale = match value {
                        None => Some(Duration::MAX),
                        Some(_) => min(cc.max_stale, seconds()),
                    };
                } else if name.eq_ignore_ascii_case("min-fresh") {
                    cc.min_fresh = seconds();
                } else if name.eq_ignore_ascii_case("only-if-cached") {
                    cc.only_if_cached = true;
                }
            }
        }
        cc
    }

    /// The freshness lifetime a shared cache reads from the response:
    /// `s-maxage` if present, else `max-age`.
    pub fn shared_max_age(&self) -> Option<Duration> {
        self.s_maxage.or(self.max_age)
    }
}

/// Reads delta-seconds (RFC 9111 §1.2.2): digits only; a value too large to
/// represent means 2^31 seconds; anything malformed means 0 (the safe
/// reading for freshness).
fn delta_seconds(value: Option<&str>) -> Duration {
    const MAX: u64 = 1 << 31;
    match value {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            Duration::from_secs(v.parse::<u64>().map_or(MAX, |n| n.min(MAX)))
        }
        _ => Duration::ZERO,
    }
}

/// Of two repeated directives, the smaller (safer) wins.
fn min(current: Option<Duration>, new: Option<Duration>) -> Option<Duration> {
    match (current, new) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(lines: &[&str]) -> CacheControl {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(line).unwrap());
        }
        CacheControl::parse(&headers)
    }

    #[test]
    fn reads_directives_case_insensitively_across_lines() {
        let cc = parse(&[
            "Public, MAX-AGE=60",
            "s-maxage=\"30\", stale-while-revalidate=5",
        ]);
        assert!(cc.public);
        assert_eq!(cc.max_age, Some(Duration::from_secs(60)));
        assert_eq!(cc.shared_max_age(), Some(Duration::from_secs(30)));
        assert_eq!(cc.stale_while_revalidate, Some(Duration::from_secs(5)));
    }

    #[test]
    fn flags_and_bad_values() {
        let cc = parse(&["no-store, private, no-cache=\"set-cookie\", max-age=abc"]);
        assert!(cc.no_store && cc.private && cc.no_cache);
        assert_eq!(cc.max_age, Some(Duration::ZERO));
        assert_eq!(parse(&[]), CacheControl::default());
        assert_eq!(
            parse(&["max-age=99999999999999999999999"]).max_age,
            Some(Duration::from_secs(1 << 31))
        );
        assert_eq!(parse(&["max-age=-5"]).max_age, Some(Duration::ZERO));
        let revalidate = parse(&["must-revalidate, proxy-revalidate"]);
        assert!(revalidate.must_revalidate && revalidate.proxy_revalidate);
        assert_eq!(
            parse(&["max-age=60, max-age=10"]).max_age,
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn request_directives() {
        let cc = parse(&["max-stale=30, min-fresh=5, only-if-cached"]);
        assert_eq!(cc.max_stale, Some(Duration::from_secs(30)));
        assert_eq!(cc.min_fresh, Some(Duration::from_secs(5)));
        assert!(cc.only_if_cached);
        assert_eq!(parse(&["max-stale"]).max_stale, Some(Duration::MAX));
        assert_eq!(parse(&["max-stale=x"]).max_stale, Some(Duration::ZERO));
        assert_eq!(parse(&[]).max_stale, None);
    }

    /// A targeted field (RFC 9213) replaces `Cache-Control` for this cache
    /// when present; the first of the list present wins.
    #[test]
    fn targeted_fields_take_precedence() {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let cdn = HeaderName::from_static("cdn-cache-control");
        let own = HeaderName::from_static("x-own-cache-control");
        let targets = [own.clone(), cdn.clone()];
        assert!(CacheControl::for_cache(&headers, &targets).no_store);
        headers.insert(&cdn, HeaderValue::from_static("max-age=60"));
        let cc = CacheControl::for_cache(&headers, &targets);
        assert!(!cc.no_store);
        assert_eq!(cc.max_age, Some(Duration::from_secs(60)));
        headers.insert(&own, HeaderValue::from_static("s-maxage=5"));
        let cc = CacheControl::for_cache(&headers, &targets);
        assert_eq!(cc.shared_max_age(), Some(Duration::from_secs(5)));
        assert_eq!(cc.max_age, None);
        assert!(CacheControl::for_cache(&headers, &[]).no_store);
    }

    #[test]
    fn opaque_bytes_mean_no_store() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_bytes(b"max-age=1\xff").unwrap(),
        );
        assert!(CacheControl::parse(&headers).no_store);
    }
}
