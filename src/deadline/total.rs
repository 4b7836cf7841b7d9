//! The total deadline of a logical request.

use super::body::DeadlineBody;
use super::streaming::{StreamingRule, StreamingTypes};
use super::timer::LazySleep;
use super::{
    CallerDeadline, DEADLINE_HEADER, DeadlineFromCaller, RequestDeadline, expiry, grpc_timeout,
};
use crate::error::{BoxError, Error, Kind};
use crate::primitives::step::{self, Cover, Step};
use http::{HeaderName, HeaderValue, Request};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Applies a total deadline to each request, response body included: [`Deadline`] services.
///
/// ```
/// use meshless::deadline::DeadlineLayer;
/// use std::time::Duration;
/// let layer = DeadlineLayer::new(Duration::from_secs(2))
///     .body_idle_timeout(Duration::from_secs(30))
///     .honor_inbound(true);
/// ```
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    // Kept in the form the request path reads (see `DeadlineConfig` for the plain data).
    pub(super) timeout: Duration,
    pub(super) honor_inbound: bool,
    pub(super) header: HeaderName,
    pub(super) body_idle: Option<Duration>,
    /// Streaming content types beyond the defaults; `None` keeps requests free of the extra
    /// extension.
    pub(super) streaming_types: Option<Arc<[HeaderValue]>>,
    /// Whether to look for a route's deadline (a client's routes).
    pub(super) routes: crate::primitives::route_policy::Switch,
}

impl DeadlineLayer {
    /// Every request must complete within `timeout`, retries, backoff and reading the response
    /// body included. [`Duration::MAX`] means no limit. `Duration::ZERO` has passed before the
    /// request starts: it fails with [`Kind::DeadlineExceeded`] unless the service answers
    /// without waiting ([`DeadlineConfig::validate`](super::DeadlineConfig::validate) refuses
    /// it; use [`from_config`](Self::from_config) for checked settings).
    ///
    /// ```
    /// let layer = meshless::deadline::DeadlineLayer::new(std::time::Duration::from_secs(5));
    /// ```
    pub fn new(timeout: Duration) -> Self {
        DeadlineLayer {
            timeout,
            honor_inbound: false,
            header: HeaderName::from_static(DEADLINE_HEADER),
            body_idle: None,
            streaming_types: None,
            routes: crate::primitives::route_policy::Switch::default(),
        }
    }

    /// Reads a request's route for its deadline, in place of `timeout`.
    pub(crate) fn routes(mut self, routes: crate::primitives::route_policy::Switch) -> Self {
        self.routes = routes;
        self
    }

    /// Fails the response body with [`Kind::BodyIdleTimeout`] when no frame arrives for
    /// `timeout`; [`Duration::MAX`] is no idle limit. It covers
    /// [`Streaming`](super::Streaming) responses as well, which the total deadline does not.
    /// `Duration::ZERO` fails the body the first time it has to wait for a frame
    /// ([`DeadlineConfig::validate`](super::DeadlineConfig::validate) refuses it).
    ///
    /// Unset (the default), an ordinary body has no idle limit (the total deadline bounds it),
    /// and a stream's is the request's deadline (the time it had from this layer to its
    /// deadline): a stream lasts as long as it keeps producing, but never waits longer for a
    /// frame than the whole request could have taken, so that every body ends. Set
    /// [`Duration::MAX`] for streams that may stay silent longer.
    ///
    /// ```
    /// use meshless::deadline::DeadlineLayer;
    /// use std::time::Duration;
    /// let layer = DeadlineLayer::new(Duration::from_secs(5)).body_idle_timeout(Duration::from_secs(1));
    /// ```
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.body_idle = Some(timeout);
        self
    }

    /// Treats responses of this content type (its media type, parameters ignored) as streams,
    /// as if their request carried [`Streaming`](super::Streaming): the total deadline ends at
    /// their head and the balancer takes their RTT there. `text/event-stream` always is one.
    /// Give the media type alone (`type/subtype`): a value with parameters never matches.
    ///
    /// ```
    /// use meshless::deadline::DeadlineLayer;
    /// use std::time::Duration;
    /// let layer = DeadlineLayer::new(Duration::from_secs(5))
    ///     .streaming_content_type(http::HeaderValue::from_static("application/x-ndjson"));
    /// ```
    pub fn streaming_content_type(mut self, content_type: HeaderValue) -> Self {
        let mut types: Vec<HeaderValue> = self.streaming_types.as_deref().unwrap_or(&[]).to_vec();
        types.push(content_type);
        self.streaming_types = Some(Arc::from(types));
        self
    }

    /// Also honours a deadline the request arrives with: a `grpc-timeout` header, the HTTP
    /// deadline header, or a [`RequestDeadline`] extension. An inbound deadline can only
    /// shorten this layer's, never extend it (it is clamped to `timeout`). Malformed headers are
    /// ignored. A [`RequestDeadline`] extension is always honoured.
    ///
    /// Whether or not it is honoured here, a caller's own `grpc-timeout` or deadline header is
    /// never raised on its way out: [`AttemptTimeout`](super::AttemptTimeout) sends the
    /// smallest of it, the time left and the attempt's limit.
    ///
    /// ```
    /// use meshless::deadline::DeadlineLayer;
    /// use std::time::Duration;
    /// let layer = DeadlineLayer::new(Duration::from_secs(5)).honor_inbound(true);
    /// ```
    pub fn honor_inbound(mut self, honor: bool) -> Self {
        self.honor_inbound = honor;
        self
    }

    /// The HTTP header read by [`honor_inbound`](Self::honor_inbound) (default
    /// [`DEADLINE_HEADER`]): whole milliseconds remaining.
    ///
    /// ```
    /// use meshless::deadline::DeadlineLayer;
    /// use std::time::Duration;
    /// let layer = DeadlineLayer::new(Duration::from_secs(5))
    ///     .header(http::HeaderName::from_static("x-envoy-expected-rq-timeout-ms"));
    /// ```
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            config: self.clone(),
        }
    }
}

