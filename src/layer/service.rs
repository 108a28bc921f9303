//! [`CacheService`]: the middleware of one cached route.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::CacheBody;
use super::fill::Forward;
use super::future::ResponseFuture;
use super::policy::{request_wants_origin, within_stale_window, MissKind, RoutePolicy, Verdict};
use super::respond;
use crate::cache::Cache;
use crate::coalesce::{FlightGuard, Outcome, Role};
use crate::entry::Entry;
use crate::metrics::StoreOp;
use crate::semantics::cache_control::CacheControl;
use crate::semantics::cache_status::CacheStatus;
use crate::semantics::{BypassReason, NotStoredReason};
use crate::stamp::now_micros;
use crate::store::{StoreFuture, StoreResult};

/// A waiter that keeps finding its flight abandoned or overtaken by an
/// invalidation goes to the origin on its own after this many tries.
const MAX_JOINS: usize = 3;

pub(crate) struct Shared {
    pub(crate) cache: Cache,
    pub(crate) policy: RoutePolicy,
}

/// The middleware made by [`CacheLayer`](crate::CacheLayer).
pub struct CacheService<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for CacheService<S> {
    fn clone(&self) -> Self {
        CacheService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("route", &self.shared.policy.route)
            .finish()
    }
}

/// The lookup's outcome, when the layer had to go asynchronous.
enum Lookup {
    Pending(StoreFuture<Option<Arc<Entry>>>, Instant),
    Done(Verdict),
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for CacheService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<CacheBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let policy = &self.shared.policy;
        let head_only = request.method() == Method::HEAD;
        if !head_only && request.method() != Method::GET {
            return self.bypass(request, BypassReason::Method);
        }
        if policy.identity.is_none() {
            // A shared entry must never answer for a credential it did not
            // see; routes opt in by naming the identity in the key.
            if request.headers().contains_key(AUTHORIZATION) {
                return self.bypass(request, BypassReason::Authorization);
            }
            if request.headers().contains_key(COOKIE) {
                return self.bypass(request, BypassReason::Cookie);
            }
        }
        let (parts, body) = request.into_parts();
        let identity = match &policy.identity {
            None => None,
            Some(identity_of) => match identity_of(&parts) {
                Some(identity) => Some(identity),
                None => {
                    return self.bypass(Request::from_parts(parts, body), BypassReason::NoIdentity)
                }
            },
        };
        let Some(key) = policy.key_of(&parts) else {
            return self.bypass(Request::from_parts(parts, body), BypassReason::NoKey);
        };
        if key.len() > policy.max_key_bytes {
            drop(key);
            return self.bypass(Request::from_parts(parts, body), BypassReason::KeyTooLong);
        }
        let hash = policy.hash(&key, identity.as_deref(), &parts.headers);

        let lookup = if policy.honor_request_no_cache && request_wants_origin(&parts.headers) {
            Lookup::Done(Verdict::Miss(MissKind::Request))
        } else {
            let store = self.shared.cache.store();
            // Only stores that answer asynchronously have a latency worth
            // recording; an in-memory lookup is not timed.
            match store.get(hash).now_or_later() {
                Ok(found) => {
                    let now = now_micros();
                    let verdict = match found {
                        Ok(found) => policy.evaluate(
                            &**store,
                            found,
                            &key,
                            identity.as_deref(),
                            &parts.headers,
                            now,
                        ),
                        Err(error) => store_failed(policy, error),
                    };
                    if let Verdict::Fresh(entry) = &verdict {
                        policy.metrics.hit();
                        let status =
                            respond::hit_status(&self.shared.cache.inner().name, entry, now);
                        return ResponseFuture::ready(respond::from_entry(
                            entry,
                            &parts.headers,
                            head_only,
                            now,
                            status,
                        ));
                    }
                    Lookup::Done(verdict)
                }
                Err(pending) => Lookup::Pending(pending, Instant::now()),
            }
        };

        let key = key.into_owned();
        let forward = Forward {
            shared: self.shared.clone(),
            inner: self.take_inner(),
            parts,
            body,
            key,
            identity,
            hash,
            kind: MissKind::Absent,
            stale: None,
            no_store: false,
        };
        ResponseFuture::boxed(resolve(forward, lookup, head_only))
    }
}

impl<S: Clone> CacheService<S> {
    /// The inner service that `poll_ready` prepared, leaving a clone behind
    /// (the usual tower pattern for services called from a spawned future).
    fn take_inner(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }

