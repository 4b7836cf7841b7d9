//! Shadow mode, the manual switches, what counts as a failure, and the settings' checks.

use crate::support::*;
use meshless::deadline::RequestDeadline;
use meshless::observe::{BREAKER_REJECTED_TOTAL, BREAKER_STATE, BREAKER_TRANSITIONS_TOTAL};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// The value of the series `name` whose labels include all of `labels`.
fn value(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    snapshot.iter().find_map(|(key, _, _, value)| {
        let key = key.key();
        let matches = key.name() == name
            && labels
                .iter()
                .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v));
        matches.then(|| match value {
            DebugValue::Counter(n) => *n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(_) => f64::NAN,
        })
    })
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_never_refuses_but_reports_what_it_would_do() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let upstream = Upstream::new();
    let mut shadow = config();
    shadow.shadow = true;
    let layer = BreakerLayer::from_config(&shadow)
        .unwrap()
        .service_name("shadowed");
    let handle = layer.handle();
    let svc = metrics::with_local_recorder(&recorder, || layer.layer(upstream.service()));
    trip(&svc, &upstream, &handle).await;
    let received = upstream.received();
    assert_eq!(calls(&svc, 10).await, 0, "never refuses");
    assert_eq!(upstream.received(), received + 10);
    assert_eq!(handle.state(), BreakerState::Open, "but computes its state");
    // Counted apart: nothing was refused.
    assert_eq!(
        (handle.stats().rejected, handle.stats().shadow_rejected),
        (0, 10)
    );
    // Probes still run: a failing one reopens, exactly as when enforcing.
    tokio::time::advance(S).await;
    calls(&svc, 1).await;
    assert_eq!(handle.stats().trips, 2);
    let snapshot = snapshotter.snapshot().into_vec();
    let rejected = [
        ("service", "shadowed"),
        ("state", "open"),
        ("mode", "shadow"),
    ];
    assert_eq!(
        value(&snapshot, BREAKER_REJECTED_TOTAL, &rejected),
        Some(10.0)
    );
    let enforced = [("state", "open"), ("mode", "enforce")];
    assert_eq!(
        value(&snapshot, BREAKER_REJECTED_TOTAL, &enforced),
        Some(0.0)
    );
    assert_eq!(
        value(&snapshot, BREAKER_STATE, &[("state", "open")]),
        Some(1.0)
    );
    assert_eq!(
        value(&snapshot, BREAKER_STATE, &[("state", "closed")]),
        Some(0.0)
    );
    let opened = [("state", "open"), ("route", "")];
    assert_eq!(
        value(&snapshot, BREAKER_TRANSITIONS_TOTAL, &opened),
        Some(2.0)
    );
    let probing = [("state", "half-open")];
    assert_eq!(
        value(&snapshot, BREAKER_TRANSITIONS_TOTAL, &probing),
        Some(1.0)
    );
}

