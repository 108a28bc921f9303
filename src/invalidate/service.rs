//! [`InvalidateService`]: the middleware of one mutating route.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::InvalidateFuture;
use super::Shared;

/// The middleware made by [`InvalidateLayer`](super::InvalidateLayer).
pub struct InvalidateService<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for InvalidateService<S> {
    fn clone(&self) -> Self {
        InvalidateService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for InvalidateService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidateService").finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for InvalidateService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = InvalidateFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        // The tags function sees the request after the handler consumed it,
        // so keep a copy of its head (mutations are not the hot path).
        let head = self.shared.tags.as_ref().map(|_| {
            let mut copy = Request::new(());
            *copy.method_mut() = request.method().clone();
            *copy.uri_mut() = request.uri().clone();
            *copy.version_mut() = request.version();
            *copy.headers_mut() = request.headers().clone();
            copy.into_parts().0
        });
        request.extensions_mut().insert(self.shared.cache.clone());
        InvalidateFuture::new(self.inner.call(request), self.shared.clone(), head)
    }
}
