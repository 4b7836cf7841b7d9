//! Contracts found by review: the protection stack through `meshless::http::Client` against
//! the embedded fleet (real sockets on 127.0.0.1:0).

use meshless::breaker::BreakerState;
use meshless::deadline::RequestDeadline;
use meshless::error::Kind;
use meshless::limit::{Algorithm, GradientConfig, LimitConfig};
use meshless::testing::{Behavior, Fleet, Latency};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// A healthy, unsaturated fleet (no capacity limit, 4 backends, log-normal latency; one of them
/// slower when `slow_node`) and a
/// client with the adaptive (gradient) limit, default settings. 200 callers each send requests
/// one after the other for 2 s. Nothing is overloaded: the limit must not refuse (well, at
/// most a handful of) requests.
async fn gradient_run(callers: usize, secs: u64, slow_node: bool) {
    let healthy = || Behavior::healthy().latency(Latency::lognormal(5 * MS, 20 * MS));
    let fleet = Fleet::builder()
        .backend(healthy())
        .backend(healthy())
        .backend(healthy())
        .backend(if slow_node {
            Behavior::healthy().latency(Latency::lognormal(50 * MS, 200 * MS))
        } else {
            healthy()
        })
        .start()
        .await
        .unwrap();
    let mut limit = LimitConfig::default();
    limit.algorithm = Algorithm::Gradient(GradientConfig::default());
    let client = meshless::http::Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .limit(limit)
        .metrics(false)
        .build()
        .unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (client, ok, limited, other) =
                (client.clone(), ok.clone(), limited.clone(), other.clone());
            tokio::spawn(async move {
                while tokio::time::Instant::now() < until {
                    match client.get("/").await {
                        Ok(res) => {
                            use http_body_util::BodyExt;
                            let _ = res.into_body().collect().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == Kind::ConcurrencyLimited => {
                            limited.fetch_add(1, Ordering::Relaxed);
                            // A well-behaved caller backs off a little before trying again.
                            tokio::time::sleep(5 * MS).await;
                        }
                        Err(_) => {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (ok, limited, other) = (
        ok.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    eprintln!(
        "callers {callers}, slow node {slow_node}: ok {ok}, concurrency-limited {limited}, other errors {other}, limit now {}",
        client.limit().limit()
    );
    assert_eq!(client.limit().in_flight(), 0, "permits leaked");
    let total = ok + limited;
    assert!(
        limited * 100 <= total,
        "a healthy unsaturated fleet: {limited} of {total} requests refused by the gradient limit \
         (limit now {})",
        client.limit().limit()
    );
}

/// 40 callers (twice the gradient's starting limit) for 3 s, one node of four slower (median
/// 50 ms, p99 200 ms): the fleet has no capacity limit, so nothing should be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient_limit_with_one_slow_node_does_not_refuse_40_callers() {
    gradient_run(40, 3, true).await;
}

/// The caller (or its own caller, via a propagated `grpc-timeout`) gives requests a deadline
/// too short for a healthy upstream. Those requests fail with `DeadlineExceeded`, but the
/// upstream is healthy: the service-wide breaker must not open and refuse everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_too_short_deadlines_do_not_open_the_breaker() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().latency(Latency::fixed(50 * MS)))
        .start()
        .await
        .unwrap();
    let client = meshless::http::Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .metrics(false)
        .build()
        .unwrap();
    let mut deadline_exceeded = 0;
    for _ in 0..30 {
        let mut req = http::Request::get("/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        req.extensions_mut().insert(RequestDeadline::after(5 * MS));
        match client.request(req).await {
            Err(e) if e.kind() == Kind::DeadlineExceeded => deadline_exceeded += 1,
            Err(e) if e.kind() == Kind::CircuitOpen => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(deadline_exceeded > 0);
    let state = client.breaker().state();
    let refused = client.get("/").await;
    assert_eq!(
        state,
        BreakerState::Closed,
        "the caller's own short deadlines opened the breaker; a normal request then got {:?}",
        refused.as_ref().map(|r| r.status()).map_err(|e| e.kind())
    );
}

/// An upstream answering 404 / 400 (the caller's fault, not the upstream's) must not open the
/// breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_4xx_do_not_open_the_breaker() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().errors(1.0, http::StatusCode::NOT_FOUND))
        .start()
        .await
        .unwrap();
    let client = meshless::http::Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .metrics(false)
        .build()
        .unwrap();
    for _ in 0..40 {
        let res = client.get("/").await.expect("answered");
        assert_eq!(res.status(), 404);
    }
    assert_eq!(client.breaker().state(), BreakerState::Closed);
}

/// One bad endpoint (503 to everything) among three healthy ones: retries mask it, the
/// breaker must stay closed and no request is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_endpoint_among_healthy_ones_keeps_the_breaker_closed() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().errors(1.0, http::StatusCode::SERVICE_UNAVAILABLE))
        .backend(Behavior::healthy())
        .backend(Behavior::healthy())
        .backend(Behavior::healthy())
        .start()
        .await
        .unwrap();
    let client = meshless::http::Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .metrics(false)
        .build()
        .unwrap();
    let mut refused = 0;
    let mut failed = 0;
    for _ in 0..300 {
        match client.get("/").await {
            Ok(res) if res.status() == 200 => {}
            Ok(_) => failed += 1,
            Err(e) if e.kind() == Kind::CircuitOpen => refused += 1,
            Err(_) => failed += 1,
        }
    }
    assert_eq!(refused, 0, "failed {failed}");
    assert_eq!(client.breaker().state(), BreakerState::Closed);
}

/// Many callers on a multi-thread runtime cancel their requests (drop the future at a random
/// point, or drop the body right after the head); afterwards no limit permit is left in
/// flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_release_every_limit_permit() {
    let fleet = Fleet::builder()
        .backend(
            Behavior::healthy()
                .latency(Latency::lognormal(2 * MS, 10 * MS))
                .body_size(100_000),
        )
        .backend(
            Behavior::healthy()
                .latency(Latency::lognormal(2 * MS, 10 * MS))
                .body_size(100_000),
        )
        .start()
        .await
        .unwrap();
    let mut limit = LimitConfig::default();
    limit.algorithm = Algorithm::Fixed { max: 8 };
    limit.max_wait = Duration::from_millis(50);
    let client = meshless::http::Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .limit(limit)
        .metrics(false)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..64u64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                for j in 0..20u64 {
                    let cut = Duration::from_micros((i * 7919 + j * 104_729) % 8_000);
                    match (i + j) % 3 {
                        0 => {
                            let _ = tokio::time::timeout(cut, client.get("/")).await;
                        }
                        1 => {
                            if let Ok(Ok(res)) =
                                tokio::time::timeout(cut * 4, client.get("/")).await
                            {
                                drop(res);
                            }
                        }
                        _ => {
                            if let Ok(Ok(res)) =
                                tokio::time::timeout(cut * 4, client.get("/")).await
                            {
                                use http_body_util::BodyExt;
                                let mut body = res.into_body();
                                let _ = body.frame().await;
                                drop(body);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(100 * MS).await;
    assert_eq!(client.limit().in_flight(), 0, "permits leaked");
    assert_eq!(client.limit().waiting(), 0, "waiters leaked");
    assert_eq!(
        client.breaker().state(),
        BreakerState::Closed,
        "cancellations tripped the breaker"
    );
    // The client still works.
    let res = client.get("/").await.expect("works");
    assert_eq!(res.status(), 200);
}

/// Shadow mode through the client: the breaker records what it would do and refuses nothing.
/// `ClientStats::circuit_open` is documented as "requests the circuit breaker refused (not in
/// `requests`: nothing was sent)": in shadow mode it must stay 0, since every request was
/// sent (the server counts them all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_reports_no_refusals_in_client_stats() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().errors(1.0, http::StatusCode::INTERNAL_SERVER_ERROR))
        .start()
        .await
        .unwrap();
    let mut breaker = meshless::breaker::BreakerConfig::default();
    breaker.shadow = true;
    let client = meshless::http::Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .breaker(breaker)
        .metrics(false)
        .build()
        .unwrap();
    for _ in 0..60 {
        let res = client.get("/").await.expect("shadow refuses nothing");
        assert_eq!(res.status(), 500);
    }
    let stats = client.stats();
    assert_eq!(
        fleet.backend(0).counters().requests(),
        60,
        "every request was sent"
    );
    assert_eq!(
        stats.circuit_open, 0,
        "ClientStats says {} requests were refused by the breaker (requests {}), yet all 60 were sent",
        stats.circuit_open, stats.requests
    );
}
