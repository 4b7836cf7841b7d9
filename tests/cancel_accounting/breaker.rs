//! A half-open probe its caller gives up on must not leave the breaker stuck, nor count.

use crate::support::*;
use meshless::breaker::{BreakerConfig, BreakerState};

async fn server(h2: bool) -> (SocketAddr, Events) {
    if h2 {
        h2_server().await
    } else {
        h1_server().await
    }
}

pub fn tripping() -> BreakerConfig {
    let mut c = BreakerConfig::default();
    c.consecutive_failures = 1;
    c.minimum_calls = 1000;
    c.break_duration = ms(200);
    c.max_break_duration = ms(200);
    c.break_jitter = 0.0;
    c.half_open_probes = 1;
    c.probe_timeout = Duration::from_secs(30);
    // Close at once after a good probe: no ramp refusing a share of what follows.
    c.ramp = Duration::ZERO;
    c
}

/// Opens the breaker with one 503, waits out the break.
async fn open_then_wait(client: &Client) {
    let r = timeout(BOUND, client.get("/fail")).await.expect("answered");
    match r {
        Ok(res) => assert_eq!(res.status(), 503),
        Err(e) => assert_ne!(e.kind(), Kind::CircuitOpen, "{e:?}"),
    }
    assert_eq!(
        client.breaker().state(),
        BreakerState::Open,
        "{:?}",
        client.breaker().stats()
    );
    tokio::time::sleep(ms(300)).await;
}

/// The only probe slot goes to a request the server holds; its caller gives up. The next
/// request must be admitted (as the next probe), succeed, and close the circuit; the probe's
/// cancellation counts as no failure anywhere.
pub async fn a_cancelled_probe_frees_the_slot(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let client = builder(&[addr], h2)
        .breaker(tripping())
        .max_retries(0)
        .build()
        .unwrap();
    open_then_wait(&client).await;
    let mut seen = Vec::new();
    let trips = client.breaker().stats().trips;
    let probe = tokio::spawn(client.get("/hold"));
    assert!(
        expect(&mut rx, &mut seen, BOUND, |e| *e
            == Ev::Head("GET /hold".into()))
        .await,
        "the probe reached the server: {seen:?} breaker {:?}",
        client.breaker().stats()
    );
    probe.abort();
    let _ = probe.await;
    settle(&client).await;
    // The next request is the next probe.
    let r = timeout(BOUND, client.get("/ok")).await.expect("answered");
    let r = r.unwrap_or_else(|e| {
        panic!(
            "the request after a cancelled probe was refused: {e:?}; breaker {:?}",
            client.breaker().stats()
        )
    });
    assert_eq!(r.status(), 200);
    let _ = r.into_body().collect().await;
    let b = client.breaker().stats();
    assert_eq!(
        b.trips, trips,
        "the cancelled probe re-opened the circuit: {b:?}"
    );
    assert_ne!(b.state, BreakerState::Open, "{b:?}");
    assert_books(&client);
    let s = client.stats();
    assert_eq!(
        (s.requests, s.successes, s.failures, s.cancelled),
        (3, 1, 1, 1),
        "{s:?}"
    );
    let e = &client.endpoints()[0];
    assert_eq!(e.cancelled, 1, "{e:?}");
}

#[tokio::test]
async fn probe_cancel_h1() {
    a_cancelled_probe_frees_the_slot(false).await
}

#[tokio::test]
async fn probe_cancel_h2() {
    a_cancelled_probe_frees_the_slot(true).await
}

/// A probe whose response body the caller drops midway: the head (200) already told the
/// breaker; the body drop must not wedge it: the next requests pass.
pub async fn a_probe_body_dropped_midway(h2: bool) {
    let (addr, _rx) = server(h2).await;
    let client = builder(&[addr], h2)
        .breaker(tripping())
        .max_retries(0)
        .build()
        .unwrap();
    open_then_wait(&client).await;
    let res = timeout(BOUND, client.get("/drip"))
        .await
        .expect("answered")
        .expect("admitted probe");
    let mut body = res.into_body();
    let _ = timeout(BOUND, body.frame()).await.expect("first chunk");
    drop(body);
    settle(&client).await;
    for i in 0..3 {
        let r = timeout(BOUND, client.get("/ok")).await.expect("answered");
        let r = r.unwrap_or_else(|e| {
            panic!(
                "request {i} after the probe refused: {e:?}; {:?}",
                client.breaker().stats()
            )
        });
        let _ = r.into_body().collect().await;
    }
    assert_books(&client);
    assert_eq!(failures(&client), 1);
}

