//! Metric names, labels and counts for scripted runs.

use crate::support::*;

#[test]
fn a_retried_request_is_counted_once_per_request_attempt_and_endpoint() {
    let ((stats, _balance), m) = recorded(|| async {
        let solo = Script::new([Step::Status(503), Step::Status(200)]);
        let balance = Balance::builder().service_name("payments").build();
        balance.insert("solo", serve(solo.clone()));
        let retry = RetryLayer::new(Budget::default()).service_name("payments");
        let stats = retry.stats();
        let res = stack(balance.clone(), retry).oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
        (stats, balance)
    });

    assert_eq!(m.count(observe::REQUESTS_TOTAL, &[PAYMENTS]), 1);
    assert_eq!(m.count(observe::ATTEMPTS_TOTAL, &[PAYMENTS]), 2);
    assert_eq!(
        m.count(observe::RETRIES_TOTAL, &[PAYMENTS, ("reason", "http_5xx")]),
        1
    );
    assert_eq!(
        m.count(
            observe::REQUESTS_COMPLETED_TOTAL,
            &[PAYMENTS, ("class", "success"), ("reason", "success")]
        ),
        1
    );
    assert_eq!(
        m.count(observe::REQUESTS_COMPLETED_TOTAL, &[("class", "failure")]),
        0
    );
    assert_eq!(
        m.samples(
            observe::REQUEST_DURATION_SECONDS,
            &[PAYMENTS, ("class", "success")]
        )
        .len(),
        1
    );
    assert_eq!(m.samples(observe::BACKOFF_SECONDS, &[PAYMENTS]), vec![0.0]);
    for refusal in [
        "budget_exhausted",
        "retries_exhausted",
        "body_too_large",
        "pushback",
        "deadline",
    ] {
        // Registered up front, at zero, so that rates work from the first refusal.
        let series = m
            .matching(observe::RETRIES_REFUSED_TOTAL, &[("reason", refusal)])
            .count();
        assert_eq!(series, 1, "{refusal}");
    }
    assert_eq!(m.count(observe::RETRIES_REFUSED_TOTAL, &[]), 0);
    assert_eq!(m.count(observe::ATTEMPT_TIMEOUTS_TOTAL, &[PAYMENTS]), 0);
    assert_eq!(m.count(observe::REPLAY_OVERFLOWS_TOTAL, &[PAYMENTS]), 0);

    let solo = [PAYMENTS, ("endpoint", "solo")];
    assert_eq!(m.count(observe::ENDPOINT_REQUESTS_TOTAL, &solo), 2);
    assert_eq!(m.count(observe::ENDPOINT_FAILURES_TOTAL, &solo), 1);
    assert_eq!(m.samples(observe::ENDPOINT_LATENCY_SECONDS, &solo).len(), 2);
    // The failure made a quarter of a miss: the default 30 ms RTT, plus a quarter of the
    // 12.5 ms wait before a retry, over the three quarters that answer. Time is paused, so
    // nothing decayed either.
    let rtt = m.gauge(observe::ENDPOINT_RTT_EWMA_SECONDS, &solo);
    assert!((rtt - (0.030 + 0.25 * 0.0125) / 0.75).abs() < 1e-9, "{rtt}");
    assert_eq!(
        m.gauge(
            observe::ENDPOINT_STATE,
            &[("endpoint", "solo"), ("state", "active")]
        ),
        1.0
    );
    assert_eq!(
        m.gauge(
            observe::BALANCER_ENDPOINTS,
            &[PAYMENTS, ("state", "active")]
        ),
        1.0
    );
    assert_eq!(m.count(observe::BALANCER_FAIL_FAST_TOTAL, &[PAYMENTS]), 0);

    // No label carries anything but the bounded values.
    assert_eq!(
        m.values(observe::ENDPOINT_REQUESTS_TOTAL, "service"),
        BTreeSet::from(["payments".to_string()])
    );
    for series in &m.0 {
        for (key, _) in &series.labels {
            assert!(
                ["service", "endpoint", "class", "reason", "state"].contains(&key.as_str()),
                "{series:?}"
            );
        }
        assert!(series.name.starts_with("meshless_"), "{series:?}");
    }

    // The same story in the stats.
    assert_eq!(
        (stats.requests(), stats.retries(), stats.attempts()),
        (1, 1, 2)
    );
    assert_eq!(
        (stats.successes(), stats.failures(), stats.cancelled()),
        (1, 0, 0)
    );
    assert_eq!(stats.recent().success_rate(), Some(1.0));
}

