//! A route's options, built once when the layer is made, and the decisions
//! that need them: the key hash and the verdict on a stored entry.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::header::CACHE_CONTROL;
use http::request::Parts;
use http::{response, HeaderMap, HeaderName};

use crate::entry::{Entry, KeyHash, KeyHasher};
use crate::metrics::RouteMetrics;
use crate::semantics::storable::StoreRules;
use crate::semantics::vary;
use crate::stamp::Validity;
use crate::store::Store;

pub(crate) type KeyFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
pub(crate) type TagsFn = Arc<dyn Fn(&Parts, &response::Parts) -> Vec<String> + Send + Sync>;

/// Everything a [`CacheService`](super::CacheService) needs to decide, shared
/// by all clones of the service.
pub(crate) struct RoutePolicy {
    pub(crate) route: Arc<str>,
    pub(crate) metrics: Arc<RouteMetrics>,
    pub(crate) key: Option<KeyFn>,
    pub(crate) identity: Option<KeyFn>,
    pub(crate) tags: Option<TagsFn>,
    pub(crate) rules: StoreRules,
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) learned_vary: LearnedVary,
    pub(crate) coalesce: bool,
    pub(crate) coalesce_timeout: Duration,
    pub(crate) refresh_timeout: Duration,
    pub(crate) honor_request_no_cache: bool,
    pub(crate) max_key_bytes: usize,
}

/// `Vary` names the route's responses turned out to use, beyond the declared
/// ones. Once learned they become part of the key, so each variant gets its
/// own entry. Correctness never depends on this: every hit compares the
/// entry's recorded `Vary` values with the request.
#[derive(Default)]
pub(crate) struct LearnedVary {
    any: AtomicBool,
    names: RwLock<Vec<HeaderName>>,
}

impl LearnedVary {
    pub(crate) fn learn(&self, names: &[HeaderName], declared: &[HeaderName]) {
        let new: Vec<&HeaderName> = names.iter().filter(|n| !declared.contains(n)).collect();
        if new.is_empty() {
            return;
        }
        {
            let known = self.names.read().unwrap_or_else(|e| e.into_inner());
            if new.iter().all(|n| known.contains(n)) {
                return;
            }
        }
        let mut known = self.names.write().unwrap_or_else(|e| e.into_inner());
        for name in new {
            if !known.contains(name) && known.len() < vary::MAX_VARY_HEADERS {
                known.push(name.clone());
            }
        }
        self.any.store(true, Ordering::Release);
    }
}

/// What a stored entry can do for a request.
pub(crate) enum Verdict {
    /// Fresh and valid: answer from it.
    Fresh(Arc<Entry>),
    /// Expired (or soft-invalidated) but inside a stale window.
    Stale(Arc<Entry>),
    /// Nothing usable.
    Miss(MissKind),
}

/// Why nothing usable was found, for `Cache-Status: fwd=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissKind {
    /// No entry for the key.
    Absent,
    /// An entry, for other `Vary` values.
    Vary,
    /// An entry whose tags were invalidated after its fill started.
    Invalidated,
    /// An entry past every window.
    Expired,
    /// The store failed; served from the origin.
    StoreError,
    /// The client asked for a fresh response and the route honours it.
    Request,
}

impl MissKind {
    pub(crate) fn fwd(self) -> &'static str {
        match self {
            MissKind::Absent | MissKind::StoreError => "uri-miss",
            MissKind::Vary => "vary-miss",
            MissKind::Invalidated => "miss",
            MissKind::Expired => "stale",
            MissKind::Request => "request",
        }
    }

    pub(crate) fn detail(self) -> Option<&'static str> {
        match self {
            MissKind::Invalidated => Some("invalidated"),
            MissKind::StoreError => Some("store-error"),
            _ => None,
        }
    }
}

