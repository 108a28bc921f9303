//! The response future of [`InvalidateService`](super::InvalidateService).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::request::Parts;
use http::Response;
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use super::InvalidateRoute;
use crate::cache::Target;
use crate::stamp::Stamp;
use crate::store::{StoreFuture, StoreResult};
use crate::tags::gather;

pin_project! {
    /// Response future of [`InvalidateService`](super::InvalidateService):
    /// waits for the handler, then for the invalidation, then yields the
    /// handler's response.
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: F,
        route: Arc<InvalidateRoute>,
        head: Option<Parts>,
        invalidating: Option<(Response<B>, Invalidation)>,
    }
}

/// An invalidation the store could not finish at once. It runs as a task of
/// its own: the mutation has happened, so the invalidation must complete
/// even if the client disconnects and this future is dropped.
enum Invalidation {
    Task(JoinHandle<StoreResult<Stamp>>),
    /// No runtime to spawn on (not the case under axum): polled in place.
    InPlace(StoreFuture<Stamp>),
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(inner: F, route: Arc<InvalidateRoute>, head: Option<Parts>) -> Self {
        ResponseFuture {
            inner,
            route,
            head,
            invalidating: None,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some((_, invalidation)) = this.invalidating.as_mut() {
            // The outcome was counted and logged where the invalidation ran;
            // a task that panicked or was cancelled has nothing to add.
            match invalidation {
                Invalidation::Task(task) => drop(ready!(Pin::new(task).poll(cx))),
                Invalidation::InPlace(future) => drop(ready!(Pin::new(future).poll(cx))),
            }
            let (response, _) = this.invalidating.take().expect("checked above");
            return Poll::Ready(Ok(response));
        }

        let response = ready!(this.inner.as_mut().poll(cx))?;
        let route = this.route;
        if !(route.when)(response.status()) {
            return Poll::Ready(Ok(response));
        }
        let (parts, body) = response.into_parts();
        let tags = gather(route.tags.as_ref(), this.head.as_ref(), &parts);
        let response = Response::from_parts(parts, body);
        if tags.is_empty() {
            return Poll::Ready(Ok(response));
        }
        let target = Target::Tags(tags, route.mode);
        let pending = match route
            .cache
            .run_invalidation(target, &route.metrics)
            .now_or_later()
        {
            Ok(_) => return Poll::Ready(Ok(response)),
            Err(pending) => pending,
        };
        let invalidation = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => Invalidation::Task(runtime.spawn(pending)),
            Err(_) => Invalidation::InPlace(pending),
        };
        *this.invalidating = Some((response, invalidation));
        // Poll again at once, so the task's waker is registered.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
