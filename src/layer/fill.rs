//! Filling the cache: a request that has to go to the origin ([`Forward`]),
//! the stale-if-error fallback, the decision to store, and the entry the
//! [`Recorder`] will complete once the body has streamed to the client.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{AGE, AUTHORIZATION, DATE};
use http::request::Parts;
use http::{response, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::body::CacheBody;
use super::fleet::Leader;
use super::lookup::Step;
use super::outcome::{Outcome, StaleCause, Storing};
use super::record::{IndexAt, Keep, Recorder};
use super::respond;
use super::route::CacheRoute;
use crate::coalesce::FlightGuard;
use crate::entry::{Entry, KeyHash};
use crate::metrics::StoreOp;
use crate::semantics::conditional::{make_conditional, updated_headers};
use crate::semantics::freshness::Exchange;
use crate::semantics::storable::{self, Asked, Lifetime};
use crate::semantics::vary::{request_values, Vary};
use crate::semantics::verdict::{within_stale_window, MissKind, Selector, Verdict};
use crate::semantics::NotStoredReason;
use crate::stamp::{micros, now_micros, Stamp, Validity};
use crate::store::StoreResult;
use crate::tags::{collect, copy_head, gather, header_tags, host_of, key_tag, uri_tag};

/// A request that has to go to the origin, with what the lookup learned.
pub(crate) struct Forward<S, ReqB> {
    pub(crate) route: Arc<CacheRoute>,
    pub(crate) inner: S,
    pub(crate) parts: Parts,
    pub(crate) body: ReqB,
    pub(crate) key: String,
    pub(crate) identity: Option<String>,
    /// The key's primary hash (see [`CacheRoute::hash`]).
    pub(crate) primary: KeyHash,
    /// The hash this request looks up and shares a flight under: the
    /// primary hash, or its variant's once the key is known to vary.
    pub(crate) hash: KeyHash,
    pub(crate) kind: MissKind,
    /// A stale entry that may answer if the origin fails (stale-if-error).
    pub(crate) stale: Option<Arc<Entry>>,
    /// The request said `Cache-Control: no-store`: answer, store nothing.
    pub(crate) no_store: bool,
}

impl<S, ReqB> Forward<S, ReqB> {
    /// What this request selects.
    pub(crate) fn selector(&self) -> Selector<'_> {
        Selector {
            route: &self.route.name,
            key: &self.key,
            identity: self.identity.as_deref(),
            headers: &self.parts.headers,
        }
    }

    /// What `found` can do for this request at `now`.
    pub(crate) fn judge(&self, found: Option<Arc<Entry>>, now: u64) -> Verdict {
        self.route.judge(found, &self.selector(), now)
    }

    /// This request as the leader of its key's flight, to settle with the
    /// other instances who calls the origin (see [`super::fleet`]).
    pub(crate) fn leader(&self) -> Leader<'_> {
        Leader {
            route: &self.route,
            selector: self.selector(),
            hash: self.hash,
            primary: self.primary,
        }
    }

    /// Finishes a lookup this request started. (It borrows only what the
    /// lookup reads, all of it `Sync`, so the future stays `Send` whatever
    /// the inner service and request body are.)
    pub(crate) fn finish_lookup(
        &self,
        step: Step,
    ) -> impl Future<Output = (KeyHash, StoreResult<Option<Arc<Entry>>>)> + Send + '_ {
        let route = &self.route;
        let selector = self.selector();
        async move { route.finish_lookup(step, &selector).await }
    }

    /// The hash of this request's variant of `shared`, a response another
    /// request's flight produced for a key that turned out to vary: `None`
    /// if it varies on nothing beyond what the route selects on.
    pub(crate) fn variant_of(&self, shared: &Entry) -> Option<KeyHash> {
        let names = taught_names(&self.route, shared.vary.iter().map(|(name, _)| name));
        (!names.is_empty()).then(|| {
            let (key, identity) = (&self.key, self.identity.as_deref());
            self.route
                .variant_hash(key, identity, &self.parts.headers, &names)
        })
    }

    /// Answers this request from `entry` with the given `Cache-Status`.
    pub(crate) fn answer<B>(
        &self,
        entry: &Entry,
        head_only: bool,
        now: u64,
        cache_status: HeaderValue,
    ) -> Response<CacheBody<B>> {
        self.route
            .answer(entry, &self.parts.headers, head_only, now, cache_status)
    }
}

