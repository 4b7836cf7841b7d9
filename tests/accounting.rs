//! Every request ends exactly once and is counted once, through `http::Client` over
//! real sockets: stats, endpoint stats and the metrics agree, and in-flight counts return to 0.

mod common;
mod edges_support;

use edges_support::*;
use meshless::hedge::{HedgeConfig, HedgeDelay};
use meshless::limit::{Algorithm, LimitConfig};
use tokio::sync::mpsc;

fn hedge_fixed(delay: Duration) -> HedgeConfig {
    let mut h = HedgeConfig::default();
    h.enabled = true;
    h.delay = HedgeDelay::Fixed(delay);
    h.max_extra_load = 1.0;
    h.min_per_second = 1000.0;
    h
}

fn fixed_limit(max: u32, wait: Duration) -> LimitConfig {
    let mut l = LimitConfig::default();
    l.algorithm = Algorithm::Fixed { max };
    l.max_wait = wait;
    l
}

/// A server that tells `tx` of each head and never answers.
async fn hanging(tx: mpsc::UnboundedSender<String>) -> SocketAddr {
    common::serve_sockets(move |socket, head| {
        let _ = tx.send(head);
        hold(socket)
    })
    .await
}

/// Answers every request on every connection with a 200 "ok".
async fn fast() -> SocketAddr {
    common::serve_heads(|_| async { b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec() })
        .await
}

/// A head promising 100 bytes, 10 sent; then closed (`close`) or held silent.
async fn partial(close: bool) -> SocketAddr {
    common::serve_sockets(move |mut socket, _| async move {
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nxxxxxxxxxx")
            .await;
        let _ = socket.flush().await;
        if !close {
            hold(socket).await;
        }
    })
    .await
}

#[test]
fn hedged_requests_against_a_hanging_endpoint_agree() {
    run(|snap| async move {
        let (tx, _rx) = mpsc::unbounded_channel();
        let a = hanging(tx).await;
        let b = fast().await;
        let client = client_for(&[a, b], "hedge1")
            .deadline(Duration::from_secs(3))
            .hedge(hedge_fixed(ms(30)))
            .build()
            .unwrap();
        for i in 0..20 {
            let t = std::time::Instant::now();
            let res = match client.get("/").await {
                Ok(r) => r,
                Err(e) => panic!(
                    "request {i}: {e:?} after {:?}; hedge stats {:?}; stats {:?}",
                    t.elapsed(),
                    client.hedge_stats(),
                    client.stats()
                ),
            };
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "ok");
        }
        let v = settle_and_check(&client, &snap, "hedge1").await;
        let s = client.stats();
        eprintln!("hedge stats: {:?}", client.hedge_stats());
        let ea = s.endpoints.iter().find(|e| e.key == a).unwrap();
        let mut v = v;
        if ea.failures != 0 {
            v.push(format!("hanging endpoint charged {} failures", ea.failures));
        }
        if s.successes != 20 {
            v.push(format!("successes {}", s.successes));
        }
        let hedges = client.hedge_stats().hedges();
        if hedges != ea.cancelled {
            v.push(format!(
                "hedges {hedges} != hanging endpoint's cancelled {}",
                ea.cancelled
            ));
        }
        report(&v, &client, &snap);
    });
}

#[test]
fn a_body_dropped_midway_counts_once_as_its_heads_class() {
    run(|snap| async move {
        let addr = partial(false).await;
        let client = client_for(&[addr], "drop_mid").build().unwrap();
        let res = client.get("/").await.unwrap();
        let mut body = res.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 10);
        drop(body);
        let mut v = settle_and_check(&client, &snap, "drop_mid").await;
        let s = client.stats();
        if (s.requests, s.successes, s.failures, s.cancelled) != (1, 1, 0, 0) {
            v.push(format!(
                "(req,ok,fail,cancel) = {:?}",
                (s.requests, s.successes, s.failures, s.cancelled)
            ));
        }
        if s.endpoints[0].requests != 1 || s.endpoints[0].failures != 0 {
            v.push(format!("endpoint {:?}", s.endpoints[0]));
        }
        report(&v, &client, &snap);
    });
}