    fn bypass<ReqB, ResB>(
        &mut self,
        request: Request<ReqB>,
        reason: BypassReason,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
    {
        let policy = &self.shared.policy;
        policy.metrics.bypass(reason);
        tracing::debug!(route = %policy.route, reason = reason.as_str(), "tagcache bypass");
        let status = CacheStatus::new(&self.shared.cache.inner().name);
        // RFC 9211 names the method case itself; other bypasses say why.
        let status = match reason {
            BypassReason::Method => status.fwd("method"),
            _ => status.fwd("bypass").detail(reason.as_str()),
        }
        .finish();
        let mut request = request;
        request.extensions_mut().insert(self.shared.cache.clone());
        ResponseFuture::bypass(self.inner.call(request), status)
    }
}

fn store_failed(policy: &RoutePolicy, error: crate::StoreError) -> Verdict {
    policy.metrics.store_error(StoreOp::Get);
    log_store_error(policy, &error);
    Verdict::Miss(MissKind::StoreError)
}

/// Store failures are logged at most about once a second per route: when
/// Redis is down every request fails, and the log must stay readable.
fn log_store_error(policy: &RoutePolicy, error: &crate::StoreError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_micros() / 1_000_000;
    if LAST.swap(now, Ordering::Relaxed) != now {
        tracing::warn!(route = %policy.route, %error, "tagcache store lookup failed; serving from origin");
    }
}

/// Finishes the lookup (if the store was asynchronous) and answers.
async fn resolve<S, ReqB, ResB>(
    mut forward: Forward<S, ReqB>,
    lookup: Lookup,
    head_only: bool,
) -> Result<Response<CacheBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let shared = forward.shared.clone();
    let policy = &shared.policy;
    let store = shared.cache.store();
    let verdict = match lookup {
        Lookup::Done(verdict) => verdict,
        Lookup::Pending(pending, started) => {
            let found: StoreResult<_> = pending.await;
            policy
                .metrics
                .store_latency(StoreOp::Get, started.elapsed());
            match found {
                Ok(found) => forward.judge(found, now_micros()),
                Err(error) => store_failed(policy, error),
            }
        }
    };
    let name = &shared.cache.inner().name;
    match verdict {
        Verdict::Fresh(entry) => {
            policy.metrics.hit();
            let now = now_micros();
            let status = respond::hit_status(name, &entry, now);
            return Ok(forward.answer(&entry, head_only, now, status));
        }
        Verdict::Stale(entry) => {
            let now = now_micros();
            if let Some(stale_for) =
                within_stale_window(&**store, &entry, now, entry.stale_while_revalidate)
            {
                policy.metrics.stale();
                let status = CacheStatus::new(name)
                    .hit()
                    .fwd("stale")
                    .ttl(respond::stale_ttl(stale_for))
                    .finish();
                let response = forward.answer(&entry, head_only, now, status);
                forward.kind = MissKind::Expired;
                revalidate_in_background(forward);
                return Ok(response);
            }
            forward.kind = MissKind::Expired;
            forward.stale = Some(entry);
        }
        Verdict::Miss(kind) => forward.kind = kind,
    }
    if head_only {
        return forward_head(forward).await;
    }
    if CacheControl::parse(&forward.parts.headers).no_store {
        // The client asked that nothing of this exchange be stored: go to the
        // origin alone, outside any flight, so such requests cannot make
        // responses unshareable for anyone else.
        forward.no_store = true;
        return forward.fill(None).await;
    }
    // A client that asked for the origin's answer (on a route that honours
    // it) must not take another request's flight, which may predate it.
    if !policy.coalesce || forward.kind == MissKind::Request {
        return forward.fill(None).await;
    }
    coalesced(forward).await
}

/// A HEAD miss goes to the origin as it is: its bodiless response cannot
/// fill a GET entry (a HEAD *hit* is answered from the stored GET).
async fn forward_head<S, ReqB, ResB>(
    forward: Forward<S, ReqB>,
) -> Result<Response<CacheBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    let Forward {
        shared,
        mut inner,
        mut parts,
        body,
        kind,
        ..
    } = forward;
    shared.policy.metrics.not_stored(NotStoredReason::Head);
    parts.extensions.insert(shared.cache.clone());
    let response = inner.call(Request::from_parts(parts, body)).await?;
    let status = CacheStatus::new(&shared.cache.inner().name)
        .fwd(kind.fwd())
        .detail(NotStoredReason::Head.as_str())
        .finish();
    Ok(respond::with_status(
        response.map(CacheBody::passthrough),
        status,
    ))
}

