//! One cached route's state, built once when the layer is applied and
//! shared by every clone of its service: the options, the counters, and the
//! decisions that need them (the key, its hash, the verdict on an entry).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::header::HOST;
use http::request::Parts;
use http::{HeaderMap, HeaderName};

use super::body::CacheBody;
use super::options::{QueryKey, RouteOptions, TAGCACHE_CACHE_CONTROL};
use super::respond;
use crate::cache::Cache;
use crate::entry::{Entry, KeyHash, KeyHasher};
use crate::metrics::{RouteMetrics, StoreOp};
use crate::semantics::freshness::HEURISTICALLY_CACHEABLE;
use crate::semantics::storable::{has_validator, Freshness};
use crate::semantics::verdict::{self, MissKind, Selector, Verdict};
use crate::semantics::{query, request};
use crate::stamp::{now_micros, Validity};
use crate::store::{StoreError, StoreErrorKind};

pub(crate) struct CacheRoute {
    pub(crate) cache: Cache,
    pub(crate) name: Arc<str>,
    pub(crate) options: RouteOptions,
    pub(crate) metrics: Arc<RouteMetrics>,
    /// The request headers that select a response on every request: the
    /// declared ones, plus `Host` under the default key.
    pub(crate) selecting: Vec<HeaderName>,
    /// The route is a shared cache following the origin's headers
    /// ([`Freshness::Origin`]).
    pub(crate) origin: bool,
    /// Response headers removed before a response leaves or is stored:
    /// targeted fields meant for this cache alone, and the tags header.
    strip: Box<[HeaderName]>,
    /// Second (since the epoch) of the last store failure logged.
    last_failure_log: AtomicU64,
}

impl CacheRoute {
    pub(crate) fn new(cache: Cache, name: Arc<str>, mut options: RouteOptions) -> Self {
        let mut selecting = options.vary.clone();
        if options.key.is_none() && !selecting.contains(&HOST) {
            selecting.insert(0, HOST);
        }
        let origin = options.rules.mode == Freshness::Origin;
        if origin && !options.statuses_chosen {
            options.rules.statuses = HEURISTICALLY_CACHEABLE.to_vec();
        }
        let mut strip = Vec::new();
        if origin {
            let strip_all = options.strip_targeted;
            let targeted = options.rules.targeted.iter();
            strip.extend(
                targeted
                    .filter(|name| strip_all || **name == TAGCACHE_CACHE_CONTROL)
                    .cloned(),
            );
        }
        strip.extend(options.tags_header.clone());
        CacheRoute {
            metrics: cache.route_metrics(&name),
            cache,
            name,
            options,
            selecting,
            origin,
            strip: strip.into_boxed_slice(),
            last_failure_log: AtomicU64::new(0),
        }
    }

    /// Removes what must not leave this cache from a response's headers.
    #[inline]
    pub(crate) fn strip(&self, headers: &mut HeaderMap) {
        for name in self.strip.iter() {
            headers.remove(name);
        }
    }

    /// The headers of a response to store: those of `head` but the tags
    /// header (its tags are the entry's). Targeted fields are kept, since
    /// a 304 that does not repeat them is judged on them; they are removed
    /// when an answer leaves (see [`Self::answer`]).
    pub(crate) fn stored_headers(&self, head: &HeaderMap) -> HeaderMap {
        let mut headers = respond::with_slots(head);
        if let Some(name) = &self.options.tags_header {
            headers.remove(name);
        }
        headers
    }

    /// Whether stored `headers` hold a field removed from every answer
    /// (see [`Entry::withholds`]).
    pub(crate) fn withheld_in(&self, headers: &HeaderMap) -> bool {
        self.strip.iter().any(|name| headers.contains_key(name))
    }

    /// Answers a request from `entry` (see [`respond::from_entry`]),
    /// without what must not leave this cache.
    #[inline]
    pub(crate) fn answer<B>(
        &self,
        entry: &Entry,
        request: &HeaderMap,
        head_only: bool,
        now: u64,
        cache_status: http::HeaderValue,
    ) -> http::Response<CacheBody<B>> {
        respond::from_entry(entry, request, head_only, now, cache_status, &self.strip)
    }

    /// Whether anything is removed from responses (see [`Self::strip`]).
    pub(crate) fn strips(&self) -> bool {
        !self.strip.is_empty()
    }

    /// Whether a stale `entry` is revalidated with a conditional request
    /// for this request: in origin mode, for a plain GET (a range request
    /// goes to the origin as it is), when it has a validator.
    pub(crate) fn revalidates(&self, entry: &Entry, request: &Parts) -> bool {
        self.origin
            && request.method == http::Method::GET
            && !request.headers.contains_key(http::header::RANGE)
            && has_validator(&entry.headers)
    }

