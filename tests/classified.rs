//! Classification once per attempt: a failed response carries the balancer's verdict
//! (`classify::Classified`) and the retry layer reads it instead of classifying again; a
//! verdict that came from below (an inner stack, the endpoint) never survives a success.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Empty;
use meshless::balance::Balance;
use meshless::budget::Budget;
use meshless::classify::{Class, Classified, Classifier, Classify, Reason, Retryable};
use meshless::retry::{ReplayBody, RetryLayer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::{Layer, Service, ServiceExt, service_fn};

/// The default classifier, counting how often it judges a response head.
#[derive(Clone, Default)]
struct Counting {
    heads: Arc<AtomicUsize>,
}

impl Classify for Counting {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Class> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        Classifier::default().classify_response(status, headers)
    }
    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Class {
        Classifier::default().classify_eos(trailers)
    }
    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Class {
        Classifier::default().classify_error(error)
    }
}

/// Calls a `418 I'm a teapot` a retryable failure; the default classifier calls it a
/// non-retryable one.
#[derive(Clone)]
struct TeapotsRetry;

impl Classify for TeapotsRetry {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Class> {
        if status == StatusCode::IM_A_TEAPOT {
            return Some(Class::failure(Reason::Status(418), Retryable::IfIdempotent));
        }
        Classifier::default().classify_response(status, headers)
    }
    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Class {
        Classifier::default().classify_eos(trailers)
    }
    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Class {
        Classifier::default().classify_error(error)
    }
}

/// What reaches an endpoint under the retry layer.
type Req = Request<ReplayBody<Empty<Bytes>>>;

/// An endpoint that answers `status` and counts its requests.
fn endpoint(
    status: StatusCode,
    calls: Arc<AtomicUsize>,
) -> impl Service<Req, Response = Response<Empty<Bytes>>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_req: Req| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move {
            let mut res = Response::new(Empty::new());
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        }
    })
}

/// Sends one `GET` through `svc` and returns its answer.
async fn get<S>(svc: &mut S) -> S::Response
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    svc.ready()
        .await
        .unwrap()
        .call(Request::new(Empty::new()))
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_classified_once_and_the_retry_reads_the_verdict() {
    let counting = Counting::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let balance = Balance::builder().classifier(counting.clone()).build();
    balance.insert(
        "a",
        endpoint(StatusCode::SERVICE_UNAVAILABLE, calls.clone()),
    );
    let mut svc = RetryLayer::new(Budget::default())
        .max_retries(2)
        .classifier(counting.clone())
        .layer(balance);
    let res = get(&mut svc).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.extensions().get::<Classified>().map(|c| c.0.reason()),
        Some(Reason::Status(503))
    );
    let attempts = calls.load(Ordering::Relaxed);
    assert_eq!(attempts, 3, "a GET answered 503 is retried twice");
    // One judgement per attempt: the balancer's.
    assert_eq!(counting.heads.load(Ordering::Relaxed), attempts);
}

#[tokio::test(start_paused = true)]
async fn the_retry_follows_the_balancers_verdict_over_its_own_classifier() {
    let calls = Arc::new(AtomicUsize::new(0));
    let balance = Balance::builder().classifier(TeapotsRetry).build();
    balance.insert("a", endpoint(StatusCode::IM_A_TEAPOT, calls.clone()));
    // The retry layer's own (default) classifier would never retry a 418.
    let mut svc = RetryLayer::new(Budget::default())
        .max_retries(1)
        .layer(balance);
    let res = get(&mut svc).await;
    assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_success_carries_no_verdict() {
    let calls = Arc::new(AtomicUsize::new(0));
    let balance = Balance::builder().build();
    balance.insert("a", endpoint(StatusCode::OK, calls.clone()));
    let mut svc = RetryLayer::new(Budget::default()).layer(balance);
    let res = get(&mut svc).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.extensions().get::<Classified>().is_none());
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

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
    let res = get(&mut svc).await;
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
    let res = get(&mut svc).await;
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
