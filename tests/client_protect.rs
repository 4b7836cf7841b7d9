//! Contracts found by review: the protection stack through `meshless::http::Client` against
//! the embedded fleet (real sockets on 127.0.0.1:0).

use meshless::breaker::BreakerState;
use meshless::deadline::RequestDeadline;
use meshless::error::Kind;
use meshless::limit::{Algorithm, LimitConfig};
use meshless::testing::{Behavior, Fleet, Latency};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

/// A client of every backend of `fleet`, metrics off; the test adds its own settings.
fn builder(fleet: &Fleet) -> meshless::http::ClientBuilder {
    meshless::http::Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .metrics(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_too_short_deadlines_do_not_open_the_breaker() {
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().latency(Latency::fixed(50 * MS)))
        .start()
        .await
        .unwrap();
    let client = builder(&fleet).build().unwrap();
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
    let client = builder(&fleet).build().unwrap();
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
    let client = builder(&fleet).build().unwrap();
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
    let client = builder(&fleet).limit(limit).build().unwrap();
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
    // No retries: one request, one send.
    let client = builder(&fleet)
        .max_retries(0)
        .breaker(breaker)
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