impl RoutePolicy {
    /// The route's key for the request: the key function's, or the path and
    /// query (borrowed, so a hit on the default key allocates nothing).
    pub(crate) fn key_of<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        match &self.key {
            Some(f) => f(parts).map(Cow::Owned),
            None => Some(Cow::Borrowed(
                parts
                    .uri
                    .path_and_query()
                    .map(|pq| pq.as_str())
                    .unwrap_or("/"),
            )),
        }
    }

    pub(crate) fn hash(&self, key: &str, identity: Option<&str>, headers: &HeaderMap) -> KeyHash {
        let mut hasher = KeyHasher::default();
        hasher.part(self.route.as_bytes()).part(key.as_bytes());
        match identity {
            Some(identity) => hasher.part(identity.as_bytes()),
            None => hasher.absent(),
        };
        for name in &self.vary {
            hash_header(&mut hasher, headers, name);
        }
        if self.learned_vary.any.load(Ordering::Acquire) {
            let learned = self
                .learned_vary
                .names
                .read()
                .unwrap_or_else(|e| e.into_inner());
            for name in learned.iter() {
                hash_header(&mut hasher, headers, name);
            }
        }
        hasher.finish()
    }

    /// Judges what `found` can do for this request at `now` (µs).
    pub(crate) fn evaluate(
        &self,
        store: &dyn Store,
        found: Option<Arc<Entry>>,
        key: &str,
        identity: Option<&str>,
        headers: &HeaderMap,
        now: u64,
    ) -> Verdict {
        let Some(entry) = found else {
            return Verdict::Miss(MissKind::Absent);
        };
        // The hash is only an index: the readable key decides.
        if *entry.route != *self.route
            || &*entry.key != key
            || entry.identity.as_deref() != identity
        {
            return Verdict::Miss(MissKind::Absent);
        }
        if !vary::matches(&entry.vary, headers) {
            return Verdict::Miss(MissKind::Vary);
        }
        if store.outlived(entry.fill_stamp, now) {
            return Verdict::Miss(MissKind::Expired);
        }
        let Some(fresh_until) = fresh_until(store, &entry, now) else {
            return Verdict::Miss(MissKind::Invalidated);
        };
        if now < fresh_until {
            return Verdict::Fresh(entry);
        }
        let window = entry.stale_while_revalidate.max(entry.stale_if_error);
        if now - fresh_until < micros(window) {
            Verdict::Stale(entry)
        } else {
            Verdict::Miss(MissKind::Expired)
        }
    }
}

/// When `entry` stops being fresh, or `None` if it was invalidated. A soft
/// invalidation ends freshness at once: its stamp comes from the
/// invalidation clock, which may run ahead of this machine's wall time, so
/// it is capped at `now` rather than trusted as a point in time.
fn fresh_until(store: &dyn Store, entry: &Entry, now: u64) -> Option<u64> {
    match store.validity(entry) {
        Validity::Invalid => None,
        Validity::Valid => Some(entry.fresh_until_micros()),
        Validity::SoftInvalidated { at_micros } => {
            Some(entry.fresh_until_micros().min(at_micros).min(now))
        }
    }
}

/// A duration in microseconds, saturating (so `Duration::MAX` means "for
/// ever" rather than wrapping around).
pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// How long `entry` has been stale at `now`, if it may still be served within
/// `window` (its stale-while-revalidate or stale-if-error window).
pub(crate) fn within_stale_window(
    store: &dyn Store,
    entry: &Entry,
    now: u64,
    window: Duration,
) -> Option<u64> {
    let stale_for = now.saturating_sub(fresh_until(store, entry, now)?);
    (stale_for < micros(window)).then_some(stale_for)
}

/// Feeds one header into the key: its name, how many lines it has, and each
/// line, so that no two different sets of request headers hash alike by
/// shifting lines from one header to another.
fn hash_header(hasher: &mut KeyHasher, headers: &HeaderMap, name: &HeaderName) {
    let lines = headers.get_all(name);
    hasher
        .part(name.as_str().as_bytes())
        .part(&(lines.iter().count() as u64).to_le_bytes());
    for value in lines {
        hasher.part(value.as_bytes());
    }
}

/// Whether the client asked for a response from the origin
/// (`Cache-Control: no-cache` or `no-store`, or `Pragma: no-cache`).
pub(crate) fn request_wants_origin(headers: &HeaderMap) -> bool {
    let cc = crate::semantics::cache_control::CacheControl::parse(headers);
    (headers.contains_key(CACHE_CONTROL) && (cc.no_cache || cc.no_store))
        || headers
            .get(http::header::PRAGMA)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
}
