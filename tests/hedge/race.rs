//! Who wins the race: the first good answer; non-fatal answers let the others run on; the
//! losers are cancelled, and the balancer charges their endpoint nothing; every attempt sends
//! the same bytes.

use super::support::{Upstream, answer, behind, fixed, get, ms};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use meshless::balance::Balance;
use meshless::budget::Budget;
use meshless::classify::{Class, Classified, Pushback, Reason, Retryable};
use meshless::retry::{Idempotent, ReplayBody, RetryLayer};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn a_non_fatal_status_lets_the_hedge_run_on_and_win() {
    let upstream = Upstream::new(ms(1), 200);
    // The first attempt answers 503 at 20 ms; the hedge, sent at 10 ms, 200 at 40 ms.
    upstream.script([(ms(20), 503), (ms(30), 200)]);
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let stats = layer.stats();
    let (res, took) = answer(&layer, &upstream).await;
    assert_eq!(
        (res.status(), res.body().as_str()),
        (StatusCode::OK, "call 1")
    );
    assert_eq!(took, ms(40));
    assert_eq!(stats.won(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_answer_ends_the_request_at_once() {
    let upstream = Upstream::new(ms(1), 200);
    // 500 is not in the non-fatal list: the hedge is cancelled.
    upstream.script([(ms(20), 500), (ms(30), 200)]);
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    let t0 = Instant::now();
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(
        (res.status(), res.body().as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "call 0")
    );
    assert_eq!(Instant::now() - t0, ms(20));
    assert_eq!((stats.hedges(), stats.won()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_last_failure_is_returned() {
    let upstream = Upstream::new(ms(1), 200);
    // The hedge fails first (502 at 15 ms), then the first attempt (503 at 20 ms).
    upstream.script([(ms(20), 503), (ms(5), 502)]);
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let svc = behind(&layer, &upstream);
    let t0 = Instant::now();
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(Instant::now() - t0, ms(20));
}

#[tokio::test(start_paused = true)]
async fn errors_and_classified_retryable_failures_are_not_fatal() {
    // Odd calls are hedges that answer 200 at 30 ms; the first attempts fail at 20 ms, with an
    // error, then with a 500 the balancer classified as retryable.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = fixed(Budget::default(), ms(10), 1, 1.0).layer(service_fn(
        move |_req: Request<ReplayBody<String>>| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                tokio::time::sleep(ms(20)).await;
                match n {
                    0 => Err(std::io::Error::other("reset")),
                    2 => {
                        let mut res = Response::new(String::from("classified"));
                        *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        let class = Class::failure(Reason::Status(500), Retryable::IfIdempotent);
                        res.extensions_mut().insert(Classified(class));
                        Ok(res)
                    }
                    _ => Ok(Response::new(format!("good {n}"))),
                }
            }
        },
    ));
    for expected in ["good 1", "good 3"] {
        let t0 = Instant::now();
        let res = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(res.body(), expected);
        assert_eq!(Instant::now() - t0, ms(30));
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_may_win_too() {
    let upstream = Upstream::new(ms(1), 200);
    upstream.script([(ms(15), 200), (ms(100), 200)]);
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.body(), "call 0");
    assert_eq!((stats.hedges(), stats.won()), (1, 0));
}

/// Two endpoints behind a balancer; the first attempt goes to the slow one (the fast one's
/// weight makes it look dear), the hedge to the other one, which wins. The slow endpoint's
/// request is cancelled: counted as such, never as a failure.
#[tokio::test(start_paused = true)]
async fn the_loser_is_cancelled_and_its_endpoint_not_charged() {
    let slow = Upstream::new(Duration::from_secs(10), 200);
    let fast = Upstream::new(ms(5), 200);
    let balance = Balance::builder().metrics(false).build();
    let (s, f) = (slow.clone(), fast.clone());
    balance.insert_weighted(
        "slow",
        service_fn(move |req| s.clone().call(req)).boxed_clone(),
        1.0,
    );
    balance.insert_weighted(
        "fast",
        service_fn(move |req| f.clone().call(req)).boxed_clone(),
        1e-6,
    );
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let stats = layer.stats();
    let svc = layer.layer(balance.clone());
    for _ in 0..3 {
        let t0 = Instant::now();
        let res = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(Instant::now() - t0, ms(15), "the hedge's answer");
        drop(res);
    }
    assert_eq!(
        (slow.count(), fast.count()),
        (3, 3),
        "each hedge went elsewhere"
    );
    assert_eq!((stats.hedges(), stats.won()), (3, 3));
    let endpoints = balance.endpoints();
    let of = |key: &str| endpoints.iter().find(|e| e.key == key).unwrap().clone();
    let (slow, fast) = (of("slow"), of("fast"));
    assert_eq!((slow.failures, slow.cancelled, slow.in_flight), (0, 3, 0));
    assert_eq!((fast.failures, fast.cancelled), (0, 0));
}

/// Every attempt sends the same bytes: the hedge replays the body the first attempt read,
/// through the retry layer's replay buffer.
#[tokio::test(start_paused = true)]
async fn every_attempt_sends_the_same_bytes() {
    let upstream = Upstream::new(ms(1), 200);
    // Two quick requests first: the extra-load cap (100% here) then allows two hedges.
    upstream.script([
        (ms(1), 200),
        (ms(1), 200),
        (ms(100), 200),
        (ms(100), 200),
        (ms(1), 200),
    ]);
    let budget = Budget::default();
    let up = upstream.clone();
    let svc = RetryLayer::new(budget.clone())
        .metrics(false)
        .layer(fixed(budget, ms(10), 2, 1.0).layer(service_fn(move |req| up.clone().call(req))));
    for _ in 0..2 {
        let req = Request::get("http://svc/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    let req = Request::post("http://svc/")
        .extension(Idempotent(true))
        .body(Full::new(Bytes::from_static(b"the same payload")))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.body().get_ref(), "call 4");
    let calls = upstream.calls();
    assert_eq!(calls.len(), 5);
    for call in &calls[2..] {
        assert_eq!(call.body, "the same payload");
    }
}

/// gRPC A6: a non-fatal answer sends the next hedge at once. The first attempt answers 503 at
/// 1 ms, long before the 20 ms delay: the hedge leaves then, and its 200 at 6 ms is the answer
/// (without the shortcut: the 503 at 1 ms, for a retry after its backoff).
#[tokio::test(start_paused = true)]
async fn a_non_fatal_answer_before_the_delay_sends_the_hedge_at_once() {
    let upstream = Upstream::new(ms(1), 200);
    upstream.script([(ms(1), 503), (ms(5), 200)]);
    let layer = fixed(Budget::default(), ms(20), 1, 1.0);
    let stats = layer.stats();
    let t0 = Instant::now();
    let (res, took) = answer(&layer, &upstream).await;
    assert_eq!(
        (res.status(), res.body().as_str()),
        (StatusCode::OK, "call 1")
    );
    assert_eq!(took, ms(6));
    let calls = upstream.calls();
    assert_eq!(calls[1].at - t0, ms(1), "the hedge left with the 503");
    assert_eq!((stats.hedges(), stats.won()), (1, 1));
}

/// A shortcut hedge the caps refuse ends the request with the non-fatal answer at once, for
/// the retry layer above to judge: it never waits for attempts that are not running.
#[tokio::test(start_paused = true)]
async fn a_refused_shortcut_returns_the_non_fatal_answer_at_once() {
    let upstream = Upstream::new(ms(1), 200);
    upstream.script([(ms(1), 503)]);
    // An empty budget with no reserve: every hedge is refused.
    let layer = fixed(super::support::ratio_budget(0.0), ms(20), 1, 1.0);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    let t0 = Instant::now();
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(Instant::now() - t0, ms(1));
    assert_eq!(upstream.count(), 1);
    assert_eq!(stats.refused(meshless::hedge::Refusal::Budget), 1);
}

/// A non-fatal answer whose server named a wait (`Retry-After`, gRPC pushback) is returned
/// for the retry layer, which honours the wait: no shortcut hedge.
#[tokio::test(start_paused = true)]
async fn an_answer_with_pushback_sends_no_shortcut_hedge() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = fixed(Budget::default(), ms(20), 1, 1.0).layer(service_fn(
        move |_req: Request<ReplayBody<String>>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                tokio::time::sleep(ms(1)).await;
                let mut res = Response::new(String::from("busy"));
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                let class = Class::failure(Reason::Status(503), Retryable::IfIdempotent)
                    .with_pushback(Some(Pushback::After(Duration::from_secs(1))));
                res.extensions_mut().insert(Classified(class));
                Ok::<_, std::io::Error>(res)
            }
        },
    ));
    let t0 = Instant::now();
    let res = svc.oneshot(get()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(Instant::now() - t0, ms(1));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}