/// Fails a request with [`Kind::DeadlineExceeded`] once its deadline passes, dropping whatever
/// attempt or backoff is in progress, and bounds the response body with a [`DeadlineBody`].
///
/// ```
/// use meshless::deadline::Deadline;
/// use std::time::Duration;
/// use tower::service_fn;
/// let svc = Deadline::new(
///     service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }),
///     Duration::from_secs(1),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    config: DeadlineLayer,
}

impl<S> Deadline<S> {
    /// Wraps `inner` with a total deadline of `timeout` per request.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::deadline::Deadline::new(svc, std::time::Duration::from_secs(1));
    /// ```
    pub fn new(inner: S, timeout: Duration) -> Self {
        DeadlineLayer::new(timeout).layer(inner)
    }

    /// The wrapped service.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::deadline::Deadline::new(svc, std::time::Duration::from_secs(1));
    /// let _inner = svc.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let inner = meshless::deadline::Deadline::new(svc, std::time::Duration::from_secs(1)).into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The request's deadline, for a request that carries extensions or headers: an earlier
    /// [`RequestDeadline`] wins, the caller's own limit from its headers is recorded (and
    /// honoured on request), and a [`Streaming`](super::Streaming) marker is read.
    #[inline(never)]
    fn deadline_for<B>(
        &self,
        req: &mut Request<B>,
        mut own: Instant,
        now: Instant,
    ) -> (Instant, Instant, StreamingRule) {
        // A route's timeout replaces the layer's; whatever the request carries still caps it.
        if let Some(route) = self.config.routes.route(req) {
            own = super::instant_after(now, route.0.deadline);
        }
        // Asked before the insert below, which would make the map longer to search.
        let streaming = StreamingRule::with_types(req, self.config.streaming_types.as_ref());
        let mut deadline = own;
        if let Some(RequestDeadline(existing)) = req.extensions().get::<RequestDeadline>() {
            deadline = deadline.min(*existing);
        }
        let headers = req.headers();
        // Two lookups hash both names even in an empty map: a request without headers skips
        // them.
        let caller = if headers.is_empty() {
            None
        } else {
            headers
                .get(grpc_timeout::HEADER)
                .and_then(grpc_timeout::parse)
                .or_else(|| headers.get(&self.config.header).and_then(parse_millis))
                .map(|limit| super::instant_after(now, limit))
        };
        if let Some(caller) = caller {
            if self.config.honor_inbound {
                deadline = deadline.min(caller);
            }
            // Kept for every attempt, so that a retry never restates the caller's limit as
            // if it started anew.
            req.extensions_mut().insert(CallerDeadline(caller));
        }
        (deadline, own, streaming)
    }
}

