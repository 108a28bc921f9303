//! The response future of [`InvalidateService`](super::InvalidateService).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::request::Parts;
use http::Response;
use pin_project_lite::pin_project;

use super::Shared;
use crate::cache::collect_tags;
use crate::metrics::StoreOp;
use crate::stamp::Stamp;
use crate::store::StoreFuture;
use crate::tags::Tags;

pin_project! {
    /// Waits for the handler, then for the invalidation, then yields the
    /// handler's response.
    pub struct InvalidateFuture<F, B> {
        #[pin]
        inner: F,
        shared: Arc<Shared>,
        head: Option<Parts>,
        invalidating: Option<Invalidating<B>>,
    }
}

struct Invalidating<B> {
    response: Response<B>,
    store: StoreFuture<Stamp>,
    tags: usize,
    started: Instant,
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
        loop {
            if let Some(invalidating) = this.invalidating.as_mut() {
                let result = ready!(Pin::new(&mut invalidating.store).poll(cx));
                let Invalidating {
                    response,
                    tags,
                    started,
                    ..
                } = this.invalidating.take().expect("checked above");
                let metrics = &this.shared.metrics;
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
            let store = this
                .shared
                .cache
                .store()
                .invalidate(&tags, this.shared.mode);
            *this.invalidating = Some(Invalidating {
                response,
                store,
                tags: tags.len(),
                started: Instant::now(),
            });
        }
    }
}
