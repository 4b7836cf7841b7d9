//! The balancer's edges: server pushback kept per endpoint, services that are not ready,
//! endpoints inserted again, and settings of `Duration::MAX`.
//!
//! Paused tokio time throughout: waits are exact virtual durations and nothing sleeps for real.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use meshless::balance::Balance;
use meshless::deadline::RequestDeadline;
use meshless::error::Kind;
use meshless::outlier::{OutlierConfig, Status};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, timeout};
use tower::{Service, ServiceExt};

type Req = Request<Empty<Bytes>>;
type Res = Response<Empty<Bytes>>;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An endpoint that answers at once with `status` (and `Retry-After: retry_after` seconds
/// when given), or whose `poll_ready` never completes when `ready` is false.
#[derive(Clone)]
struct Endpoint {
    status: StatusCode,
    retry_after: Option<u64>,
    // After this many hits it answers `200` with no `Retry-After`.
    healthy_after: usize,
    ready: bool,
    hits: Arc<AtomicUsize>,
}

impl Endpoint {
    fn new(status: u16) -> Self {
        Endpoint {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            healthy_after: usize::MAX,
            ready: true,
            hits: Arc::default(),
        }
    }

    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    fn healthy_after(mut self, hits: usize) -> Self {
        self.healthy_after = hits;
        self
    }

    fn never_ready(mut self) -> Self {
        self.ready = false;
        self
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Service<Req> for Endpoint {
    type Response = Res;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Res, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        let before = self.hits.fetch_add(1, Ordering::SeqCst);
        let healthy = before >= self.healthy_after;
        let mut res =
            Response::builder().status(if healthy { StatusCode::OK } else { self.status });
        if let (Some(secs), false) = (self.retry_after, healthy) {
            res = res.header("retry-after", secs.to_string());
        }
        let res = res.body(Empty::new()).unwrap();
        Box::pin(async move { Ok(res) })
    }
}

fn request(deadline: Option<Duration>) -> Req {
    let mut req = Request::new(Empty::new());
    if let Some(d) = deadline {
        req.extensions_mut().insert(RequestDeadline::after(d));
    }
    req
}

async fn send(
    balance: &Balance<&'static str, Endpoint>,
    deadline: Option<Duration>,
) -> Result<StatusCode, Kind> {
    match balance.clone().oneshot(request(deadline)).await {
        Ok(res) => Ok(res.status()),
        Err(e) => Err(e.kind()),
    }
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_pushes_back_gets_nothing_until_the_time_it_named() {
    let throttled = Endpoint::new(429).retry_after(2);
    let healthy = Endpoint::new(200);
    let balance = Balance::builder().build();
    balance.insert("throttled", throttled.clone());
    balance.insert("healthy", healthy.clone());
    // Send until the throttled endpoint has answered once.
    while throttled.hits() == 0 {
        let _ = send(&balance, None).await;
    }
    let asked_at = Instant::now();
    // For the next two seconds every request goes to the other endpoint.
    while Instant::now() < asked_at + ms(1990) {
        assert_eq!(send(&balance, None).await, Ok(StatusCode::OK));
        tokio::time::advance(ms(10)).await;
    }
    assert_eq!(
        throttled.hits(),
        1,
        "a request reached an endpoint during its Retry-After"
    );
    // Once the two seconds are over it takes requests again, at once.
    tokio::time::advance(ms(20)).await;
    balance.remove(&"healthy");
    let started = Instant::now();
    assert_eq!(
        send(&balance, None).await,
        Ok(StatusCode::TOO_MANY_REQUESTS)
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(throttled.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn when_every_endpoint_pushes_back_past_the_deadline_the_request_fails_at_once() {
    let a = Endpoint::new(429).retry_after(2);
    let b = Endpoint::new(429).retry_after(2);
    let balance = Balance::builder().build();
    balance.insert("a", a.clone());
    balance.insert("b", b.clone());
    while a.hits() == 0 || b.hits() == 0 {
        assert_eq!(
            send(&balance, None).await,
            Ok(StatusCode::TOO_MANY_REQUESTS)
        );
    }
    let (hits_a, hits_b) = (a.hits(), b.hits());
    let started = Instant::now();
    // Shorter than the quiet, and than the wait for its first probe (a second).
    let result = send(&balance, Some(ms(900))).await;
    assert_eq!(result, Err(Kind::EndpointsPushingBack));
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "it must fail at once, not wait"
    );
    assert_eq!((a.hits(), b.hits()), (hits_a, hits_b), "nothing was sent");
}

#[tokio::test(start_paused = true)]
async fn when_every_endpoint_pushes_back_within_the_deadline_the_request_waits_for_the_first() {
    let a = Endpoint::new(429).retry_after(2);
    let balance = Balance::builder().build();
    balance.insert("a", a.clone());
    assert_eq!(
        send(&balance, None).await,
        Ok(StatusCode::TOO_MANY_REQUESTS)
    );
    let asked_at = Instant::now();
    // With no deadline, and with one longer than the quiet, the request waits it out: longer
    // than the fail-fast timeout would allow for an endpoint that is merely unavailable.
    let balance_1 = balance.clone();
    let waited = tokio::spawn(async move {
        let res = send(&balance_1, Some(Duration::from_secs(5))).await;
        (res, Instant::now())
    });
    let (res, at) = waited.await.unwrap();
    assert_eq!(res, Ok(StatusCode::TOO_MANY_REQUESTS));
    // The quiet's first probe goes a second in, before its end.
    assert!(
        at >= asked_at + ms(1000),
        "sent {:?} after the pushback",
        at - asked_at
    );
    assert!(
        at < asked_at + ms(1100),
        "waited {:?}, longer than the first probe",
        at - asked_at
    );
    assert_eq!(a.hits(), 2);
}

/// A server in maintenance for two minutes gets, after the first second, one probe a second
/// (each answered with the same pushback, which keeps the quiet): requests that cannot wait
/// for a probe fail at once, sending nothing.
#[tokio::test(start_paused = true)]
async fn a_long_pushback_is_probed_once_a_second() {
    let away = Endpoint::new(503).retry_after(120);
    let balance = Balance::builder().build();
    balance.insert("away", away.clone());
    assert_eq!(
        send(&balance, None).await,
        Ok(StatusCode::SERVICE_UNAVAILABLE)
    );
    let asked_at = Instant::now();
    tokio::time::advance(ms(500)).await;
    assert_eq!(
        send(&balance, Some(ms(400))).await,
        Err(Kind::EndpointsPushingBack)
    );
    assert_eq!(away.hits(), 1);
    // One that can wait is the probe, a second in; the next, a second later.
    let _ = send(&balance, None).await;
    assert_eq!(asked_at.elapsed(), ms(1000));
    assert_eq!(away.hits(), 2);
    let _ = send(&balance, None).await;
    assert_eq!(asked_at.elapsed(), ms(2000));
    assert_eq!(away.hits(), 3);
    // Still in maintenance two minutes on: one request is the probe, and the quiet holds
    // for the next, which cannot wait the second to the probe after.
    tokio::time::advance(Duration::from_secs(118)).await;
    assert_eq!(
        send(&balance, Some(ms(900))).await,
        Ok(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(
        send(&balance, Some(ms(900))).await,
        Err(Kind::EndpointsPushingBack)
    );
    assert_eq!(away.hits(), 4);
}

/// One `Retry-After: 120` from every endpoint, then healthy servers (a canned figure on a
/// moment's overload): the first probe, a second in, ends the quiet, and traffic flows again
/// rather than failing for two minutes.
#[tokio::test(start_paused = true)]
async fn an_answered_probe_ends_a_long_quiet() {
    let a = Endpoint::new(503).retry_after(120).healthy_after(1);
    let b = Endpoint::new(503).retry_after(120).healthy_after(1);
    let balance = Balance::builder().build();
    balance.insert("a", a.clone());
    balance.insert("b", b.clone());
    while a.hits() == 0 || b.hits() == 0 {
        let _ = send(&balance, None).await;
    }
    let asked_at = Instant::now();
    assert_eq!(
        send(&balance, Some(ms(900))).await,
        Err(Kind::EndpointsPushingBack)
    );
    assert_eq!(send(&balance, None).await, Ok(StatusCode::OK));
    assert_eq!(asked_at.elapsed(), ms(1000));
    // Both probes answered (one each second at most per endpoint): no quiet left.
    assert_eq!(send(&balance, None).await, Ok(StatusCode::OK));
    let before = a.hits() + b.hits();
    for _ in 0..20 {
        assert_eq!(send(&balance, Some(ms(10))).await, Ok(StatusCode::OK));
    }
    assert_eq!(a.hits() + b.hits(), before + 20);
    assert_eq!(asked_at.elapsed(), ms(1000), "nothing waited");
}

#[tokio::test(start_paused = true)]
async fn pushback_is_clamped_by_the_maximum() {
    // A cap shorter than the wait for a probe, so that the quiet's end is what is seen.
    let a = Endpoint::new(503).retry_after(3600);
    let balance = Balance::builder().max_pushback(ms(700)).build();
    balance.insert("a", a.clone());
    assert_eq!(
        send(&balance, None).await,
        Ok(StatusCode::SERVICE_UNAVAILABLE)
    );
    let asked_at = Instant::now();
    let _ = send(&balance, None).await;
    let waited = asked_at.elapsed();
    assert!(waited >= ms(700) && waited < ms(800), "waited {waited:?}");
    assert_eq!(a.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_is_not_ready_is_passed_over_for_its_ready_peers() {
    let stuck = Endpoint::new(200).never_ready();
    let ready = Endpoint::new(200);
    let balance = Balance::builder().build();
    balance.insert("stuck", stuck.clone());
    balance.insert("ready", ready.clone());
    for _ in 0..200 {
        // Paused time: a request that waited on the stuck endpoint would need virtual time.
        let started = Instant::now();
        assert_eq!(send(&balance, None).await, Ok(StatusCode::OK));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
    assert_eq!((stuck.hits(), ready.hits()), (0, 200));
}

#[tokio::test(start_paused = true)]
async fn with_no_endpoint_ready_the_request_still_fails_fast() {
    let balance = Balance::builder().fail_fast(ms(500)).build();
    balance.insert("stuck", Endpoint::new(200).never_ready());
    let started = Instant::now();
    assert_eq!(send(&balance, None).await, Err(Kind::NoReadyEndpoint));
    assert_eq!(started.elapsed(), ms(500));
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_inserted_again_keeps_its_ejection_and_measurements() {
    // One failure ejects, for a minute.
    let config = OutlierConfig::builder()
        .consecutive_failures(Some(1))
        .base_ejection_time(Duration::from_secs(60))
        .build()
        .unwrap();
    let balance = Balance::builder().outlier(config).build();
    let failing = Endpoint::new(500);
    balance.insert("a", failing.clone());
    balance.insert("b", Endpoint::new(200));
    for _ in 0..100 {
        if failing.hits() > 0 {
            break;
        }
        let _ = send(&balance, None).await;
    }
    let ejected = |balance: &Balance<&'static str, Endpoint>| {
        let a = balance
            .endpoints()
            .into_iter()
            .find(|e| e.key == "a")
            .unwrap();
        matches!(a.status, Status::Ejected { .. })
    };
    assert!(ejected(&balance));
    let before = balance
        .endpoints()
        .into_iter()
        .find(|e| e.key == "a")
        .unwrap();
    // Discovery hands the same address again, with a fresh service.
    let fresh = Endpoint::new(200);
    balance.insert("a", fresh.clone());
    let after = balance
        .endpoints()
        .into_iter()
        .find(|e| e.key == "a")
        .unwrap();
    assert!(
        matches!(after.status, Status::Ejected { .. }),
        "{:?}",
        after.status
    );
    assert_eq!(
        (after.requests, after.failures, after.ejections),
        (before.requests, before.failures, before.ejections)
    );
    assert_eq!(balance.len(), 2);
    for _ in 0..50 {
        let _ = send(&balance, None).await;
    }
    assert_eq!(
        fresh.hits(),
        0,
        "an ejected endpoint got traffic back by being inserted again"
    );
}

#[tokio::test(start_paused = true)]
async fn duration_max_settings_mean_no_limit_and_never_panic() {
    let balance: Balance<&'static str, Endpoint> = Balance::builder()
        .fail_fast(Duration::MAX)
        .miss_weight(1.0)
        .max_pushback(Duration::MAX)
        .decay(Duration::MAX)
        .default_rtt(Duration::MAX)
        .build();
    // No endpoint and no fail-fast limit: the request waits until its caller gives up.
    assert!(
        timeout(Duration::from_secs(3600), send(&balance, None))
            .await
            .is_err()
    );
    balance.insert("a", Endpoint::new(503).retry_after(u64::MAX / 4));
    balance.insert("b", Endpoint::new(500));
    for _ in 0..20 {
        let _ = timeout(Duration::from_secs(1), send(&balance, Some(Duration::MAX))).await;
    }
    let _ = balance.stats();
}

#[tokio::test(start_paused = true)]
async fn a_key_removed_and_inserted_in_one_batch_is_listed_once() {
    use meshless::balance::Change;
    let balance = Balance::builder().build();
    balance.insert("a", Endpoint::new(200));
    balance.insert("b", Endpoint::new(200));
    balance.apply([Change::Remove("a"), Change::Insert("a", Endpoint::new(200))]);
    let mut keys: Vec<_> = balance.endpoints().into_iter().map(|e| e.key).collect();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_pushback_longer_than_the_attempt_timeout_fails_the_attempt_at_once() {
    use meshless::deadline::AttemptTimeoutLayer;
    use tower::Layer;
    let a = Endpoint::new(429).retry_after(2);
    let balance = Balance::builder().build();
    balance.insert("a", a.clone());
    assert_eq!(
        send(&balance, None).await,
        Ok(StatusCode::TOO_MANY_REQUESTS)
    );
    // A 10 s deadline would let the request wait, but its attempt may last only one second:
    // waiting in the balancer would end in an attempt timeout, with nothing sent.
    let attempt = AttemptTimeoutLayer::new(ms(900)).layer(balance.clone());
    let started = Instant::now();
    let err = attempt
        .oneshot(request(Some(Duration::from_secs(10))))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::EndpointsPushingBack);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(a.hits(), 1);
}