/// Whole milliseconds, as the HTTP deadline header carries them. Malformed values are ignored.
pub(super) fn parse_millis(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().map(Duration::from_millis)
}

impl<S, B, RB> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    RB: http_body::Body,
{
    type Response = http::Response<DeadlineBody<RB>>;
    type Error = Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service)
    }

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The layers below join this step and share its one reading of the clock.
        let _step = Step::enter();
        let now = step::now();
        let own = super::instant_after(now, self.config.timeout);
        // A request with no extension and no header has no earlier deadline, no limit of its
        // own and no streaming marker: only the extra content types are left to carry.
        let (deadline, own, streaming) = if req.extensions().is_empty() && req.headers().is_empty()
        {
            (
                own,
                own,
                StreamingRule::unmarked(self.config.streaming_types.as_ref()),
            )
        } else {
            self.deadline_for(&mut req, own, now)
        };
        let extensions = req.extensions_mut();
        extensions.insert(RequestDeadline(deadline));
        let callers = deadline < own;
        if callers {
            extensions.insert(DeadlineFromCaller);
        }
        if let Some(types) = &self.config.streaming_types {
            extensions.insert(StreamingTypes(types.clone()));
        }
        DeadlineFuture {
            inner: Some(self.inner.call(req)),
            timer: LazySleep::new(Some(deadline)),
            idle: self.config.body_idle,
            started: now,
            streaming,
            callers,
        }
    }
}

pin_project! {
    /// The response future of [`Deadline`].
    pub struct DeadlineFuture<F> {
        // Dropped, as expiring, the moment the deadline passes.
        #[pin]
        inner: Option<F>,
        #[pin]
        timer: LazySleep,
        idle: Option<Duration>,
        // With the deadline, the length of the request's deadline: a stream's default idle limit.
        started: Instant,
        streaming: StreamingRule,
        // The deadline is the caller's (see `DeadlineFromCaller`): its passing charges no one.
        callers: bool,
    }
}

impl<F, RB, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError>,
    RB: http_body::Body,
{
    type Output = Result<http::Response<DeadlineBody<RB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // An answer that comes back in this poll is timed once for every layer below.
        let _step = Step::enter();
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(super::expired(Kind::DeadlineExceeded, *this.callers)));
        };
        let cover = Cover::watch();
        if let Poll::Ready(result) = inner.poll(cx) {
            let res = result.map_err(Error::from_service)?;
            let deadline = this.timer.end();
            // A complete body needs neither limit, and its headers need no look.
            let streaming = !res.body().is_end_stream() && this.streaming.applies(res.headers());
            if streaming && this.idle.is_none() {
                // The deadline would cut a stream that keeps producing; with no limit at all, a
                // stream that goes silent (or a server that calls any answer a stream) would
                // never end. One silent for as long as the whole request had ends instead.
                let whole = deadline.map(|d| d.saturating_duration_since(*this.started));
                return Poll::Ready(Ok(
                    res.map(|body| DeadlineBody::with_default_idle(body, whole))
                ));
            }
            let deadline = deadline.filter(|_| !streaming);
            let (idle, callers) = (*this.idle, *this.callers);
            return Poll::Ready(Ok(res.map(|body| {
                DeadlineBody::new(body, deadline, idle).callers_deadline(callers)
            })));
        }
        // While an attempt's timer (which ends by this deadline) is armed below, it wakes the
        // task in time: the deadline's own is armed only once none is (a backoff, say).
        std::task::ready!(this.timer.poll_end_unless(cx, cover.below()));
        // Dropped by our own timer: whatever attempt was in flight is charged, unless the
        // deadline was the caller's.
        let callers = *this.callers;
        expiry::while_deadline_expiring(callers, || this.inner.set(None));
        Poll::Ready(Err(super::expired(Kind::DeadlineExceeded, callers)))
    }
}

impl<F> std::fmt::Debug for DeadlineFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineFuture")
            .field("deadline", &self.timer.end())
            .finish()
    }
}

