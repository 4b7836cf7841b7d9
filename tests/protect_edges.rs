//! Concurrency limits, per-route breakers and throttling through `http::Client`,
//! against servers on real sockets; and extreme protection settings.

use meshless::breaker::BreakerConfig;
use meshless::error::Kind;
use meshless::http::Client;
use meshless::limit::{AimdConfig, Algorithm, LimitConfig};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::{Respond, serve_statuses as server};

fn limit(algorithm: Algorithm, max_wait: Duration) -> LimitConfig {
    let mut c = LimitConfig::default();
    c.algorithm = algorithm;
    c.max_wait = max_wait;
    c
}

/// A fixed limit of 2 at the client: the third request is refused at once and sends nothing;
/// a cancelled holder gives its permit back; the gauges return to 0 and the counts add up.
#[tokio::test]
async fn a_fixed_limit_refuses_the_excess_and_cancelled_holders_release_permits() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let respond: Respond = Arc::new(move |_, _| {
        let g = g.clone();
        Box::pin(async move {
            g.acquire().await.unwrap().forget();
            200
        })
    });
    let (addr, hits) = server(respond).await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .metrics(false)
        .limit(limit(Algorithm::Fixed { max: 2 }, Duration::ZERO))
        .build()
        .unwrap();
    let a = tokio::spawn(client.get("/a"));
    let b = tokio::spawn(client.get("/b"));
    while hits.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(client.limit().in_flight(), 2);
    let err = client.get("/c").await.expect_err("full");
    assert_eq!(err.kind(), Kind::ConcurrencyLimited);
    assert!(err.kind().is_shed());
    assert_eq!(hits.load(Ordering::SeqCst), 2, "a refusal sends nothing");
    // The caller of /a gives up: its permit comes back.
    a.abort();
    let _ = a.await;
    for _ in 0..100 {
        if client.limit().in_flight() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(client.limit().in_flight(), 1);
    let c = tokio::spawn(client.get("/c"));
    while hits.load(Ordering::SeqCst) < 3 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(10);
    assert_eq!(b.await.unwrap().unwrap().status(), 200);
    assert_eq!(c.await.unwrap().unwrap().status(), 200);
    assert_eq!(client.limit().in_flight(), 0);
    let s = client.stats();
    assert_eq!(s.concurrency_limited, 1);
    assert_eq!(client.limit().rejected(), 1);
    assert_eq!(s.requests, s.successes + s.failures + s.cancelled, "{s:?}");
    assert_eq!(
        s.requests, 3,
        "a refused request never reaches the retry layer"
    );
    assert_eq!(s.cancelled, 1);
    // The cancelled request is never the endpoint's failure.
    let e = &s.endpoints[0];
    assert_eq!(e.failures, 0, "{e:?}");
}