/// Joins the key's flight: leads it, or waits and shares its response.
async fn coalesced<S, ReqB, ResB>(
    forward: Forward<S, ReqB>,
) -> Result<Response<CacheBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes>,
{
    let shared = forward.shared.clone();
    let policy = &shared.policy;
    let coalescer = &shared.cache.inner().coalescer;
    for _ in 0..MAX_JOINS {
        let flight = match coalescer.join(forward.hash) {
            Role::Leader(mut guard) => {
                if forward.kind != MissKind::StoreError {
                    let found = shared.cache.store().get(forward.hash).await.ok().flatten();
                    if let Some(entry) = fresh_after_lead(&forward, found, &mut guard) {
                        policy.metrics.hit();
                        let now = now_micros();
                        let status = respond::hit_status(&shared.cache.inner().name, &entry, now);
                        return Ok(forward.answer(&entry, false, now, status));
                    }
                }
                return forward.fill(Some(guard)).await;
            }
            Role::Waiter(flight) => flight,
        };
        let outcome = tokio::time::timeout(policy.coalesce_timeout, flight.outcome()).await;
        match outcome {
            Ok(Outcome::Shared(entry)) => {
                let now = now_micros();
                let verdict = forward.judge(Some(entry), now);
                match verdict {
                    Verdict::Fresh(entry) => {
                        policy.metrics.collapsed();
                        let status = CacheStatus::new(&shared.cache.inner().name)
                            .fwd(forward.kind.fwd())
                            .collapsed()
                            .finish();
                        return Ok(forward.answer(&entry, false, now, status));
                    }
                    // Overtaken by an invalidation (or already stale): this
                    // request must not take it. Start a fresh flight.
                    Verdict::Stale(_)
                    | Verdict::Miss(MissKind::Invalidated | MissKind::Expired) => {
                        coalescer.retire(forward.hash, &flight);
                    }
                    // Another variant or identity: not ours to share.
                    Verdict::Miss(_) => return forward.fill(None).await,
                }
            }
            // Not shareable: each waiter asks the origin itself.
            Ok(Outcome::NotShareable) => return forward.fill(None).await,
            // The wait ran out: stop others queueing behind the stuck flight,
            // then ask the origin (and store the answer) without waiting more.
            Err(_) => {
                coalescer.retire(forward.hash, &flight);
                return forward.fill(None).await;
            }
            Ok(Outcome::Abandoned) => {}
        }
    }
    forward.fill(None).await
}

/// Judges an entry looked up again after winning the lead: a previous
/// leader may have stored it and left the table between this request's
/// lookup and its join, and calling the origin again would break "one
/// origin call per key". A fresh entry is handed to anyone who already
/// joined this flight.
fn fresh_after_lead<S, ReqB>(
    forward: &Forward<S, ReqB>,
    found: Option<Arc<Entry>>,
    guard: &mut FlightGuard,
) -> Option<Arc<Entry>> {
    let Verdict::Fresh(entry) = forward.judge(found, now_micros()) else {
        return None;
    };
    guard.share(entry.clone());
    Some(entry)
}

/// Serves stale now, refreshes once in the background: only the request that
/// leads the key's flight refreshes, however many see the entry stale.
fn revalidate_in_background<S, ReqB, ResB>(mut forward: Forward<S, ReqB>)
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let guard = match forward.shared.cache.inner().coalescer.join(forward.hash) {
        Role::Leader(guard) => guard,
        Role::Waiter(_) => return,
    };
    // The client already has its answer: refresh with a plain GET (even for
    // HEAD, and without the client's validators, since a 304 cannot refresh
    // a stored body).
    forward.parts.method = Method::GET;
    forward.parts.headers.remove(IF_NONE_MATCH);
    forward.parts.headers.remove(IF_MODIFIED_SINCE);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let deadline = forward.shared.policy.refresh_timeout;
    runtime.spawn(async move {
        let refresh = async move {
            let mut guard = guard;
            // Another refresh may have landed since this request's lookup.
            let found = forward.shared.cache.store().get(forward.hash).await;
            if fresh_after_lead(&forward, found.ok().flatten(), &mut guard).is_some() {
                return;
            }
            if let Ok(response) = forward.fill(Some(guard)).await {
                drain(response.into_body()).await;
            }
        };
        // A hung origin must not hold the key's flight for ever: when the
        // deadline drops the refresh, its guard reports it abandoned.
        let _ = tokio::time::timeout(deadline, refresh).await;
    });
}

/// Polls a body to its end so its recorder stores it.
async fn drain<B: Body>(body: B) {
    let mut body = pin!(body);
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if frame.is_err() {
            break;
        }
    }
}
