//! A refusal (a full limit, an open circuit, throttling, a balancer failing fast) answers at once, without I/O. A caller
//! that sends its next request as soon as one is refused must still let the other tasks of its
//! thread run (the requests in flight whose answers end the refusals): each refusal spends
//! tokio's cooperative budget, so such a loop yields every so often.
//!
//! Each test runs a loop of refusals on a current-thread runtime beside a task spawned before
//! it, and checks that the task ran while the loop was still refusing.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use meshless::balance::Balance;
use meshless::breaker::BreakerLayer;
use meshless::error::Kind;
use meshless::limit::LimitLayer;
use meshless::throttle::{ThrottleConfig, ThrottleLayer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt, service_fn};

/// Refusals the loop makes at most; far more than tokio's budget of 128 a poll.
const REFUSALS: usize = 10_000;

/// Loops on `svc` until `other` has run or `REFUSALS` calls are made; each call must be refused
/// with `kind`. Returns how many calls were made.
async fn refusals_until_other_runs<S>(mut svc: S, kind: Kind) -> usize
where
    S: Service<Request<()>, Error = meshless::Error>,
    S::Response: std::fmt::Debug,
{
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    for calls in 1..=REFUSALS {
        let outcome = match svc.ready().await {
            Ok(ready) => ready.call(Request::new(())).await,
            Err(e) => Err(e),
        };
        let error = outcome.expect_err("every call is refused");
        assert_eq!(error.kind(), kind, "{error}");
        if ran.load(Ordering::SeqCst) {
            return calls;
        }
    }
    REFUSALS
}

fn hanging() -> impl Service<
    Request<()>,
    Response = Response<http_body_util::Empty<bytes::Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send {
    service_fn(|_: Request<()>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Response::new(http_body_util::Empty::new()))
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_refused_by_a_full_limit_yields() {
    let mut svc = LimitLayer::fixed(1).layer(hanging());
    // One request holds the only permit.
    let holder = svc.ready().await.unwrap().call(Request::new(()));
    let calls = refusals_until_other_runs(svc, Kind::ConcurrencyLimited).await;
    drop(holder);
    assert!(calls < REFUSALS, "the other task never ran");
    assert!(calls > 1, "not a yield per refusal: {calls}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_refused_by_an_open_circuit_yields() {
    let layer = BreakerLayer::new();
    layer.handle().isolate();
    let calls = refusals_until_other_runs(layer.layer(hanging()), Kind::CircuitOpen).await;
    assert!(calls < REFUSALS, "the other task never ran");
}

#[tokio::test(flavor = "current_thread")]
async fn a_loop_refused_by_throttling_yields() {
    let mut config = ThrottleConfig::default();
    config.enabled = true;
    let layer = ThrottleLayer::from_config(&config).unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: Request<()>| async {
        let mut res = Response::new(http_body_util::Empty::<bytes::Bytes>::new());
        *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        Ok::<_, Infallible>(res)
    }));
    // Rejections by the upstream until the throttle refuses most requests.
    let mut warm = svc.clone();
    let mut throttled = false;
    for _ in 0..1_000 {
        let outcome = warm.ready().await.unwrap().call(Request::new(())).await;
        if matches!(&outcome, Err(e) if e.kind() == Kind::Throttled) {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "the throttle never refused: {:?}", handle);
    let calls = refusals_until_other_runs(OnlyRefusals(svc), Kind::Throttled).await;
    assert!(calls < REFUSALS, "the other task never ran");
}

/// Throttling refuses at random: this skips the requests it lets through, so that the loop
/// sees only refusals (a request let through is answered `503` at once, as refused ones are).
#[derive(Clone)]
struct OnlyRefusals<S>(S);

impl<S> Service<Request<()>> for OnlyRefusals<S>
where
    S: Service<Request<()>, Error = meshless::Error> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    type Response = S::Response;
    type Error = meshless::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<S::Response, meshless::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), meshless::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        let mut svc = self.0.clone();
        Box::pin(async move {
            loop {
                match svc.ready().await?.call(Request::new(())).await {
                    Err(e) => return Err(e),
                    Ok(_) => continue,
                }
            }
        })
    }
}

/// A balancer told to fail fast at once (`fail_fast(0)`: "the longest a request waits for an
/// endpoint") with no endpoint ready refuses every request with `NoReadyEndpoint` without I/O
/// and without a timer, exactly as a full limit or an open breaker do. Those now spend the
/// coop budget so that a caller looping on refusals lets its thread's other tasks run; this
/// one does not, and the loop starves the task that would make an endpoint ready (here, any
/// task at all) for all 10,000 refusals.
#[tokio::test(flavor = "current_thread")]
async fn a_loop_refused_by_a_balancer_failing_fast_yields() {
    let balance: Balance<&'static str, _> = Balance::builder().fail_fast(Duration::ZERO).build();
    // An endpoint that is never ready (a connection still being made).
    balance.insert(
        "a",
        tower::util::BoxCloneService::new(NeverReady(service_fn(
            |_: Request<Empty<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            },
        ))),
    );
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
    let mut calls = 0;
    for n in 1..=REFUSALS {
        calls = n;
        let outcome = balance.clone().oneshot(Request::new(Empty::new())).await;
        let error = outcome.expect_err("every call is refused");
        assert_eq!(error.kind(), Kind::NoReadyEndpoint, "{error}");
        if ran.load(Ordering::SeqCst) {
            break;
        }
    }
    assert!(
        calls < REFUSALS,
        "{calls} NoReadyEndpoint refusals in a row and the other task of the thread never ran: \
         the balancer's fail-fast refusal spends no coop budget"
    );
}

#[derive(Clone)]
struct NeverReady<S>(S);

impl<S: Service<R>, R> Service<R> for NeverReady<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        std::task::Poll::Pending
    }
    fn call(&mut self, req: R) -> S::Future {
        self.0.call(req)
    }
}
