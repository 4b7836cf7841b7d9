//! The breaker's half-open state through the full `http::Client`: only the probes reach
//! the upstream, a probe its caller drops frees its slot and counts nothing, the ramp.

mod common;

use meshless::breaker::{BreakerConfig, BreakerState};
use meshless::error::Kind;
use meshless::http::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

const FAIL: u8 = 0;
const HANG: u8 = 1;
const OK: u8 = 2;

async fn server() -> (String, Arc<AtomicU8>, Arc<AtomicU64>) {
    let mode = Arc::new(AtomicU8::new(FAIL));
    let seen = Arc::new(AtomicU64::new(0));
    let (m, s) = (mode.clone(), seen.clone());
    let addr = common::serve_heads(move |_head| {
        s.fetch_add(1, Ordering::SeqCst);
        let mode = m.load(Ordering::SeqCst);
        async move {
            match mode {
                FAIL => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec(),
                HANG => std::future::pending().await,
                _ => b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
            }
        }
    })
    .await;
    (addr.to_string(), mode, seen)
}

fn config() -> BreakerConfig {
    let mut c = BreakerConfig::default();
    c.consecutive_failures = 3;
    c.break_duration = Duration::from_millis(200);
    c.max_break_duration = Duration::from_millis(200);
    c.break_jitter = 0.0;
    c.half_open_probes = 3;
    c.ramp = Duration::from_millis(600);
    c.ramp_start_share = 0.1;
    c
}

async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn trip(client: &Client, seen: &AtomicU64) {
    for _ in 0..3 {
        let res = client.get("/x").await.expect("a 503 response");
        assert_eq!(res.status(), 503);
    }
    assert_eq!(client.breaker().state(), BreakerState::Open);
    let before = seen.load(Ordering::SeqCst);
    let err = client.get("/x").await.expect_err("open");
    assert_eq!(err.kind(), Kind::CircuitOpen);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        before,
        "nothing sent while open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_probes_reach_the_upstream_and_dropped_probes_free_their_slots() {
    let (addr, mode, seen) = server().await;
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(0)
        .deadline(Duration::from_secs(20))
        .breaker(config())
        .metrics(false)
        .build()
        .unwrap();
    trip(&client, &seen).await;
    let trips = client.breaker().stats().trips;
    tokio::time::sleep(Duration::from_millis(300)).await; // past the 200 ms break (no jitter)

    // The upstream hangs: ten callers at once; only three may reach it.
    mode.store(HANG, Ordering::SeqCst);
    let base = seen.load(Ordering::SeqCst);
    let mut probes = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let c = client.clone();
        let mut task = tokio::spawn(async move { c.get("/x").await.map(|r| r.status()) });
        // A refusal is immediate; an admitted probe hangs.
        match tokio::time::timeout(Duration::from_millis(50), &mut task).await {
            Ok(Ok(Err(e))) if e.kind() == Kind::CircuitOpen => refused += 1,
            Ok(other) => panic!("unexpected: {other:?}"),
            Err(_) => probes.push(task),
        }
    }
    wait_for(
        || seen.load(Ordering::SeqCst) - base >= probes.len() as u64,
        "probes at the server",
    )
    .await;
    eprintln!(
        "probes admitted {} refused {refused} server saw {}",
        probes.len(),
        seen.load(Ordering::SeqCst) - base
    );
    assert_eq!(probes.len(), 3, "half_open_probes = 3");
    assert_eq!(seen.load(Ordering::SeqCst) - base, 3);

    // Their callers give up: the slots are freed, and nothing is counted.
    for p in probes {
        p.abort();
        let _ = p.await;
    }
    let stats = client.breaker().stats();
    eprintln!("after the drops: {stats:?}");
    assert_eq!(stats.trips, trips, "a cancelled probe is no failure");
    assert_eq!(client.breaker().state(), BreakerState::HalfOpen);

    // The upstream healed: three new probes are admitted and succeed; then the ramp.
    mode.store(OK, Ordering::SeqCst);
    let mut ok = 0;
    for _ in 0..3 {
        match client.get("/x").await {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                ok += 1;
            }
            Err(e) => eprintln!("probe refused: {e}"),
        }
    }
    eprintln!(
        "after three probes: ok {ok} state {:?}",
        client.breaker().state()
    );
    assert_eq!(ok, 3, "freed slots admit new probes");

    // During the ramp some requests are refused; by the end of it, all pass and it is closed.
    let mut admitted = 0;
    let mut ramp_refused = 0;
    for _ in 0..20 {
        match client.get("/x").await {
            Ok(_) => admitted += 1,
            Err(e) if e.kind() == Kind::CircuitOpen => ramp_refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("early ramp: admitted {admitted} refused {ramp_refused}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    for _ in 0..20 {
        client.get("/x").await.expect("closed after the ramp");
    }
    assert_eq!(client.breaker().state(), BreakerState::Closed);
}

/// A probe dropped by a caller's own timeout (tokio::time::timeout around the call), with the
/// upstream still failing afterwards: the next probe's failure reopens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_cut_by_the_callers_timeout_counts_nothing() {
    let (addr, mode, seen) = server().await;
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(0)
        .deadline(Duration::from_secs(20))
        .breaker(config())
        .metrics(false)
        .build()
        .unwrap();
    trip(&client, &seen).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    mode.store(HANG, Ordering::SeqCst);
    for round in 0..5 {
        let r = tokio::time::timeout(Duration::from_millis(30), client.get("/x")).await;
        assert!(
            r.is_err(),
            "round {round}: the caller gave up, got {:?}",
            r.map(|x| x.map(|r| r.status()).map_err(|e| e.to_string()))
        );
    }
    let stats = client.breaker().stats();
    eprintln!("{stats:?} endpoints {:?}", client.endpoints());
    assert_eq!(stats.state, BreakerState::HalfOpen);
    assert_eq!(stats.trips, 1);
    // Endpoint: no failure counted for a caller's cancellation.
    let e = &client.endpoints()[0];
    assert_eq!(e.in_flight, 0);
    // Failures of the endpoint: only the three 503s.
    assert_eq!(e.failures, 3, "{e:?}");
}

