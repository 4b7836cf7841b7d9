//! Contracts found by review: layers composed (limit over breaker; retry hops across two
//! services), in memory.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use meshless::backoff::Backoff;
use meshless::breaker::{BreakerConfig, BreakerLayer, BreakerState};
use meshless::budget::Budget;
use meshless::error::Kind;
use meshless::limit::{Algorithm, LimitConfig, LimitLayer};
use meshless::retry::{CallerRetriesLayer, ReplayBody, RetryLayer};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Layer, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

/// Limit (fixed 1, waiting allowed) over the breaker, as in the client's stack. A request that
/// comes while the breaker is isolated is refused at once (`CircuitOpen`, nothing sent): it
/// does not queue in the limit behind the holder, where the verdict would be stale by the
/// time the permit came. Once the breaker is reset, a request queues and is sent.
#[tokio::test(start_paused = true)]
async fn a_request_the_breaker_refuses_never_queues_in_the_limit() {
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let mut bc = BreakerConfig::default();
    bc.break_jitter = 0.0;
    let breaker = BreakerLayer::from_config(&bc).unwrap().metrics(false);
    let bh = breaker.handle();
    let mut lc = LimitConfig::default();
    lc.algorithm = Algorithm::Fixed { max: 1 };
    lc.max_wait = Duration::from_secs(10);
    let limit = LimitLayer::from_config(&lc).unwrap();
    let lh = limit.handle();
    let svc = limit.layer(breaker.layer(service_fn(move |_req: Request<()>| {
        r.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(100 * MS).await;
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::<Bytes>::new()))
        }
    })));
    let holder = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    assert_eq!(lh.in_flight(), 1);
    bh.isolate();
    let refused = svc.clone().oneshot(Request::new(())).await;
    assert_eq!(refused.unwrap_err().kind(), Kind::CircuitOpen);
    assert_eq!(lh.waiting(), 0);
    bh.reset();
    assert_eq!(bh.state(), BreakerState::Closed);
    let queued = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    assert_eq!(lh.waiting(), 1);
    holder.await.unwrap().unwrap();
    let outcome = queued.await.unwrap();
    assert!(
        outcome.is_ok(),
        "refused with {:?} though the breaker was closed when the permit came ({} sent)",
        outcome.as_ref().err().map(|e| e.kind()),
        received.load(Ordering::SeqCst)
    );
    assert_eq!(received.load(Ordering::SeqCst), 2);
}

type Body = Full<Bytes>;

/// A → B → C. A is a meshless retry client (2 retries). B serves behind `CallerRetriesLayer`
/// and calls C with its own meshless retry client (2 retries), with an idempotent GET. C
/// fails its first request with 503, then answers 200.
///
/// A's request is a plain POST: A will not retry a 503 for it (not idempotent). Yet A's first
/// attempt announces `x-meshless-attempt: 1`, so B defers to A and does not retry C's 503
/// either: nobody retries, and a failure one safe retry would have hidden reaches the user.
/// One retry layer per call chain should be one, not zero.
#[tokio::test]
async fn hop_guard_does_not_leave_a_chain_with_no_retry_at_all() {
    let c_calls = Arc::new(AtomicU64::new(0));
    let cc = c_calls.clone();
    let c = service_fn(move |_req: Request<ReplayBody<Body>>| {
        let n = cc.fetch_add(1, Ordering::SeqCst);
        async move {
            let status = if n == 0 { 503 } else { 200 };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Body::default())
                    .unwrap(),
            )
        }
    });
    let b_client = RetryLayer::new(Budget::default())
        .max_retries(2)
        .backoff(Backoff::none())
        .metrics(false)
        .layer(c);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let b = CallerRetriesLayer::new().layer(service_fn(move |req: Request<ReplayBody<Body>>| {
        s.lock().unwrap().push(
            req.headers()
                .get("x-meshless-attempt")
                .map(|v| v.to_str().unwrap().to_string()),
        );
        let b_client = b_client.clone();
        async move {
            let res = b_client
                .oneshot(Request::get("http://c/").body(Body::default()).unwrap())
                .await
                .unwrap();
            Ok::<_, Infallible>(
                Response::builder()
                    .status(res.status())
                    .body(Body::default())
                    .unwrap(),
            )
        }
    }));
    let a = RetryLayer::new(Budget::default())
        .max_retries(2)
        .backoff(Backoff::none())
        .metrics(false)
        .layer(b);
    let res = a
        .oneshot(
            Request::post("http://b/orders")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "attempts B saw (x-meshless-attempt): {:?}; requests C saw: {}",
        seen.lock().unwrap(),
        c_calls.load(Ordering::SeqCst)
    );
}

