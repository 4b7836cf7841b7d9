//! What the modes share: the request to send, the outcome of one, reading the response body,
//! naming transport errors, and (for plain and tower) the per-endpoint hyper-util service and
//! the counters around it.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::Service;

/// The header that tells the server how many body bytes to expect.
pub const BODY_LEN: &str = "x-body-len";

/// Every request of a run is the same: this one.
#[derive(Debug, Clone)]
pub struct Spec {
    pub method: Method,
    pub path: PathAndQuery,
    pub body: Bytes,
    /// End to end, per logical request.
    pub timeout: Duration,
}

impl Spec {
    /// A fresh request with a path-only URI (each mode points it at an endpoint) and, for a
    /// POST, its body and `x-body-len`.
    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = Uri::from(self.path.clone());
        if self.method == Method::POST {
            req.headers_mut()
                .insert(BODY_LEN, HeaderValue::from(self.body.len()));
        }
        req
    }
}

/// How one logical request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response, body read in full.
    Ok,
    /// Any other response status, body read in full.
    Status(StatusCode),
    /// No (whole) response: the short, stable name of the reason.
    Failed(&'static str),
}

/// Reads the body of `res` until `deadline`; the outcome is the status once the body is in.
/// `timeout_name` names a deadline that passes while reading.
pub async fn finish<B>(res: Response<B>, deadline: Instant, timeout_name: &'static str) -> Outcome
where
    B: http_body::Body,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let status = res.status();
    match tokio::time::timeout_at(deadline, drain(res.into_body())).await {
        Err(_) => Outcome::Failed(timeout_name),
        Ok(Err(e)) => Outcome::Failed(classify(&*e.into())),
        Ok(Ok(())) if status.is_success() => Outcome::Ok,
        Ok(Ok(())) => Outcome::Status(status),
    }
}

/// Reads a body to its end, dropping each frame as it comes: a fleet that streams large or
/// endless bodies must not fill this process's memory.
async fn drain<B: http_body::Body>(body: B) -> Result<(), B::Error> {
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

/// The instant `timeout` from now. A timeout past the end of the clock (`--timeout-ms` near
/// `u64::MAX` on a platform with a short `Instant`) is halved until it fits: that is still
/// "never" for a load run, and no flag value can panic here.
pub fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    let mut timeout = timeout;
    loop {
        // Ends: a zero timeout always fits.
        match now.checked_add(timeout) {
            Some(deadline) => return deadline,
            None => timeout /= 2,
        }
    }
}

/// Names a transport-level error for the plain and tower modes (and for a meshless response
/// body that fails after its head came): `timeout`, `connect`, `reset` or `other`. Walks the
/// source chain and takes the first error it recognises.
///
/// A meshless response body fails with a [`meshless::Error`] of its own when the deadline (or
/// the body idle timeout) cuts it off; that error is named by its kind, as meshless mode names
/// the errors of the response head (`deadline-exceeded`, `body-idle-timeout`). A
/// [`Kind::Service`](meshless::error::Kind::Service) error only wraps what failed underneath,
/// so the walk goes on to name that.
pub fn classify(error: &(dyn StdError + 'static)) -> &'static str {
    use meshless::error::Kind;
    use std::io::ErrorKind;
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<meshless::Error>() {
            if e.kind() != Kind::Service {
                return e.kind().as_str();
            }
        }
        if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
            return "timeout";
        }
        if let Some(e) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            if e.is_connect() {
                return "connect";
            }
        }
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            if e.is_timeout() {
                return "timeout";
            }
            if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
                return "reset";
            }
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            match e.kind() {
                ErrorKind::ConnectionRefused => return "connect",
                ErrorKind::TimedOut => return "timeout",
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => return "reset",
                _ => {}
            }
        }
        next = e.source();
    }
    "other"
}

/// The hyper-util client of the plain and tower modes, set up as meshless sets up its own:
/// 1 s connect timeout, `TCP_NODELAY`, HTTP/1.1, a pool per endpoint.
pub type Hyper = HyperClient<HttpConnector, Full<Bytes>>;

pub fn hyper_client() -> Hyper {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    connector.set_nodelay(true);
    HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector)
}

/// Sends every request to one endpoint: the URI gets its scheme and authority.
#[derive(Clone)]
pub struct Endpoint {
    client: Hyper,
    authority: Authority,
}

impl Endpoint {
    pub fn new(client: Hyper, addr: SocketAddr) -> Self {
        let authority = addr
            .to_string()
            .parse()
            .expect("a socket address is an authority");
        Endpoint { client, authority }
    }
}

impl Service<Request<Full<Bytes>>> for Endpoint {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Full<Bytes>>) -> Self::Future {
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a URI");
        self.client.request(req)
    }
}

/// Requests sent and failures seen, for one endpoint (or, in tower mode, for all attempts).
#[derive(Debug, Default)]
pub struct Meter {
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

/// Counts what passes through `S` into a [`Meter`]: a request when it ends (or is dropped,
/// timed out by an outer layer), and a failure when it ended in an error, a 5xx or a 429, or
/// never ended — the same outcomes meshless counts as endpoint failures.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
}

impl<S> Metered<S> {
    pub fn new(inner: S, meter: Arc<Meter>) -> Self {
        Metered { inner, meter }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, Req, RB> Service<Req> for Metered<S>
where
    S: Service<Req, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let future = self.inner.call(req);
        let tally = Tally {
            meter: self.meter.clone(),
            failed: true,
        };
        Box::pin(async move {
            // The whole tally moves in, so that it drops with the future.
            let mut tally = tally;
            let result = future.await;
            tally.failed = match &result {
                Ok(res) => {
                    res.status().is_server_error() || res.status() == StatusCode::TOO_MANY_REQUESTS
                }
                Err(_) => true,
            };
            result
        })
    }
}

/// Records one request into its meter when dropped: at the end, or when abandoned.
struct Tally {
    meter: Arc<Meter>,
    failed: bool,
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.meter.requests.fetch_add(1, Ordering::Relaxed);
        if self.failed {
            self.meter.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One endpoint's line in the report.
#[derive(Debug, Clone)]
pub struct EndpointReport {
    pub addr: SocketAddr,
    pub requests: u64,
    pub failures: u64,
    pub ejections: u64,
}

impl EndpointReport {
    pub fn from_meter(addr: SocketAddr, meter: &Meter) -> Self {
        EndpointReport {
            addr,
            requests: meter.requests.load(Ordering::Relaxed),
            failures: meter.failures.load(Ordering::Relaxed),
            ejections: 0,
        }
    }
}
