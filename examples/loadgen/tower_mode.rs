//! `--mode tower`: the best resilience stack tower 0.5 offers on its own, outermost first:
//!
//! ```text
//! Timeout (--timeout-ms) → Retry (TpsBudget, policy below) → attempt counter
//!   → Timeout (per attempt) → shared p2c Balance over PeakEwmaDiscover
//!   → per endpoint: counter → hyper-util client, URI rewritten to the endpoint
//! ```
//!
//! - Balancing: `tower::balance::p2c::Balance` over `tower::load::PeakEwmaDiscover` with
//!   linkerd's settings (default RTT 30 ms, decay 10 s), an RTT measured to the response head
//!   (`CompleteOnResponse`, tower's stock completion).
//! - Retries: `tower::retry::Retry` with a `TpsBudget` of 10 s, 10 retries/s reserve and 20%,
//!   every logical request depositing once; a policy that retries an error or a 5xx up to 2
//!   times (0 with `--no-retry`), for idempotent methods only (GET, HEAD, OPTIONS, PUT, DELETE,
//!   TRACE) or for every request with `--idempotent`; between attempts tower's
//!   `ExponentialBackoff` with meshless' bounds (25 ms base, 250 ms cap; tower adds up to 100%
//!   of the step as jitter where meshless draws the whole wait), each request drawing its own.
//!   The request body is `Full<Bytes>`, which clones, as tower's retry needs.
//! - Timeouts: `tower::timeout` per attempt inside the retry (`--attempt-timeout-ms`; by default
//!   the deadline shared by the attempts allowed, as meshless does) and around everything.
//! - `Balance` is not `Clone` and tower's `Buffer` needs the `buffer` feature, which the
//!   dev-dependencies do not ask for, so the clones share it behind a `tokio::sync::Mutex`
//!   held only to pick an endpoint and start the call, as `Buffer`'s worker would.

use super::cli::Args;
use super::common::{
    Endpoint, EndpointReport, Meter, Metered, Outcome, Spec, classify, deadline_after, finish,
    hyper_client,
};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover};
use tower::retry::Policy;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::rng::HasherRng;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

type Req = Request<Full<Bytes>>;
type Res = Response<Incoming>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The whole stack, type-erased: cloned for each request.
type Stack = tower::util::BoxCloneSyncService<Req, Res, BoxError>;

pub struct Tower {
    stack: Stack,
    attempts: Arc<Meter>,
    endpoints: Vec<(SocketAddr, Arc<Meter>)>,
}

impl Tower {
    pub fn new(addrs: &[SocketAddr], args: &Args) -> Self {
        let client = hyper_client();
        let mut endpoints = Vec::with_capacity(addrs.len());
        let mut services = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let meter = Arc::new(Meter::default());
            services.push(Metered::new(
                Endpoint::new(client.clone(), addr),
                meter.clone(),
            ));
            endpoints.push((addr, meter));
        }
        let discover = PeakEwmaDiscover::new::<Req>(
            ServiceList::new::<Req>(services),
            Duration::from_millis(30),
            Duration::from_secs(10),
            CompleteOnResponse::default(),
        );
        let balance = Shared::new(Balance::new(discover));

        let max_retries = if args.no_retry { 0 } else { 2 };
        let attempt_timeout = args
            .attempt_timeout
            .unwrap_or(args.timeout / (max_retries + 1));
        let policy = RetryPolicy {
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            max_retries,
            retries_left: max_retries,
            deposited: false,
            retry_any_method: args.idempotent,
            backoff: backoff(),
        };
        let attempts = Arc::new(Meter::default());
        let counter = attempts.clone();
        let stack = ServiceBuilder::new()
            .timeout(args.timeout)
            .retry(policy)
            .layer_fn(move |inner| Metered::new(inner, counter.clone()))
            .timeout(attempt_timeout)
            .service(balance);
        Tower {
            stack: Stack::new(stack),
            attempts,
            endpoints,
        }
    }

    pub async fn send(&self, spec: &Spec) -> Outcome {
        let deadline = deadline_after(spec.timeout);
        match self.stack.clone().oneshot(spec.request()).await {
            Ok(res) => finish(res, deadline, "timeout").await,
            Err(e) => Outcome::Failed(classify(&*e)),
        }
    }

    /// Attempts, as counted between the retry and the attempt timeout.
    pub fn attempts(&self) -> u64 {
        self.attempts.requests.load(Ordering::Relaxed)
    }

    pub fn endpoints(&self) -> Vec<EndpointReport> {
        self.endpoints
            .iter()
            .map(|(addr, meter)| EndpointReport::from_meter(*addr, meter))
            .collect()
    }
}

/// Tower's exponential backoff with meshless' bounds, and a random generator of its own.
fn backoff() -> ExponentialBackoff<HasherRng> {
    ExponentialBackoffMaker::new(
        Duration::from_millis(25),
        Duration::from_millis(250),
        1.0,
        HasherRng::default(),
    )
    .expect("valid backoff bounds")
    .make_backoff()
}

/// Retries errors and 5xx answers of idempotent requests, within the budget.
struct RetryPolicy {
    budget: Arc<TpsBudget>,
    max_retries: u32,
    retries_left: u32,
    /// Whether this logical request has paid into the budget (tower clones the policy for
    /// each request, so this is per request).
    deposited: bool,
    retry_any_method: bool,
    backoff: ExponentialBackoff<HasherRng>,
}

/// Tower's retry clones the policy for each request. The clone starts afresh, with a backoff
/// of its own: a derived `Clone` would copy the random generator too, and every request would
/// then draw the same jitter.
impl Clone for RetryPolicy {
    fn clone(&self) -> Self {
        RetryPolicy {
            budget: self.budget.clone(),
            max_retries: self.max_retries,
            retries_left: self.max_retries,
            deposited: false,
            retry_any_method: self.retry_any_method,
            backoff: backoff(),
        }
    }
}

impl Policy<Req, Res, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, req: &mut Req, result: &mut Result<Res, BoxError>) -> Option<Self::Future> {
        if !self.deposited {
            self.deposited = true;
            self.budget.deposit();
        }
        let failed = match result {
            Ok(res) => res.status().is_server_error(),
            Err(_) => true,
        };
        let idempotent = self.retry_any_method
            || matches!(
                *req.method(),
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::PUT
                    | Method::DELETE
                    | Method::TRACE
            );
        if !failed || !idempotent || self.retries_left == 0 || !self.budget.withdraw() {
            return None;
        }
        self.retries_left -= 1;
        Some(self.backoff.next_backoff())
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        let mut clone = Request::new(req.body().clone());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        Some(clone)
    }
}

/// Shares one service among clones: each call locks it just long enough to wait for it to be
/// ready and start the call; the response is awaited without the lock.
struct Shared<S> {
    inner: Arc<tokio::sync::Mutex<S>>,
}

impl<S> Shared<S> {
    fn new(inner: S) -> Self {
        Shared {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
        }
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared {
            inner: self.inner.clone(),
        }
    }
}

impl<S, R> Service<R> for Shared<S>
where
    S: Service<R, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let future = {
                let mut service = inner.lock().await;
                service.ready().await?.call(req)
            };
            future.await
        })
    }
}