/// Waiters that give up leave the queue: the waiting count returns to 0 and later requests
/// are not stuck behind nobody.
#[tokio::test]
async fn cancelled_waiters_leave_the_queue() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let respond: Respond = Arc::new(move |_, _| {
        let g = g.clone();
        Box::pin(async move {
            g.acquire().await.unwrap().forget();
            200
        })
    });
    let (addr, hits) = server(respond).await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .metrics(false)
        .limit(limit(Algorithm::Fixed { max: 1 }, Duration::from_secs(30)))
        .build()
        .unwrap();
    let holder = tokio::spawn(client.get("/hold"));
    while hits.load(Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    let waiters: Vec<_> = (0..5).map(|_| tokio::spawn(client.get("/w"))).collect();
    for _ in 0..1000 {
        if client.limit().waiting() == 5 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(client.limit().waiting(), 5);
    for w in &waiters {
        w.abort();
    }
    for w in waiters {
        let _ = w.await;
    }
    assert_eq!(client.limit().waiting(), 0);
    gate.add_permits(100);
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    // A new request passes at once.
    assert_eq!(client.get("/n").await.unwrap().status(), 200);
    assert_eq!(client.limit().in_flight(), 0);
    assert_eq!(
        client.limit().rejected(),
        0,
        "a waiter that gave up is no refusal"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// AIMD under a burst of 503s: the limit stays within [min, max], and it recovers when the
/// fault ends and demand is there.
#[tokio::test]
async fn aimd_stays_within_bounds_and_recovers_after_the_fault() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = failing.clone();
    let respond: Respond = Arc::new(move |_, _| {
        let failing = f.load(Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if failing { 503 } else { 200 }
        })
    });
    let (addr, _) = server(respond).await;
    let mut aimd = AimdConfig::default();
    aimd.initial = 8;
    aimd.min = 2;
    aimd.max = 10;
    let mut breaker = BreakerConfig::default();
    breaker.enabled = false;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .metrics(false)
        .max_retries(0)
        .breaker(breaker)
        .limit(limit(Algorithm::Aimd(aimd), Duration::from_secs(5)))
        .build()
        .unwrap();
    let handle = client.limit();
    let run = |n: usize| {
        let client = client.clone();
        async move {
            let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(client.get("/"))).collect();
            for t in tasks {
                let _ = t.await;
            }
        }
    };
    let watch = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let (mut lo, mut hi) = (u32::MAX, 0);
            for _ in 0..20_000 {
                let l = handle.limit();
                lo = lo.min(l);
                hi = hi.max(l);
                tokio::task::yield_now().await;
            }
            (lo, hi)
        })
    };
    run(60).await;
    assert_eq!(handle.limit(), 2, "drops cut it to min");
    failing.store(false, Ordering::SeqCst);
    for _ in 0..10 {
        run(12).await;
    }
    assert_eq!(handle.limit(), 10, "grows back to max once the fault ends");
    let (lo, hi) = watch.await.unwrap();
    assert!(lo >= 2 && hi <= 10, "{lo}..{hi}");
    assert_eq!(handle.in_flight(), 0);
    assert_eq!(handle.waiting(), 0);
}

/// One route's failures open its own breaker only; a cancelled half-open probe does not wedge
/// the route half-open; the other route and the client-wide breaker stay closed.
#[tokio::test(start_paused = true)]
async fn a_route_breaker_with_a_cancelled_probe_still_closes_and_other_routes_stay_closed() {
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (h, f) = (hang.clone(), failing.clone());
    let respond: Respond = Arc::new(move |_, head| {
        let bad = head.starts_with("GET /bad");
        let hang = h.load(Ordering::SeqCst) && bad;
        let fail = f.load(Ordering::SeqCst) && bad;
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            if fail { 500 } else { 200 }
        })
    });
    let (addr, hits) = server(respond).await;
    let mut breaker = BreakerConfig::default();
    breaker.minimum_calls = 5;
    breaker.failure_rate_threshold = 0.5;
    breaker.break_duration = Duration::from_secs(1);
    breaker.max_break_duration = Duration::from_secs(1);
    breaker.break_jitter = 0.0;
    breaker.half_open_probes = 1;
    breaker.probe_timeout = Duration::from_secs(3600);
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .metrics(false)
        .max_retries(0)
        .breaker(breaker)
        .breaker_per_route(|_, uri, _| {
            Some(std::borrow::Cow::Owned(
                uri.path().split('/').nth(1).unwrap_or("").to_owned(),
            ))
        })
        .build()
        .unwrap();
    for _ in 0..10 {
        let _ = client.get("/bad").await;
        let _ = client.get("/good").await;
    }
    let bad = client.breaker().route("bad").expect("a route breaker");
    let good = client.breaker().route("good").expect("a route breaker");
    assert_eq!(bad.state().as_str(), "open");
    assert_eq!(good.state().as_str(), "closed");
    assert_eq!(client.breaker().state().as_str(), "closed");
    let err = client.get("/bad").await.expect_err("open");
    assert_eq!(err.kind(), Kind::CircuitOpen);
    assert_eq!(client.get("/good").await.unwrap().status(), 200);
    // The break ends; the one probe hangs and its caller gives up.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    hang.store(true, Ordering::SeqCst);
    let before = hits.load(Ordering::SeqCst);
    let probe = tokio::spawn(client.get("/bad"));
    while hits.load(Ordering::SeqCst) == before {
        tokio::task::yield_now().await;
    }
    probe.abort();
    let _ = probe.await;
    // The upstream heals: the next request is a probe again, and closes the route.
    hang.store(false, Ordering::SeqCst);
    failing.store(false, Ordering::SeqCst);
    let res = client.get("/bad").await;
    assert!(
        res.is_ok(),
        "the slot of the cancelled probe is free: {res:?}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(bad.state().as_str(), "closed");
    let s = client.stats();
    assert_eq!(s.requests, s.successes + s.failures + s.cancelled, "{s:?}");
    // Five failures opened the route (minimum_calls 5); the cancelled probe is none.
    assert_eq!(
        s.endpoints[0].failures, 5,
        "the cancelled probe is no failure"
    );
}

