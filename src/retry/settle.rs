//! Counting a logical request once its outcome is known: at the head for most answers, at the
//! end of the body for a success whose body is still to come.
//!
//! A head that says success commits the retry layer (nothing can be retried once the caller has
//! the answer), but it does not make the request a success: the body may still break (a reset
//! connection, the deadline or the idle timeout passing while it waits for the endpoint) and a
//! gRPC status may still come in the trailers. A success-rate reading (`RetryStats`, `recent`, the
//! `meshless_requests_completed_total` counter, the request span) has to see those, as Linkerd's
//! `response_total` does, so such a request is counted by its [`ResponseBody`] when it ends.

use super::layer::Config;
use super::policy::RetryStats;
use super::replay::ReplayBody;
use super::state::RetryState;
use super::telemetry::Outcome;
use super::trace::{self, Trace};
use crate::classify::grpc_web::TrailerScanner;
use crate::classify::{Class, Classify, Reason, Retryable};
use crate::error::{BoxError, Error};
use crate::primitives::step;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Span;

pin_project! {
    /// The response body of [`Retry`](super::Retry): the inner body, unchanged, which counts
    /// its logical request when it ends.
    ///
    /// A request whose head is a failure, or which failed, or whose body was complete with its
    /// head, is counted when the head arrives and its body only passes the frames on. A success
    /// whose body is still to come is counted when the body settles it:
    ///
    /// - at the end of the stream, once the caller has its last frame (it polls the end, or
    ///   drops the body), with the class of its head, or, when the head left it to the end
    ///   (gRPC), the class of its trailers (`Classify::classify_eos`; for gRPC-web, the
    ///   trailer frame at the end of the body);
    /// - on an error of the body: a failure, classified by the layer's classifier, unless the
    ///   caller's own request body failed (a cancellation); a body dropped by a meshless timer
    ///   while it waited for the endpoint (the deadline's, or the idle timeout of a
    ///   [`DeadlineBody`](crate::deadline::DeadlineBody)) is a timeout;
    /// - a body a limit ended without blaming the endpoint (a frame that had arrived but was
    ///   read after the deadline, a stream silent for its default idle limit) is a
    ///   cancellation: the caller got an error, and the endpoint did nothing wrong;
    /// - when the caller drops it before its end: the success its head was. The caller
    ///   stopped reading, which says nothing against the request (and charges no endpoint).
    ///
    /// Only the class moves to the end of the body: the request's duration
    /// (`meshless_request_duration_seconds`, `recent`'s latency) is measured to the head.
    ///
    /// ```
    /// use http_body_util::BodyExt;
    /// use meshless::{budget::Budget, retry::{ReplayBody, RetryLayer}};
    /// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = RetryLayer::new(Budget::default());
    /// let stats = layer.stats();
    /// let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(
    ///     |_req: http::Request<ReplayBody<String>>| async {
    ///         Ok::<_, std::io::Error>(http::Response::new(String::from("hello")))
    ///     },
    /// ));
    /// let req = http::Request::get("http://svc/").body(String::new()).unwrap();
    /// let res = svc.ready().await.unwrap().call(req).await.unwrap();
    /// // The head is in, the body is not: the request is not counted yet.
    /// assert_eq!(stats.successes(), 0);
    /// let body = res.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(body, "hello");
    /// assert_eq!(stats.successes(), 1);
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        // `None` once the request is counted: for most bodies, from the start. Boxed, so that
        // a body counted at once costs its layers a pointer to move, not the whole record.
        pending: Option<Box<Pending>>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(pending) = this.pending.take() {
                if crate::deadline::expiry::expiring() {
                    pending.settle(&Class::failure(Reason::Timeout, Retryable::IfIdempotent));
                } else if crate::deadline::expiry::cut() {
                    // Ended by a limit that blames no one (a late read, a stream's default
                    // idle limit): not a success, since the caller got an error.
                    pending.cancel();
                } else {
                    pending.settle(&pending.early_end());
                }
            }
        }
    }
}

/// What a body has yet to count. The layer's configuration is behind a trait object so that
/// the body's type does not carry the classifier's.
struct Pending {
    settle: Arc<dyn Settle>,
    // The class of a head that decided it, or of the stream's last frame once it came; `None`
    // while the end of the stream is still to decide.
    head: Option<Class>,
    took: Duration,
    attempts: u32,
    // The request's span, when a subscriber wants it: it ends when the request is counted.
    trace: Option<Box<Trace>>,
    // For gRPC-web, whose status is in a trailer frame of the body.
    web: Option<Box<TrailerScanner>>,
}

