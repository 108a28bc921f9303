//! Filling the cache: the leader's origin call, the decision to store, and
//! the recorder that stores the body once it has streamed to the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::CacheBody;
use super::policy::{within_stale_window, MissKind, RoutePolicy, Verdict};
use super::respond;
use super::service::Shared;
use crate::cache::{collect_tags, key_tag};
use crate::coalesce::FlightGuard;
use crate::entry::{Entry, KeyHash};
use crate::metrics::StoreOp;
use crate::semantics::cache_status::CacheStatus;
use crate::semantics::storable;
use crate::semantics::vary::{request_values, Vary};
use crate::semantics::NotStoredReason;
use crate::stamp::{now_micros, Stamp, Validity};
use crate::store::{Store, StoreFuture};
use crate::tags::Tags;

/// A request that has to go to the origin, with what the lookup learned.
pub(crate) struct Forward<S, ReqB> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) inner: S,
    pub(crate) parts: Parts,
    pub(crate) body: ReqB,
    pub(crate) key: String,
    pub(crate) identity: Option<String>,
    pub(crate) hash: KeyHash,
    pub(crate) kind: MissKind,
    /// A stale entry that may answer if the origin fails (stale-if-error).
    pub(crate) stale: Option<Arc<Entry>>,
    /// The request said `Cache-Control: no-store`: answer, store nothing.
    pub(crate) no_store: bool,
}

impl<S, ReqB> Forward<S, ReqB> {
    /// What `found` can do for this request at `now`.
    pub(crate) fn judge(&self, found: Option<Arc<Entry>>, now: u64) -> Verdict {
        self.shared.policy.evaluate(
            &**self.shared.cache.store(),
            found,
            &self.key,
            self.identity.as_deref(),
            &self.parts.headers,
            now,
        )
    }

    /// Answers this request from `entry` with the given `Cache-Status`.
    pub(crate) fn answer<B>(
        &self,
        entry: &Entry,
        head_only: bool,
        now: u64,
        cache_status: HeaderValue,
    ) -> Response<CacheBody<B>> {
        respond::from_entry(entry, &self.parts.headers, head_only, now, cache_status)
    }
}

impl<S, ReqB, ResB> Forward<S, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes>,
{
    /// Calls the origin and, if the response may be stored, returns it with a
    /// recording body that stores it and hands it to the flight's waiters.
    pub(crate) async fn fill(
        mut self,
        guard: Option<FlightGuard>,
    ) -> Result<Response<CacheBody<ResB>>, S::Error> {
        let policy = &self.shared.policy;
        let store: &dyn Store = &**self.shared.cache.store();
        policy.metrics.miss();
        let fill_stamp = take_stamp(store, policy).await;
        let request_head = snapshot(&self.parts);
        self.parts.extensions.insert(self.shared.cache.clone());
        let request = Request::from_parts(self.parts, self.body);
        let result = self.inner.call(request).await;

        let stale_ok = |stale: &Option<Arc<Entry>>| {
            stale.as_ref().and_then(|entry| {
                within_stale_window(store, entry, now_micros(), entry.stale_if_error)
                    .map(|stale_for| (entry.clone(), stale_for))
            })
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                if let Some((entry, stale_for)) = stale_ok(&self.stale) {
                    drop(guard);
                    policy.metrics.stale();
                    let status = CacheStatus::new(&self.shared.cache.inner().name)
                        .hit()
                        .fwd("stale")
                        .ttl(respond::stale_ttl(stale_for))
                        .detail("stale-if-error")
                        .finish();
                    return Ok(respond::from_entry(
                        &entry,
                        &request_head.headers,
                        false,
                        now_micros(),
                        status,
                    ));
                }
                return Err(error);
            }
        };
        let name = &self.shared.cache.inner().name;
        if response.status().is_server_error() {
            if let Some((entry, stale_for)) = stale_ok(&self.stale) {
                if let Some(guard) = guard {
                    guard.not_shareable();
                }
                policy.metrics.stale();
                let status = CacheStatus::new(name)
                    .hit()
                    .fwd("stale")
                    .fwd_status(response.status().as_u16())
                    .ttl(respond::stale_ttl(stale_for))
                    .detail("stale-if-error")
                    .finish();
                return Ok(respond::from_entry(
                    &entry,
                    &request_head.headers,
                    false,
                    now_micros(),
                    status,
                ));
            }
        }