/// Extreme values in protection settings: a `ConfigError` naming the field, or a client that
/// works; never a panic.
#[tokio::test]
async fn extreme_protection_settings_are_refused_by_name_or_work() {
    let respond: Respond = Arc::new(|_, _| Box::pin(async { 200 }));
    let (addr, _) = server(respond).await;
    let build = |edit: &dyn Fn(
        &mut BreakerConfig,
        &mut LimitConfig,
        &mut meshless::throttle::ThrottleConfig,
    )| {
        let mut b = BreakerConfig::default();
        let mut l = LimitConfig::default();
        let mut t = meshless::throttle::ThrottleConfig::default();
        edit(&mut b, &mut l, &mut t);
        Client::builder()
            .endpoints([addr.to_string()])
            .metrics(false)
            .breaker(b)
            .limit(l)
            .throttle(t)
            .build()
    };
    type Edit =
        Box<dyn Fn(&mut BreakerConfig, &mut LimitConfig, &mut meshless::throttle::ThrottleConfig)>;
    let refused: Vec<(&str, Edit)> = vec![
        (
            "throttle.k",
            Box::new(|_, _, t| {
                t.enabled = true;
                t.k = f64::NAN;
            }),
        ),
        (
            "throttle.k",
            Box::new(|_, _, t| {
                t.enabled = true;
                t.k = f64::INFINITY;
            }),
        ),
        (
            "throttle.max_probability",
            Box::new(|_, _, t| {
                t.enabled = true;
                t.max_probability = f64::NAN;
            }),
        ),
        (
            "throttle.window",
            Box::new(|_, _, t| {
                t.enabled = true;
                t.window = Duration::ZERO;
            }),
        ),
        (
            "breaker.failure_rate_threshold",
            Box::new(|b, _, _| b.failure_rate_threshold = f64::NAN),
        ),
        (
            "breaker.break_jitter",
            Box::new(|b, _, _| b.break_jitter = f64::NAN),
        ),
        (
            "breaker.ramp_start_share",
            Box::new(|b, _, _| b.ramp_start_share = 0.0),
        ),
        (
            "limit.backoff",
            Box::new(|_, l, _| {
                l.algorithm = Algorithm::Aimd({
                    let mut a = AimdConfig::default();
                    a.backoff = f64::NAN;
                    a
                })
            }),
        ),
        (
            "limit.min",
            Box::new(|_, l, _| {
                l.algorithm = Algorithm::Aimd({
                    let mut a = AimdConfig::default();
                    a.min = 0;
                    a
                })
            }),
        ),
        (
            "limit.max",
            Box::new(|_, l, _| l.algorithm = Algorithm::Fixed { max: 0 }),
        ),
    ];
    for (field, edit) in &refused {
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(edit.as_ref())));
        let got = got.unwrap_or_else(|_| panic!("{field}: panicked"));
        let err = got.err().unwrap_or_else(|| panic!("{field}: accepted"));
        assert!(
            err.path().ends_with(field.split('.').nth(1).unwrap()),
            "{field}: {err}"
        );
    }
    let work: Vec<(&str, Edit)> = vec![
        (
            "huge breaker durations",
            Box::new(|b, _, _| {
                b.break_duration = Duration::MAX;
                b.max_break_duration = Duration::MAX;
                b.probe_timeout = Duration::MAX;
                b.ramp = Duration::MAX;
                b.window = Duration::MAX;
                b.slow_call_duration = Some(Duration::MAX);
            }),
        ),
        (
            "huge limits",
            Box::new(|_, l, _| {
                l.algorithm = Algorithm::Fixed { max: u32::MAX };
                l.max_wait = Duration::MAX;
            }),
        ),
        (
            "huge aimd",
            Box::new(|_, l, _| {
                let mut a = AimdConfig::default();
                a.max = u32::MAX;
                a.initial = u32::MAX;
                a.timeout = Duration::MAX;
                l.algorithm = Algorithm::Aimd(a);
                l.max_wait = Duration::MAX;
            }),
        ),
        (
            "huge throttle",
            Box::new(|_, _, t| {
                t.enabled = true;
                t.k = 1e300;
                t.max_probability = 1.0;
            }),
        ),
    ];
    for (name, edit) in &work {
        let client = build(edit.as_ref()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let res = tokio::spawn(async move {
            for _ in 0..5 {
                client.get("/").await.expect("answered");
            }
        })
        .await;
        assert!(res.is_ok(), "{name}: panicked: {res:?}");
    }
}