impl<S, ReqB, ResB> Forward<S, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes>,
{
    /// Calls the origin and, if the response may be stored, returns it with a
    /// recording body that stores it and hands it to the flight's waiters.
    /// `guard` is the key's flight, when this request leads one. A stale
    /// entry the route revalidates makes the call a conditional request.
    pub(crate) async fn fill(
        self,
        guard: Option<FlightGuard>,
    ) -> Result<Response<CacheBody<ResB>>, S::Error> {
        let Forward {
            route,
            mut inner,
            mut parts,
            body,
            key,
            identity,
            primary,
            kind,
            stale,
            no_store,
            hash,
        } = self;
        route.metrics.miss();
        let fill_stamp = take_stamp(&route).await;
        // Without a fill stamp nothing is stored; the response may still go
        // to this flight's waiters if nothing is invalidated meanwhile (see
        // `crate::coalesce`): what the store knows, before the origin call.
        let unstored = match (&fill_stamp, &guard) {
            (None, Some(_)) => route.cache.store().invalidation_generation(),
            _ => None,
        };
        // The client's own head, kept before any validator of ours goes in:
        // its conditions are answered from the revalidated entry.
        let request_head = copy_head(&parts);
        let validating = stale
            .as_ref()
            .filter(|entry| route.revalidates(entry, &parts))
            .cloned();
        if let Some(entry) = &validating {
            make_conditional(&mut parts.headers, &entry.headers);
        }
        parts.extensions.insert(route.cache.clone());
        let request_time = now_micros();
        let result = inner.call(Request::from_parts(parts, body)).await;
        let asked = Asked {
            exchange: Exchange {
                request_time,
                response_time: now_micros(),
            },
            authorization: request_head.headers.contains_key(AUTHORIZATION),
        };

        let failed = match &result {
            Err(_) => Some(None),
            Ok(response) if response.status().is_server_error() => {
                Some(Some(response.status().as_u16()))
            }
            Ok(_) => None,
        };
        if let (Some(origin_status), Some(stale)) = (failed, &stale) {
            if let Some(answer) =
                stale_if_error(&route, stale, &request_head.headers, origin_status)
            {
                // Waiters call the origin themselves (and may fall back too).
                if let Some(guard) = guard {
                    guard.not_shareable(false);
                }
                return Ok(answer);
            }
        }
        let (mut head, body) = result?.into_parts();
        let shape = |fill_stamp, lifetime, vary| Shape {
            key,
            identity,
            primary,
            fill_stamp,
            lifetime,
            vary,
            response_time: asked.exchange.response_time,
        };

        if let (Some(stale), StatusCode::NOT_MODIFIED) = (validating, head.status) {
            let revalidation = Revalidation {
                hash,
                stale,
                fill_stamp,
                no_store,
                asked,
                kind,
            };
            return Ok(revalidation.answer(&route, &request_head, head, guard, shape));
        }

        let lower = body.size_hint().lower();
        let decided = match (fill_stamp, unstored) {
            (Some(stamp), _) => decide(&route, no_store, &head, lower, asked).map(|d| (stamp, d)),
            // Never stored nor judged by the stamps: any stamp will do.
            (None, Some(_)) => decide(&route, no_store, &head, lower, asked).map(|d| (Stamp(0), d)),
            (None, None) => Err(Storing::StoreDown),
        };
        let built = decided.and_then(|(fill_stamp, (lifetime, vary))| {
            let shape = shape(fill_stamp, lifetime, vary);
            within_tag_limit(shape.entry(&route, &request_head, &head))
        });
        let (put_hash, template, index) = match built {
            Ok(built) => built,
            Err(storing) => {
                if let Some(guard) = guard {
                    guard.not_shareable(matches!(storing, Storing::No(reason) if reason.lasts()));
                }
                route.strip(&mut head.headers);
                let status = Outcome::Forwarded { kind, storing }.report(&route);
                let response = Response::from_parts(head, CacheBody::passthrough(body));
                return Ok(respond::with_status(response, status));
            }
        };

        route.strip(&mut head.headers);
        // `stored` is only claimed when the body is known to fit (a body of
        // unknown length may still grow past the limit while streaming) and
        // the store vouches for the entry now: one it already counts as
        // invalid (a tag invalidated during the origin call, a Redis feed
        // still resyncing) will not be stored unless that changes before
        // the body ends, so nothing is said about storing it.
        let max = route.options.rules.max_body_bytes;
        let exact = body.size_hint().exact();
        let storing = match exact {
            _ if unstored.is_some() => Storing::StoreDown,
            Some(len) if len <= max as u64 && route.validity(&template) != Validity::Invalid => {
                Storing::Yes
            }
            _ => Storing::Unknown,
        };
        let status = Outcome::Forwarded { kind, storing }.report(&route);
        // The length the body announces, from its size hint or the header.
        // HTTP/1 servers stop polling a body once that many bytes are out,
        // so the recorder must finish on the count, not on end-of-stream.
        let expected = exact.or_else(|| storable::content_length(&head.headers));
        tracing::debug!(route = %route.name, ?kind, "tagcache filling from origin");
        let keep = match unstored {
            Some(generation) => Keep::ShareOnly { generation },
            None => Keep::Store,
        };
        let recorder = Recorder::new(route, put_hash, template, index, guard, keep, expected);
        Ok(respond::with_status(
            Response::from_parts(head, CacheBody::recording(body, recorder)),
            status,
        ))
    }
}