impl Pending {
    /// The class of a body its caller dropped before the end: the head's, or a gRPC-web
    /// status read before the caller stopped.
    fn early_end(&self) -> Class {
        match (self.head, self.web.as_deref()) {
            (Some(class), _) => class,
            (None, Some(web)) if web.trailers().is_some() => {
                web.classify_eos(self.settle.classifier())
            }
            (None, _) => Class::success(),
        }
    }

    /// The class at the end of the stream, `trailers` being the HTTP trailers if any came.
    fn end_of_stream(&self, trailers: Option<&HeaderMap>) -> Class {
        let classifier = self.settle.classifier();
        match (self.head, trailers, self.web.as_deref()) {
            (Some(class), _, _) => class,
            (None, None, Some(web)) => {
                if let Some(error) = web.error() {
                    tracing::debug!(?error, "gRPC-web trailers unreadable");
                }
                web.classify_eos(classifier)
            }
            (None, trailers, _) => classifier.classify_eos(trailers),
        }
    }

    fn settle(&self, class: &Class) {
        let span = self.trace.as_deref().map(|t| &t.request);
        self.settle.settle(class, self.took, self.attempts, span);
    }

    fn cancel(&self) {
        let span = self.trace.as_deref().map(|t| &t.request);
        self.settle.cancel(self.took, self.attempts, span);
    }
}

/// The layer's configuration as a body needs it, whatever its classifier.
pub(super) trait Settle: Send + Sync {
    fn classifier(&self) -> &dyn Classify;
    fn settle(&self, class: &Class, took: Duration, attempts: u32, span: Option<&Span>);
    fn cancel(&self, took: Duration, attempts: u32, span: Option<&Span>);
}

impl<C: Classify> Settle for Config<C> {
    fn classifier(&self) -> &dyn Classify {
        &self.classifier
    }

    fn settle(&self, class: &Class, took: Duration, attempts: u32, span: Option<&Span>) {
        record(self, class, attempts, took, step::now(), span);
    }

    fn cancel(&self, took: Duration, attempts: u32, span: Option<&Span>) {
        cancelled(self, attempts, took, span);
    }
}