/// AIMD counts a request that ran out of its deadline as a drop ("drop = 503, 429 or a
/// timeout"): against a hanging upstream the limit falls, with or without retries.
#[tokio::test]
async fn aimd_counts_deadline_expiries_as_drops() {
    for retries in [0, 2] {
        let respond: Respond = Arc::new(|_, _| Box::pin(std::future::pending::<u16>()));
        let (addr, hits) = server(respond).await;
        let mut aimd = AimdConfig::default();
        aimd.initial = 10;
        aimd.min = 1;
        aimd.max = 10;
        let mut breaker = BreakerConfig::default();
        breaker.enabled = false;
        let client = Client::builder()
            .endpoints([addr.to_string()])
            .metrics(false)
            .max_retries(retries)
            .deadline(Duration::from_millis(60))
            .breaker(breaker)
            .limit(limit(Algorithm::Aimd(aimd), Duration::ZERO))
            .build()
            .unwrap();
        let mut kinds = Vec::new();
        for _ in 0..5 {
            let err = client.get("/").await.expect_err("hangs");
            assert!(err.is_timeout(), "{err:?}");
            kinds.push(err.kind());
        }
        assert!(hits.load(Ordering::SeqCst) >= 5);
        assert_eq!(client.limit().in_flight(), 0);
        // FINDING: five requests that timed out leave the AIMD limit untouched at 10 (a
        // timeout that ends as `RetriesExhausted` is no drop to the limit); expected
        // 10 × 0.9⁵ → 5.
        assert!(
            client.limit().limit() < 10,
            "max_retries {retries}: limit still {} after 5 timeouts ({kinds:?})",
            client.limit().limit()
        );
    }
}

