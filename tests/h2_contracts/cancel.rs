//! A caller's cancellation over HTTP/2: RST_STREAM(CANCEL) on the wire, nothing charged to the
//! endpoint, the connection kept for the next requests.

use super::*;
use http::Response;
use http_body_util::BodyExt;

/// /stream: head, one DATA chunk, then wait for the client's reset (recorded). /hold: no
/// answer, wait for the client's reset (recorded). Anything else: 200 "ok".
fn streaming_script() -> Script {
    script(|mut c: Call| async move {
        let path = c.request.uri().path().to_owned();
        match path.as_str() {
            "/stream" => {
                let res = Response::builder().status(200).body(()).unwrap();
                let mut send = c.respond.send_response(res, false).unwrap();
                let _ = send.send_data(Bytes::from(vec![b'x'; 1024]), false);
                if let Some(r) = wait_reset_stream(&mut send).await {
                    c.log.resets.lock().unwrap().push((c.index, r));
                }
            }
            "/hold" => {
                if let Some(r) = wait_reset_response(&mut c.respond).await {
                    c.log.resets.lock().unwrap().push((c.index, r));
                }
            }
            _ => {
                let res = Response::builder().status(200).body(()).unwrap();
                let mut send = c.respond.send_response(res, false).unwrap();
                let _ = send.send_data(Bytes::from_static(b"ok"), true);
            }
        }
    })
}

async fn hundred_more(client: &Client) {
    for i in 0..100 {
        let res = tokio::time::timeout(Duration::from_secs(3), client.get("http://svc/ok"))
            .await
            .unwrap_or_else(|_| panic!("request {i} hung"))
            .unwrap_or_else(|e| panic!("request {i}: {}", err(&e)));
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"ok");
    }
}

/// The caller reads one frame of a streaming body and drops it: the server sees
/// RST_STREAM(CANCEL), the endpoint is charged no failure, and 100 more requests go over the
/// same connection.
#[tokio::test]
async fn dropping_a_streaming_body_resets_the_stream_and_keeps_the_connection() {
    let (addr, log) = serve_h2(None, streaming_script()).await;
    let client = client(addr, Duration::from_secs(5));
    let res = client.get("http://svc/stream").await.expect("head");
    let mut body = res.into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    assert!(first.is_data());
    drop(body);
    assert!(
        eventually(|| !log.resets().is_empty()).await,
        "the server saw no RST_STREAM after the body was dropped"
    );
    assert_eq!(log.resets()[0].1, h2::Reason::CANCEL, "{:?}", log.resets());
    hundred_more(&client).await;
    let stats = client.stats();
    eprintln!("stats {stats:?}");
    assert_eq!(
        log.connections(),
        1,
        "one connection for all: {:?}",
        log.paths()
    );
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.endpoints[0].failures, 0, "{:?}", stats.endpoints[0]);
    assert_eq!(stats.endpoints[0].ejections, 0);
    books(&client);
}

/// The caller drops the response future before the head: RST_STREAM(CANCEL), a cancellation
/// in the books (never a failure), and the connection serves the next 100 requests.
#[tokio::test]
async fn dropping_the_future_before_the_head_resets_and_is_not_charged() {
    let (addr, log) = serve_h2(None, streaming_script()).await;
    let client = client(addr, Duration::from_secs(5));
    // Warm the connection first, so the hold goes on an established one.
    hundred_more(&client).await;
    for _ in 0..10 {
        let fut = client.post("http://svc/hold", "pay");
        let r = tokio::time::timeout(Duration::from_millis(100), fut).await;
        assert!(r.is_err(), "the server never answers /hold");
    }
    assert!(
        eventually(|| log.resets().len() == 10).await,
        "resets seen: {:?}",
        log.resets()
    );
    assert!(
        log.resets().iter().all(|r| r.1 == h2::Reason::CANCEL),
        "{:?}",
        log.resets()
    );
    hundred_more(&client).await;
    let stats = client.stats();
    eprintln!("stats {stats:?}");
    let holds = log.paths().iter().filter(|p| p.1 == "/hold").count();
    assert_eq!(holds, 10, "each dropped POST sent once");
    assert_eq!(log.connections(), 1);
    assert_eq!(stats.failures, 0);
    assert_eq!(stats.cancelled, 10, "{stats:?}");
    assert_eq!(stats.endpoints[0].failures, 0, "{:?}", stats.endpoints[0]);
    assert_eq!(stats.endpoints[0].ejections, 0);
    books(&client);
}

/// Many streaming bodies dropped mid-way, concurrently: each stream reset, nothing charged.
#[tokio::test]
async fn dropping_many_concurrent_streaming_bodies_charges_nothing() {
    let (addr, log) = serve_h2(None, streaming_script()).await;
    let client = client(addr, Duration::from_secs(5));
    let mut bodies = Vec::new();
    for _ in 0..20 {
        let res = client.get("http://svc/stream").await.expect("head");
        let mut body = res.into_body();
        body.frame().await.expect("frame").expect("data");
        bodies.push(body);
    }
    drop(bodies);
    assert!(
        eventually(|| log.resets().len() == 20).await,
        "resets seen: {:?}",
        log.resets()
    );
    hundred_more(&client).await;
    let stats = client.stats();
    assert_eq!(stats.failures, 0, "{stats:?}");
    assert_eq!(stats.endpoints[0].failures, 0, "{:?}", stats.endpoints[0]);
    assert_eq!(log.connections(), 1);
    books(&client);
}

/// A POST whose 1 MiB body is stalled by a server that grants no window, dropped by its caller:
/// the server sees RST_STREAM(CANCEL), nothing is charged, and the connection serves the next
/// requests (the stalled stream is not kept open waiting for window).
#[tokio::test]
async fn dropping_a_post_stalled_on_flow_control_resets_it() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            if c.request.uri().path() == "/upload" {
                // Never read the body: no WINDOW_UPDATE for it.
                if let Some(r) = wait_reset_response(&mut c.respond).await {
                    c.log.resets.lock().unwrap().push((c.index, r));
                }
                return;
            }
            let res = Response::builder().status(200).body(()).unwrap();
            let mut send = c.respond.send_response(res, false).unwrap();
            let _ = send.send_data(Bytes::from_static(b"ok"), true);
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(5));
    for _ in 0..3 {
        let fut = client.post("http://svc/upload", Bytes::from(vec![b'u'; 1 << 20]));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), fut)
                .await
                .is_err()
        );
    }
    let l = log.clone();
    assert!(
        eventually(move || l.resets().len() == 3).await,
        "resets {:?}",
        log.resets()
    );
    assert!(log.resets().iter().all(|r| r.1 == h2::Reason::CANCEL));
    hundred_more(&client).await;
    let stats = client.stats();
    assert_eq!(log.connections(), 1);
    assert_eq!(stats.failures, 0, "{stats:?}");
    assert_eq!(stats.endpoints[0].failures, 0);
    books(&client);
}