/// A proxy-like handler forwards its inbound headers: the inbound request carried
/// `grpc-previous-rpc-attempts: 4`. The client's first attempt must not claim previous
/// attempts it did not make (the retry path removes the header for this reason; the first
/// attempt keeps it).
#[tokio::test]
async fn first_attempt_does_not_forward_a_foreign_previous_attempts_header() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let upstream = service_fn(move |req: Request<ReplayBody<Body>>| {
        s.lock().unwrap().push((
            req.headers().get("x-meshless-attempt").cloned(),
            req.headers().get("grpc-previous-rpc-attempts").cloned(),
        ));
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(200)
                    .body(Body::default())
                    .unwrap(),
            )
        }
    });
    let client = RetryLayer::new(Budget::default())
        .max_retries(2)
        .backoff(Backoff::none())
        .metrics(false)
        .layer(upstream);
    let req = Request::post("http://c/svc.Echo/Say")
        .header("content-type", "application/grpc")
        .header("grpc-previous-rpc-attempts", "4")
        .header(
            "x-meshless-attempt",
            "\u{0}garbage-ÿ".to_string().as_str().replace('\u{0}', ""),
        )
        .body(Body::default())
        .unwrap();
    let _ = client.oneshot(req).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    // A gRPC call is a POST: this layer would not retry its 503, so it does not announce
    // itself, and the copied header does not speak for it.
    assert_eq!(seen[0].0, None);
    assert_eq!(
        seen[0].1, None,
        "first attempt carried a foreign grpc-previous-rpc-attempts"
    );
}

/// Hostile inbound attempt headers (garbage bytes, 64 KiB, many values) through
/// `CallerRetriesLayer` never panic and mark the scope.
#[tokio::test]
async fn hostile_attempt_headers_never_panic() {
    let svc = CallerRetriesLayer::new().layer(service_fn(|_req: Request<()>| async move {
        Ok::<_, Infallible>(meshless::retry::CallerRetries::current())
    }));
    let huge = "9".repeat(65_536);
    let values: Vec<http::HeaderValue> = vec![
        http::HeaderValue::from_bytes(b"\xff\xfe\x80").unwrap(),
        http::HeaderValue::from_str(&huge).unwrap(),
        http::HeaderValue::from_static("-1"),
        http::HeaderValue::from_static("18446744073709551616"),
        http::HeaderValue::from_static(""),
    ];
    for name in ["x-meshless-attempt", "grpc-previous-rpc-attempts"] {
        for v in &values {
            let mut req = Request::new(());
            req.headers_mut().append(name, v.clone());
            req.headers_mut().append(name, v.clone());
            assert!(svc.clone().oneshot(req).await.unwrap());
        }
    }
    let _ = Kind::Throttled;
}

/// The same in a long-lived service (no clone per request), the limit full with no waiting:
/// the breaker's refusal, stored by its `poll_ready`, is what the request gets (not the
/// limit's), and it is used up: after the breaker is reset and the limit has room, the next
/// call is sent.
#[tokio::test(start_paused = true)]
async fn a_limit_refusal_leaves_a_stale_breaker_refusal_in_a_long_lived_service() {
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let breaker = BreakerLayer::from_config(&BreakerConfig::default())
        .unwrap()
        .metrics(false);
    let bh = breaker.handle();
    let limit = LimitLayer::fixed(1);
    let mut svc = limit.layer(breaker.layer(service_fn(move |_req: Request<()>| {
        r.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(100 * MS).await;
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::<Bytes>::new()))
        }
    })));
    let holder = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    bh.isolate();
    use tower::Service;
    let first = svc.ready().await.unwrap().call(Request::new(())).await;
    assert_eq!(first.unwrap_err().kind(), Kind::CircuitOpen);
    bh.reset();
    holder.await.unwrap().unwrap();
    let second = svc.ready().await.unwrap().call(Request::new(())).await;
    assert!(
        second.is_ok(),
        "breaker closed and limit free, yet: {:?}",
        second.err().map(|e| e.kind())
    );
}