/// Refusals by a route's own breaker are requests the circuit breaker refused: they show in
/// `ClientStats::circuit_open`, as the client-wide breaker's do.
#[tokio::test]
async fn route_breaker_refusals_are_counted_in_client_stats() {
    let respond: Respond = Arc::new(|_, head| {
        let bad = head.starts_with("GET /bad");
        Box::pin(async move { if bad { 500 } else { 200 } })
    });
    let (addr, hits) = server(respond).await;
    let mut breaker = BreakerConfig::default();
    breaker.minimum_calls = 5;
    breaker.failure_rate_threshold = 0.5;
    breaker.break_duration = Duration::from_secs(60);
    breaker.max_break_duration = Duration::from_secs(60);
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .metrics(false)
        .max_retries(0)
        .breaker(breaker)
        .breaker_per_route(|_, uri, _| {
            Some(std::borrow::Cow::Owned(
                uri.path().split('/').nth(1).unwrap_or("").to_owned(),
            ))
        })
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = client.get("/bad").await;
    }
    let route = client.breaker().route("bad").expect("a route breaker");
    assert_eq!(route.state().as_str(), "open");
    for _ in 0..3 {
        let err = client.get("/bad").await.expect_err("open");
        assert_eq!(err.kind(), Kind::CircuitOpen);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 5);
    assert_eq!(route.stats().rejected, 3);
    // FINDING: the client's stats count only the client-wide breaker's refusals (0 here).
    assert_eq!(client.stats().circuit_open, 3, "{:?}", client.stats());
}

/// Half-open through the client: exactly `half_open_probes` of a burst reach the upstream,
/// the rest are refused at once; the probes' successes close the circuit (then the ramp).
#[tokio::test]
async fn half_open_admits_exactly_the_configured_probes_from_a_burst() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (f, g) = (failing.clone(), gate.clone());
    let respond: Respond = Arc::new(move |_, _| {
        let fail = f.load(Ordering::SeqCst);
        let g = g.clone();
        Box::pin(async move {
            if fail {
                return 500;
            }
            g.acquire().await.unwrap().forget();
            200
        })
    });
    let (addr, hits) = server(respond).await;
    let mut breaker = BreakerConfig::default();
    breaker.minimum_calls = 5;
    breaker.failure_rate_threshold = 0.5;
    breaker.break_duration = Duration::from_millis(50);
    breaker.max_break_duration = Duration::from_millis(50);
    breaker.break_jitter = 0.0;
    breaker.half_open_probes = 3;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .metrics(false)
        .max_retries(0)
        .breaker(breaker)
        .build()
        .unwrap();
    for _ in 0..5 {
        let _ = client.get("/").await;
    }
    assert_eq!(client.breaker().state().as_str(), "open");
    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let burst: Vec<_> = (0..10).map(|_| tokio::spawn(client.get("/"))).collect();
    // Let every request of the burst reach the breaker.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 5 + 3, "three probes, no more");
    gate.add_permits(100);
    let mut refused = 0;
    let mut ok = 0;
    for b in burst {
        match b.await.unwrap() {
            Ok(res) => {
                assert_eq!(res.status(), 200);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), Kind::CircuitOpen, "{e:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (3, 7));
    assert_ne!(client.breaker().state().as_str(), "open");
    let s = client.stats();
    assert_eq!(s.circuit_open, 7, "{s:?}");
    assert_eq!(s.requests, 5 + 3);
    assert_eq!(s.requests, s.successes + s.failures + s.cancelled);
}

/// A request waiting for a permit when its deadline comes is refused by the limit and counted
/// as such; every request the client was given shows in its stats once.
#[tokio::test]
async fn a_waiter_reaching_its_deadline_is_counted_once() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let respond: Respond = Arc::new(move |_, _| {
        let g = g.clone();
        Box::pin(async move {
            g.acquire().await.unwrap().forget();
            200
        })
    });
    let (addr, hits) = server(respond).await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .metrics(false)
        .deadline(Duration::from_millis(300))
        .limit(limit(Algorithm::Fixed { max: 1 }, Duration::MAX))
        .build()
        .unwrap();
    let holder = tokio::spawn(client.get("/hold"));
    while hits.load(Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    let err = client.get("/wait").await.expect_err("no permit in time");
    let kind = err.kind();
    gate.add_permits(100);
    let _ = holder.await;
    let s = client.stats();
    // Counted as a limit refusal, or as a request: once.
    let counted = s.concurrency_limited + s.requests;
    assert_eq!(counted, 2, "{kind:?} {s:?}");
    assert_eq!(client.limit().waiting(), 0);
    assert_eq!(client.limit().in_flight(), 0);
}
