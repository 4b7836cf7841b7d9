//! The channel: the stack over one tonic channel per endpoint, and the statuses it answers with.

use super::builder::ChannelBuilder;
use crate::balance::{Balance, EndpointStats};
use crate::breaker::BreakerHandle;
use crate::error::{BoxError, Error, Kind};
use crate::hedge::HedgeStats;
use crate::limit::LimitHandle;
use crate::retry::{ReplayBody, RetryStats};
use crate::throttle::ThrottleHandle;
use ::tonic::body::Body;
use ::tonic::transport::Endpoint;
use ::tonic::{Code, Status};
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Frame;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

/// The layers over the balancer of endpoint channels, as their own types: a call costs no
/// allocation for them.
pub(crate) type Stack = crate::stack::Stack<Uri, EndpointChannel>;

type StackFuture = <Stack as Service<Request<Body>>>::Future;

type StackBody = crate::deadline::DeadlineBody<
    crate::limit::ResponseBody<crate::retry::ResponseBody<crate::balance::ResponseBody<Body>>>,
>;

/// A gRPC channel with retries under a budget, deadlines, latency-aware balancing, outlier
/// ejection and a circuit breaker, for any tonic client: `GreeterClient::new(channel)`.
///
/// Underneath, one `tonic::transport::Channel` per endpoint (connected lazily, with the
/// settings of its [`Endpoint`]: TLS, keepalive, timeouts), under meshless's layers. Cheap to
/// clone; clones share the endpoints, the budget and the measurements. Errors reach the
/// caller as a [`Status`]: see [`ResponseFuture`] for the codes.
///
/// ```
/// use meshless::tonic::Channel;
/// use tonic::transport::Endpoint;
///
/// # tokio_test::block_on(async {
/// let channel = Channel::builder()
///     .endpoint(Endpoint::from_static("http://10.0.0.1:50051"))
///     .endpoint(Endpoint::from_static("http://10.0.0.2:50051"))
///     .idempotent_method("/helloworld.Greeter/SayHello")
///     .build()?;
/// // let client = GreeterClient::new(channel);
/// let client = tonic::client::Grpc::new(channel);
/// # Ok::<(), meshless::ConfigError>(())
/// # });
/// ```
#[derive(Clone)]
pub struct Channel {
    pub(crate) stack: Stack,
    pub(crate) balance: Balance<Uri, EndpointChannel>,
    pub(crate) retry: Arc<RetryStats>,
    pub(crate) breaker: BreakerHandle,
    pub(crate) limit: LimitHandle,
    pub(crate) throttle: ThrottleHandle,
    pub(crate) hedge: Arc<HedgeStats>,
    /// The routes each call is matched with before the stack.
    pub(crate) routing: Arc<crate::route::Routing>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("endpoints", &self.balance.len())
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Starts a channel configuration.
    ///
    /// ```
    /// let builder = meshless::tonic::Channel::builder();
    /// ```
    pub fn builder() -> ChannelBuilder {
        ChannelBuilder::default()
    }

    /// Adds an endpoint, connected lazily, or replaces the channel of the one with the same URI
    /// (which keeps its measurements). Needs a tokio runtime: tonic's channel spawns a task.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use tonic::transport::Endpoint;
    /// let channel = meshless::tonic::Channel::builder()
    ///     .endpoint(Endpoint::from_static("http://10.0.0.1:50051"))
    ///     .build()?;
    /// channel.insert(Endpoint::from_static("http://10.0.0.2:50051"))?;
    /// assert_eq!(channel.endpoints().len(), 2);
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    pub fn insert(&self, endpoint: Endpoint) -> Result<(), crate::ConfigError> {
        let (uri, channel) = EndpointChannel::connect_lazy(endpoint)?;
        self.balance.insert(uri, channel);
        Ok(())
    }

    /// Removes the endpoint with this URI; calls in flight on it finish.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use tonic::transport::Endpoint;
    /// let channel = meshless::tonic::Channel::builder()
    ///     .endpoint(Endpoint::from_static("http://10.0.0.1:50051"))
    ///     .build()?;
    /// channel.remove(&"http://10.0.0.1:50051".parse().unwrap());
    /// assert!(channel.endpoints().is_empty());
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    pub fn remove(&self, uri: &Uri) {
        self.balance.remove(uri);
    }

