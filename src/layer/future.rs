//! The response future of [`CacheService`](super::CacheService).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use super::body::CacheBody;
use super::respond;
use super::route::CacheRoute;

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<CacheBody<B>>, E>> + Send>>;

pin_project! {
    /// Response future of [`CacheService`](super::CacheService).
    ///
    /// A hit from a store that answers synchronously (the memory store) is
    /// resolved before the future is even returned, with no allocation for
    /// the future; a bypass wraps the inner future; everything else (misses,
    /// waits on other requests, network stores) runs as a boxed task.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Ready { response: Option<Response<CacheBody<B>>> },
        Bypass {
            #[pin]
            future: F,
            cache_status: Option<HeaderValue>,
            // The route, when it removes headers from responses.
            strip: Option<Arc<CacheRoute>>,
        },
        Boxed { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn ready(response: Response<CacheBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn bypass(
        future: F,
        cache_status: HeaderValue,
        strip: Option<Arc<CacheRoute>>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Bypass {
                future,
                cache_status: Some(cache_status),
                strip,
            },
        }
    }

    pub(crate) fn boxed(
        future: impl Future<Output = Result<Response<CacheBody<B>>, E>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Boxed {
                future: Box::pin(future),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Bypass {
                future,
                cache_status,
                strip,
            } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(route) = strip.take() {
                    route.strip(response.headers_mut());
                }
                let response = response.map(CacheBody::passthrough);
                Poll::Ready(Ok(match cache_status.take() {
                    Some(status) => respond::with_status(response, status),
                    None => response,
                }))
            }
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