/// Most tags an entry may carry: past it a response is not stored, rather
/// than stored without some of its tags (which invalidating them would then
/// not reach). An origin's tags header could otherwise list any number.
pub(crate) const MAX_TAGS: usize = 1024;

/// The entry [`Shape::entry`] made, unless it carries more than
/// [`MAX_TAGS`] tags.
fn within_tag_limit(
    built: (KeyHash, Entry, Option<IndexAt>),
) -> Result<(KeyHash, Entry, Option<IndexAt>), Storing> {
    match built.1.tags.len() > MAX_TAGS {
        true => Err(Storing::No(NotStoredReason::TooManyTags)),
        false => Ok(built),
    }
}

/// A stale entry the origin answered a conditional request about with 304.
struct Revalidation {
    /// Where the stale entry was found.
    hash: KeyHash,
    stale: Arc<Entry>,
    fill_stamp: Option<Stamp>,
    no_store: bool,
    asked: Asked,
    kind: MissKind,
}

impl Revalidation {
    /// The stored response, its headers updated by the 304 (RFC 9111
    /// §4.3.4), stored again with its new lifetime and shared with the
    /// flight's waiters; and this request's answer from it (which may be a
    /// 304 of its own, if the client's validators match).
    fn answer<B>(
        self,
        route: &Arc<CacheRoute>,
        request: &Parts,
        not_modified: response::Parts,
        guard: Option<FlightGuard>,
        shape: impl FnOnce(Stamp, Lifetime, Vary) -> Shape,
    ) -> Response<CacheBody<B>> {
        let Revalidation {
            hash: found_at,
            stale,
            fill_stamp,
            no_store,
            asked,
            kind,
        } = self;
        let mut head = Response::new(()).into_parts().0;
        head.status = stale.status;
        head.headers = updated_headers(&stale.headers, &not_modified.headers);
        // As old as the 304 says: the stored `Age` and `Date` describe the
        // response it replaces. (Without a `Date`, the server that sends
        // an answer adds its own.)
        for name in [AGE, DATE] {
            head.headers.remove(&name);
            for value in not_modified.headers.get_all(&name) {
                head.headers.append(name.clone(), value.clone());
            }
        }
        head.extensions = not_modified.extensions;
        let len = stale.body.len() as u64;
        let decided = match fill_stamp {
            Some(stamp) => decide(route, no_store, &head, len, asked).map(|d| (stamp, d)),
            None => Err(Storing::StoreDown),
        };
        let now = now_micros();
        let built = decided.and_then(|(fill_stamp, (lifetime, vary))| {
            let shape = shape(fill_stamp, lifetime, vary);
            let (hash, mut template, index) = shape.entry(route, request, &head);
            // The 304 changes no data the response depends on: it keeps
            // every tag it had (from the handler, from the tags header,
            // which a 304 need not repeat), so invalidating any of them
            // still reaches it.
            let kept = stale.tags.iter().chain(template.tags.iter());
            template.tags = collect(kept).into_boxed_slice();
            within_tag_limit((hash, template, index))
        });
        let (entry, storing) = match built {
            Ok((hash, template, index)) => {
                let recorder = Recorder::new(
                    route.clone(),
                    hash,
                    template,
                    index,
                    guard,
                    Keep::Store,
                    None,
                );
                (recorder.finish_with(stale.body.clone()), Storing::Yes)
            }
            Err(storing) => {
                let lasting = matches!(storing, Storing::No(reason) if reason.lasts());
                if let Some(guard) = guard {
                    guard.not_shareable(lasting);
                }
                // The origin withdrew what it allowed (`no-store`, `private`
                // now): the stored response goes, so no one is answered
                // from it again (a client's `max-stale` included).
                if lasting {
                    remove(route, found_at);
                }
                // Answered as updated, but not kept: a copy for this answer.
                let entry = Entry {
                    headers: respond::with_slots(&head.headers),
                    withholds: true,
                    stored_at_micros: now,
                    ..(*stale).clone()
                };
                (Arc::new(entry), storing)
            }
        };
        let status = Outcome::Revalidated { kind, storing }.report(route);
        route.answer(&entry, &request.headers, false, now, status)
    }
}