#[tokio::test(start_paused = true)]
async fn isolate_refuses_until_reset() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    handle.isolate();
    assert_eq!(handle.state(), BreakerState::Isolated);
    tokio::time::advance(Duration::from_secs(3600)).await;
    let err = call(&svc).await.unwrap_err();
    let why = rejected(&err);
    assert_eq!(
        (why.state, why.reason, why.until),
        (BreakerState::Isolated, TripReason::Isolated, None)
    );
    assert_eq!(upstream.received(), 0);
    handle.reset();
    assert_eq!(handle.state(), BreakerState::Closed);
    assert!(call(&svc).await.is_ok());
    // A reset also closes a tripped circuit and forgets its window.
    handle.reset();
    trip(&svc, &upstream, &handle).await;
    handle.reset();
    assert_eq!(handle.stats().calls, 0);
    assert_eq!(calls(&svc, 19).await, 0);
    assert_eq!(handle.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn shedding_and_client_errors_count_nothing() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    for kind in [
        Kind::CircuitOpen,
        Kind::ConcurrencyLimited,
        Kind::Throttled,
        Kind::InvalidRequest,
        Kind::TlsUnavailable,
        // Nothing sent: the balancer keeps the servers' pushback itself.
        Kind::EndpointsPushingBack,
    ] {
        upstream.error(Some(kind));
        for _ in 0..30 {
            assert_eq!(call(&svc).await.unwrap_err().kind(), kind);
        }
    }
    assert_eq!(handle.stats().calls, 0);
    assert_eq!(handle.state(), BreakerState::Closed);
    // The retry layer giving up is the upstream's failure.
    upstream.error(Some(Kind::BudgetExhausted));
    assert_eq!(calls(&svc, 20).await, 0);
    assert_eq!(handle.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_verdict_carried_by_the_response_is_taken_as_it_is() {
    let upstream = Upstream::new();
    let (svc, handle) = breaker(&config(), &upstream);
    upstream.classified_failure(true);
    assert_eq!(calls(&svc, 20).await, 0);
    assert_eq!(
        handle.state(),
        BreakerState::Open,
        "200s the balancer called failures"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_counts_only_when_the_deadline_layer_dropped_it() {
    use http_body_util::Empty;
    use meshless::deadline::DeadlineLayer;
    let upstream = Upstream::new();
    upstream.latency(Duration::from_secs(3600));
    let (svc, handle) = breaker(&config(), &upstream);
    // Cancelled by its caller: nothing.
    let cancelled = tokio::time::timeout(200 * MS, call(&svc)).await;
    assert!(cancelled.is_err());
    assert_eq!(handle.stats().calls, 0);
    // Dropped by its caller after its deadline passed: still the caller's doing (as the
    // balancer counts it), since no timer of meshless's ended it.
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(RequestDeadline(Instant::now() + 100 * MS));
    let late = tokio::time::timeout(150 * MS, svc.clone().oneshot(req)).await;
    assert!(late.is_err());
    assert_eq!(handle.stats().calls, 0);
    // Dropped by the deadline layer once its deadline passed: a timeout, a failure.
    let inner = svc.map_response(|res| res.map(|()| Empty::<bytes::Bytes>::new()));
    let expiring = DeadlineLayer::new(100 * MS).layer(inner);
    let err = expiring.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    let stats = handle.stats();
    assert_eq!((stats.calls, stats.failures), (1, 1));
}

#[test]
fn validate_names_the_field_at_fault() {
    let check = |edit: fn(&mut BreakerConfig), field: &str| {
        let mut config = BreakerConfig::default();
        edit(&mut config);
        assert_eq!(config.validate().unwrap_err().setting(), field);
        assert_eq!(
            BreakerLayer::from_config(&config).unwrap_err().setting(),
            field
        );
    };
    check(
        |c| c.failure_rate_threshold = 0.0,
        "breaker.failure_rate_threshold",
    );
    check(
        |c| c.failure_rate_threshold = f64::NAN,
        "breaker.failure_rate_threshold",
    );
    check(|c| c.window = Duration::from_millis(9), "breaker.window");
    check(|c| c.minimum_calls = 0, "breaker.minimum_calls");
    check(
        |c| c.slow_call_duration = Some(Duration::ZERO),
        "breaker.slow_call_duration",
    );
    check(
        |c| c.slow_call_rate_threshold = 1.1,
        "breaker.slow_call_rate_threshold",
    );
    check(
        |c| c.break_duration = Duration::ZERO,
        "breaker.break_duration",
    );
    check(
        |c| c.max_break_duration = Duration::from_millis(10),
        "breaker.max_break_duration",
    );
    check(|c| c.break_jitter = -0.1, "breaker.break_jitter");
    check(|c| c.half_open_probes = 0, "breaker.half_open_probes");
    check(|c| c.half_open_probes = 64, "breaker.half_open_probes");
    check(|c| c.ramp_start_share = 0.0, "breaker.ramp_start_share");
    check(
        |c| c.probe_timeout = Duration::ZERO,
        "breaker.probe_timeout",
    );
    assert!(BreakerConfig::default().validate().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_is_off_passes_everything_and_counts_nothing() {
    let upstream = Upstream::new();
    let mut off = config();
    off.enabled = false;
    let (svc, handle) = breaker(&off, &upstream);
    upstream.status(503);
    // Far past the threshold and the minimum: an enabled breaker would refuse most of these.
    assert_eq!(calls(&svc, 100).await, 0);
    assert_eq!(upstream.received(), 100);
    assert_eq!(handle.state(), BreakerState::Closed);
    assert_eq!(handle.stats().calls, 0);
    // The same traffic trips the breaker when it is on.
    let (on, _) = breaker(&config(), &upstream);
    assert!(calls(&on, 100).await > 0);
}

/// Through a `DeadlineLayer`: a caller's deadline shorter than the client's own expires as a
/// cancellation (nothing counted); the client's own deadline expiring is a failure.
#[tokio::test(start_paused = true)]
async fn only_the_clients_own_deadline_counts_when_it_passes() {
    use http_body_util::Empty;
    use meshless::deadline::{DeadlineLayer, RequestDeadline};
    let upstream = Upstream::new();
    upstream.latency(50 * MS);
    // The deadline layer bounds a body: give the upstream's answers one.
    let stack = |own: Duration| {
        let layer = BreakerLayer::from_config(&config()).unwrap().metrics(false);
        let handle = layer.handle();
        let inner = upstream
            .service()
            .map_response(|res| res.map(|()| Empty::<bytes::Bytes>::new()));
        (DeadlineLayer::new(own).layer(layer.layer(inner)), handle)
    };
    let (svc, handle) = stack(S);
    for _ in 0..30 {
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(RequestDeadline(Instant::now() + 5 * MS));
        let err = svc.clone().oneshot(req).await.unwrap_err();
        assert_eq!(err.kind(), Kind::DeadlineExceeded);
    }
    assert_eq!((handle.stats().calls, handle.stats().failures), (0, 0));
    assert_eq!(handle.state(), BreakerState::Closed);
    // The client's own deadline (10 ms here) is its judgement of the upstream: it counts.
    let (svc, handle) = stack(10 * MS);
    for _ in 0..20 {
        let err = svc.clone().oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(err.kind(), Kind::DeadlineExceeded);
    }
    // The 20th failure (the minimum of calls) opened it.
    assert_eq!(
        (handle.state(), handle.stats().trips),
        (BreakerState::Open, 1)
    );
    let err = svc.clone().oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(err.kind(), Kind::CircuitOpen, "{err}");
}