    /// The route's key for the request: the key function's, or the path and
    /// the query as the route reads it (borrowed when the query is already
    /// in normal form, so a hit on the default key allocates nothing).
    #[inline]
    pub(crate) fn key_of<'a>(&self, parts: &'a Parts) -> Option<Cow<'a, str>> {
        if let Some(key_of) = &self.options.key {
            return key_of(parts).map(Cow::Owned);
        }
        let path = parts.uri.path();
        let (Some(target), Some(query)) = (parts.uri.path_and_query(), parts.uri.query()) else {
            return Some(Cow::Borrowed(path));
        };
        let query = match &self.options.query {
            QueryKey::Normalized => match query::normalize(query) {
                Cow::Borrowed(normal) if !normal.is_empty() => {
                    return Some(Cow::Borrowed(target.as_str()))
                }
                normalized => normalized,
            },
            QueryKey::Only(names) => Cow::Owned(query::only(query, names)),
            QueryKey::Ignored => Cow::Borrowed(""),
        };
        Some(match query.is_empty() {
            true => Cow::Borrowed(path),
            false => Cow::Owned(format!("{path}?{query}")),
        })
    }

    /// The key's primary hash: the route, the key, the identity and the
    /// values of the headers the route always selects on. Responses that
    /// vary on nothing else are stored under it; for the others it holds a
    /// variant index (see [`Entry::variant_index`]).
    #[inline]
    pub(crate) fn hash(&self, key: &str, identity: Option<&str>, headers: &HeaderMap) -> KeyHash {
        let mut hasher = KeyHasher::default();
        self.feed_key(&mut hasher, key, identity, headers);
        hasher.finish()
    }

    /// The hash of the variant selected by `headers` among the key's
    /// responses that vary on `names`.
    pub(crate) fn variant_hash(
        &self,
        key: &str,
        identity: Option<&str>,
        headers: &HeaderMap,
        names: &[HeaderName],
    ) -> KeyHash {
        let mut hasher = KeyHasher::default();
        self.feed_key(&mut hasher, key, identity, headers);
        // A marker keeps a variant's hash apart from every primary hash.
        hasher.absent();
        for name in names {
            hash_header(&mut hasher, headers, name);
        }
        hasher.finish()
    }

    /// Feeds what the primary hash is made of. (The hasher is filled in
    /// place: it carries a stack buffer too large to move around.)
    fn feed_key(
        &self,
        hasher: &mut KeyHasher,
        key: &str,
        identity: Option<&str>,
        headers: &HeaderMap,
    ) {
        hasher.part(self.name.as_bytes()).part(key.as_bytes());
        match identity {
            Some(identity) => hasher.part(identity.as_bytes()),
            None => hasher.absent(),
        };
        for name in &self.selecting {
            hash_header(hasher, headers, name);
        }
    }

    /// The request's variant hash if `found` is this key's variant index.
    #[inline]
    pub(crate) fn follow_index(&self, found: &Entry, selector: &Selector<'_>) -> Option<KeyHash> {
        let names = found.variants.as_deref()?;
        selector
            .same_key(found)
            .then(|| self.variant_hash(selector.key, selector.identity, selector.headers, names))
    }

    /// What `found` can do for the request `selector` describes, at `now`.
    #[inline]
    pub(crate) fn judge(
        &self,
        found: Option<Arc<Entry>>,
        selector: &Selector<'_>,
        now: u64,
    ) -> Verdict {
        let Some(entry) = found else {
            return Verdict::Miss(MissKind::Absent);
        };
        if let Err(kind) = selector.selects(&entry) {
            return Verdict::Miss(kind);
        }
        verdict::judge(
            entry.clone(),
            self.validity(&entry),
            self.cache.store().max_entry_life(),
            now,
        )
    }

    /// What the request's own cache directives make of `verdict` at `now`
    /// (RFC 9111 §5.2.1, origin mode only; see [`verdict::as_requested`]).
    /// A request without directives costs two header lookups.
    #[inline]
    pub(crate) fn as_requested(&self, verdict: Verdict, request: &HeaderMap, now: u64) -> Verdict {
        if !self.origin || !request::has_directives(request) {
            return verdict;
        }
        let asks = request::directives(request);
        let validity = match &verdict {
            Verdict::Stale(entry) | Verdict::Validate(entry, _) => self.validity(entry),
            _ => Validity::Valid,
        };
        let fresher = self.options.honor_request_no_cache;
        verdict::as_requested(verdict, &asks, fresher, validity, now)
    }

    /// Whether a waiter may answer from `entry`, a response its flight's
    /// leader could not store (no fill stamp, so the tag stamps cannot
    /// judge it): only if it is for this request (key, identity, `Vary`)
    /// and nothing known here was invalidated since the leader's origin
    /// call began (the store's invalidation generation is unchanged), and
    /// no invalidation source is out of sync.
    pub(crate) fn takes_unstored(
        &self,
        entry: &Entry,
        generation: u64,
        selector: &Selector<'_>,
    ) -> bool {
        selector.selects(entry).is_ok()
            && !self.cache.is_out_of_sync()
            && self.cache.store().invalidation_generation() == Some(generation)
    }

    /// What the tag stamps say of `entry` now. Every check of an entry
    /// (lookup, stale windows, storing a fill) comes through here.
    #[inline]
    pub(crate) fn validity(&self, entry: &Entry) -> Validity {
        // An invalidation source that may have missed invalidations (a
        // database feed that is down) makes every entry invalid until it
        // has caught up: a miss rather than a possibly stale hit.
        if self.cache.is_out_of_sync() {
            return Validity::Invalid;
        }
        self.cache.store().validity(entry)
    }

    /// Counts a failed store operation and logs it, at most about once a
    /// second per route: when Redis is down every request fails, and the
    /// log must stay readable.
    pub(crate) fn store_failed(&self, op: StoreOp, error: &StoreError) {
        self.metrics.store_error(op);
        if error.kind() == StoreErrorKind::CircuitOpen {
            // Expected while a store is down; its breaker logged the outage.
            return;
        }
        let second = now_micros() / 1_000_000;
        if self.last_failure_log.swap(second, Ordering::Relaxed) != second {
            tracing::warn!(route = %self.name, op = op.as_str(), %error, "tagcache store failed; serving from the origin");
        }
    }
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