#[cfg(test)]
mod streams;
#[cfg(test)]
mod timers;

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    type Empty = http_body_util::Empty<bytes::Bytes>;

    /// Answers with the request's deadline in the response's extensions.
    fn echo_deadline() -> impl Service<
        Request<()>,
        Response = http::Response<Empty>,
        Error = BoxError,
        Future = impl Future<Output = Result<http::Response<Empty>, BoxError>>,
    > + Clone {
        tower::service_fn(|req: Request<()>| async move {
            let mut res = http::Response::new(Empty::new());
            if let Some(d) = req.extensions().get::<RequestDeadline>() {
                res.extensions_mut().insert(*d);
            }
            Ok::<_, BoxError>(res)
        })
    }

    fn seen(res: http::Response<DeadlineBody<Empty>>) -> Option<RequestDeadline> {
        seen_ref(&res)
    }

    fn seen_ref(res: &http::Response<DeadlineBody<Empty>>) -> Option<RequestDeadline> {
        res.extensions().get::<RequestDeadline>().copied()
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_is_recorded_and_enforced() {
        let start = Instant::now();
        let svc = Deadline::new(echo_deadline(), Duration::from_secs(2));
        let res = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(
            seen(res),
            Some(RequestDeadline(start + Duration::from_secs(2)))
        );

        let slow = tower::service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, BoxError>(http::Response::new(Empty::new()))
        });
        let err = Deadline::new(slow, Duration::from_secs(2))
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::DeadlineExceeded);
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn inbound_deadlines_shorten_but_never_extend() {
        let start = Instant::now();
        let layer = DeadlineLayer::new(Duration::from_secs(2)).honor_inbound(true);
        let cases = [
            (Some(("grpc-timeout", "500m")), Duration::from_millis(500)),
            (Some(("grpc-timeout", "1H")), Duration::from_secs(2)),
            (Some(("grpc-timeout", "garbage")), Duration::from_secs(2)),
            (Some((DEADLINE_HEADER, "750")), Duration::from_millis(750)),
            (Some((DEADLINE_HEADER, "-5")), Duration::from_secs(2)),
            (
                Some((DEADLINE_HEADER, "99999999999999999999")),
                Duration::from_secs(2),
            ),
            (None, Duration::from_secs(2)),
        ];
        for (header, expect) in cases {
            let mut req = Request::new(());
            if let Some((name, value)) = header {
                req.headers_mut().insert(name, value.parse().unwrap());
            }
            let res = layer.layer(echo_deadline()).oneshot(req).await.unwrap();
            assert_eq!(
                seen(res),
                Some(RequestDeadline(start + expect)),
                "{header:?}"
            );
        }
        // Not honoured unless asked.
        let mut req = Request::new(());
        req.headers_mut()
            .insert("grpc-timeout", "1m".parse().unwrap());
        let res = Deadline::new(echo_deadline(), Duration::from_secs(2))
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(
            seen(res),
            Some(RequestDeadline(start + Duration::from_secs(2)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_extension_wins() {
        let start = Instant::now();
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(RequestDeadline(start + Duration::from_millis(300)));
        let res = Deadline::new(echo_deadline(), Duration::from_secs(2))
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(
            seen(res),
            Some(RequestDeadline(start + Duration::from_millis(300)))
        );
    }

    /// A response ready at once builds no timer, in the future or in its body: both complete
    /// without a tokio runtime, where building one would panic. The deadline is recorded all
    /// the same.
    #[test]
    fn a_ready_response_builds_no_timer() {
        use http_body::Body;
        let mut svc = Deadline::new(echo_deadline(), Duration::from_secs(1));
        let mut future = std::pin::pin!(svc.call(Request::new(())));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Ok(res)) = future.as_mut().poll(&mut cx) else {
            panic!("the service answers at once");
        };
        assert!(seen_ref(&res).is_some());
        let mut body = std::pin::pin!(res.into_body());
        assert!(matches!(
            body.as_mut().poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_never_panics() {
        let res = DeadlineLayer::new(Duration::MAX)
            .body_idle_timeout(Duration::MAX)
            .layer(echo_deadline())
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert!(seen(res).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_drops_the_attempt_as_expiring() {
        struct Witness(std::sync::Arc<std::sync::Mutex<Option<bool>>>);
        impl Drop for Witness {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = Some(expiry::expiring());
            }
        }
        let witness = std::sync::Arc::new(std::sync::Mutex::new(None));
        let held = witness.clone();
        let slow = tower::service_fn(move |_: Request<()>| {
            let w = Witness(held.clone());
            async move {
                let _w = w;
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, BoxError>(http::Response::new(Empty::new()))
            }
        });
        let err = Deadline::new(slow, Duration::from_secs(1))
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::DeadlineExceeded);
        assert_eq!(*witness.lock().unwrap(), Some(true));
    }
}