    /// Replaces the channel's routes (see [`crate::route`]) for the calls made from now on,
    /// keeping its other settings. Checked first: a bad route changes nothing and comes back
    /// as a [`ConfigError`](crate::ConfigError) naming it. Calls in flight finish with the
    /// policies they started with; endpoints and their state are untouched.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use meshless::route::Route;
    /// let channel = meshless::tonic::Channel::builder()
    ///     .endpoint(tonic::transport::Endpoint::from_static("http://10.0.0.1:50051"))
    ///     .build()?;
    /// channel.reload_routes([Route::grpc_method("shop.Catalog", "Search").max_retries(0)])?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    pub fn reload_routes(
        &self,
        routes: impl IntoIterator<Item = crate::route::Route>,
    ) -> Result<(), crate::ConfigError> {
        let routes: Vec<_> = routes.into_iter().collect();
        self.routing.reload_routes(&routes)
    }

    /// Each endpoint's calls, failures, ejections, in-flight count, RTT and status, keyed by
    /// its URI.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # let channel = meshless::tonic::Channel::builder()
    /// #     .endpoint(tonic::transport::Endpoint::from_static("http://10.0.0.1:50051"))
    /// #     .build()?;
    /// for e in channel.endpoints() {
    ///     println!("{} {} calls, {} failed", e.key, e.requests, e.failures);
    /// }
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    pub fn endpoints(&self) -> Vec<EndpointStats<Uri>> {
        self.balance.endpoints()
    }

    /// The retry layer's counters: calls, retries, and why retries were refused.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # let channel = meshless::tonic::Channel::builder()
    /// #     .endpoint(tonic::transport::Endpoint::from_static("http://10.0.0.1:50051"))
    /// #     .build()?;
    /// assert_eq!(channel.retry_stats().retries(), 0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    pub fn retry_stats(&self) -> Arc<RetryStats> {
        self.retry.clone()
    }

    /// The circuit breaker: its state and counts, and the manual switches.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # let channel = meshless::tonic::Channel::builder()
    /// #     .endpoint(tonic::transport::Endpoint::from_static("http://10.0.0.1:50051"))
    /// #     .build()?;
    /// assert_eq!(channel.breaker().state().as_str(), "closed");
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    pub fn breaker(&self) -> BreakerHandle {
        self.breaker.clone()
    }

    /// The concurrency limit: the limit in force, calls in flight, refusals.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # let channel = meshless::tonic::Channel::builder()
    /// #     .endpoint(tonic::transport::Endpoint::from_static("http://10.0.0.1:50051"))
    /// #     .build()?;
    /// assert_eq!(channel.limit().rejected(), 0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    pub fn limit(&self) -> LimitHandle {
        self.limit.clone()
    }

    /// Client-side throttling: the refusal probability now, its counts, refusals.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # let channel = meshless::tonic::Channel::builder()
    /// #     .endpoint(tonic::transport::Endpoint::from_static("http://10.0.0.1:50051"))
    /// #     .build()?;
    /// assert_eq!(channel.throttle().probability(), 0.0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    pub fn throttle(&self) -> ThrottleHandle {
        self.throttle.clone()
    }

    /// Hedging's counters (all zero unless [`ChannelBuilder::hedge`] turned it on).
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// # let channel = meshless::tonic::Channel::builder()
    /// #     .endpoint(tonic::transport::Endpoint::from_static("http://10.0.0.1:50051"))
    /// #     .build()?;
    /// assert_eq!(channel.hedge_stats().hedges(), 0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    pub fn hedge_stats(&self) -> Arc<HedgeStats> {
        self.hedge.clone()
    }
}

impl Service<Request<Body>> for Channel {
    type Response = Response<ResponseBody>;
    type Error = Status;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.stack.poll_ready(cx).map_err(status)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        self.routing.apply(&mut req);
        ResponseFuture {
            inner: Some(self.stack.call(req)),
        }
    }
}

