//! When the circuit opens: the failure rate at its threshold over the window with a minimum of
//! calls, the slow-call rate, and failures in a row.

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn trips_at_the_failure_threshold_and_not_below() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    assert_eq!(calls(&svc, 11).await, 0);
    upstream.status(503);
    assert_eq!(calls(&svc, 9).await, 0);
    // 9 of 20, then 10 of 21: below 50%.
    assert_eq!(calls(&svc, 1).await, 0);
    let stats = handle.stats();
    assert_eq!((stats.calls, stats.failures), (21, 10));
    assert_eq!(handle.state(), BreakerState::Closed);
    // 11 of 22: 50%.
    assert_eq!(calls(&svc, 1).await, 0);
    assert_eq!(handle.state(), BreakerState::Open);
    assert_eq!(handle.stats().trips, 1);
    let received = upstream.received();
    assert_eq!(calls(&svc, 5).await, 5);
    assert_eq!(upstream.received(), received, "nothing sent while open");
}

#[tokio::test(start_paused = true)]
async fn never_trips_before_the_minimum_throughput() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    upstream.status(503);
    assert_eq!(calls(&svc, 19).await, 0);
    assert_eq!(handle.state(), BreakerState::Closed, "19 failures of 19");
    assert_eq!(calls(&svc, 1).await, 0);
    assert_eq!(handle.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_window_do_not_count() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    upstream.status(503);
    assert_eq!(calls(&svc, 19).await, 0);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(calls(&svc, 1).await, 0);
    assert_eq!(handle.state(), BreakerState::Closed);
    assert_eq!(handle.stats().calls, 1);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_only_when_timed() {
    let upstream = Upstream::new();
    upstream.latency(150 * MS);
    // Off by default: slow successes are successes.
    let (svc, handle) = breaker(&config(), &upstream);
    assert_eq!(calls(&svc, 30).await, 0);
    assert_eq!(handle.state(), BreakerState::Closed);

    let mut slow = config();
    slow.slow_call_duration = Some(100 * MS);
    slow.slow_call_rate_threshold = 0.5;
    // Twenty calls of 150 ms one after the other: a window that holds them all.
    slow.window = Duration::from_secs(10);
    let (svc, handle) = breaker(&slow, &upstream);
    assert_eq!(calls(&svc, 19).await, 0);
    assert_eq!(handle.stats().slow_calls, 19);
    assert_eq!(handle.state(), BreakerState::Closed);
    assert_eq!(calls(&svc, 1).await, 0);
    let err = call(&svc).await.unwrap_err();
    assert_eq!(rejected(&err).reason, TripReason::SlowCallRate);
    // Fast calls under the threshold do not count as slow.
    handle.reset();
    upstream.latency(50 * MS);
    assert_eq!(calls(&svc, 40).await, 0);
    assert_eq!(handle.stats().slow_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_when_enabled() {
    let upstream = Upstream::new();
    let mut consecutive = config();
    consecutive.consecutive_failures = 5;
    consecutive.minimum_calls = 1000;
    let (svc, handle) = breaker(&consecutive, &upstream);
    for _ in 0..3 {
        upstream.status(503);
        assert_eq!(calls(&svc, 4).await, 0);
        upstream.status(200);
        assert_eq!(calls(&svc, 1).await, 0);
    }
    assert_eq!(handle.state(), BreakerState::Closed, "never 5 in a row");
    upstream.status(503);
    assert_eq!(calls(&svc, 5).await, 0);
    let err = call(&svc).await.unwrap_err();
    assert_eq!(rejected(&err).reason, TripReason::ConsecutiveFailures);
}

/// The defaults: an outage after busy, healthy traffic opens the circuit within one window
/// (2 s), once its failures make 90% of it; a longer window, still full of the successes
/// before, kept it closed through a 6 s outage.
#[tokio::test(start_paused = true)]
async fn an_outage_after_healthy_traffic_trips_within_a_window_by_default() {
    let upstream = Upstream::new();
    let mut defaults = BreakerConfig::default();
    defaults.break_jitter = 0.0;
    let (svc, handle) = breaker(&defaults, &upstream);
    // Five seconds of healthy traffic, 200 requests a second.
    for _ in 0..100 {
        assert_eq!(calls(&svc, 10).await, 0, "none refused");
        tokio::time::advance(50 * MS).await;
    }
    upstream.status(503);
    let outage = Instant::now();
    while handle.state() == BreakerState::Closed {
        assert!(
            outage.elapsed() <= defaults.window,
            "still closed {:?} into the outage",
            outage.elapsed()
        );
        calls(&svc, 10).await;
        tokio::time::advance(50 * MS).await;
    }
    assert_eq!(handle.state(), BreakerState::Open);
    assert!(
        outage.elapsed() > defaults.window / 2,
        "not on the first failures"
    );
}

/// Busy traffic (10 requests every 100 ms), then every request failing for `outage`: with the
/// default settings, when (from the outage's start) the circuit opened, if it did.
async fn default_breaker_under_an_outage(outage: Duration) -> Option<Duration> {
    let upstream = Upstream::new();
    let mut defaults = BreakerConfig::default();
    defaults.break_jitter = 0.0;
    let (svc, handle) = breaker(&defaults, &upstream);
    let tick = Duration::from_millis(100);
    for _ in 0..100 {
        assert_eq!(calls(&svc, 10).await, 0);
        tokio::time::advance(tick).await;
    }
    upstream.status(503);
    let mut failing = Duration::ZERO;
    while failing < outage {
        calls(&svc, 10).await;
        if handle.state() != BreakerState::Closed {
            return Some(failing);
        }
        tokio::time::advance(tick).await;
        failing += tick;
    }
    None
}

#[tokio::test(start_paused = true)]
async fn by_default_an_outage_of_a_few_seconds_never_opens_the_circuit() {
    // A restart or a partition of a few seconds: once it heals, nothing is refused.
    assert_eq!(
        default_breaker_under_an_outage(Duration::from_secs(4)).await,
        None
    );
    // A long one is an outage the upstream needs relief from: 90% of the 5 s window.
    // (The window slides by tenths: it opens within the tenth where failures reach 90%.)
    let opened = default_breaker_under_an_outage(Duration::from_secs(10)).await;
    assert!(
        opened.is_some_and(|at| (Duration::from_secs(4)..=Duration::from_secs(5)).contains(&at)),
        "{opened:?}"
    );
}