/// Removes the entry under `hash`, off the response path if the store
/// answers later. A failure is counted; the entry then lives out its time.
fn remove(route: &Arc<CacheRoute>, hash: KeyHash) {
    let pending = match route.cache.store().remove(hash).now_or_later() {
        Ok(result) => return record_removal(route, result),
        Err(pending) => pending,
    };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let route = route.clone();
        runtime.spawn(async move { record_removal(&route, pending.await) });
    }
}

fn record_removal(route: &CacheRoute, result: StoreResult<()>) {
    if let Err(error) = result {
        route.store_failed(StoreOp::Put, &error);
    }
}

/// The fill stamp, taken before the origin call; `None` if the store
/// failed (the response is then served but not stored).
async fn take_stamp(route: &CacheRoute) -> Option<Stamp> {
    let started = Instant::now();
    let result = route.cache.store().fill_stamp().await;
    route
        .metrics
        .store_latency(StoreOp::Stamp, started.elapsed());
    match result {
        Ok(stamp) => Some(stamp),
        Err(error) => {
            route.store_failed(StoreOp::Stamp, &error);
            None
        }
    }
}

/// Answers from `stale` when the origin failed (an error, or the 5xx
/// `origin_status`) and the entry's stale-if-error window still covers it.
fn stale_if_error<B>(
    route: &CacheRoute,
    stale: &Entry,
    request: &HeaderMap,
    origin_status: Option<u16>,
) -> Option<Response<CacheBody<B>>> {
    let now = now_micros();
    let validity = route.validity(stale);
    let stale_for = within_stale_window(stale, validity, now, stale.stale_if_error)?;
    let cause = StaleCause::OriginFailed {
        status: origin_status,
    };
    let status = Outcome::Stale { stale_for, cause }.report(route);
    Some(route.answer(stale, request, false, now, status))
}

