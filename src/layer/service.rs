//! [`CacheService`]: the middleware of one cached route. Its `call` does
//! the synchronous part of every request (bypass rules, key, lookup in a
//! store that answers at once, hits); everything else continues in
//! [`resolve`](super::resolve).

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::CacheBody;
use super::fill::Forward;
use super::future::ResponseFuture;
use super::lookup::Step;
use super::outcome::Outcome;
use super::resolve::{resolve, Lookup};
use super::route::CacheRoute;
use super::unsafe_method::{invalidating, is_unsafe, UnsafeTarget};
use crate::metrics::StoreOp;
use crate::semantics::request;
use crate::semantics::verdict::{MissKind, Selector, Verdict};
use crate::semantics::BypassReason;
use crate::stamp::now_micros;

/// The middleware made by [`CacheLayer`](crate::CacheLayer).
pub struct CacheService<S> {
    inner: S,
    route: Arc<CacheRoute>,
}

impl<S> CacheService<S> {
    pub(crate) fn new(inner: S, route: Arc<CacheRoute>) -> Self {
        CacheService { inner, route }
    }
}

impl<S: Clone> Clone for CacheService<S> {
    fn clone(&self) -> Self {
        CacheService {
            inner: self.inner.clone(),
            route: self.route.clone(),
        }
    }
}

impl<S> std::fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("route", &self.route.name)
            .finish()
    }
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
        let route = &self.route;
        let options = &route.options;
        let per_user = options.identity.is_some();
        if let Some(reason) = request::bypass_reason(request.method(), request.headers(), per_user)
        {
            if route.origin && is_unsafe(request.method()) {
                return self.invalidating(request);
            }
            return self.bypass(request, reason);
        }
        let head_only = request.method() == Method::HEAD;
        let (parts, body) = request.into_parts();
        let identity = match &options.identity {
            None => None,
            Some(identity_of) => match identity_of(&parts) {
                Some(identity) => Some(identity),
                None => {
                    return self.bypass(Request::from_parts(parts, body), BypassReason::NoIdentity)
                }
            },
        };
        let Some(key) = route.key_of(&parts) else {
            return self.bypass(Request::from_parts(parts, body), BypassReason::NoKey);
        };
        if key.len() > options.max_key_bytes {
            drop(key);
            return self.bypass(Request::from_parts(parts, body), BypassReason::KeyTooLong);
        }
        let primary = route.hash(&key, identity.as_deref(), &parts.headers);

        let lookup = if !route.origin
            && options.honor_request_no_cache
            && request::wants_origin(&parts.headers)
        {
            Lookup::Done {
                hash: primary,
                verdict: Verdict::Miss(MissKind::Request),
            }
        } else {
            let selector = Selector {
                route: &route.name,
                key: &key,
                identity: identity.as_deref(),
                headers: &parts.headers,
            };
            match route.lookup(primary, &selector) {
                Step::Found { hash, result } => {
                    let now = now_micros();
                    let verdict = match result {
                        Ok(found) => route.judge(found, &selector, now),
                        Err(error) => {
                            route.store_failed(StoreOp::Get, &error);
                            Verdict::Miss(MissKind::StoreError)
                        }
                    };
                    // In origin mode the request's directives may take a
                    // stale entry or refuse a fresh one.
                    let verdict = route.as_requested(verdict, &parts.headers, now);
                    match &verdict {
                        Verdict::Fresh(entry) => {
                            let status = Outcome::Hit { entry, now }.report(route);
                            return ResponseFuture::ready(route.answer(
                                entry,
                                &parts.headers,
                                head_only,
                                now,
                                status,
                            ));
                        }
                        _ => Lookup::Done { hash, verdict },
                    }
                }
                pending => Lookup::Pending(pending),
            }
        };

        let key = key.into_owned();
        let forward = Forward {
            route: self.route.clone(),
            inner: self.take_inner(),
            parts,
            body,
            key,
            identity,
            primary,
            hash: primary,
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
        mut request: Request<ReqB>,
        reason: BypassReason,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
    {
        let status = Outcome::Bypass(reason).report(&self.route);
        request.extensions_mut().insert(self.route.cache.clone());
        let strip = self.route.strips().then(|| self.route.clone());
        ResponseFuture::bypass(self.inner.call(request), status, strip)
    }

    /// An unsafe request in origin mode: to the origin, then the target's
    /// entries are invalidated (see [`super::unsafe_method`]).
    fn invalidating<ReqB, ResB>(
        &mut self,
        mut request: Request<ReqB>,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        ResB: Body<Data = Bytes> + Send + 'static,
    {
        let route = self.route.clone();
        let status = Outcome::Bypass(BypassReason::Method).report(&route);
        let (parts, body) = request.into_parts();
        let target = UnsafeTarget::of(&route, &parts);
        request = Request::from_parts(parts, body);
        request.extensions_mut().insert(route.cache.clone());
        let answer = self.inner.call(request);
        ResponseFuture::boxed(invalidating(route, answer, target, status))
    }
}
