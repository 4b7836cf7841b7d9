//! The response body, metered: an endpoint's latency runs to the end of the body (to the head
//! for a stream), and a gRPC status in trailers is classified when they arrive.

use super::endpoint::InFlight;
use crate::classify::grpc_web::TrailerScanner;
use crate::classify::{Class, Classify, Reason, Retryable};
use crate::error::BoxError;
use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

pin_project! {
    /// A response body that reports to its endpoint when it ends.
    ///
    /// It yields exactly what the endpoint sent. At the end of the stream (or on an error) it
    /// records the request's latency and class with the endpoint that served it. Dropped early
    /// by the caller, it records the class of the response head, and the latency to the head
    /// (the time the caller held the body is not the endpoint's); dropped by a meshless timer
    /// (the deadline or the idle timeout of a [`DeadlineBody`](crate::deadline::DeadlineBody)),
    /// it records a timeout.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        meter: Option<Pending>,
        // For gRPC-web, whose status is in a trailer frame of the body: the frames seen so far.
        web: Option<Box<TrailerScanner>>,
        // The bytes its `content-length` still promises, when the body's end must be checked
        // against it (see `ShortBody`).
        remaining: Option<u64>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(Pending { in_flight, head, classifier }) = this.meter.take() {
                if crate::deadline::expiry::charges_endpoint() {
                    // The body stalled past its deadline: the endpoint's doing, for as long
                    // as it stalled.
                    in_flight.finish(&Class::failure(Reason::Timeout, Retryable::IfIdempotent));
                    return;
                }
                let class = match head {
                    // The caller stopped reading: that says nothing bad about the endpoint.
                    Some(class) => class,
                    // A gRPC-web status may have arrived before the caller stopped reading.
                    None => match this.web.as_deref() {
                        Some(web) if web.trailers().is_some() => web.classify_eos(&*classifier),
                        _ => Class::success(),
                    },
                };
                // Timed to the head: how long the caller held the body is not the endpoint's
                // latency (a body read to its end is timed to its end).
                in_flight.finish_early(&class);
            }
        }
    }
}

/// What a metered body has yet to record: the request in flight, the class of its head (`None`
/// when it is decided at the end of the stream), and the classifier for that end. Kept together
/// so that a body whose request is already recorded (most: an empty or a complete body) holds
/// no classifier, and costs no reference count.
struct Pending {
    in_flight: InFlight,
    head: Option<Class>,
    classifier: Arc<dyn Classify>,
}

impl<B> ResponseBody<B> {
    /// `head` is the class of the response head, or `None` when it is decided at the end of
    /// the stream. `meter` is `None` when the request was already recorded (RTT at headers).
    pub(crate) fn new(
        inner: B,
        meter: Option<(InFlight, Option<Class>)>,
        web: Option<Box<TrailerScanner>>,
        classifier: &Arc<dyn Classify>,
        length: Option<u64>,
    ) -> Self {
        ResponseBody {
            inner,
            meter: meter.map(|(mut in_flight, head)| {
                in_flight.head_arrived();
                Pending {
                    in_flight,
                    head,
                    classifier: classifier.clone(),
                }
            }),
            web,
            remaining: length,
        }
    }
}

/// The error of an HTTP/2 body that ended before the bytes its `content-length` promised:
/// hyper reads a stream reset with `NO_ERROR` as the body's end, which a server may send only
/// after a complete answer (RFC 9113 §8.1). HTTP/1.1 bodies need no check: hyper fails a
/// short one itself.
#[derive(Debug)]
pub(crate) struct ShortBody {
    missing: u64,
}

impl std::fmt::Display for ShortBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the response body ended {} bytes short of its content-length",
            self.missing
        )
    }
}

impl std::error::Error for ShortBody {}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("metered", &self.meter.is_some())
            .finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let frame = ready!(inner.as_mut().poll_frame(cx)).map(|f| f.map_err(Into::into));
        if let Some(remaining) = this.remaining {
            match &frame {
                Some(Ok(f)) => {
                    if let Some(data) = f.data_ref() {
                        *remaining = remaining.saturating_sub(data.remaining() as u64);
                    }
                }
                None if *remaining > 0 => {
                    let short = ShortBody {
                        missing: *remaining,
                    };
                    *this.remaining = None;
                    let error: BoxError = Box::new(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        short,
                    ));
                    if let Some(pending) = this.meter.take() {
                        pending.in_flight.fail(&*error, &*pending.classifier);
                    }
                    return Poll::Ready(Some(Err(error)));
                }
                _ => {}
            }
        }
        match &frame {
            None => finish(this.meter, this.web, None),
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref() {
                    finish(this.meter, this.web, Some(trailers));
                } else if let (Some(web), Some(data)) = (this.web.as_deref_mut(), f.data_ref()) {
                    web.feed_buf(data);
                    // A reader that stops at `is_end_stream` never polls the final `None`.
                    if inner.is_end_stream() {
                        finish(this.meter, this.web, None);
                    }
                } else if let Some(pending) = this.meter.as_mut() {
                    // A body whose class waits for its end (gRPC) and ends with this frame,
                    // without trailers, is judged now, as the retry layer judges it: a reader
                    // that stops at `is_end_stream` (tonic, after a message it could not
                    // decode) never polls the final `None`, and its drop would pass for a
                    // caller that stopped reading. Counted at that `None` or at the drop, so
                    // that a layer above that refuses the frame (a deadline, for a reader come
                    // too late) keeps the endpoint's latency at the head.
                    if pending.head.is_none() && inner.is_end_stream() {
                        pending.head = Some(pending.classifier.classify_eos(None));
                    }
                }
            }
            Some(Err(e)) => {
                if let Some(pending) = this.meter.take() {
                    // The caller's request body can fail after the head too (an upload, a
                    // bidirectional stream): that is nothing the endpoint did.
                    pending.in_flight.fail(&**e, &*pending.classifier);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Records the end of the stream: with the HTTP trailers when they arrived, else with the
/// trailer frame of a gRPC-web body.
fn finish(
    meter: &mut Option<Pending>,
    web: &Option<Box<TrailerScanner>>,
    trailers: Option<&HeaderMap>,
) {
    if let Some(Pending {
        in_flight,
        head,
        classifier,
    }) = meter.take()
    {
        let class = head.unwrap_or_else(|| match (trailers, web.as_deref()) {
            (None, Some(web)) => {
                if let Some(error) = web.error() {
                    tracing::debug!(?error, "gRPC-web trailers unreadable");
                }
                web.classify_eos(&*classifier)
            }
            _ => classifier.classify_eos(trailers),
        });
        in_flight.finish(&class);
    }
}