pin_project! {
    /// The future of one call through a [`Channel`].
    ///
    /// A failure of meshless's own becomes a [`Status`] whose source is the
    /// [`meshless::Error`](crate::Error): `DEADLINE_EXCEEDED` for the deadline (the caller's
    /// `grpc-timeout` or the channel's) and the attempt timeout; `UNAVAILABLE` for an open
    /// circuit, throttling, no ready endpoint or every endpoint pushing back;
    /// `RESOURCE_EXHAUSTED` for the concurrency limit; `INTERNAL` for a request that could not
    /// be sent. The failure of an endpoint keeps tonic's own mapping (`UNAVAILABLE` for a
    /// connection that failed, the server's status when it sent one). A status the server
    /// answered with reaches the caller as tonic reads it, untouched.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use tower::Service;
    /// let mut channel = meshless::tonic::Channel::builder()
    ///     .endpoint(tonic::transport::Endpoint::from_static("http://10.0.0.1:50051"))
    ///     .build()?;
    /// let call: meshless::tonic::ResponseFuture =
    ///     channel.call(http::Request::new(tonic::body::Body::empty()));
    /// # Ok::<(), meshless::ConfigError>(())
    /// # });
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture {
        #[pin]
        inner: Option<StackFuture>,
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = self.project().inner;
        let Some(future) = inner.as_mut().as_pin_mut() else {
            // Polled after it reported: a caller's bug, answered without a panic.
            return Poll::Ready(Err(Status::internal("polled after completion")));
        };
        let out = std::task::ready!(future.poll(cx));
        // The layers' futures are dropped at once, so polling again cannot reach them.
        inner.set(None);
        Poll::Ready(match out {
            Ok(res) => Ok(res.map(|inner| ResponseBody { inner })),
            Err(e) => Err(status(e)),
        })
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// The body of a response through a [`Channel`]: the endpoint's body, measured for the
    /// balancer (a status in the trailers counts for its endpoint and for the call's outcome,
    /// [`retry::ResponseBody`](crate::retry::ResponseBody)), holding the call's
    /// concurrency permit, and bounded by the call's deadline. Its errors are [`Status`]es, as
    /// in [`ResponseFuture`]: a deadline that passes mid-stream is `DEADLINE_EXCEEDED`.
    ///
    /// ```
    /// fn is_a_body<B: http_body::Body<Data = bytes::Bytes> + Send + 'static>() {}
    /// is_a_body::<meshless::tonic::ResponseBody>();
    /// ```
    pub struct ResponseBody {
        #[pin]
        inner: StackBody,
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.project()
            .inner
            .poll_frame(cx)
            .map_err(|e| status(Error::from_service(e)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

/// The status a caller gets for a failure of the channel. Runs only on failures.
fn status(mut error: Error) -> Status {
    let code = match error.kind() {
        Kind::DeadlineExceeded | Kind::AttemptTimedOut | Kind::BodyIdleTimeout => {
            Code::DeadlineExceeded
        }
        Kind::CircuitOpen
        | Kind::Throttled
        | Kind::NoReadyEndpoint
        | Kind::EndpointsPushingBack
        | Kind::TlsUnavailable => Code::Unavailable,
        Kind::ConcurrencyLimited => Code::ResourceExhausted,
        Kind::InvalidRequest => Code::Internal,
        // Attempts that each ran out of time (the attempt timeout cut the last one): the call
        // ran out of time, as when one attempt is cut.
        Kind::RetriesExhausted | Kind::BudgetExhausted if error.is_timeout() => {
            Code::DeadlineExceeded
        }
        // tonic's channel enforces the `grpc-timeout` the attempt carries (and the Endpoint's
        // own timeout) with a timer of its own, due when ours is: whichever fires first, the
        // call ran out of time. tonic would say CANCELLED; gRPC says DEADLINE_EXCEEDED.
        _ if timed_out_in_tonic(&error) => {
            if error.kind() == Kind::Service {
                // Said as the attempt timeout it is, whichever timer fired first.
                let attempts = error.attempts();
                error = Error::with_source(Kind::AttemptTimedOut, error.into_cause())
                    .with_attempts(attempts);
            }
            Code::DeadlineExceeded
        }
        // The endpoint's failure, retried or not: tonic knows its own errors best (a status
        // in the chain, a connection refused, an HTTP/2 reset).
        _ => return Status::from_error(Box::new(error)),
    };
    let mut status = Status::new(code, error.to_string());
    status.set_source(Arc::new(error));
    status
}

/// Whether tonic's own timer ended the call: a `TimeoutExpired` in the error's chain.
fn timed_out_in_tonic(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<::tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// One endpoint: a tonic channel, taking the replayable body the retry layer sends.
#[derive(Clone)]
pub(crate) struct EndpointChannel {
    channel: ::tonic::transport::Channel,
    /// Whether tonic speaks TLS to it (its scheme is `https`).
    tls: bool,
}

impl EndpointChannel {
    /// A lazily connected channel to `endpoint`, keyed by its URI.
    pub(crate) fn connect_lazy(
        endpoint: Endpoint,
    ) -> Result<(Uri, EndpointChannel), crate::ConfigError> {
        // tonic spawns the channel's worker task with `tokio::spawn`, which panics outside a
        // runtime: refuse instead.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(crate::ConfigError::new(
                "endpoints",
                "tonic's channels need a tokio runtime: build the channel inside one",
            ));
        }
        let uri = endpoint.uri().clone();
        // tonic speaks TLS only to a scheme spelled `https` exactly: one spelled otherwise
        // (`HTTPS`, which `http::Uri::builder` keeps as given) would get the call in clear text.
        match uri.scheme_str() {
            None | Some("http" | "https") => {}
            Some(other) => {
                let hint = if other.eq_ignore_ascii_case("https") {
                    "write the scheme `https`, in lower case: tonic would send this one in clear text"
                } else {
                    "the scheme must be `http` or `https`"
                };
                return Err(crate::ConfigError::new(
                    "endpoints",
                    format!("{uri}: {hint}"),
                ));
            }
        }
        let tls = uri.scheme_str() == Some("https");
        let channel = endpoint.connect_lazy();
        Ok((uri, EndpointChannel { channel, tls }))
    }
}

impl Service<Request<ReplayBody<Body>>> for EndpointChannel {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<Body>>::poll_ready(&mut self.channel, cx).map_err(BoxError::from)
    }

    fn call(&mut self, req: Request<ReplayBody<Body>>) -> Self::Future {
        // tonic replaces the request's scheme with the endpoint's: a call meant for `https`
        // (a client given an `https` origin) would go to a plain endpoint in clear text.
        let https = req
            .uri()
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"));
        if https && !self.tls {
            return EndpointFuture::Refused {
                error: Some(cleartext()),
            };
        }
        // tonic times the attempt by the `grpc-timeout` it sends: when that is the caller's
        // own deadline, its timer firing is the caller's impatience, as meshless's would be.
        let callers = !req.extensions().is_empty()
            && req
                .extensions()
                .get::<crate::deadline::AttemptEndsAtCallersDeadline>()
                .is_some();
        // tonic's channel takes only its own body type: one box per attempt (none for an
        // empty body), the price of keeping tonic's transport.
        EndpointFuture::Sent {
            future: self.channel.call(req.map(Body::new)),
            callers,
        }
    }
}

/// The refusal of an `https` call to a plain endpoint: the caller's, charged to no endpoint.
fn cleartext() -> BoxError {
    Box::new(Error::with_source(
        Kind::InvalidRequest,
        "an https call is never sent to an http endpoint (it would travel in clear text)",
    ))
}

pin_project! {
    /// One call to one endpoint's tonic channel, or its refusal.
    #[project = EndpointFutureProj]
    pub(crate) enum EndpointFuture {
        Refused { error: Option<BoxError> },
        Sent {
            #[pin]
            future: ::tonic::transport::channel::ResponseFuture,
            callers: bool,
        },
    }
}

impl Future for EndpointFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EndpointFutureProj::Refused { error } => {
                Poll::Ready(Err(error.take().unwrap_or_else(cleartext)))
            }
            EndpointFutureProj::Sent { future, callers } => future.poll(cx).map_err(|error| {
                let error = BoxError::from(error);
                if *callers && timed_out_in_tonic(&*error) {
                    Box::new(crate::deadline::expired(Kind::DeadlineExceeded, true))
                } else {
                    error
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meshless_error(status: &Status) -> Option<&Error> {
        std::error::Error::source(status).and_then(|s| s.downcast_ref::<Error>())
    }

    #[test]
    fn the_channel_s_own_failures_get_the_codes_grpc_clients_expect() {
        let cases = [
            (Kind::DeadlineExceeded, Code::DeadlineExceeded),
            (Kind::AttemptTimedOut, Code::DeadlineExceeded),
            (Kind::BodyIdleTimeout, Code::DeadlineExceeded),
            (Kind::CircuitOpen, Code::Unavailable),
            (Kind::Throttled, Code::Unavailable),
            (Kind::NoReadyEndpoint, Code::Unavailable),
            (Kind::EndpointsPushingBack, Code::Unavailable),
            (Kind::ConcurrencyLimited, Code::ResourceExhausted),
            (Kind::InvalidRequest, Code::Internal),
        ];
        for (kind, code) in cases {
            let status = status(Error::new(kind));
            assert_eq!(status.code(), code, "{kind:?}");
            let source = meshless_error(&status).expect("the error is the source");
            assert_eq!(source.kind(), kind);
        }
    }

    #[test]
    fn an_endpoint_s_failure_keeps_tonic_s_reading_of_it() {
        let exhausted = Error::with_source(Kind::RetriesExhausted, Status::unavailable("draining"));
        let status = status(exhausted);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "draining");

        // tonic's own timer for the attempt's grpc-timeout ran out: the call's deadline.
        let timer = super::status(Error::from_service(::tonic::TimeoutExpired(())));
        assert_eq!(timer.code(), Code::DeadlineExceeded, "{timer:?}");
        let source = meshless_error(&timer).expect("the error is the source");
        assert_eq!(source.kind(), Kind::AttemptTimedOut);

        let unknown = super::status(Error::from_service(std::io::Error::other("boom")));
        assert_eq!(unknown.code(), Code::Unknown);
        assert!(meshless_error(&unknown).is_some(), "{unknown:?}");
    }
}
