//! Concurrency permits after cancellations at each stage.

use crate::support::*;

async fn server(h2: bool) -> (SocketAddr, Events) {
    if h2 {
        h2_server().await
    } else {
        h1_server().await
    }
}

/// `limit(2)` with no waiting: two requests held by the server, cancelled by `timeout` once
/// the server has them; the server sees them abandoned; then two new requests both get
/// through the limit (the permits came back), and nothing was charged to the endpoint.
pub async fn held_requests_cancelled_give_back_every_permit(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let client = builder(&[addr], h2)
        .limit(fixed_limit(2, Duration::ZERO))
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for round in 0..2 {
        let a = tokio::spawn(client.get("/hold-a"));
        let b = tokio::spawn(client.get("/hold-b"));
        assert!(
            expect(&mut rx, &mut seen, BOUND, |e| *e
                == Ev::Head("GET /hold-a".into()))
            .await,
            "round {round}: a reached the server"
        );
        assert!(
            expect(&mut rx, &mut seen, BOUND, |e| *e
                == Ev::Head("GET /hold-b".into()))
            .await,
            "round {round}: b reached the server (the limit let it through): {seen:?}"
        );
        assert_eq!(client.limit().in_flight(), 2);
        a.abort();
        b.abort();
        let _ = a.await;
        let _ = b.await;
        // The server sees both abandoned: streams reset (h2) or connections closed (h1).
        for p in ["/hold-a", "/hold-b"] {
            let gone = expect(
                &mut rx,
                &mut seen,
                BOUND,
                |e| matches!(e, Ev::HandlerGone(x) | Ev::Closed(x) if x == p),
            )
            .await;
            assert!(
                gone,
                "round {round}: the server never saw {p} abandoned: {seen:?}"
            );
        }
        settle(&client).await;
        assert_books(&client);
    }
    assert_eq!(failures(&client), 0, "{:?}", client.endpoints());
    assert_eq!(cancelled(&client), 4, "{:?}", client.endpoints());
    assert_eq!(client.stats().cancelled, 4);
    assert_eq!(client.limit().rejected(), 0);
}

#[tokio::test]
async fn held_cancelled_permits_h1() {
    held_requests_cancelled_give_back_every_permit(false).await
}

#[tokio::test]
async fn held_cancelled_permits_h2() {
    held_requests_cancelled_give_back_every_permit(true).await
}

/// A body dropped after its first chunk: the server's stream is abandoned, the permit
/// returns, the request is one success (its head's class), the endpoint charged nothing.
pub async fn body_dropped_midway(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let client = builder(&[addr], h2)
        .limit(fixed_limit(1, Duration::ZERO))
        .build()
        .unwrap();
    let mut seen = Vec::new();
    for i in 0..3 {
        let res = timeout(BOUND, client.get("/drip"))
            .await
            .expect("head")
            .unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        let mut body = res.into_body();
        let f = timeout(BOUND, body.frame())
            .await
            .expect("first chunk")
            .unwrap()
            .unwrap();
        assert_eq!(f.into_data().unwrap(), "abc");
        assert_eq!(client.limit().in_flight(), 1);
        drop(body);
        assert!(
            expect(&mut rx, &mut seen, BOUND, |e| matches!(e, Ev::BodyGone(_))).await,
            "the server never saw the body abandoned: {seen:?}"
        );
        settle(&client).await;
        assert_books(&client);
    }
    let s = client.stats();
    assert_eq!(
        (s.requests, s.successes, s.failures, s.cancelled),
        (3, 3, 0, 0),
        "{s:?}"
    );
    assert_eq!(failures(&client), 0);
    // The permit is free: one more request passes a limit of one.
    let r = timeout(BOUND, client.get("/ok"))
        .await
        .expect("answered")
        .expect("not limited");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn body_drop_permits_h1() {
    body_dropped_midway(false).await
}

#[tokio::test]
async fn body_drop_permits_h2() {
    body_dropped_midway(true).await
}

/// A request waiting for a permit (`max_wait`) is cancelled; then the permit holder is too;
/// the full limit (2) is available again at once: two new requests both reach the server.
pub async fn waiter_cancelled_then_holder_cancelled(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let client = builder(&[addr], h2)
        .limit(fixed_limit(1, Duration::from_secs(10)))
        .build()
        .unwrap();
    let mut seen = Vec::new();
    let holder = tokio::spawn(client.get("/hold-1"));
    assert!(
        expect(&mut rx, &mut seen, BOUND, |e| *e
            == Ev::Head("GET /hold-1".into()))
        .await
    );
    let waiter = tokio::spawn(client.get("/hold-2"));
    let c = client.clone();
    let until = tokio::time::Instant::now() + BOUND;
    while c.limit().waiting() != 1 {
        assert!(tokio::time::Instant::now() < until, "never waited");
        tokio::time::sleep(ms(2)).await;
    }
    waiter.abort();
    let _ = waiter.await;
    holder.abort();
    let _ = holder.await;
    settle(&client).await;
    assert_books(&client);
    // The waiter's request never reached the server.
    drain(&mut rx, &mut seen, ms(200)).await;
    assert!(
        !seen.contains(&Ev::Head("GET /hold-2".into())),
        "a cancelled waiter was sent: {seen:?}"
    );
    // One permit, free at once.
    let t = std::time::Instant::now();
    let r = timeout(BOUND, client.get("/ok"))
        .await
        .expect("answered within bound")
        .expect("admitted");
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() < ms(1000),
        "waited {:?} for a free permit",
        t.elapsed()
    );
    let s = client.stats();
    assert_eq!(s.failures, 0, "{s:?}");
    assert_eq!(failures(&client), 0);
    assert_eq!(
        client.limit().rejected(),
        0,
        "a cancelled waiter is no refusal"
    );
}

#[tokio::test]
async fn waiter_cancelled_h1() {
    waiter_cancelled_then_holder_cancelled(false).await
}

#[tokio::test]
async fn waiter_cancelled_h2() {
    waiter_cancelled_then_holder_cancelled(true).await
}

/// AIMD: cancellations are no drops. Twenty requests cancelled while the server holds them
/// must leave the adaptive limit where it was.
pub async fn aimd_limit_unmoved_by_cancellations(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let mut l = meshless::limit::LimitConfig::default();
    let mut a = meshless::limit::AimdConfig::default();
    a.initial = 40;
    a.min = 1;
    a.max = 100;
    a.backoff = 0.5;
    a.timeout = ms(50);
    l.algorithm = meshless::limit::Algorithm::Aimd(a);
    let client = builder(&[addr], h2)
        .limit(l)
        .max_retries(0)
        .build()
        .unwrap();
    let before = client.limit().limit();
    let mut seen = Vec::new();
    for _ in 0..20 {
        let call = client.get("/hold");
        let task = tokio::spawn(call);
        assert!(
            expect(&mut rx, &mut seen, BOUND, |e| *e
                == Ev::Head("GET /hold".into()))
            .await
        );
        // Held past the AIMD timeout (50 ms) before the caller gives up.
        tokio::time::sleep(ms(80)).await;
        task.abort();
        let _ = task.await;
    }
    settle(&client).await;
    assert_books(&client);
    assert_eq!(
        client.limit().limit(),
        before,
        "cancellations moved the adaptive limit"
    );
    assert_eq!(failures(&client), 0);
}

#[tokio::test]
async fn aimd_cancel_h1() {
    aimd_limit_unmoved_by_cancellations(false).await
}

#[tokio::test]
async fn aimd_cancel_h2() {
    aimd_limit_unmoved_by_cancellations(true).await
}