/// A probe cut by meshless's own deadline is a failure: the circuit reopens, and the next break
/// refuses again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_cut_by_the_clients_deadline_reopens() {
    let (addr, mode, seen) = server().await;
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(0)
        .deadline(Duration::from_millis(100))
        .breaker(config())
        .metrics(false)
        .build()
        .unwrap();
    trip(&client, &seen).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    mode.store(HANG, Ordering::SeqCst);
    let err = client.get("/x").await.expect_err("deadline");
    let mut chain = String::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&err);
    while let Some(e) = next {
        chain.push_str(&format!(" <- {e}"));
        next = e.source();
    }
    eprintln!(
        "probe: {:?} {}{chain} stats {:?}",
        err.kind(),
        err,
        client.stats()
    );
    let stats = client.breaker().stats();
    eprintln!("{stats:?}");
    assert_eq!(stats.state, BreakerState::Open);
    assert_eq!(stats.trips, 2);
}

/// Probes that hang past `probe_timeout` (their callers still waiting): the circuit reopens, and
/// after the next break new probes are admitted although the old ones are still in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_probes_do_not_hold_the_circuit_after_probe_timeout() {
    let (addr, mode, seen) = server().await;
    let mut config = config();
    config.probe_timeout = Duration::from_millis(300);
    let client = Client::builder()
        .endpoints([addr])
        .max_retries(0)
        .deadline(Duration::from_secs(20))
        .breaker(config)
        .metrics(false)
        .build()
        .unwrap();
    trip(&client, &seen).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    mode.store(HANG, Ordering::SeqCst);
    let base = seen.load(Ordering::SeqCst);
    let mut lost = Vec::new();
    for _ in 0..3 {
        let c = client.clone();
        lost.push(tokio::spawn(async move {
            c.get("/x").await.map(|r| r.status())
        }));
    }
    wait_for(|| seen.load(Ordering::SeqCst) - base == 3, "three probes").await;
    // The upstream heals (new connections answer); the three old probes keep hanging.
    mode.store(OK, Ordering::SeqCst);
    let start = std::time::Instant::now();
    let mut served = 0;
    let mut states = Vec::new();
    while start.elapsed() < Duration::from_secs(4) && served < 3 {
        match client.get("/x").await {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                served += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), Kind::CircuitOpen, "{e}");
                let s = client.breaker().state();
                if states.last() != Some(&s) {
                    states.push(s);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "served {served} after {:?}, states seen {states:?}, stats {:?}, old probes finished: {}",
        start.elapsed(),
        client.breaker().stats(),
        lost.iter().filter(|l| l.is_finished()).count()
    );
    assert!(
        served >= 1,
        "new probes admitted after probe_timeout + break"
    );
    for l in lost {
        l.abort();
    }
}