/// Whether the response may be stored, from its head and the least its body
/// announces (the body is checked as it streams): its lifetime and `Vary`,
/// or what becomes of it instead.
fn decide(
    route: &CacheRoute,
    no_store: bool,
    head: &response::Parts,
    body_lower: u64,
    asked: Asked,
) -> Result<(Lifetime, Vary), Storing> {
    if no_store {
        return Err(Storing::No(NotStoredReason::RequestNoStore));
    }
    // A body that announces itself as too large (size hint) is refused up
    // front, so the client is told why.
    if body_lower > route.options.rules.max_body_bytes as u64 {
        return Err(Storing::No(NotStoredReason::TooLarge));
    }
    storable::decide(&route.options.rules, head, asked).map_err(Storing::No)
}

/// Everything about the entry to store except its body.
struct Shape {
    key: String,
    identity: Option<String>,
    primary: KeyHash,
    fill_stamp: Stamp,
    lifetime: Lifetime,
    vary: Vary,
    /// When the response's head arrived (µs).
    response_time: u64,
}

impl Shape {
    /// The entry (without its body), the hash to store it under and, when
    /// the response varies on headers beyond those the route selects on,
    /// the key's variant index to store: its hash and their names.
    ///
    /// Every header that selects this response (the route's own and the
    /// response's `Vary`) is recorded in the entry, so each hit re-checks
    /// them.
    fn entry(
        self,
        route: &CacheRoute,
        request: &Parts,
        head: &response::Parts,
    ) -> (KeyHash, Entry, Option<IndexAt>) {
        let taught = match &self.vary {
            Vary::Headers(names) => taught_names(route, names.iter()),
            _ => Vec::new(),
        };
        let (put_hash, index) = if taught.is_empty() {
            (self.primary, None)
        } else {
            let identity = self.identity.as_deref();
            let hash = route.variant_hash(&self.key, identity, &request.headers, &taught);
            let index = IndexAt {
                primary: self.primary,
                names: taught.clone().into_boxed_slice(),
            };
            (hash, Some(index))
        };
        let names: Vec<HeaderName> = route.selecting.iter().cloned().chain(taught).collect();
        let mut tags = gather(route.options.tags.as_ref(), Some(request), head);
        if let Some(name) = &route.options.tags_header {
            let listed = header_tags(&head.headers, name);
            tags = collect(tags.iter().map(|tag| &**tag).chain(listed));
        }
        tags.push(key_tag(&self.key));
        if route.origin {
            tags.push(uri_tag(host_of(request), &request.uri));
        }
        let headers = route.stored_headers(&head.headers);
        let withholds = route.withheld_in(&headers);
        let lifetime = self.lifetime;
        let entry = Entry {
            route: route.name.clone(),
            key: self.key.into_boxed_str(),
            identity: self.identity.map(String::into_boxed_str),
            status: head.status,
            headers,
            body: Bytes::new(),
            tags: tags.into_boxed_slice(),
            vary: request_values(&names, &request.headers).into_boxed_slice(),
            variants: None,
            fill_stamp: self.fill_stamp,
            // Its age counts from when it was generated (RFC 9111 §4.2.3).
            stored_at_micros: self.response_time.saturating_sub(micros(lifetime.age)),
            ttl: lifetime.ttl,
            stale_while_revalidate: lifetime.stale_while_revalidate,
            stale_if_error: lifetime.stale_if_error,
            validate_for: lifetime.validate_for,
            must_revalidate: lifetime.must_revalidate,
            withholds,
        };
        (put_hash, entry, index)
    }
}

/// Of the headers a response varies on, those the route does not select on
/// anyway, in order: the names of the key's variant index.
fn taught_names<'a>(
    route: &CacheRoute,
    names: impl Iterator<Item = &'a HeaderName>,
) -> Vec<HeaderName> {
    names
        .filter(|name| !route.selecting.contains(name))
        .cloned()
        .collect()
}
