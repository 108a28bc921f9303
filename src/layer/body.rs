//! The response body of a cached route.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::record::Recorder;
use crate::semantics::NotStoredReason;

pin_project! {
    /// Body of a response that went through a [`CacheLayer`](crate::CacheLayer):
    /// a stored body on a hit, or the origin's body, passed through frame by
    /// frame (and recorded when the response is being stored).
    ///
    /// Recording never holds a frame back: each frame goes to the client as
    /// soon as the origin yields it, and a copy is kept only while the total
    /// stays under the route's `max_body_bytes`. Past that the copy is
    /// dropped and the rest streams through untouched.
    pub struct CacheBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Full { data: Option<Bytes> },
        Passthrough { #[pin] body: B },
        // Boxed: a hit's response moves through several futures by value,
        // and the recorder (with the entry it is completing) would make
        // every one of them larger.
        Recording { #[pin] body: B, recorder: Option<Box<Recorder>> },
    }
}

impl<B> CacheBody<B> {
    pub(crate) fn full(data: Bytes) -> Self {
        let data = (!data.is_empty()).then_some(data);
        CacheBody {
            kind: Kind::Full { data },
        }
    }

    pub(crate) fn empty() -> Self {
        CacheBody {
            kind: Kind::Full { data: None },
        }
    }

    pub(crate) fn passthrough(body: B) -> Self {
        CacheBody {
            kind: Kind::Passthrough { body },
        }
    }
}

impl<B: Body<Data = Bytes>> CacheBody<B> {
    pub(crate) fn recording(body: B, recorder: Recorder) -> Self {
        // A body that is already complete is never polled by hyper (it
        // checks `is_end_stream` first), so finish the recording now.
        if body.is_end_stream() {
            recorder.finish();
            return CacheBody::passthrough(body);
        }
        CacheBody {
            kind: Kind::Recording {
                body,
                recorder: Some(Box::new(recorder)),
            },
        }
    }
}

impl<B> Body for CacheBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Passthrough { body } => body.poll_frame(cx),
            KindProj::Recording { mut body, recorder } => {
                let polled = body.as_mut().poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(rec) = recorder.as_mut() {
                            let keep = match frame.data_ref() {
                                Some(data) => rec.push(data),
                                None => Err(NotStoredReason::Trailers),
                            };
                            if let Err(reason) = keep {
                                if let Some(rec) = recorder.take() {
                                    rec.give_up(reason);
                                }
                            }
                        }
                        let complete = recorder.as_ref().is_some_and(|rec| rec.is_complete());
                        if complete || body.is_end_stream() {
                            if let Some(rec) = recorder.take() {
                                rec.finish();
                            }
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(rec) = recorder.take() {
                            rec.give_up(NotStoredReason::BodyError);
                        }
                    }
                    Poll::Ready(None) => {
                        if let Some(rec) = recorder.take() {
                            rec.finish();
                        }
                    }
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Passthrough { body } | Kind::Recording { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Passthrough { body } | Kind::Recording { body, .. } => body.size_hint(),
        }
    }
}

impl<B> std::fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Full { .. } => "full",
            Kind::Passthrough { .. } => "passthrough",
            Kind::Recording { .. } => "recording",
        };
        f.debug_struct("CacheBody").field("kind", &kind).finish()
    }
}