#[test]
fn a_future_dropped_while_the_endpoint_has_the_request_is_a_cancellation() {
    run(|snap| async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let addr = hanging(tx).await;
        let client = client_for(&[addr], "drop_wait").build().unwrap();
        let c = client.clone();
        let task = tokio::spawn(async move { c.get("/").await });
        rx.recv().await.expect("the head reached the server");
        task.abort();
        let _ = task.await;
        let mut v = settle_and_check(&client, &snap, "drop_wait").await;
        let s = client.stats();
        if (s.requests, s.successes, s.failures, s.cancelled) != (1, 0, 0, 1) {
            v.push(format!(
                "(req,ok,fail,cancel) = {:?}",
                (s.requests, s.successes, s.failures, s.cancelled)
            ));
        }
        let e = &s.endpoints[0];
        if (e.requests, e.failures, e.cancelled) != (0, 0, 1) {
            v.push(format!("endpoint {e:?}"));
        }
        report(&v, &client, &snap);
    });
}

#[test]
fn a_future_dropped_before_its_first_poll_counts_nothing() {
    run(|snap| async move {
        let addr = fast().await;
        let client = client_for(&[addr], "drop_unpolled").build().unwrap();
        let f = client.get("/");
        drop(f);
        let mut v = settle_and_check(&client, &snap, "drop_unpolled").await;
        let s = client.stats();
        if s.requests != 0 || s.endpoints[0].cancelled != 0 {
            v.push(format!("{s:?}"));
        }
        report(&v, &client, &snap);
    });
}

#[test]
fn the_deadline_passing_during_the_body_is_one_failure() {
    run(|snap| async move {
        let addr = partial(false).await;
        let client = client_for(&[addr], "dl_body")
            .deadline(ms(300))
            .build()
            .unwrap();
        let res = client.get("/").await.unwrap();
        let err = res.into_body().collect().await.unwrap_err();
        let _ = err;
        let mut v = settle_and_check(&client, &snap, "dl_body").await;
        let s = client.stats();
        if (s.requests, s.successes, s.failures, s.cancelled) != (1, 0, 1, 0) {
            v.push(format!(
                "(req,ok,fail,cancel) = {:?}",
                (s.requests, s.successes, s.failures, s.cancelled)
            ));
        }
        let e = &s.endpoints[0];
        if (e.requests, e.failures, e.cancelled) != (1, 1, 0) {
            v.push(format!("endpoint {e:?}"));
        }
        report(&v, &client, &snap);
    });
}

#[test]
fn a_body_cut_by_the_server_is_one_failure() {
    run(|snap| async move {
        let addr = partial(true).await;
        let client = client_for(&[addr], "cut_body").build().unwrap();
        let res = client.get("/").await.unwrap();
        assert!(res.into_body().collect().await.is_err());
        let mut v = settle_and_check(&client, &snap, "cut_body").await;
        let s = client.stats();
        if (s.requests, s.successes, s.failures, s.cancelled) != (1, 0, 1, 0) {
            v.push(format!(
                "(req,ok,fail,cancel) = {:?}",
                (s.requests, s.successes, s.failures, s.cancelled)
            ));
        }
        report(&v, &client, &snap);
    });
}

#[test]
fn retries_count_once_per_attempt() {
    run(|snap| async move {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let addr = common::serve_heads(move |_| {
            let i = n2.fetch_add(1, Ordering::SeqCst);
            async move {
                if i < 2 {
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy".to_vec()
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
                }
            }
        })
        .await;
        let client = client_for(&[addr], "retries").build().unwrap();
        let res = client.get("/").await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
        let mut v = settle_and_check(&client, &snap, "retries").await;
        let s = client.stats();
        if (s.requests, s.successes, s.retries) != (1, 1, 2) {
            v.push(format!(
                "(req,ok,retries) = {:?}",
                (s.requests, s.successes, s.retries)
            ));
        }
        let e = &s.endpoints[0];
        if (e.requests, e.failures) != (3, 2) {
            v.push(format!("endpoint {e:?}"));
        }
        report(&v, &client, &snap);
    });
}

