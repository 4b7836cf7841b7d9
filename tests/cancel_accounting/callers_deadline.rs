//! A deadline that is the caller's own (`RequestDeadline` shorter than the client's, or an
//! inbound header) passing: the breaker counts it as a cancellation ("the caller ran out of
//! patience, which says nothing certain about the upstream"). The balancer must agree: no
//! endpoint failure, no ejection of healthy endpoints.

use crate::support::*;
use meshless::deadline::RequestDeadline;

/// A server that reads heads and never answers.
pub(crate) async fn silent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

pub async fn callers_short_deadlines_charge_no_endpoint(h2: bool) {
    // HTTP/2 needs a real h2 server; the hyper one holds `/hold` forever.
    let addrs = if h2 {
        let mut v = Vec::new();
        for _ in 0..3 {
            let (a, rx) = h2_server().await;
            std::mem::forget(rx);
            v.push(a);
        }
        v
    } else {
        vec![silent().await, silent().await, silent().await]
    };
    let client = builder(&addrs, h2)
        .deadline(Duration::from_secs(10))
        .max_retries(0)
        .build()
        .unwrap();
    for i in 0..15 {
        let mut req = Request::get("/hold")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        req.extensions_mut().insert(RequestDeadline::after(ms(30)));
        let r = timeout(BOUND, client.request(req))
            .await
            .expect("ended by the caller's deadline");
        let e = r.expect_err("never answered");
        assert_eq!(e.kind(), Kind::DeadlineExceeded, "request {i}: {e:?}");
    }
    settle(&client).await;
    assert_books(&client);
    let b = client.breaker().stats();
    assert_eq!(
        b.failures, 0,
        "the breaker: the caller's deadline is no failure: {b:?}"
    );
    let eps = client.endpoints();
    assert_eq!(
        (failures(&client), ejections(&client)),
        (0, 0),
        "the balancer charged the caller's own deadline to healthy endpoints: {eps:#?}"
    );
}

#[tokio::test]
async fn callers_deadline_h1() {
    callers_short_deadlines_charge_no_endpoint(false).await
}

#[tokio::test]
async fn callers_deadline_h2() {
    callers_short_deadlines_charge_no_endpoint(true).await
}

/// The same, the caller's deadline passing while the body streams (`/drip`: a chunk, then
/// silence): the endpoint answered; the caller's patience ran out.
pub async fn callers_deadline_mid_body_charges_no_endpoint(h2: bool) {
    let (addr, _rx) = if h2 {
        h2_server().await
    } else {
        h1_server().await
    };
    let client = builder(&[addr], h2)
        .deadline(Duration::from_secs(10))
        .max_retries(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        let mut req = Request::get("/drip")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        req.extensions_mut().insert(RequestDeadline::after(ms(200)));
        let res = timeout(BOUND, client.request(req))
            .await
            .expect("head")
            .expect("head in time");
        let body = res.into_body();
        let r = timeout(BOUND, body.collect())
            .await
            .expect("ended by the caller's deadline");
        assert!(r.is_err());
    }
    settle(&client).await;
    assert_books(&client);
    let eps = client.endpoints();
    assert_eq!(
        failures(&client),
        0,
        "the caller's own deadline mid-body charged the endpoint: {eps:#?}"
    );
}

#[tokio::test]
async fn callers_deadline_body_h1() {
    callers_deadline_mid_body_charges_no_endpoint(false).await
}

#[tokio::test]
async fn callers_deadline_body_h2() {
    callers_deadline_mid_body_charges_no_endpoint(true).await
}

/// The breaker's documented contract ("a caller's deadline shorter than the client's own
/// counts as a cancellation when it passes: one impatient caller does not open the circuit for
/// all") with an attempt timeout configured: the attempt layer's timer, set to the caller's
/// deadline, is the one that fires.
pub async fn callers_deadline_with_attempt_timeout_does_not_open_the_breaker(h2: bool) {
    let (addr, _rx) = if h2 {
        h2_server().await
    } else {
        h1_server().await
    };
    let mut b = meshless::breaker::BreakerConfig::default();
    b.consecutive_failures = 3;
    let client = builder(&[addr], h2)
        .deadline(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(5))
        .breaker(b)
        .build()
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let mut req = Request::get("/hold")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        req.extensions_mut().insert(RequestDeadline::after(ms(30)));
        let r = timeout(BOUND, client.request(req))
            .await
            .expect("ended by the caller's deadline");
        kinds.push(r.expect_err("never answered").kind());
    }
    settle(&client).await;
    assert_books(&client);
    let st = client.breaker().stats();
    assert_eq!(
        (st.state, st.failures, st.trips),
        (meshless::breaker::BreakerState::Closed, 0, 0),
        "the caller's own deadline counted by the breaker (errors {kinds:?}): {st:?}"
    );
}

#[tokio::test]
async fn callers_deadline_attempt_h1() {
    callers_deadline_with_attempt_timeout_does_not_open_the_breaker(false).await
}