#[test]
fn refusals_timeouts_and_cancellations_are_counted_by_reason() {
    let ((), m) = recorded(|| async {
        // No reserve and a zero ratio: the budget never has a token.
        let empty = Budget::builder()
            .min_per_second(0.0)
            .ratio(0.0)
            .build()
            .unwrap();
        let script = Script::new([Step::Status(503), Step::Hang]);
        let balance = Balance::builder().service_name("payments").build();
        balance.insert("solo", serve(script.clone()));
        let svc = stack(balance, RetryLayer::new(empty).service_name("payments"));

        // A 503 whose retry the budget refuses: the 503 is the answer.
        let res = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 503);

        // Hangs: the attempt times out, the retry is refused again.
        let err = svc.clone().oneshot(get()).await.unwrap_err();
        assert_eq!(err.kind(), meshless::error::Kind::BudgetExhausted);

        // Hangs until the caller gives up first.
        let call = svc.clone().oneshot(get());
        assert!(tokio::time::timeout(ms(10), call).await.is_err());
    });

    assert_eq!(m.count(observe::REQUESTS_TOTAL, &[PAYMENTS]), 3);
    assert_eq!(m.count(observe::ATTEMPTS_TOTAL, &[PAYMENTS]), 3);
    assert_eq!(m.count(observe::RETRIES_TOTAL, &[]), 0);
    assert_eq!(
        m.count(
            observe::RETRIES_REFUSED_TOTAL,
            &[PAYMENTS, ("reason", "budget_exhausted")]
        ),
        2
    );
    assert_eq!(m.count(observe::ATTEMPT_TIMEOUTS_TOTAL, &[PAYMENTS]), 1);
    let completed = |class: &str, reason: &str| {
        m.count(
            observe::REQUESTS_COMPLETED_TOTAL,
            &[PAYMENTS, ("class", class), ("reason", reason)],
        )
    };
    assert_eq!(completed("failure", "http_5xx"), 1);
    assert_eq!(completed("failure", "timeout"), 1);
    assert_eq!(completed("cancelled", "cancelled"), 1);
    assert_eq!(completed("success", "success"), 0);
    assert_eq!(
        m.samples(observe::REQUEST_DURATION_SECONDS, &[("class", "failure")]),
        vec![0.0, 0.1]
    );
    assert_eq!(
        m.samples(observe::REQUEST_DURATION_SECONDS, &[("class", "cancelled")]),
        vec![0.01]
    );
    // The attempt the caller abandoned is a cancellation at the endpoint, not a failure.
    assert_eq!(
        m.count(observe::ENDPOINT_FAILURES_TOTAL, &[("endpoint", "solo")]),
        2
    );
    assert_eq!(
        m.count(observe::ENDPOINT_CANCELLED_TOTAL, &[("endpoint", "solo")]),
        1
    );
}

#[test]
fn a_request_dropped_at_its_deadline_is_a_timeout_failure() {
    let ((), m) = recorded(|| async {
        let balance = Balance::builder().build();
        balance.insert("hangs", serve(Script::new([Step::Hang])));
        let svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(ms(250)))
            .layer(RetryLayer::new(Budget::default()))
            .service(balance);
        let err = svc.oneshot(get()).await.unwrap_err();
        assert!(err.is_timeout());
    });
    let default = ("service", observe::DEFAULT_SERVICE);
    assert_eq!(
        m.count(
            observe::REQUESTS_COMPLETED_TOTAL,
            &[default, ("class", "failure"), ("reason", "timeout")]
        ),
        1
    );
    assert_eq!(
        m.samples(observe::REQUEST_DURATION_SECONDS, &[default]),
        vec![0.25]
    );
}

#[test]
fn ejection_probation_and_return_move_the_state_gauges() {
    let ((stats, _balance), m) = recorded(|| async {
        let failing = Arc::new(AtomicBool::new(true));
        let config = OutlierConfig::builder()
            .success_rate(None)
            .failure_percentage(None)
            .latency(None)
            .build()
            .unwrap();
        let balance = Balance::builder()
            .service_name("payments")
            .outlier(config)
            .build();
        // A heavy weight keeps "bad" the cheaper pick even with its misses, so that
        // it fails five times in a row.
        balance.insert_weighted("bad", switchable(failing.clone()), 1000.0);
        balance.insert("good", switchable(Arc::new(AtomicBool::new(false))));
        for _ in 0..5 {
            let res = balance.clone().oneshot(get()).await.unwrap();
            assert_eq!(res.status(), 503);
        }
        let ejected = balance.stats();
        assert_eq!((ejected.active, ejected.ejected), (1, 1));

        // The ejection lasts 1 to 1.5 s; then one probe, which succeeds.
        failing.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2)).await;
        let res = balance.clone().oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
        (balance.stats(), balance)
    });
    assert_eq!((stats.active, stats.ejected, stats.probation), (2, 0, 0));
    let bad = stats.endpoints.iter().find(|e| e.key == "bad").unwrap();
    assert_eq!((bad.status, bad.ejections), (Status::Active, 1));

    let bad = [PAYMENTS, ("endpoint", "bad")];
    assert_eq!(
        m.count(
            observe::ENDPOINT_EJECTIONS_TOTAL,
            &[
                PAYMENTS,
                ("endpoint", "bad"),
                ("reason", "consecutive_failures")
            ]
        ),
        1
    );
    assert_eq!(
        m.count(observe::ENDPOINT_EJECTIONS_TOTAL, &[("endpoint", "good")]),
        0
    );
    assert_eq!(m.count(observe::ENDPOINT_REQUESTS_TOTAL, &bad), 6);
    assert_eq!(m.count(observe::ENDPOINT_FAILURES_TOTAL, &bad), 5);
    // Back to active: every gauge tells the end state.
    for (state, value) in [("active", 1.0), ("ejected", 0.0), ("probation", 0.0)] {
        let labels = [PAYMENTS, ("endpoint", "bad"), ("state", state)];
        assert_eq!(m.gauge(observe::ENDPOINT_STATE, &labels), value, "{state}");
    }
    assert_eq!(
        m.gauge(observe::BALANCER_ENDPOINTS, &[("state", "active")]),
        2.0
    );
    assert_eq!(
        m.gauge(observe::BALANCER_ENDPOINTS, &[("state", "ejected")]),
        0.0
    );
}

