//! The response future of [`InvalidateService`](super::InvalidateService).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::request::Parts;
use http::Response;
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;

use super::Shared;
use crate::cache::collect_tags;
use crate::metrics::{RouteMetrics, StoreOp};
use crate::stamp::Stamp;
use crate::store::{StoreError, StoreErrorKind, StoreFuture, StoreResult};
use crate::tags::Tags;

pin_project! {
    /// Waits for the handler, then for the invalidation, then yields the
    /// handler's response.
    pub struct InvalidateFuture<F, B> {
        #[pin]
        inner: F,
        shared: Arc<Shared>,
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
    InPlace(Pin<Box<dyn Future<Output = StoreResult<Stamp>> + Send>>),
}

impl<F, B> InvalidateFuture<F, B> {
    pub(crate) fn new(inner: F, shared: Arc<Shared>, head: Option<Parts>) -> Self {
        InvalidateFuture {
            inner,
            shared,
            head,
            invalidating: None,
        }
    }
}

impl<F, B, E> Future for InvalidateFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some((_, invalidation)) = this.invalidating.as_mut() {
            // Failures were counted and logged where the invalidation ran.
            let _ = ready!(match invalidation {
                Invalidation::Task(task) => Pin::new(task).poll(cx).map(|joined| {
                    joined.unwrap_or_else(|e| {
                        Err(StoreError::new(StoreErrorKind::Other, e.to_string()))
                    })
                }),
                Invalidation::InPlace(future) => future.as_mut().poll(cx),
            });
            let (response, _) = this.invalidating.take().expect("checked above");
            return Poll::Ready(Ok(response));
        }

        let response = ready!(this.inner.as_mut().poll(cx))?;
        if !(this.shared.when)(response.status()) {
            return Poll::Ready(Ok(response));
        }
        let (parts, body) = response.into_parts();
        let mut tags = match (&this.shared.tags, this.head.take()) {
            (Some(tags_of), Some(head)) => tags_of(&head, &parts),
            _ => Vec::new(),
        };
        if let Some(extra) = parts.extensions.get::<Tags>() {
            tags.extend(extra.as_slice().iter().cloned());
        }
        let response = Response::from_parts(parts, body);
        let tags = collect_tags(tags);
        if tags.is_empty() {
            return Poll::Ready(Ok(response));
        }
        let started = Instant::now();
        let metrics = this.shared.metrics.clone();
        let count = tags.len();
        match this
            .shared
            .cache
            .store()
            .invalidate(&tags, this.shared.mode)
            .now_or_later()
        {
            Ok(result) => {
                record(&metrics, result, count, started);
                Poll::Ready(Ok(response))
            }
            Err(pending) => {
                let finish = finish(pending, metrics, count, started);
                let invalidation = match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => Invalidation::Task(runtime.spawn(finish)),
                    Err(_) => Invalidation::InPlace(Box::pin(finish)),
                };
                *this.invalidating = Some((response, invalidation));
                // Poll once now so the task's waker is registered.
                self_poll_again(cx)
            }
        }
    }
}

fn self_poll_again<T>(cx: &mut Context<'_>) -> Poll<T> {
    cx.waker().wake_by_ref();
    Poll::Pending
}

async fn finish(
    pending: StoreFuture<Stamp>,
    metrics: Arc<RouteMetrics>,
    tags: usize,
    started: Instant,
) -> StoreResult<Stamp> {
    let result = pending.await;
    record(&metrics, result.clone(), tags, started);
    result
}

fn record(metrics: &RouteMetrics, result: StoreResult<Stamp>, tags: usize, started: Instant) {
    metrics.store_latency(StoreOp::Invalidate, started.elapsed());
    match result {
        Ok(stamp) => {
            metrics.invalidated(tags);
            tracing::debug!(route = %metrics.name(), tags, stamp = stamp.0, "tagcache invalidated after mutation");
        }
        Err(error) => {
            metrics.store_error(StoreOp::Invalidate);
            tracing::error!(route = %metrics.name(), %error, "tagcache could not invalidate after a successful mutation; affected entries may be served until they expire");
        }
    }
}