#[tokio::test]
async fn callers_deadline_attempt_h2() {
    callers_deadline_with_attempt_timeout_does_not_open_the_breaker(true).await
}

/// Throttling (`k` = 2, the default): the same impatience, said two ways. A caller that
/// gives up by dropping its future (`tokio::time::timeout`) is taken back out of the counts;
/// one that gives up by a `RequestDeadline` shorter than the client's must be too (the breaker
/// already treats it as a cancellation). Ten answered requests, then thirty that the caller
/// abandons after 20 ms, then twenty ordinary requests: the counts must hold only the ten
/// answered, the probability stay 0, and none of the twenty be refused.
pub async fn callers_impatience_does_not_throttle_everyone(h2: bool, by_deadline: bool) {
    let (addr, _rx) = if h2 {
        h2_server().await
    } else {
        h1_server().await
    };
    let mut t = meshless::throttle::ThrottleConfig::default();
    t.enabled = true;
    let client = builder(&[addr], h2)
        .deadline(Duration::from_secs(10))
        .throttle(t)
        .max_retries(0)
        .build()
        .unwrap();
    for _ in 0..10 {
        let r = client.get("/ok").await.expect("answered");
        let _ = r.into_body().collect().await;
    }
    for _ in 0..30 {
        let mut req = Request::get("/hold")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        if by_deadline {
            req.extensions_mut().insert(RequestDeadline::after(ms(20)));
            let r = timeout(BOUND, client.request(req))
                .await
                .expect("ended by the caller's deadline");
            assert!(r.is_err());
        } else {
            assert!(timeout(ms(20), client.request(req)).await.is_err());
        }
    }
    settle(&client).await;
    let counts = client.throttle().counts();
    let p = client.throttle().probability();
    let mut refused = 0;
    for _ in 0..20 {
        match client.get("/ok").await {
            Ok(r) => {
                let _ = r.into_body().collect().await;
            }
            Err(e) if e.kind() == Kind::Throttled => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(
        (counts.requests, counts.accepts, p, refused),
        (10, 10, 0.0, 0),
        "by_deadline={by_deadline}: the abandoned requests stayed in the throttle's counts \
         (requests, accepts, probability, ordinary requests then refused of 20)"
    );
}

mod callers_deadline_throttle {
    #[tokio::test]
    async fn h1_control_by_dropping() {
        super::callers_impatience_does_not_throttle_everyone(false, false).await
    }
    #[tokio::test]
    async fn h1_by_request_deadline() {
        super::callers_impatience_does_not_throttle_everyone(false, true).await
    }
    #[tokio::test]
    async fn h2_control_by_dropping() {
        super::callers_impatience_does_not_throttle_everyone(true, false).await
    }
    #[tokio::test]
    async fn h2_by_request_deadline() {
        super::callers_impatience_does_not_throttle_everyone(true, true).await
    }
}

/// The adaptive limit (AIMD): a request abandoned by dropping it leaves the limit where it
/// was; one abandoned by its caller's `RequestDeadline` must too, else one impatient caller
/// shrinks the concurrency every caller gets.
pub async fn callers_impatience_does_not_shrink_the_limit(h2: bool, by_deadline: bool) {
    let (addr, _rx) = if h2 {
        h2_server().await
    } else {
        h1_server().await
    };
    let mut l = meshless::limit::LimitConfig::default();
    let mut a = meshless::limit::AimdConfig::default();
    a.initial = 40;
    a.min = 1;
    a.max = 100;
    a.backoff = 0.5;
    l.algorithm = meshless::limit::Algorithm::Aimd(a);
    let client = builder(&[addr], h2)
        .deadline(Duration::from_secs(10))
        .limit(l)
        .max_retries(0)
        .build()
        .unwrap();
    let before = client.limit().limit();
    for _ in 0..6 {
        let mut req = Request::get("/hold")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        if by_deadline {
            req.extensions_mut().insert(RequestDeadline::after(ms(20)));
            let r = timeout(BOUND, client.request(req))
                .await
                .expect("ended by the caller's deadline");
            assert!(r.is_err());
        } else {
            assert!(timeout(ms(20), client.request(req)).await.is_err());
        }
    }
    settle(&client).await;
    assert_books(&client);
    assert_eq!(
        client.limit().limit(),
        before,
        "by_deadline={by_deadline}: the caller's impatience moved the adaptive limit"
    );
}

mod callers_deadline_limit {
    #[tokio::test]
    async fn h1_control_by_dropping() {
        super::callers_impatience_does_not_shrink_the_limit(false, false).await
    }
    #[tokio::test]
    async fn h1_by_request_deadline() {
        super::callers_impatience_does_not_shrink_the_limit(false, true).await
    }
    #[tokio::test]
    async fn h2_by_request_deadline() {
        super::callers_impatience_does_not_shrink_the_limit(true, true).await
    }
}