        let (head, body) = response.into_parts();
        let status = CacheStatus::new(name).fwd(self.kind.fwd());
        let decision = match fill_stamp {
            None => Err(None),
            Some(_) if self.no_store => Err(Some(NotStoredReason::RequestNoStore)),
            // A body that announces itself as too large (size hint) is
            // refused up front, so the client is told why.
            Some(_) if body.size_hint().lower() > policy.rules.max_body_bytes as u64 => {
                Err(Some(NotStoredReason::TooLarge))
            }
            Some(stamp) => storable::decide(&policy.rules, &head)
                .map(|d| (stamp, d))
                .map_err(Some),
        };
        let (fill_stamp, (freshness, vary)) = match decision {
            Ok(decided) => decided,
            Err(reason) => {
                if let Some(guard) = guard {
                    guard.not_shareable();
                }
                let detail = match reason {
                    Some(reason) => {
                        policy.metrics.not_stored(reason);
                        reason.as_str()
                    }
                    None => "store-error",
                };
                let status = status.detail(detail).finish();
                return Ok(respond::with_status(
                    Response::from_parts(head, CacheBody::passthrough(body)),
                    status,
                ));
            }
        };

        // Record every header that selects this response (the route's own
        // and the response's `Vary`) so each hit re-checks them; and store
        // under the key later requests will compute once the names are
        // learned.
        let mut names = policy.vary.clone();
        let mut put_hash = self.hash;
        if let Vary::Headers(response_names) = vary {
            policy.learned_vary.learn(&response_names, &policy.vary);
            for name in response_names {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            put_hash = policy.hash(&self.key, self.identity.as_deref(), &request_head.headers);
        }
        let vary = request_values(&names, &request_head.headers);
        let mut tags: Vec<String> = match &policy.tags {
            Some(tags_of) => tags_of(&request_head, &head),
            None => Vec::new(),
        };
        if let Some(extra) = head.extensions.get::<Tags>() {
            tags.extend(extra.as_slice().iter().cloned());
        }
        let mut tags = collect_tags(tags);
        tags.push(key_tag(&self.key));

        let template = Entry {
            route: policy.route.as_ref().into(),
            key: self.key.into_boxed_str(),
            identity: self.identity.map(String::into_boxed_str),
            status: head.status,
            headers: respond::with_slots(&head.headers),
            body: Bytes::new(),
            tags: tags.into_boxed_slice(),
            vary: vary.into_boxed_slice(),
            fill_stamp,
            stored_at_micros: 0,
            ttl: freshness.ttl,
            stale_while_revalidate: freshness.stale_while_revalidate,
            stale_if_error: freshness.stale_if_error,
        };
        let known_small = body
            .size_hint()
            .exact()
            .is_some_and(|len| len <= policy.rules.max_body_bytes as u64);
        // `stored` is only claimed when the body is known to fit; a body of
        // unknown length may still grow past the limit while streaming.
        let status = if known_small { status.stored() } else { status };
        let status = match self.kind.detail() {
            Some(detail) => status.detail(detail),
            None => status,
        };
        // The length the body announces, from its size hint or the header.
        // HTTP/1 servers stop polling a body once that many bytes are out,
        // so the recorder must finish on the count, not on end-of-stream.
        let expected = body
            .size_hint()
            .exact()
            .or_else(|| storable::content_length(&head.headers));
        let recorder = Recorder {
            first: None,
            rest: BytesMut::new(),
            len: 0,
            expected: expected.and_then(|n| usize::try_from(n).ok()),
            max: policy.rules.max_body_bytes,
            shared: self.shared.clone(),
            hash: put_hash,
            template,
            guard,
        };
        tracing::debug!(route = %policy.route, kind = ?self.kind, "tagcache filling from origin");
        Ok(respond::with_status(
            Response::from_parts(head, CacheBody::recording(body, recorder)),
            status.finish(),
        ))
    }
}

