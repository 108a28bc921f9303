//! A route's options, as the [`CacheLayer`](super::CacheLayer) builder
//! collects them.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderName, StatusCode};

use crate::semantics::freshness::Heuristic;
use crate::semantics::storable::{Freshness, StoreRules};
use crate::tags::TagsFn;

/// Default TTL of a route: 60 seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Default largest body stored: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default longest key: 4 KiB (longer keys bypass the cache).
pub const DEFAULT_MAX_KEY_BYTES: usize = 4096;
/// Default longest wait for another request's origin call: 3 seconds.
pub const DEFAULT_COALESCE_TIMEOUT: Duration = Duration::from_secs(3);
/// Default longest a stale-while-revalidate background refresh may take: 30 s.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// Default longest lifetime a response may claim in
/// [`Freshness::Origin`]: 1 day (see [`crate::stamp::DEFAULT_MAX_ENTRY_LIFE`]).
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default time an expired response with a validator is kept to be
/// revalidated, in [`Freshness::Origin`]: 1 hour.
pub const DEFAULT_KEEP_FOR_VALIDATION: Duration = Duration::from_secs(3600);
/// The targeted field (RFC 9213) of tagcache's own: it takes precedence
/// over `CDN-Cache-Control` and `Cache-Control` in [`Freshness::Origin`],
/// and is always removed before the response leaves.
pub const TAGCACHE_CACHE_CONTROL: HeaderName = HeaderName::from_static("tagcache-cache-control");
/// `CDN-Cache-Control` (RFC 9213).
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// A key or identity function.
pub(crate) type KeyFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// How the default key reads the query string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum QueryKey {
    /// The whole query, normalized (see [`crate::semantics::query`]).
    #[default]
    Normalized,
    /// Only these parameters, normalized.
    Only(Vec<String>),
    /// None of it.
    Ignored,
}

/// Every option of one cached route.
#[derive(Clone)]
pub(crate) struct RouteOptions {
    pub(crate) key: Option<KeyFn>,
    pub(crate) query: QueryKey,
    pub(crate) identity: Option<KeyFn>,
    pub(crate) tags: Option<TagsFn>,
    pub(crate) rules: StoreRules,
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) coalesce: bool,
    pub(crate) coalesce_timeout: Duration,
    pub(crate) refresh_timeout: Duration,
    pub(crate) honor_request_no_cache: bool,
    pub(crate) max_key_bytes: usize,
    /// The statuses were chosen, not left to the mode's default.
    pub(crate) statuses_chosen: bool,
    /// A response header that lists tags (`Surrogate-Key`).
    pub(crate) tags_header: Option<HeaderName>,
    /// Remove every targeted field, not only tagcache's own.
    pub(crate) strip_targeted: bool,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            key: None,
            query: QueryKey::default(),
            identity: None,
            tags: None,
            rules: StoreRules {
                statuses: vec![StatusCode::OK],
                per_user: false,
                ttl: DEFAULT_TTL,
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                respect_response_ttl: true,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                mode: Freshness::Route,
                heuristic: Heuristic::default(),
                max_ttl: DEFAULT_MAX_TTL,
                keep_for_validation: DEFAULT_KEEP_FOR_VALIDATION,
                targeted: vec![TAGCACHE_CACHE_CONTROL, CDN_CACHE_CONTROL],
            },
            vary: Vec::new(),
            coalesce: true,
            coalesce_timeout: DEFAULT_COALESCE_TIMEOUT,
            refresh_timeout: DEFAULT_REFRESH_TIMEOUT,
            honor_request_no_cache: false,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            statuses_chosen: false,
            tags_header: None,
            strip_targeted: false,
        }
    }
}

impl std::fmt::Debug for RouteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteOptions")
            .field("custom_key", &self.key.is_some())
            .field("query", &self.query)
            .field("per_user", &self.identity.is_some())
            .field("tags_fn", &self.tags.is_some())
            .field("rules", &self.rules)
            .field("vary", &self.vary)
            .field("coalesce", &self.coalesce)
            .field("coalesce_timeout", &self.coalesce_timeout)
            .field("refresh_timeout", &self.refresh_timeout)
            .field("honor_request_no_cache", &self.honor_request_no_cache)
            .field("max_key_bytes", &self.max_key_bytes)
            .field("tags_header", &self.tags_header)
            .field("strip_targeted", &self.strip_targeted)
            .finish()
    }
}
