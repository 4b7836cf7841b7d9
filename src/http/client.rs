//! The client and its conveniences.

use super::builder::ClientBuilder;
use super::endpoint::EndpointService;
use super::stats::ClientStats;
use crate::balance::{Balance, EndpointStats};
use crate::breaker::BreakerHandle;
use crate::error::{BoxError, Error, Kind};
use crate::hedge::HedgeStats;
use crate::limit::LimitHandle;
use crate::retry::{CallerRetries, RetryStats};
use crate::throttle::ThrottleHandle;
use bytes::Bytes;
use http::uri::Scheme;
use http::{Method, Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;
use tower::util::Oneshot;

/// The body of a response from [`Client`]: hyper's body, metered for the balancer, counting
/// the request's outcome at its end (see [`retry::ResponseBody`](crate::retry::ResponseBody)),
/// holding the request's concurrency permit until it ends, and bounded by the request's
/// deadline (see [`DeadlineBody`](crate::deadline::DeadlineBody)).
pub type ResponseBody = crate::deadline::DeadlineBody<
    crate::limit::ResponseBody<crate::retry::ResponseBody<crate::balance::ResponseBody<Incoming>>>,
>;

/// A request as it enters the stack: any body, boxed.
pub(crate) type StackRequest = Request<UnsyncBoxBody<Bytes, BoxError>>;

/// The shared layers over the balancer of endpoints (see `crate::stack::Stack`).
pub(crate) type Stack = crate::stack::Stack<SocketAddr, EndpointService>;

/// An HTTP client with retries, deadlines, latency-aware balancing and outlier ejection.
///
/// Cheap to clone; clones share connections, budget and measurements. It is a
/// `tower::Service<http::Request<B>>` for any body `B` of [`Bytes`], and has `get`, `post` and
/// `request` for direct use.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use meshless::http::Client;
/// use std::time::Duration;
///
/// let client = Client::builder()
///     .endpoints(["127.0.0.1:8080", "127.0.0.1:8081"])
///     .deadline(Duration::from_secs(2))
///     .build()?;
/// let res = client.post("/v1/orders", r#"{"qty": 1}"#).await?;
/// println!("{}", res.status());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) stack: Stack,
    pub(crate) balance: Balance<SocketAddr, EndpointService>,
    pub(crate) retry: Arc<RetryStats>,
    pub(crate) breaker: BreakerHandle,
    pub(crate) limit: LimitHandle,
    pub(crate) throttle: ThrottleHandle,
    pub(crate) hedge: Arc<HedgeStats>,
    /// The routes and defaults a reload swaps, and what it is compared with.
    pub(crate) reload: Arc<super::reload::Reload>,
    pub(crate) service: Arc<str>,
    pub(crate) _dns: Option<Arc<AbortOnDrop>>,
}