async fn take_stamp(store: &dyn Store, policy: &RoutePolicy) -> Option<Stamp> {
    let started = Instant::now();
    let result = store.fill_stamp().await;
    policy
        .metrics
        .store_latency(StoreOp::Stamp, started.elapsed());
    match result {
        Ok(stamp) => Some(stamp),
        Err(error) => {
            policy.metrics.store_error(StoreOp::Stamp);
            tracing::warn!(route = %policy.route, %error, "tagcache store unavailable; serving from origin without storing");
            None
        }
    }
}

/// A copy of the request head (no extensions, no body) for the tags function,
/// which runs after the request itself has gone to the origin.
fn snapshot(parts: &Parts) -> Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}

/// Collects the body as it streams and, when it ends within the limit,
/// stores the entry and shares it with the flight's waiters.
pub(crate) struct Recorder {
    /// The first chunk, kept without copying: most bodies are one chunk.
    first: Option<Bytes>,
    rest: BytesMut,
    len: usize,
    /// The announced length, if any: reaching it completes the body.
    expected: Option<usize>,
    max: usize,
    shared: Arc<Shared>,
    hash: KeyHash,
    template: Entry,
    guard: Option<FlightGuard>,
}

impl Recorder {
    /// Keeps a copy of `data`, or says why the response will not be stored.
    pub(crate) fn push(&mut self, data: &Bytes) -> Result<(), NotStoredReason> {
        self.len += data.len();
        if self.len > self.max {
            return Err(NotStoredReason::TooLarge);
        }
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(data.clone());
        } else {
            if let Some(first) = self.first.take() {
                self.rest.extend_from_slice(&first);
            }
            self.rest.extend_from_slice(data);
        }
        Ok(())
    }

    /// Whether every announced byte has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.expected == Some(self.len)
    }

    /// The response will not be stored: waiters go to the origin themselves.
    pub(crate) fn give_up(self, reason: NotStoredReason) {
        self.shared.policy.metrics.not_stored(reason);
        tracing::debug!(route = %self.shared.policy.route, reason = reason.as_str(), "tagcache not storing response");
        if let Some(guard) = self.guard {
            guard.not_shareable();
        }
    }

    /// The body ended: store the entry and share it.
    pub(crate) fn finish(self) {
        let Recorder {
            first,
            rest,
            shared,
            hash,
            mut template,
            mut guard,
            ..
        } = self;
        template.body = first.unwrap_or_else(|| rest.freeze());
        // The stored body is complete, so say how long it is: otherwise the
        // server adds `Content-Length` to every hit's cloned map (a regrow).
        if !template.headers.contains_key(CONTENT_LENGTH)
            && !template.headers.contains_key(TRANSFER_ENCODING)
        {
            template
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(template.body.len()));
        }
        template.stored_at_micros = now_micros();
        let entry = Arc::new(template);
        let store = shared.cache.store().clone();
        if store.validity(&entry) == Validity::Invalid {
            // Invalidated while the origin was answering: never stored. The
            // waiters still get it and, finding it invalid, start afresh.
            shared
                .policy
                .metrics
                .not_stored(NotStoredReason::Invalidated);
            if let Some(guard) = guard.as_mut() {
                guard.share(entry);
            }
            return;
        }
        if let Some(guard) = guard.as_mut() {
            guard.share(entry.clone());
        }
        let started = Instant::now();
        match store.put(hash, entry).now_or_later() {
            Ok(result) => record_put(&shared, result, started.elapsed()),
            Err(pending) => spawn_put(shared, pending, started, guard),
        }
    }
}

/// Finishes a store write off the response path, holding the flight guard
/// until the entry is in, so requests meanwhile join the flight rather than
/// miss in the store.
fn spawn_put(
    shared: Arc<Shared>,
    pending: StoreFuture<()>,
    started: Instant,
    guard: Option<FlightGuard>,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let result = pending.await;
        record_put(&shared, result, started.elapsed());
        drop(guard);
    });
}

fn record_put(shared: &Shared, result: Result<(), crate::StoreError>, elapsed: Duration) {
    let metrics = &shared.policy.metrics;
    metrics.store_latency(StoreOp::Put, elapsed);
    if let Err(error) = result {
        metrics.store_error(StoreOp::Put);
        tracing::warn!(route = %shared.policy.route, %error, "tagcache could not store a response");
    }
}
