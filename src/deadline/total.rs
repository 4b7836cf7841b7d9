//! The total deadline of a logical request.

use super::{DEADLINE_HEADER, RequestDeadline, grpc_timeout};
use crate::error::{BoxError, Error, Kind};
use http::{HeaderName, Request};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// Applies a total deadline to each request: [`Deadline`] services.
///
/// ```
/// use meshless::deadline::DeadlineLayer;
/// use std::time::Duration;
/// let layer = DeadlineLayer::new(Duration::from_secs(2)).honor_inbound(true);
/// ```
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    timeout: Duration,
    honor_inbound: bool,
    header: HeaderName,
}

impl DeadlineLayer {
    /// Every request must complete within `timeout`, retries and backoff included.
    ///
    /// ```
    /// let layer = meshless::deadline::DeadlineLayer::new(std::time::Duration::from_secs(5));
    /// ```
    pub fn new(timeout: Duration) -> Self {
        DeadlineLayer {
            timeout,
            honor_inbound: false,
            header: HeaderName::from_static(DEADLINE_HEADER),
        }
    }

    /// Also honours a deadline the request arrives with: a `grpc-timeout` header, the HTTP
    /// deadline header, or a [`RequestDeadline`] extension. An inbound deadline can only
    /// shorten this layer's, never extend it (it is clamped to `timeout`). Malformed headers are
    /// ignored. A [`RequestDeadline`] extension is always honoured.
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
/// attempt or backoff is in progress.
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

    fn deadline_for<B>(&self, req: &Request<B>, now: Instant) -> Instant {
        let own = now
            .checked_add(self.config.timeout)
            .unwrap_or(now + super::FAR_FUTURE);
        let mut deadline = own;
        if let Some(RequestDeadline(existing)) = req.extensions().get::<RequestDeadline>() {
            deadline = deadline.min(*existing);
        }
        if self.config.honor_inbound {
            let headers = req.headers();
            let inbound = headers
                .get(grpc_timeout::HEADER)
                .and_then(grpc_timeout::parse)
                .or_else(|| headers.get(&self.config.header).and_then(parse_millis));
            if let Some(inbound) = inbound {
                deadline = deadline.min(now.checked_add(inbound).unwrap_or(own));
            }
        }
        deadline
    }
}

/// Whole milliseconds, as the HTTP deadline header carries them. Malformed values are ignored.
fn parse_millis(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().map(Duration::from_millis)
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let deadline = self.deadline_for(&req, Instant::now());
        req.extensions_mut().insert(RequestDeadline(deadline));
        DeadlineFuture {
            inner: self.inner.call(req),
            sleep: tokio::time::sleep_until(deadline),
        }
    }
}

pin_project! {
    /// The response future of [`Deadline`].
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Error::from_service));
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::new(Kind::DeadlineExceeded))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> std::fmt::Debug for DeadlineFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineFuture")
            .field("deadline", &self.sleep.deadline())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn echo_deadline() -> impl Service<
        Request<()>,
        Response = Option<RequestDeadline>,
        Error = BoxError,
        Future = impl Future<Output = Result<Option<RequestDeadline>, BoxError>>,
    > + Clone {
        tower::service_fn(|req: Request<()>| async move {
            Ok::<_, BoxError>(req.extensions().get::<RequestDeadline>().copied())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_is_recorded_and_enforced() {
        let start = Instant::now();
        let svc = Deadline::new(echo_deadline(), Duration::from_secs(2));
        let seen = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(seen, Some(RequestDeadline(start + Duration::from_secs(2))));

        let slow = tower::service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, BoxError>(())
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
            let seen = layer.layer(echo_deadline()).oneshot(req).await.unwrap();
            assert_eq!(seen, Some(RequestDeadline(start + expect)), "{header:?}");
        }
        // Not honoured unless asked.
        let mut req = Request::new(());
        req.headers_mut()
            .insert("grpc-timeout", "1m".parse().unwrap());
        let seen = Deadline::new(echo_deadline(), Duration::from_secs(2))
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(seen, Some(RequestDeadline(start + Duration::from_secs(2))));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_extension_wins() {
        let start = Instant::now();
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(RequestDeadline(start + Duration::from_millis(300)));
        let seen = Deadline::new(echo_deadline(), Duration::from_secs(2))
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(
            seen,
            Some(RequestDeadline(start + Duration::from_millis(300)))
        );
    }
}