#[tokio::test]
async fn probe_body_drop_h1() {
    a_probe_body_dropped_midway(false).await
}

#[tokio::test]
async fn probe_body_drop_h2() {
    a_probe_body_dropped_midway(true).await
}

/// Slow calls: a caller who gives up after `slow_call_duration` did not make the call slow.
/// A breaker opening on 100% slow calls over 3 must stay closed after 5 cancellations held
/// past the slow threshold.
pub async fn cancelled_calls_are_not_slow_calls(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let mut c = BreakerConfig::default();
    c.minimum_calls = 3;
    c.slow_call_duration = Some(ms(30));
    c.slow_call_rate_threshold = 0.5;
    c.failure_rate_threshold = 0.5;
    let client = builder(&[addr], h2)
        .breaker(c)
        .max_retries(0)
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let task = tokio::spawn(client.get("/hold"));
        assert!(
            expect(&mut rx, &mut seen, BOUND, |e| *e
                == Ev::Head("GET /hold".into()))
            .await
        );
        tokio::time::sleep(ms(60)).await;
        task.abort();
        let _ = task.await;
    }
    settle(&client).await;
    let b = client.breaker().stats();
    assert_eq!(b.state, BreakerState::Closed, "{b:?}");
    assert_eq!((b.calls, b.failures, b.slow_calls), (0, 0, 0), "{b:?}");
    assert_books(&client);
}

#[tokio::test]
async fn slow_cancel_h1() {
    cancelled_calls_are_not_slow_calls(false).await
}

#[tokio::test]
async fn slow_cancel_h2() {
    cancelled_calls_are_not_slow_calls(true).await
}

/// A probe cancelled while the retry layer (below the breaker) is in its backoff after the
/// probe's first attempt failed: the slot must come back for the next request.
pub async fn a_probe_cancelled_during_backoff(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let client = builder(&[addr], h2)
        .breaker(tripping())
        .max_retries(2)
        .backoff(meshless::backoff::Backoff::decorrelated_jitter(ms(400), ms(400)).unwrap())
        .build()
        .unwrap();
    // Open it: a 503 (retried after 400 ms backoff: wait for the whole request).
    let _ = timeout(Duration::from_secs(5), client.get("/fail"))
        .await
        .expect("ended");
    assert_eq!(
        client.breaker().state(),
        BreakerState::Open,
        "{:?}",
        client.breaker().stats()
    );
    tokio::time::sleep(ms(300)).await;
    let mut seen = Vec::new();
    drain(&mut rx, &mut seen, ms(10)).await;
    seen.clear();
    let probe = tokio::spawn(client.get("/fail"));
    assert!(
        expect(&mut rx, &mut seen, BOUND, |e| *e
            == Ev::Head("GET /fail".into()))
        .await
    );
    tokio::time::sleep(ms(50)).await; // in the backoff now
    probe.abort();
    let _ = probe.await;
    settle(&client).await;
    let r = timeout(BOUND, client.get("/ok")).await.expect("answered");
    let r = r.unwrap_or_else(|e| {
        panic!(
            "refused after a cancelled probe: {e:?}; {:?}",
            client.breaker().stats()
        )
    });
    assert_eq!(r.status(), 200);
    let _ = r.into_body().collect().await;
    settle(&client).await;
    assert_books(&client);
}

#[tokio::test]
async fn probe_backoff_cancel_h1() {
    a_probe_cancelled_during_backoff(false).await
}

#[tokio::test]
async fn probe_backoff_cancel_h2() {
    a_probe_cancelled_during_backoff(true).await
}
