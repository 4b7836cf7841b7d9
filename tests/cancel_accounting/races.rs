//! Hedges, retries and uploads cancelled by the caller.

use crate::support::*;

async fn server(h2: bool) -> (SocketAddr, Events) {
    if h2 {
        h2_server().await
    } else {
        h1_server().await
    }
}

fn heads(seen: &[Ev], line: &str) -> usize {
    seen.iter()
        .filter(|e| **e == Ev::Head(line.to_string()))
        .count()
}

/// Both attempts of a hedge race held; the caller gives up; both servers see their request
/// abandoned, each endpoint counts one cancellation and no failure, the request counts once.
pub async fn hedge_race_cancelled(h2: bool) {
    let (a, mut ra) = server(h2).await;
    let (b, mut rb) = server(h2).await;
    let client = builder(&[a, b], h2)
        .hedge(hedge_fixed(ms(30)))
        .build()
        .unwrap();
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    let task = tokio::spawn(client.get("/hold"));
    let head = |e: &Ev| *e == Ev::Head("GET /hold".into());
    assert!(
        expect(&mut ra, &mut sa, BOUND, head).await,
        "a never got it: {sa:?}"
    );
    assert!(
        expect(&mut rb, &mut sb, BOUND, head).await,
        "b never got it (the hedge): {sb:?}"
    );
    task.abort();
    let _ = task.await;
    let gone = |e: &Ev| matches!(e, Ev::HandlerGone(_) | Ev::Closed(_));
    assert!(
        expect(&mut ra, &mut sa, BOUND, gone).await,
        "endpoint a never saw its attempt abandoned: {sa:?}"
    );
    assert!(
        expect(&mut rb, &mut sb, BOUND, gone).await,
        "endpoint b never saw its attempt abandoned: {sb:?}"
    );
    settle(&client).await;
    assert_books(&client);
    assert_eq!(failures(&client), 0, "{:?}", client.endpoints());
    assert_eq!(cancelled(&client), 2, "{:?}", client.endpoints());
    let s = client.stats();
    assert_eq!((s.requests, s.cancelled, s.failures), (1, 1, 0), "{s:?}");
    assert_eq!(client.hedge_stats().hedges(), 1);
    assert_eq!(client.hedge_stats().requests(), 1, "hedge layer requests");
    assert_eq!(
        client.hedge_stats().won(),
        0,
        "no winner in a cancelled race"
    );
}

#[tokio::test]
async fn hedge_cancel_h1() {
    hedge_race_cancelled(false).await
}

#[tokio::test]
async fn hedge_cancel_h2() {
    hedge_race_cancelled(true).await
}

/// The caller gives up during the hedge delay: the hedge is never sent, not later either.
pub async fn cancelled_during_hedge_delay(h2: bool) {
    let (a, mut ra) = server(h2).await;
    let (b, mut rb) = server(h2).await;
    let client = builder(&[a, b], h2)
        .hedge(hedge_fixed(ms(200)))
        .build()
        .unwrap();
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    let task = tokio::spawn(client.get("/hold"));
    let head = |e: &Ev| *e == Ev::Head("GET /hold".into());
    tokio::select! {
        _ = expect(&mut ra, &mut sa, BOUND, head) => {},
        _ = expect(&mut rb, &mut sb, BOUND, head) => {},
    }
    task.abort();
    let _ = task.await;
    drain(&mut ra, &mut sa, ms(500)).await;
    drain(&mut rb, &mut sb, ms(50)).await;
    let total = heads(&sa, "GET /hold") + heads(&sb, "GET /hold");
    // One head was consumed by the select.
    assert_eq!(
        total, 0,
        "a hedge went out after its request was cancelled: a {sa:?} b {sb:?}"
    );
    settle(&client).await;
    assert_books(&client);
    assert_eq!(client.hedge_stats().hedges(), 0);
    assert_eq!(client.hedge_stats().requests(), 1, "hedge layer requests");
    assert_eq!(failures(&client), 0);
    assert_eq!(cancelled(&client), 1, "{:?}", client.endpoints());
}

#[tokio::test]
async fn hedge_delay_cancel_h1() {
    cancelled_during_hedge_delay(false).await
}

#[tokio::test]
async fn hedge_delay_cancel_h2() {
    cancelled_during_hedge_delay(true).await
}

