//! The retry budget bounds the retries and refunds what was never spent.

use crate::support::*;

/// A retry paid for but never sent (the caller gave up during the backoff) gives its token
/// back: cancellation costs the budget nothing.
#[tokio::test(start_paused = true)]
async fn budget_token_of_a_retry_cancelled_during_backoff_is_refunded() {
    // Exactly one retry in reserve, and requests earn none.
    let budget = Budget::builder()
        .min_per_second(0.1)
        .ratio(0.0)
        .build()
        .unwrap();
    assert_eq!(budget.balance(), 1.0);
    let (inner, log) = mock::<String>(vec![
        reply(503).header("retry-after", "5"),
        reply(503),
        reply(200),
    ]);
    let layer = RetryLayer::new(budget.clone());
    let stats = layer.stats();
    let mut svc = layer.layer(inner);

    // The 503 asks for 5 s; the caller gives up after 1 s, during the wait.
    let gave_up = tokio::time::timeout(ms(1_000), send(&mut svc, get("/items"))).await;
    assert!(gave_up.is_err());
    assert_eq!(log.count(), 1, "the retry was never sent");
    assert_eq!(stats.retries(), 0);
    assert_eq!(stats.cancelled(), 1);
    assert_eq!(budget.balance(), 1.0, "the token went back");

    // And the next request can still use it: its 503 is retried.
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 3);
    assert_eq!(
        budget.balance(),
        0.0,
        "a retry that was sent keeps its token"
    );
}

#[tokio::test(start_paused = true)]
async fn budget_empty_refuses_every_retry() {
    let empty = || {
        Budget::builder()
            .min_per_second(0.0)
            .ratio(0.0)
            .build()
            .unwrap()
    };
    let layer = RetryLayer::new(empty()).backoff(Backoff::none());
    let stats = layer.stats();
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset), reply(200)]);
    let err = send(&mut layer.layer(inner), get("/items"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::BudgetExhausted);
    assert_eq!(err.attempts(), 1);
    let source = err.source().expect("the last failure is the source");
    assert_eq!(
        source.downcast_ref::<io::Error>().map(io::Error::kind),
        Some(io::ErrorKind::ConnectionReset)
    );
    assert_eq!(log.count(), 1);
    assert_eq!(stats.budget_exhausted(), 1);
    assert_eq!(stats.retries(), 0);

    // A failed response is returned as it is.
    let layer = RetryLayer::new(empty()).backoff(Backoff::none());
    let stats = layer.stats();
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 1);
    assert_eq!(stats.budget_exhausted(), 1);
}

#[tokio::test(start_paused = true)]
async fn budget_ratio_bounds_the_attempts_of_a_failing_service() {
    // Reserve 1/s × 10 s = 10 retries, plus 0.5 per request.
    let budget = Budget::builder()
        .ttl(Duration::from_secs(10))
        .min_per_second(1.0)
        .ratio(0.5)
        .build()
        .unwrap();
    let layer = RetryLayer::new(budget).backoff(Backoff::none());
    let stats = layer.stats();
    let (inner, log) = mock::<String>(vec![reply(503)]);
    let mut svc = layer.layer(inner);
    for _ in 0..100 {
        let res = send(&mut svc, get("/items")).await.unwrap();
        assert_eq!(res.status(), 503);
    }
    let attempts = log.count();
    assert!(attempts <= 100 + 50 + 10, "{attempts} attempts");
    // ...and the budget grants all of it: floor(10 + 0.5 × 100) = 60 retries.
    assert_eq!(attempts, 160);
    assert_eq!(stats.requests(), 100);
    assert_eq!(stats.retries(), 60);
    // The first six requests used both their retries; every other one ran out of budget.
    assert_eq!(stats.retries_exhausted(), 6);
    assert_eq!(stats.budget_exhausted(), 94);

    // Once the window has moved past those withdrawals, the reserve is back.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 163);
    assert_eq!(stats.retries(), 62);
}

// ---------------------------------------------------------------------------------------------