/// Old probes (of a half-open that timed out and reopened) answering late, while the probes of
/// the next half-open are in flight: their answers must not count for the new half-open (no
/// extra slots, no ramp started on their successes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answers_of_old_probes_do_not_count_for_the_next_half_open() {
    use tokio::sync::watch;
    const HANG_A: u8 = 1;
    const HANG_B: u8 = 3;
    let mode = Arc::new(AtomicU8::new(FAIL));
    let seen = Arc::new(AtomicU64::new(0));
    let (gate_a, gate_b) = (watch::Sender::new(false), watch::Sender::new(false));
    let (m, s, ga, gb) = (mode.clone(), seen.clone(), gate_a.clone(), gate_b.clone());
    let addr = common::serve_heads(move |_head| {
        s.fetch_add(1, Ordering::SeqCst);
        let mode = m.load(Ordering::SeqCst);
        let (mut a, mut b) = (ga.subscribe(), gb.subscribe());
        async move {
            match mode {
                FAIL => {
                    return b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
                        .to_vec();
                }
                HANG_A => {
                    let _ = a.wait_for(|o| *o).await;
                }
                HANG_B => {
                    let _ = b.wait_for(|o| *o).await;
                }
                _ => {}
            }
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()
        }
    })
    .await;
    let mut config = config();
    config.probe_timeout = Duration::from_millis(300);
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .max_retries(0)
        .deadline(Duration::from_secs(20))
        .breaker(config)
        .metrics(false)
        .build()
        .unwrap();
    trip(&client, &seen).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    mode.store(HANG_A, Ordering::SeqCst);
    let base = seen.load(Ordering::SeqCst);
    let mut old = Vec::new();
    for _ in 0..3 {
        let c = client.clone();
        old.push(tokio::spawn(async move {
            c.get("/x").await.map(|r| r.status())
        }));
    }
    wait_for(
        || seen.load(Ordering::SeqCst) - base == 3,
        "three old probes",
    )
    .await;

    // Next half-open: its probes hang on gate B.
    mode.store(HANG_B, Ordering::SeqCst);
    let base = seen.load(Ordering::SeqCst);
    let mut new = Vec::new();
    let start = std::time::Instant::now();
    while seen.load(Ordering::SeqCst) - base < 3 {
        assert!(start.elapsed() < Duration::from_secs(4), "no new probes");
        let c = client.clone();
        let mut t = tokio::spawn(async move { c.get("/x").await.map(|r| r.status()) });
        match tokio::time::timeout(Duration::from_millis(20), &mut t).await {
            Ok(Ok(Err(e))) if e.kind() == Kind::CircuitOpen => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => new.push(t),
        }
    }
    eprintln!(
        "new probes in flight: {} (server saw {})",
        new.len(),
        seen.load(Ordering::SeqCst) - base
    );

    // The old probes answer 200, late.
    gate_a.send_replace(true);
    for o in old {
        let r = o.await.expect("task");
        eprintln!("old probe: {:?}", r.as_ref().map_err(|e| e.to_string()));
    }
    let after_old = client.breaker().stats();
    eprintln!("after the old answers: {after_old:?}");

    // With the new probes still out, nothing more may reach the server.
    let before = seen.load(Ordering::SeqCst);
    let mut admitted = Vec::new();
    for _ in 0..20 {
        let c = client.clone();
        let mut t = tokio::spawn(async move { c.get("/x").await.map(|r| r.status()) });
        match tokio::time::timeout(Duration::from_millis(20), &mut t).await {
            Ok(Ok(Err(e))) if e.kind() == Kind::CircuitOpen => {}
            Ok(other) => eprintln!("answered: {other:?}"),
            Err(_) => admitted.push(t),
        }
    }
    let extra = seen.load(Ordering::SeqCst) - before;
    eprintln!(
        "extra admitted while new probes out: {extra}, state {:?}",
        client.breaker().stats()
    );
    gate_b.send_replace(true);
    assert_eq!(
        extra, 0,
        "late answers of old probes opened slots or started the ramp"
    );
}
