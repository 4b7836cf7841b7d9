//! Requests the client refuses before the retry layer: each must still be counted somewhere.

use crate::common;
use crate::edges_support::*;
use crate::support::*;
use meshless::limit::{Algorithm, LimitConfig};

fn fixed_limit(max: u32, wait: Duration) -> LimitConfig {
    let mut l = LimitConfig::default();
    l.algorithm = Algorithm::Fixed { max };
    l.max_wait = wait;
    l
}

/// `ClientStats`: "requests … (the ones the client shed are counted apart, below)" —
/// `concurrency_limited`: "Requests the concurrency limit refused"; README: "a waiter never
/// waits past its deadline". A request that waits for a permit until its deadline passes and
/// fails without being sent must be counted once: in `requests` (as a failure) or as shed
/// (`concurrency_limited`, `meshless_concurrency_rejected_total`) — not vanish from both.
#[test]
fn a_limit_waiter_whose_deadline_passes_is_counted_somewhere() {
    run(|snap| async move {
        let addr = common::serve_sockets(|mut socket, _| async move {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nxxxxxxxxxx")
                .await;
            hold(socket).await;
        })
        .await;
        let client = client_for(&[addr], "limit_dl")
            .deadline(ms(300))
            .limit(fixed_limit(1, Duration::from_secs(10)))
            .route(meshless::route::Route::path_prefix("/long").timeout(Duration::from_secs(20)))
            .build()
            .unwrap();
        let holder = client.get("/long").await.unwrap();
        let err = client.get("/").await.unwrap_err();
        drop(holder);
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "limit_dl");
        let mut v = crate::edges_support::violations(&client, &rec, "limit_dl");
        let s = client.stats();
        let seen = s.requests + s.concurrency_limited + s.circuit_open + s.throttled;
        if seen != 2 {
            v.push(format!(
                "2 requests made (the second failed: {:?} {err}); requests {} + concurrency_limited \
                 {} + circuit_open {} + throttled {} = {seen}",
                err.kind(),
                s.requests,
                s.concurrency_limited,
                s.circuit_open,
                s.throttled
            ));
        }
        let m = rec.count("meshless_concurrency_rejected_total", &[sv])
            + rec.count("meshless_requests_total", &[sv]);
        if m != 2 {
            v.push(format!(
                "metrics: requests_total + concurrency_rejected_total = {m}, want 2"
            ));
        }
        check(&v, &client, &rec);
    });
}

/// As above with the caller's patience: a waiter its caller drops is counted nowhere, which is
/// fine; but one refused at the end of `max_wait` is `concurrency_limited` in stats and metric.
#[test]
fn a_limit_waiter_refused_after_max_wait_is_counted_once() {
    run(|snap| async move {
        let addr = common::serve_sockets(|mut socket, _| async move {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nxxxxxxxxxx")
                .await;
            hold(socket).await;
        })
        .await;
        let client = client_for(&[addr], "limit_wait")
            .deadline(Duration::from_secs(5))
            .limit(fixed_limit(1, ms(200)))
            .build()
            .unwrap();
        let holder = client.get("/").await.unwrap();
        let err = client.get("/").await.unwrap_err();
        assert_eq!(err.kind(), Kind::ConcurrencyLimited, "{err}");
        drop(holder);
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "limit_wait");
        let mut v = crate::edges_support::violations(&client, &rec, "limit_wait");
        let s = client.stats();
        let m = rec.count("meshless_concurrency_rejected_total", &[sv]);
        if (s.requests, s.concurrency_limited, m) != (1, 1, 1) {
            v.push(format!(
                "(requests, concurrency_limited, metric) = {:?}, want (1, 1, 1)",
                (s.requests, s.concurrency_limited, m)
            ));
        }
        check(&v, &client, &rec);
    });
}

/// `ClientStats::throttled` / `circuit_open`: "Requests … refused (not in `requests`: nothing was
/// sent)"; README: `meshless_throttle_rejected_total`, `meshless_breaker_rejected_total`
/// (`mode` `enforce`). Against an upstream that always answers 503, with throttling and the
/// breaker on: every request is in exactly one of `requests`, `throttled`, `circuit_open`, and
/// the metrics say the same.
#[test]
fn throttle_and_breaker_refusals_add_up_with_requests() {
    use meshless::breaker::BreakerConfig;
    use meshless::throttle::ThrottleConfig;
    run(|snap| async move {
        let addr = common::serve_heads(|_| async {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec()
        })
        .await;
        let mut throttle = ThrottleConfig::default();
        throttle.enabled = true;
        let mut breaker = BreakerConfig::default();
        breaker.minimum_calls = 40;
        let client = client_for(&[addr], "shed")
            .throttle(throttle)
            .breaker(breaker)
            .max_retries(0)
            .build()
            .unwrap();
        let total = 200u64;
        let mut refused = 0u64;
        for _ in 0..total {
            match client.get("/").await {
                Ok(r) => {
                    let _ = r.into_body().collect().await;
                }
                Err(e) if e.kind().is_shed() => refused += 1,
                Err(_) => {}
            }
        }
        let rec = quiesce(&client, &snap).await;
        let sv = ("service", "shed");
        let mut v = crate::edges_support::violations(&client, &rec, "shed");
        let s = client.stats();
        if s.requests + s.throttled + s.circuit_open + s.concurrency_limited != total {
            v.push(format!(
                "requests {} + throttled {} + circuit_open {} != {total}",
                s.requests, s.throttled, s.circuit_open
            ));
        }
        if s.throttled + s.circuit_open != refused {
            v.push(format!(
                "stats refusals {} != refusals seen {refused}",
                s.throttled + s.circuit_open
            ));
        }
        let mt = rec.count("meshless_throttle_rejected_total", &[sv]);
        let mb = rec.count(
            "meshless_breaker_rejected_total",
            &[sv, ("mode", "enforce")],
        );
        if (mt, mb) != (s.throttled, s.circuit_open) {
            v.push(format!(
                "metrics (throttle, breaker) {:?} != stats {:?}",
                (mt, mb),
                (s.throttled, s.circuit_open)
            ));
        }
        eprintln!(
            "requests {} throttled {} open {}",
            s.requests, s.throttled, s.circuit_open
        );
        check(&v, &client, &rec);
    });
}