/// Stops the DNS task when the last clone of the client goes away.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.balance.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a client configuration.
    ///
    /// ```
    /// let builder = meshless::http::Client::builder();
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Sends a GET. `uri` may be a path (`/a?b=c`), sent with the configured scheme and authority
    /// (see [`ClientBuilder::authority`]), or a full URI whose host becomes the `Host` header
    /// (`:authority` in HTTP/2) and, for `https`, the name the server's certificate must carry.
    /// Userinfo (`user:pass@`) is never sent. The connection always goes to a chosen endpoint.
    ///
    /// ```no_run
    /// # async fn run(client: meshless::http::Client) -> Result<(), meshless::Error> {
    /// let res = client.get("/health").await?;
    /// # Ok(()) }
    /// ```
    pub fn get(&self, uri: impl AsRef<str>) -> ResponseFuture {
        match build(Method::GET, uri.as_ref(), Empty::<Bytes>::new()) {
            Ok(req) => self.request(req),
            Err(e) => ResponseFuture::failed(e),
        }
    }

    /// Sends a POST with `body`. POSTs are retried only when the server did not act on them,
    /// unless marked idempotent (see [`crate::retry::Idempotency`]).
    ///
    /// ```no_run
    /// # async fn run(client: meshless::http::Client) -> Result<(), meshless::Error> {
    /// let res = client.post("/v1/orders", "{}").await?;
    /// # Ok(()) }
    /// ```
    pub fn post(&self, uri: impl AsRef<str>, body: impl Into<Bytes>) -> ResponseFuture {
        match build(Method::POST, uri.as_ref(), Full::new(body.into())) {
            Ok(req) => self.request(req),
            Err(e) => ResponseFuture::failed(e),
        }
    }

    /// Sends any request. The future is `Send + 'static`: spawn it freely.
    ///
    /// ```no_run
    /// # async fn run(client: meshless::http::Client) -> Result<(), meshless::Error> {
    /// let req = http::Request::put("/v1/items/7").body(http_body_util::Full::new(bytes::Bytes::from("x"))).unwrap();
    /// let res = tokio::spawn(client.request(req)).await.unwrap()?;
    /// # Ok(()) }
    /// ```
    pub fn request<B>(&self, req: Request<B>) -> ResponseFuture
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Err(e) = check_scheme(req.uri()).and_then(|()| check_length(&req)) {
            return ResponseFuture::failed(e);
        }
        let mut req = req;
        // The stack is called when the future is first polled, perhaps in a spawned task
        // outside the server scope that says the caller retries: carry the scope's answer.
        if CallerRetries::current() && req.extensions().get::<CallerRetries>().is_none() {
            req.extensions_mut().insert(CallerRetries(true));
        }
        self.reload.routing.apply(&mut req);
        ResponseFuture {
            state: State::Waiting {
                call: Oneshot::new(self.stack.clone(), boxed(req)),
            },
        }
    }

    /// Each endpoint's requests, failures, ejections, in-flight count, RTT and status.
    ///
    /// ```
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build().unwrap();
    /// assert_eq!(client.endpoints().len(), 1);
    /// ```
    pub fn endpoints(&self) -> Vec<EndpointStats<SocketAddr>> {
        self.balance.endpoints()
    }

    /// The retry layer's counters: requests, retries, and why retries were refused.
    ///
    /// ```
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build().unwrap();
    /// assert_eq!(client.retry_stats().requests(), 0);
    /// ```
    pub fn retry_stats(&self) -> Arc<RetryStats> {
        self.retry.clone()
    }

    /// The circuit breaker: its state and counts, and the manual switches (`isolate`,
    /// `reset`).
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build().unwrap();
    /// assert_eq!(client.breaker().state().as_str(), "closed");
    /// # });
    /// ```
    pub fn breaker(&self) -> BreakerHandle {
        self.breaker.clone()
    }

    /// The concurrency limit: the limit in force, requests in flight, refusals.
    ///
    /// ```
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build().unwrap();
    /// assert_eq!(client.limit().rejected(), 0);
    /// ```
    pub fn limit(&self) -> LimitHandle {
        self.limit.clone()
    }

    /// Client-side throttling: the refusal probability now, its counts, refusals.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build().unwrap();
    /// assert_eq!(client.throttle().probability(), 0.0);
    /// # });
    /// ```
    pub fn throttle(&self) -> ThrottleHandle {
        self.throttle.clone()
    }

    /// Hedging's counters: requests it saw, hedges sent and won, hedges refused and why, the
    /// delay in force.
    ///
    /// ```
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build().unwrap();
    /// assert_eq!(client.hedge_stats().hedges(), 0);
    /// ```
    pub fn hedge_stats(&self) -> Arc<HedgeStats> {
        self.hedge.clone()
    }

    /// Requests that failed fast because no endpoint was ready.
    ///
    /// ```
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build().unwrap();
    /// assert_eq!(client.fail_fast_events(), 0);
    /// ```
    pub fn fail_fast_events(&self) -> u64 {
        self.balance.fail_fast_events()
    }

    /// A snapshot for programs, dashboards and tests: lifetime counts, the success rate and
    /// latency percentiles of the last minute, and every endpoint's state and peak-EWMA RTT.
    /// Cheap: atomic loads, and one look at each endpoint.
    ///
    /// ```
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build().unwrap();
    /// let stats = client.stats();
    /// assert_eq!(stats.requests, 0);
    /// assert_eq!(stats.recent.p99, None);
    /// println!("{} endpoints, success rate {:?}", stats.endpoints.len(), stats.success_rate());
    /// ```
    pub fn stats(&self) -> ClientStats {
        let retry = &self.retry;
        ClientStats {
            service: self.service.to_string(),
            requests: retry.requests(),
            successes: retry.successes(),
            failures: retry.failures(),
            cancelled: retry.cancelled(),
            retries: retry.retries(),
            stale_resends: retry.stale_resends(),
            budget_exhausted: retry.budget_exhausted(),
            // Those a hedge race swallowed never reached the retry layer.
            attempt_timeouts: retry.attempt_timeouts() + self.hedge.attempt_timeouts(),
            fail_fast_events: self.balance.fail_fast_events(),
            // A route's own breaker refuses requests the client-wide one never sees.
            circuit_open: self.breaker.rejected_everywhere(),
            concurrency_limited: self.limit.rejected(),
            throttled: self.throttle.rejected(),
            recent: retry.recent(),
            endpoints: self.balance.endpoints(),
        }
    }
}