#[test]
fn replacing_and_removing_endpoints_keeps_the_gauges_right() {
    let (_balance, m) = recorded(|| async {
        let balance = Balance::builder().build();
        balance.insert("a", serve(Script::new([Step::Status(200)])));
        balance.insert("b", serve(Script::new([Step::Status(200)])));
        // The same key again: the new endpoint joins before the old one leaves.
        balance.insert("a", serve(Script::new([Step::Status(200)])));
        balance.remove(&"b");
        balance
    });
    assert_eq!(
        m.gauge(
            observe::ENDPOINT_STATE,
            &[("endpoint", "a"), ("state", "active")]
        ),
        1.0
    );
    assert_eq!(
        m.gauge(
            observe::ENDPOINT_STATE,
            &[("endpoint", "b"), ("state", "active")]
        ),
        0.0
    );
    assert_eq!(
        m.gauge(observe::BALANCER_ENDPOINTS, &[("state", "active")]),
        1.0
    );
}

#[test]
fn a_fleet_under_faults_adds_up() {
    let (stats, m) = recorded(|| async {
        let balance = Balance::builder().service_name("payments").build();
        balance.insert("a", serve(Script::new([Step::Status(503)])));
        balance.insert("b", serve(Script::new([Step::Status(200)])));
        balance.insert(
            "c",
            serve(Script::new([Step::Status(502), Step::Status(200)])),
        );
        let retry = RetryLayer::new(Budget::default()).service_name("payments");
        let stats = retry.stats();
        let svc = stack(balance, retry);
        for _ in 0..200 {
            let _ = svc.clone().oneshot(get()).await;
        }
        stats
    });
    let requests = m.count(observe::REQUESTS_TOTAL, &[PAYMENTS]);
    let completed = m.count(observe::REQUESTS_COMPLETED_TOTAL, &[PAYMENTS]);
    let attempts = m.count(observe::ATTEMPTS_TOTAL, &[PAYMENTS]);
    let retries = m.count(observe::RETRIES_TOTAL, &[PAYMENTS]);
    let at_endpoints = m.count(observe::ENDPOINT_REQUESTS_TOTAL, &[PAYMENTS]);
    assert_eq!(requests, 200);
    assert_eq!(completed, requests);
    assert_eq!(attempts, requests + retries);
    assert_eq!(at_endpoints, attempts);
    assert!(retries > 0, "endpoint a always fails");
    assert_eq!(
        m.values(observe::ENDPOINT_REQUESTS_TOTAL, "endpoint"),
        BTreeSet::from(["a".into(), "b".into(), "c".into()])
    );
    assert!(
        m.values(observe::RETRIES_TOTAL, "reason")
            .is_subset(&BTreeSet::from(["http_5xx".into()]))
    );
    // The stats agree with the metrics.
    assert_eq!(stats.requests(), requests);
    assert_eq!(stats.retries(), retries);
    assert_eq!(stats.successes() + stats.failures(), completed);
    assert_eq!(
        stats.successes(),
        m.count(observe::REQUESTS_COMPLETED_TOTAL, &[("class", "success")])
    );
    let recent: RecentStats = stats.recent();
    assert_eq!(recent.requests(), 200);
    assert!(
        recent.p99 < Some(Duration::from_micros(1)),
        "paused time: no latency"
    );
}

#[test]
fn metrics_off_records_nothing() {
    let (stats, m) = recorded(|| async {
        let balance = Balance::builder().metrics(false).build();
        balance.insert(
            "a",
            serve(Script::new([Step::Status(503), Step::Status(200)])),
        );
        let retry = RetryLayer::new(Budget::default()).metrics(false);
        let stats = retry.stats();
        let res = stack(balance, retry).oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
        stats
    });
    assert!(m.names().is_empty(), "{:?}", m.names());
    assert_eq!((stats.requests(), stats.retries()), (1, 1), "stats stay on");
}

#[test]
fn handles_registered_with_no_recorder_stay_silent() {
    // Built outside any recorder: the handles are no-ops, and using them is harmless.
    let balance = Balance::builder().build();
    balance.insert("a", serve(Script::new([Step::Status(200)])));
    let svc = stack(balance, RetryLayer::new(Budget::default()));
    let ((), m) = recorded(|| async {
        let res = svc.oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
    });
    assert!(m.names().is_empty(), "{:?}", m.names());
}
