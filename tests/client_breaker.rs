//! The circuit breaker inside `meshless::http::Client`: on by default, outside the retry layer,
//! per route on request, off on request. Raw servers on 127.0.0.1:0 count what they receive.

mod common;

use meshless::breaker::{BreakerConfig, BreakerState};
use meshless::error::{Kind, Layer};
use meshless::http::Client;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A server answering `/bad…` with 503 and anything else with 200, counting each path kind.
async fn server() -> (String, Arc<AtomicU64>, Arc<AtomicU64>) {
    let (bad, good) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (b, g) = (bad.clone(), good.clone());
    let addr = common::serve_heads(move |head| {
        let failing = head.starts_with(b"GET /bad");
        if failing {
            b.fetch_add(1, Ordering::SeqCst);
        } else {
            g.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            let status = if failing {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").into_bytes()
        }
    })
    .await;
    (addr.to_string(), bad, good)
}

/// Sends `n` GETs to `path` one after the other; how many the breaker refused.
async fn send(client: &Client, path: &str, n: usize) -> usize {
    let mut refused = 0;
    for _ in 0..n {
        match client.get(path).await {
            Err(e) if e.kind() == Kind::CircuitOpen => {
                assert_eq!(e.layer(), Layer::Breaker);
                refused += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => {}
        }
    }
    refused
}

#[tokio::test]
async fn the_default_client_opens_in_an_outage_and_sends_nothing_more() {
    let (addr, bad, _) = server().await;
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(0)
        .metrics(false)
        .build()
        .unwrap();
    // 20 failures (the minimum of calls) open the circuit; the rest are refused unsent.
    let refused = send(&client, "/bad", 50).await;
    assert_eq!(refused, 30);
    assert_eq!(bad.load(Ordering::SeqCst), 20);
    assert_eq!(client.breaker().state(), BreakerState::Open);
    let stats = client.stats();
    assert_eq!((stats.requests, stats.circuit_open), (20, 30));
    // Reset by hand: requests flow again.
    client.breaker().reset();
    assert_eq!(send(&client, "/good", 5).await, 0);
}

#[tokio::test]
async fn a_failing_route_opens_its_own_circuit_only() {
    let (addr, bad, good) = server().await;
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(0)
        .metrics(false)
        .breaker_per_route(|_, uri, _| {
            uri.path()
                .starts_with("/bad")
                .then_some(Cow::Borrowed("bad"))
        })
        .build()
        .unwrap();
    assert_eq!(send(&client, "/bad", 40).await, 20);
    assert_eq!(bad.load(Ordering::SeqCst), 20);
    // The client-wide breaker is closed: the other routes are untouched.
    assert_eq!(send(&client, "/good", 40).await, 0);
    assert_eq!(good.load(Ordering::SeqCst), 40);
    assert_eq!(client.breaker().state(), BreakerState::Closed);
    let route = client.breaker().route("bad").expect("the route's breaker");
    assert_eq!(route.state(), BreakerState::Open);
}

#[tokio::test]
async fn a_breaker_turned_off_lets_every_request_through() {
    let (addr, bad, _) = server().await;
    let mut off = BreakerConfig::default();
    off.enabled = false;
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(0)
        .metrics(false)
        .breaker(off)
        .build()
        .unwrap();
    assert_eq!(send(&client, "/bad", 50).await, 0);
    assert_eq!(bad.load(Ordering::SeqCst), 50);
}

#[tokio::test]
async fn a_bad_breaker_setting_is_refused_by_name() {
    let mut bad = BreakerConfig::default();
    bad.failure_rate_threshold = f64::NAN;
    let err = Client::builder()
        .endpoints(["127.0.0.1:1"])
        .breaker(bad)
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), "breaker.failure_rate_threshold");
}