impl<B> ResponseBody<B> {
    /// The inner body.
    ///
    /// ```
    /// # use meshless::{budget::Budget, retry::{ReplayBody, RetryLayer}};
    /// # use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let mut svc = ServiceBuilder::new().layer(RetryLayer::new(Budget::default())).service(
    /// #     service_fn(|_: http::Request<ReplayBody<String>>| async {
    /// #         Ok::<_, std::io::Error>(http::Response::new(String::from("hello")))
    /// #     }),
    /// # );
    /// # let req = http::Request::new(String::new());
    /// let res = svc.ready().await.unwrap().call(req).await.unwrap();
    /// assert_eq!(res.body().get_ref(), "hello");
    /// # }
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// A body whose request is already counted.
    #[inline]
    pub(super) fn settled(inner: B) -> Self {
        ResponseBody {
            inner,
            pending: None,
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("settled", &self.pending.is_none())
            .finish_non_exhaustive()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
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
        let Some(pending) = this.pending.as_mut() else {
            return Poll::Ready(frame);
        };
        // The caller's own request body failing while the response streams (an upload, a
        // bidirectional stream) is a cancellation, as it is before the head.
        if let Some(Err(e)) = &frame {
            if crate::classify::callers_fault(&**e) {
                if let Some(pending) = this.pending.take() {
                    pending.cancel();
                }
                return Poll::Ready(frame);
            }
        }
        let settled = match &frame {
            None => Some(pending.end_of_stream(None)),
            Some(Ok(f)) => {
                // The last frame decides the class, but the request is counted only once the
                // caller has it: at the final `None`, or when the body is dropped (a reader
                // that stops at `is_end_stream` never polls that `None`). A layer above may
                // still refuse the frame (the deadline's, for a reader come too late), and
                // then the drop says so.
                if let Some(trailers) = f.trailers_ref() {
                    pending.head = Some(pending.end_of_stream(Some(trailers)));
                } else {
                    if let (Some(web), Some(data)) = (pending.web.as_deref_mut(), f.data_ref()) {
                        web.feed_buf(data);
                    }
                    if inner.is_end_stream() {
                        pending.head = Some(pending.end_of_stream(None));
                    }
                }
                None
            }
            Some(Err(e)) => Some(pending.settle.classifier().classify_error(&**e)),
        };
        // Taken only once the class is known: a frame in the middle leaves it pending.
        if let Some(class) = settled {
            if let Some(pending) = this.pending.take() {
                pending.settle(&class);
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

/// Returns a successful outcome to the caller, counting its request now when its body is
/// complete (or it is not a response), or leaving that to its body. `decided` says whether the
/// head decided `class` (otherwise the end of the stream does, as for gRPC).
#[inline]
#[allow(clippy::too_many_arguments)] // the future's fields, each given once
pub(super) fn success<RB: Body, B, C: Classify>(
    outcome: Result<http::Response<RB>, Error>,
    config: &Arc<Config<C>>,
    retry: &Option<RetryState<B>>,
    class: Class,
    decided: bool,
    attempts: u32,
    took: Duration,
    now: Instant,
    trace: &mut Option<Box<Trace>>,
) -> Result<http::Response<ResponseBody<RB>>, Error> {
    match outcome {
        Ok(res) if !res.body().is_end_stream() => {
            replay_overflow(config, retry);
            let web = if decided {
                None
            } else {
                TrailerScanner::for_response(res.headers()).map(Box::new)
            };
            let trace = trace.take().map(|mut t| {
                // The attempt is over; only the request's span lasts until the body ends.
                t.attempt = Span::none();
                t
            });
            let pending = Pending {
                settle: config.clone(),
                head: decided.then_some(class),
                took,
                attempts,
                trace,
                web,
            };
            Ok(res.map(|inner| ResponseBody {
                inner,
                pending: Some(Box::new(pending)),
            }))
        }
        outcome => {
            // A head that left its class to the end of a stream that has already ended: the
            // end of the stream, with no trailers, decides (for gRPC, a missing status).
            let class = if decided {
                class
            } else {
                config.classifier.classify_eos(None)
            };
            let span = trace.as_deref().map(|t| &t.request);
            finished(config, retry, &class, attempts, took, now, span);
            outcome.map(|res| res.map(ResponseBody::settled))
        }
    }
}

/// Records a request that finished as `class` after `took`, at `now`.
pub(super) fn finished<B, C>(
    config: &Config<C>,
    retry: &Option<RetryState<B>>,
    class: &Class,
    attempts: u32,
    took: Duration,
    now: Instant,
    request_span: Option<&Span>,
) {
    replay_overflow(config, retry);
    record(config, class, attempts, took, now, request_span);
}

/// Counts a request's outcome: its class, and its duration to the head.
fn record<C>(
    config: &Config<C>,
    class: &Class,
    attempts: u32,
    took: Duration,
    now: Instant,
    request_span: Option<&Span>,
) {
    let stats = &config.stats;
    let success = class.is_success();
    RetryStats::add(if success {
        &stats.successes
    } else {
        &stats.failures
    });
    stats.recent.record(now, took, success);
    if let Some(metrics) = &config.metrics {
        metrics.finished(class, took);
    }
    if let Some(span) = request_span {
        let outcome = Outcome::of(class).as_str();
        trace::request_finished(span, attempts, outcome, class.reason().as_str());
    }
}

/// Records a request that ended unfinished: dropped by the deadline layer's timer (`expired`,
/// a failure), or given up by its caller (cancelled): its future dropped, or its own request
/// body failed.
pub(super) fn unfinished<B, C>(
    config: &Config<C>,
    retry: &Option<RetryState<B>>,
    attempts: u32,
    started: Instant,
    expired: bool,
    request_span: Option<&Span>,
) {
    let now = Instant::now();
    let took = now.saturating_duration_since(started);
    replay_overflow(config, retry);
    if !expired {
        cancelled(config, attempts, took, request_span);
        return;
    }
    let stats = &config.stats;
    RetryStats::add(&stats.failures);
    stats.recent.record(now, took, false);
    if let Some(metrics) = &config.metrics {
        metrics.dropped(true, took);
    }
    if let Some(span) = request_span {
        let reason = Reason::Timeout.as_str();
        trace::request_finished(span, attempts, Outcome::Failure.as_str(), reason);
    }
}

/// Counts a request that ended as a cancellation: its caller gave up, its own request body
/// failed, or a limit that blames no one ended its body.
fn cancelled<C>(config: &Config<C>, attempts: u32, took: Duration, request_span: Option<&Span>) {
    RetryStats::add(&config.stats.cancelled);
    if let Some(metrics) = &config.metrics {
        metrics.dropped(false, took);
    }
    if let Some(span) = request_span {
        let cancelled = Outcome::Cancelled.as_str();
        trace::request_finished(span, attempts, cancelled, cancelled);
    }
}

/// Counts a request whose body outgrew the replay buffer. Only a request that kept a replay
/// handle can tell: with retries off, nothing is buffered.
fn replay_overflow<B, C>(config: &Config<C>, retry: &Option<RetryState<B>>) {
    let Some(state) = retry else { return };
    // No handle: the body was known to be too large from the start.
    if state.replay.as_ref().is_none_or(ReplayBody::is_capped) {
        RetryStats::add(&config.stats.replay_overflows);
        if let Some(metrics) = &config.metrics {
            metrics.replay_overflowed();
        }
    }
}
