//! The client as a `tower::Service`: `call` runs the layers' admission at once (the limit's
//! permit, the breaker's probe slot, the throttle's count, the retry layer's deposit); a
//! future dropped unpolled must give everything back.

use crate::breaker::tripping;
use crate::support::*;
use meshless::breaker::BreakerState;
use tower::{Service, ServiceExt};

async fn server(h2: bool) -> (SocketAddr, Events) {
    if h2 {
        h2_server().await
    } else {
        h1_server().await
    }
}

fn get(path: &str) -> Request<http_body_util::Empty<Bytes>> {
    Request::get(path)
        .body(http_body_util::Empty::new())
        .unwrap()
}

pub async fn called_then_dropped_unpolled(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let mut client = builder(&[addr], h2)
        .limit(fixed_limit(2, Duration::ZERO))
        .build()
        .unwrap();
    for _ in 0..5 {
        let svc = ServiceExt::<Request<http_body_util::Empty<Bytes>>>::ready(&mut client)
            .await
            .unwrap();
        let fut = svc.call(get("/hold"));
        drop(fut);
    }
    settle(&client).await;
    assert_books(&client);
    assert_eq!(client.limit().in_flight(), 0);
    let mut seen = Vec::new();
    drain(&mut rx, &mut seen, ms(300)).await;
    assert!(
        seen.is_empty(),
        "a dropped, never-polled call was sent: {seen:?}"
    );
    // Two at once still pass a limit of 2.
    let a = tokio::spawn(client.get("/hold"));
    let b = tokio::spawn(client.get("/hold"));
    assert!(
        expect(&mut rx, &mut seen, BOUND, |e| *e
            == Ev::Head("GET /hold".into()))
        .await
    );
    assert!(
        expect(&mut rx, &mut seen, BOUND, |e| *e
            == Ev::Head("GET /hold".into()))
        .await,
        "the limit kept a permit: {seen:?}"
    );
    a.abort();
    b.abort();
    let _ = (a.await, b.await);
    settle(&client).await;
    assert_books(&client);
    assert_eq!(failures(&client), 0);
}

#[tokio::test]
async fn svc_unpolled_h1() {
    called_then_dropped_unpolled(false).await
}

#[tokio::test]
async fn svc_unpolled_h2() {
    called_then_dropped_unpolled(true).await
}

/// The probe slot taken by `call` is freed when that future is dropped unpolled.
pub async fn probe_called_then_dropped_unpolled(h2: bool) {
    let (addr, _rx) = server(h2).await;
    let mut client = builder(&[addr], h2)
        .breaker(tripping())
        .max_retries(0)
        .build()
        .unwrap();
    let r = client.get("/fail").await;
    drop(r);
    assert_eq!(client.breaker().state(), BreakerState::Open);
    tokio::time::sleep(ms(300)).await;
    {
        let svc = ServiceExt::<Request<http_body_util::Empty<Bytes>>>::ready(&mut client)
            .await
            .unwrap();
        let fut = svc.call(get("/ok"));
        drop(fut);
    }
    let r = timeout(BOUND, client.get("/ok")).await.expect("answered");
    let r = r.unwrap_or_else(|e| {
        panic!(
            "refused after an unpolled probe was dropped: {e:?}; {:?}",
            client.breaker().stats()
        )
    });
    let _ = r.into_body().collect().await;
    settle(&client).await;
    assert_books(&client);
}

#[tokio::test]
async fn svc_probe_unpolled_h1() {
    probe_called_then_dropped_unpolled(false).await
}

#[tokio::test]
async fn svc_probe_unpolled_h2() {
    probe_called_then_dropped_unpolled(true).await
}
