//! What keeps hedges in check: the shared retry budget (exactly), the extra-load cap, the
//! idempotency rules, the deadline and a body not yet replayable.

use super::support::{Upstream, behind, fixed, get, ms, ratio_budget};
use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame};
use meshless::backoff::Backoff;
use meshless::budget::Budget;
use meshless::classify::{Class, Classified, Pushback, Reason, Retryable};
use meshless::deadline::RequestDeadline;
use meshless::hedge::Refusal;
use meshless::retry::{Idempotent, ReplayBody, RetryLayer};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use tokio::time::{Instant, Sleep};
use tower::{Layer, ServiceExt, service_fn};

/// Retries and hedges draw on one budget: with no reserve and a 50% ratio, 100 requests that
/// each want up to 2 retries and a hedge per retry get exactly 50 extra attempts between them.
/// Two requests in three fail fast (503 in 5 ms, before the hedge delay, with a zero
/// `Retry-After`, so that no shortcut hedge is sent: they want retries), the third slowly
/// (503 in 20 ms: a hedge after 10 ms), so both kinds compete for the tokens.
#[tokio::test(start_paused = true)]
async fn retries_and_hedges_together_stay_exactly_within_the_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    let budget = ratio_budget(0.5);
    let hedge = fixed(budget.clone(), ms(10), 1, 1.0);
    let hedge_stats = hedge.stats();
    let retry = RetryLayer::new(budget.clone())
        .backoff(Backoff::none())
        .metrics(false);
    let retry_stats = retry.stats();
    let counter = calls.clone();
    let upstream = service_fn(move |req: Request<ReplayBody<String>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let slow = req.headers().contains_key("x-slow");
        async move {
            tokio::time::sleep(if slow { ms(20) } else { ms(5) }).await;
            let mut res = http::Response::new(String::new());
            *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            if !slow {
                let class = Class::failure(Reason::Status(503), Retryable::IfIdempotent)
                    .with_pushback(Some(Pushback::After(std::time::Duration::ZERO)));
                res.extensions_mut().insert(Classified(class));
            }
            Ok::<_, std::io::Error>(res)
        }
    });
    let svc = retry.layer(hedge.layer(upstream));
    for i in 0..100 {
        let mut req = Request::get("http://svc/").body(String::new()).unwrap();
        if i % 3 == 0 {
            req.headers_mut()
                .insert("x-slow", http::HeaderValue::from_static("1"));
        }
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    let extra = calls.load(Ordering::SeqCst) - 100;
    assert_eq!(extra, 50, "exactly the budget's 50% of 100 requests");
    let (retries, hedges) = (retry_stats.retries(), hedge_stats.hedges());
    assert_eq!(retries + hedges, 50, "{retries} retries, {hedges} hedges");
    assert!(
        retries > 0 && hedges > 0,
        "both drew on it: {retries}, {hedges}"
    );
    assert!(hedge_stats.refused(Refusal::Budget) > 0);
    assert!(budget.balance() < 1.0, "nothing left to withdraw");
}

/// The extra-load cap: at 10%, 100 slow requests get exactly 10 hedges, however large the
/// retry budget.
#[tokio::test(start_paused = true)]
async fn the_extra_load_cap_bounds_hedges_exactly() {
    let upstream = Upstream::new(ms(50), 200);
    let budget = Budget::builder().min_per_second(1000.0).build().unwrap();
    let layer = fixed(budget, ms(10), 1, 0.1);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    for _ in 0..100 {
        svc.clone().oneshot(get()).await.unwrap();
    }
    assert_eq!(stats.hedges(), 10);
    assert_eq!(stats.refused(Refusal::ExtraLoad), 90);
    assert_eq!(upstream.count(), 110);
}

#[tokio::test(start_paused = true)]
async fn the_reserve_lets_a_cold_client_hedge_before_the_ratio_earns_any() {
    let upstream = Upstream::new(ms(50), 200);
    let budget = Budget::builder().min_per_second(1000.0).build().unwrap();
    let mut config = meshless::hedge::HedgeConfig::default();
    config.delay = meshless::hedge::HedgeDelay::Fixed(ms(10));
    config.max_extra_load = 0.05;
    config.min_per_second = 1.0;
    let layer = meshless::hedge::HedgeLayer::from_config(budget, &config)
        .unwrap()
        .metrics(false);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    // Twelve slow requests at once, the client's first: 1/s × 10 s = 10 hedges in reserve,
    // and twelve deposits of 5% add 0.6 of one.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..12 {
        calls.spawn(svc.clone().oneshot(get()));
    }
    while let Some(res) = calls.join_next().await {
        res.unwrap().unwrap();
    }
    assert_eq!(stats.hedges(), 10);
    assert_eq!(stats.refused(Refusal::ExtraLoad), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_not_safe_to_repeat_is_never_hedged() {
    let upstream = Upstream::new(ms(100), 200);
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    let body = || ReplayBody::new(String::from("x"), 1024);

    let post = Request::post("http://svc/").body(body()).unwrap();
    svc.clone().oneshot(post).await.unwrap();
    let get_forbidden = Request::get("http://svc/")
        .extension(Idempotent(false))
        .body(body())
        .unwrap();
    svc.clone().oneshot(get_forbidden).await.unwrap();
    assert_eq!(upstream.count(), 2, "one attempt each");
    assert_eq!(stats.hedges(), 0);
    assert_eq!(stats.refused(Refusal::NotIdempotent), 2);

    // Marked idempotent, a POST is hedged.
    let marked = Request::post("http://svc/")
        .extension(Idempotent(true))
        .body(body())
        .unwrap();
    svc.clone().oneshot(marked).await.unwrap();
    assert_eq!(upstream.count(), 4);
    assert_eq!(stats.hedges(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_that_cannot_finish_before_the_deadline() {
    let upstream = Upstream::new(ms(100), 200);
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);

    // At the delay, 5 ms are left: less than the 10 ms a hedge is given.
    let mut req = get();
    req.extensions_mut()
        .insert(RequestDeadline(Instant::now() + ms(15)));
    svc.clone().oneshot(req).await.unwrap();
    assert_eq!(upstream.count(), 1);
    assert_eq!(stats.refused(Refusal::Deadline), 1);

    // 10 ms left: enough.
    let mut req = get();
    req.extensions_mut()
        .insert(RequestDeadline(Instant::now() + ms(20)));
    svc.clone().oneshot(req).await.unwrap();
    assert_eq!(upstream.count(), 3);
    assert_eq!(stats.hedges(), 1);
}

pin_project_lite::pin_project! {
    /// A body whose one chunk comes after a while.
    struct Late {
        #[pin]
        sleep: Sleep,
        done: bool,
    }
}

impl Body for Late {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        ready!(this.sleep.poll(cx));
        *this.done = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"late")))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_still_streaming_at_the_delay_is_not_hedged() {
    let upstream = Upstream::new(ms(100), 200);
    let layer = fixed(Budget::default(), ms(10), 1, 1.0);
    let stats = layer.stats();
    let svc = behind(&layer, &upstream);
    let body = Late {
        sleep: tokio::time::sleep(ms(50)),
        done: false,
    };
    let req = Request::put("http://svc/")
        .body(ReplayBody::new(body, 1024))
        .unwrap();
    svc.oneshot(req).await.unwrap();
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.calls()[0].body, "late");
    assert_eq!(stats.refused(Refusal::Body), 1);
    assert_eq!(stats.hedges(), 0);
}