/// The winner answers; the losing hedge's stream (h2) or connection (h1) is abandoned, and
/// the loser is charged nothing.
pub async fn hedge_loser_is_abandoned(h2: bool) {
    let (slow, mut rs) = server(h2).await;
    let fast = if h2 { ok_h2().await } else { ok_h1().await };
    let client = builder(&[slow, fast], h2)
        .hedge(hedge_fixed(ms(30)))
        .build()
        .unwrap();
    let mut ss = Vec::new();
    let mut hedged = 0;
    for _ in 0..20 {
        let res = timeout(BOUND, client.get("/hold"))
            .await
            .expect("answered")
            .expect("ok");
        assert_eq!(res.status(), 200);
        let _ = res.into_body().collect().await;
        if client.hedge_stats().hedges() > hedged {
            hedged = client.hedge_stats().hedges();
            let gone = expect(&mut rs, &mut ss, BOUND, |e| {
                matches!(e, Ev::HandlerGone(_) | Ev::Closed(_))
            })
            .await;
            assert!(gone, "the losing attempt was never abandoned: {ss:?}");
        }
    }
    assert!(hedged > 0, "never hedged");
    settle(&client).await;
    assert_books(&client);
    let e = client
        .endpoints()
        .into_iter()
        .find(|e| e.key == slow)
        .unwrap();
    assert_eq!(e.failures, 0, "{e:?}");
    assert_eq!(e.ejections, 0, "{e:?}");
    let s = client.stats();
    assert_eq!((s.successes, s.failures, s.cancelled), (20, 0, 0), "{s:?}");
}

#[tokio::test]
async fn hedge_loser_h1() {
    hedge_loser_is_abandoned(false).await
}

#[tokio::test]
async fn hedge_loser_h2() {
    hedge_loser_is_abandoned(true).await
}

async fn ok_h1() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut p = Vec::new();
                while read_head(&mut s, &mut p).await.is_some() {
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn ok_h2() -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    addr
}

/// A POST whose body is still streaming when the caller gives up: the server sees the
/// upload abandoned, the POST is sent once and never again (retries and hedging on), the
/// endpoint charged nothing.
pub async fn post_upload_cancelled_is_never_resent(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let (addr2, mut rx2) = server(h2).await;
    let client = builder(&[addr, addr2], h2)
        .hedge(hedge_fixed(ms(20)))
        .max_retries(3)
        .build()
        .unwrap();
    let (tx, body_rx) = mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"first-part")).unwrap();
    let req = Request::post("/read").body(ChanBody(body_rx)).unwrap();
    let task = tokio::spawn(client.request(req));
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    let head = |e: &Ev| *e == Ev::Head("POST /read".into());
    tokio::select! {
        _ = expect(&mut rx, &mut s1, BOUND, head) => {},
        _ = expect(&mut rx2, &mut s2, BOUND, head) => {},
    }
    tokio::time::sleep(ms(100)).await;
    task.abort();
    let _ = task.await;
    drop(tx);
    drain(&mut rx, &mut s1, ms(700)).await;
    drain(&mut rx2, &mut s2, ms(50)).await;
    let more = heads(&s1, "POST /read") + heads(&s2, "POST /read");
    assert_eq!(more, 0, "the cancelled POST was sent again: {s1:?} {s2:?}");
    let complete = s1
        .iter()
        .chain(&s2)
        .any(|e| matches!(e, Ev::BodyComplete(..)));
    assert!(
        !complete,
        "the server saw the half-sent body as complete: {s1:?} {s2:?}"
    );
    settle(&client).await;
    assert_books(&client);
    assert_eq!(failures(&client), 0, "{:?}", client.endpoints());
    assert_eq!(cancelled(&client), 1, "{:?}", client.endpoints());
    let s = client.stats();
    assert_eq!(
        (s.requests, s.cancelled, s.failures, s.retries),
        (1, 1, 0, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn post_upload_cancel_h1() {
    post_upload_cancelled_is_never_resent(false).await
}

#[tokio::test]
async fn post_upload_cancel_h2() {
    post_upload_cancelled_is_never_resent(true).await
}

/// Cancelled during a retry's backoff after a 503: the retry is never sent, not later either,
/// and the budget refund leaves retries possible for the next request.
pub async fn cancelled_during_backoff_sends_nothing_later(h2: bool) {
    let (addr, mut rx) = server(h2).await;
    let client = builder(&[addr], h2)
        .max_retries(2)
        .backoff(meshless::backoff::Backoff::decorrelated_jitter(ms(300), ms(300)).unwrap())
        .build()
        .unwrap();
    let mut seen = Vec::new();
    let task = tokio::spawn(client.get("/fail"));
    assert!(
        expect(&mut rx, &mut seen, BOUND, |e| *e
            == Ev::Head("GET /fail".into()))
        .await
    );
    tokio::time::sleep(ms(50)).await;
    task.abort();
    let _ = task.await;
    drain(&mut rx, &mut seen, ms(800)).await;
    assert_eq!(
        heads(&seen, "GET /fail"),
        0,
        "a retry went out after the cancel: {seen:?}"
    );
    settle(&client).await;
    assert_books(&client);
    let s = client.stats();
    assert_eq!(
        (s.requests, s.cancelled, s.failures, s.retries),
        (1, 1, 0, 0),
        "{s:?}"
    );
    let e = &client.endpoints()[0];
    assert_eq!((e.requests, e.failures, e.cancelled), (1, 1, 0), "{e:?}");
}

#[tokio::test]
async fn backoff_cancel_h1() {
    cancelled_during_backoff_sends_nothing_later(false).await
}

#[tokio::test]
async fn backoff_cancel_h2() {
    cancelled_during_backoff_sends_nothing_later(true).await
}