#[test]
fn a_limit_refusal_counts_nothing_upstream_and_the_permit_returns() {
    run(|snap| async move {
        let addr = partial(false).await;
        let client = client_for(&[addr], "limit_refuse")
            .limit(fixed_limit(1, Duration::ZERO))
            .build()
            .unwrap();
        let res = client.get("/").await.unwrap();
        assert_eq!(client.limit().in_flight(), 1);
        let err = client.get("/").await.unwrap_err();
        assert_eq!(err.kind(), Kind::ConcurrencyLimited);
        drop(res);
        let (mut v, rec) = settle(&client, &snap, "limit_refuse").await;
        let s = client.stats();
        if (s.requests, s.concurrency_limited) != (1, 1) {
            v.push(format!(
                "(req, limited) = {:?}",
                (s.requests, s.concurrency_limited)
            ));
        }
        let m = rec.count(
            "meshless_concurrency_rejected_total",
            &[("service", "limit_refuse")],
        );
        if m != 1 {
            v.push(format!("concurrency_rejected_total {m}"));
        }
        report(&v, &client, &snap);
    });
}

#[test]
fn a_limit_waiter_dropped_leaves_nothing_behind() {
    run(|snap| async move {
        let addr = partial(false).await;
        let client = client_for(&[addr], "limit_wait_drop")
            .limit(fixed_limit(1, Duration::from_secs(5)))
            .build()
            .unwrap();
        let res = client.get("/").await.unwrap();
        let c = client.clone();
        let task = tokio::spawn(async move { c.get("/").await.map(drop) });
        let c = client.clone();
        assert!(wait_until(Duration::from_secs(3), move || c.limit().waiting() == 1).await);
        task.abort();
        let _ = task.await;
        let c = client.clone();
        let back = wait_until(Duration::from_secs(2), move || c.limit().waiting() == 0).await;
        drop(res);
        let mut v = settle_and_check(&client, &snap, "limit_wait_drop").await;
        if !back {
            v.push(format!("waiting stays {}", client.limit().waiting()));
        }
        // The permit is free for the next one at once.
        let t = std::time::Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(2), client.get("/")).await;
        match res {
            Ok(Ok(r)) => drop(r),
            other => v.push(format!("next request: {other:?} after {:?}", t.elapsed())),
        }
        report(&v, &client, &snap);
    });
}

#[test]
fn a_limit_waiter_never_waits_past_its_deadline() {
    run(|snap| async move {
        let addr = partial(false).await;
        let client = client_for(&[addr], "limit_wait_dl")
            .deadline(ms(300))
            .limit(fixed_limit(1, Duration::from_secs(10)))
            .route(meshless::route::Route::path_prefix("/long").timeout(Duration::from_secs(20)))
            .build()
            .unwrap();
        let res = client.get("/long").await.unwrap();
        let t = std::time::Instant::now();
        let out = tokio::time::timeout(Duration::from_secs(5), client.get("/")).await;
        let took = t.elapsed();
        let mut v = Vec::new();
        match out {
            Ok(Err(e)) => {
                if took > ms(800) {
                    v.push(format!("waited {took:?} ({e}) past a 300 ms deadline"));
                }
            }
            other => v.push(format!("waiter: {other:?} after {took:?}")),
        }
        drop(res);
        v.extend(settle_and_check(&client, &snap, "limit_wait_dl").await);
        report(&v, &client, &snap);
    });
}

#[test]
fn breaker_refusals_count_nothing_upstream() {
    run(|snap| async move {
        let addr = fast().await;
        let client = client_for(&[addr], "breaker_iso").build().unwrap();
        client.breaker().isolate();
        for _ in 0..3 {
            let err = client.get("/").await.unwrap_err();
            assert_eq!(err.kind(), Kind::CircuitOpen);
        }
        client.breaker().reset();
        let r = client.get("/").await.unwrap();
        r.into_body().collect().await.unwrap();
        let mut v = settle_and_check(&client, &snap, "breaker_iso").await;
        let s = client.stats();
        if (s.requests, s.successes, s.circuit_open) != (1, 1, 3) {
            v.push(format!(
                "(req, ok, open) = {:?}",
                (s.requests, s.successes, s.circuit_open)
            ));
        }
        let b = client.breaker().stats();
        if b.failures != 0 || b.calls != 1 {
            v.push(format!("breaker stats {b:?}"));
        }
        report(&v, &client, &snap);
    });
}
