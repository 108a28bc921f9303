//! [`InvalidateService`]: the middleware of one mutating route.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::InvalidateRoute;
use crate::tags::copy_head;

/// The middleware made by [`InvalidateLayer`](super::InvalidateLayer).
pub struct InvalidateService<S> {
    pub(crate) inner: S,
    pub(crate) route: Arc<InvalidateRoute>,
}

impl<S: Clone> Clone for InvalidateService<S> {
    fn clone(&self) -> Self {
        InvalidateService {
            inner: self.inner.clone(),
            route: self.route.clone(),
        }
    }
}

impl<S> std::fmt::Debug for InvalidateService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidateService")
            .field("route", self.route.metrics.name())
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for InvalidateService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        // The tags function sees the request after the handler consumed it,
        // so keep a copy of its head (mutations are not the hot path).
        let head = self.route.tags.as_ref().map(|_| copy_head(&parts));
        parts.extensions.insert(self.route.cache.clone());
        let future = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::new(future, self.route.clone(), head)
    }
}