pin_project! {
    /// The future of a request sent with [`Client::get`], [`Client::post`] or
    /// [`Client::request`], or through the client as a `tower::Service`.
    ///
    /// A named, `Send + 'static` type, so it can be spawned, stored or selected on.
    ///
    /// ```no_run
    /// # async fn run(client: meshless::http::Client) -> Result<(), meshless::Error> {
    /// let call: meshless::http::ResponseFuture = client.get("/health");
    /// let res = tokio::spawn(call).await.unwrap()?;
    /// # Ok(()) }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

/// The response future's state, shared with the other clients.
type State = crate::stack::Call<Stack, StackRequest>;

impl ResponseFuture {
    fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().state.poll(cx)
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

fn build<B>(method: Method, uri: &str, body: B) -> Result<Request<B>, Error> {
    let uri: Uri = uri
        .parse()
        .map_err(|e| Error::with_source(Kind::InvalidRequest, e))?;
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    Ok(req)
}

/// Refuses, before any layer sees it, a request this client cannot send as asked: `https`
/// without TLS compiled in (never a silent downgrade to clear text), or a scheme other than
/// `http` and `https`. Two comparisons of an enum on the hot path.
fn check_scheme(uri: &Uri) -> Result<(), Error> {
    match uri.scheme() {
        None => Ok(()),
        Some(s) if *s == Scheme::HTTP => Ok(()),
        // A host no certificate can name (`bad!host`) is the caller's mistake: refused before
        // any connection, not a connect failure charged to the endpoint and retried.
        #[cfg(feature = "tls")]
        Some(s) if *s == Scheme::HTTPS => Ok(()),
        #[cfg(not(feature = "tls"))]
        Some(s) if *s == Scheme::HTTPS => Err(Error::new(Kind::TlsUnavailable)),
        // Another spelling (`HTTPS`) is refused rather than taken for its lowercase twin:
        // the layers below compare schemes exactly.
        Some(other) => Err(unsupported(other)),
    }
}

/// Refuses a request whose `content-length` (set by the caller) is not its body's own exact
/// length: HTTP/1.1 would send a truncated body (the rest never reaches the server, which acts
/// on what came) or wait for bytes that never come, until a timeout charged to the endpoint and
/// retried. A body of no known length is left to hyper, which fails it as the caller's.
fn check_length<B: http_body::Body>(req: &Request<B>) -> Result<(), Error> {
    // Most requests carry no header at all: no lookup (it hashes even in an empty map).
    if req.headers().is_empty() {
        return Ok(());
    }
    let Some(exact) = req.body().size_hint().exact() else {
        return Ok(());
    };
    let Some(value) = req.headers().get(http::header::CONTENT_LENGTH) else {
        return Ok(());
    };
    let declared = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared == Some(exact) {
        return Ok(());
    }
    Err(Error::with_source(
        Kind::InvalidRequest,
        format!("content-length {value:?} is not the body's length, {exact} bytes"),
    ))
}

fn unsupported(scheme: &Scheme) -> Error {
    Error::with_source(
        Kind::InvalidRequest,
        format!("unsupported scheme {scheme}: only http and https"),
    )
}

/// A request URI's scheme as `http` or `https` whatever its case (`HTTPS` is `https`, RFC 3986
/// §3.1, though `http::Uri` keeps such a spelling as another scheme), `None` for a path alone;
/// any other scheme is refused, so that nothing unknown is sent as plain `http`.
#[cfg(feature = "reqwest")]
pub(crate) fn request_scheme(uri: &Uri) -> Result<Option<Scheme>, Error> {
    match uri.scheme() {
        None => Ok(None),
        Some(s) if *s == Scheme::HTTP || s.as_str().eq_ignore_ascii_case("http") => {
            Ok(Some(Scheme::HTTP))
        }
        Some(s) if *s == Scheme::HTTPS || s.as_str().eq_ignore_ascii_case("https") => {
            Ok(Some(Scheme::HTTPS))
        }
        Some(other) => Err(unsupported(other)),
    }
}

fn boxed<B>(req: Request<B>) -> Request<UnsyncBoxBody<Bytes, BoxError>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    req.map(|b| b.map_err(Into::into).boxed_unsync())
}

impl<B> Service<Request<B>> for Client
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.stack.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Err(e) = check_scheme(req.uri()).and_then(|()| check_length(&req)) {
            return ResponseFuture::failed(e);
        }
        self.reload.routing.apply(&mut req);
        ResponseFuture {
            state: State::Called {
                future: self.stack.call(boxed(req)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(feature = "tls"))]
    use tower::ServiceExt;

    fn client() -> Client {
        Client::builder()
            .endpoints(["127.0.0.1:1"])
            .build()
            .expect("client")
    }

    #[tokio::test]
    async fn schemes_other_than_http_and_https_are_refused_before_sending() {
        let err = client().get("ftp://svc.example/file").await.unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidRequest);
        assert_eq!(client().stats().requests, 0, "no layer saw it");
    }

    // Run with `cargo test --no-default-features --lib http::client`.
    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn without_tls_https_is_refused_with_a_typed_error_and_never_sent() {
        let client = client();
        let err = client
            .get("https://svc.example/secret?token=1")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::TlsUnavailable);
        let service = client.clone();
        let req = Request::get("https://svc.example/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let err = ServiceExt::<Request<Empty<Bytes>>>::oneshot(service, req)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::TlsUnavailable);
        assert_eq!(client.stats().requests, 0, "no layer saw it");

        let err = Client::builder()
            .endpoints(["127.0.0.1:1"])
            .https(true)
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), "https");
    }
}
