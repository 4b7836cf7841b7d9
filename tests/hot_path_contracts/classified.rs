//! `Classified`: a verdict that came from below never survives a success; the balancer's own replaces it.

use super::*;
use http::{Response, StatusCode};
use http_body_util::Empty;
use meshless::balance::Balance;
use meshless::budget::Budget;
use meshless::classify::{Class, Classified, Reason, Retryable};
use meshless::retry::{ReplayBody, RetryLayer};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::{Layer, Service, ServiceExt, service_fn};

type Req = Request<ReplayBody<Empty<Bytes>>>;

/// An endpoint whose response already carries a `Classified` when it reaches the balancer
/// (set by a user layer, an inner meshless stack, a cached response...).
fn stale(
    status: StatusCode,
    class: Class,
    calls: Arc<AtomicUsize>,
) -> impl Service<Req, Response = Response<Empty<Bytes>>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_req: Req| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move {
            let mut res = Response::new(Empty::new());
            *res.status_mut() = status;
            res.extensions_mut().insert(Classified(class));
            Ok::<_, Infallible>(res)
        }
    })
}

/// A 200 that the balancer judged a success, carrying a foreign failure verdict: the retry
/// layer must not retry a success.
#[tokio::test(start_paused = true)]
async fn foreign_classified_on_a_success_is_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let balance = Balance::builder().build();
    let foreign = Class::failure(Reason::Status(503), Retryable::IfIdempotent);
    balance.insert("a", stale(StatusCode::OK, foreign, calls.clone()));
    let mut svc = RetryLayer::new(Budget::default())
        .max_retries(2)
        .layer(balance.clone());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(Empty::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let endpoint = &balance.endpoints()[0];
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "a 200 the balancer counted as {} success(es), {} failure(s) was sent again",
        endpoint.requests - endpoint.failures,
        endpoint.failures
    );
}

/// The other way round: a 503 carrying a foreign success verdict is still retried (the
/// balancer's own verdict replaces it).
#[tokio::test(start_paused = true)]
async fn foreign_success_verdict_on_a_failure_is_overwritten() {
    let calls = Arc::new(AtomicUsize::new(0));
    let balance = Balance::builder().build();
    balance.insert(
        "a",
        stale(
            StatusCode::SERVICE_UNAVAILABLE,
            Class::success(),
            calls.clone(),
        ),
    );
    let mut svc = RetryLayer::new(Budget::default())
        .max_retries(2)
        .layer(balance);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(Empty::new()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

/// A `Classified` the caller puts on the request is no verdict on anything: a 200 is not
/// retried, a 503 is.
#[tokio::test(start_paused = true)]
async fn classified_on_the_request_is_ignored() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let balance = Balance::builder().build();
    balance.insert(
        "a",
        service_fn(move |_req: Req| {
            let n = counted.fetch_add(1, Ordering::Relaxed);
            async move {
                let mut res = Response::new(Empty::<Bytes>::new());
                if n == 0 {
                    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                Ok::<_, Infallible>(res)
            }
        }),
    );
    let mut svc = RetryLayer::new(Budget::default())
        .max_retries(2)
        .layer(balance);
    let mut req = Request::new(Empty::new());
    req.extensions_mut().insert(Classified(Class::success()));
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert!(res.extensions().get::<Classified>().is_none());
}
