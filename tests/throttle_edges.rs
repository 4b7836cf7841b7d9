//! Client-side adaptive throttling through the full `http::Client`.

mod common;

use meshless::breaker::BreakerConfig;
use meshless::error::Kind;
use meshless::http::Client;
use meshless::throttle::ThrottleConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

async fn server() -> (String, Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(true));
    let hang = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let (f, s, h) = (failing.clone(), seen.clone(), hang.clone());
    let addr = common::serve_heads(move |_| {
        s.fetch_add(1, Ordering::SeqCst);
        let fail = f.load(Ordering::SeqCst);
        let hang = h.load(Ordering::SeqCst);
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            if fail {
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec()
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()
            }
        }
    })
    .await;
    (addr.to_string(), failing, seen, hang)
}

fn throttle() -> ThrottleConfig {
    let mut t = ThrottleConfig::default();
    t.enabled = true;
    t.window = Duration::from_secs(1);
    t
}

fn breaker_watching() -> BreakerConfig {
    // On, but never tripping in these tests: it only counts.
    let mut b = BreakerConfig::default();
    b.minimum_calls = 100_000;
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_no_upstream_failures_and_the_throttle_recovers() {
    let (addr, failing, seen, _hang) = server().await;
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(0)
        .throttle(throttle())
        .breaker(breaker_watching())
        .metrics(false)
        .build()
        .unwrap();
    let (mut sent, mut refused) = (0u64, 0u64);
    for _ in 0..300 {
        match client.get("/x").await {
            Ok(r) => {
                assert_eq!(r.status(), 503);
                sent += 1;
            }
            Err(e) if e.kind() == Kind::Throttled => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let t = client.throttle();
    let stats = client.stats();
    let breaker = client.breaker().stats();
    let endpoint = &client.endpoints()[0];
    eprintln!(
        "sent {sent} refused {refused} p {:.2} counts {:?} server {} breaker calls {} failures {} endpoint {:?} client failures {} throttled {}",
        t.probability(),
        t.counts(),
        seen.load(Ordering::SeqCst),
        breaker.calls,
        breaker.failures,
        endpoint,
        stats.failures,
        stats.throttled,
    );
    assert!(refused > 0, "a failing upstream is throttled");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        sent,
        "refused requests sent nothing"
    );
    assert_eq!(t.rejected(), refused);
    assert_eq!(breaker.calls, sent, "the breaker saw only what was sent");
    assert_eq!(endpoint.requests, sent);
    assert_eq!(endpoint.failures, sent);
    assert_eq!(
        stats.failures, sent,
        "throttled refusals are no failures of the upstream"
    );

    // The upstream heals: within a few windows the probability falls to 0.
    failing.store(false, Ordering::SeqCst);
    let start = std::time::Instant::now();
    loop {
        let _ = client.get("/x").await;
        if t.probability() == 0.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "recovers: p {} counts {:?}",
            t.probability(),
            t.counts()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("recovered after {:?}", start.elapsed());
    for _ in 0..50 {
        let r = client.get("/x").await.expect("no refusal after recovery");
        assert_eq!(r.status(), 200);
    }
}

/// A cancelled request is taken back: neither accept nor refusal, and in_flight back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_are_taken_back() {
    let (addr, failing, _seen, hang) = server().await;
    failing.store(false, Ordering::SeqCst);
    hang.store(true, Ordering::SeqCst);
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(0)
        .throttle(throttle())
        .metrics(false)
        .build()
        .unwrap();
    for _ in 0..20 {
        let r = tokio::time::timeout(Duration::from_millis(20), client.get("/x")).await;
        assert!(r.is_err());
    }
    let c = client.throttle().counts();
    eprintln!("{c:?} p {}", client.throttle().probability());
    assert_eq!(c.in_flight, 0);
    assert_eq!(c.requests, 0, "cancelled requests are taken back");
    assert_eq!(c.accepts, 0);
    assert_eq!(client.throttle().probability(), 0.0);
}

/// Retries under the throttle: one logical request counts once, whatever its attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_once() {
    let (addr, _failing, seen, _hang) = server().await;
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(2)
        .throttle(throttle())
        .metrics(false)
        .build()
        .unwrap();
    let _ = client.get("/x").await;
    let c = client.throttle().counts();
    eprintln!("{c:?} server saw {}", seen.load(Ordering::SeqCst));
    assert_eq!(c.requests, 1);
}
