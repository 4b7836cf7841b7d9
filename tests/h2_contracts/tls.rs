//! HTTP/2 over TLS (ALPN h2): a caller's cancellation resets the stream and keeps the
//! connection; a queued request abandoned by its caller does not go out later.

use super::*;
use http::Response;
use http_body_util::BodyExt;

#[path = "../tls_wire/support.rs"]
#[allow(dead_code, unused_imports)]
mod support;

#[tokio::test]
async fn tls_h2_dropping_a_streaming_body_resets_the_stream_and_keeps_the_connection() {
    let pki = support::pki(&["svc.example"]);
    let resets = Arc::new(Mutex::new(Vec::new()));
    let r2 = resets.clone();
    let (addr, seen) = support::serve_tls(
        support::server_config(&pki, &[b"h2"]),
        move |tls, _seen, _| {
            let resets = r2.clone();
            async move {
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let resets = resets.clone();
                    tokio::spawn(async move {
                        let res = Response::builder().status(200).body(()).unwrap();
                        let mut send = respond.send_response(res, false).unwrap();
                        if req.uri().path() == "/stream" {
                            let _ = send.send_data(Bytes::from(vec![b'x'; 1024]), false);
                            if let Some(r) = wait_reset_stream(&mut send).await {
                                resets.lock().unwrap().push(r);
                            }
                        } else {
                            let _ = send.send_data(Bytes::from_static(b"ok"), true);
                        }
                    });
                }
            }
        },
    )
    .await;
    let client = support::client(addr, &pki).metrics(false).build().unwrap();
    for _ in 0..5 {
        let res = client
            .get("https://svc.example/stream")
            .await
            .expect("head");
        assert_eq!(res.version(), http::Version::HTTP_2);
        let mut body = res.into_body();
        body.frame().await.expect("frame").expect("data");
        drop(body);
    }
    let r = resets.clone();
    assert!(
        eventually(move || r.lock().unwrap().len() == 5).await,
        "{:?}",
        resets.lock().unwrap()
    );
    assert!(
        resets
            .lock()
            .unwrap()
            .iter()
            .all(|r| *r == h2::Reason::CANCEL)
    );
    for _ in 0..50 {
        let res = client.get("https://svc.example/ok").await.expect("ok");
        let b = res.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&b[..], b"ok");
    }
    assert_eq!(seen.connections(), 1);
    let stats = client.stats();
    assert_eq!(stats.failures, 0, "{stats:?}");
    assert_eq!(stats.endpoints[0].failures, 0);
}

/// Over TLS (ALPN h2) too: SETTINGS_MAX_CONCURRENT_STREAMS = 1, one stream held, a POST queued
/// behind it and dropped by its caller. Once the held stream ends, the abandoned POST must not
/// reach the server whole: hyper opens its stream, and the body is cut by a reset (see
/// `queue.rs`).
#[tokio::test]
async fn tls_h2_a_post_dropped_while_waiting_for_a_stream_never_reaches_the_server() {
    let pki = support::pki(&["svc.example"]);
    let paths = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let release = Arc::new(tokio::sync::Notify::new());
    let (p2, r2) = (paths.clone(), release.clone());
    let (addr, _seen) = support::serve_tls(
        support::server_config(&pki, &[b"h2"]),
        move |tls, _seen, _| {
            let (paths, release) = (p2.clone(), r2.clone());
            async move {
                let mut b = h2::server::Builder::new();
                b.max_concurrent_streams(1);
                let Ok(mut conn) = b.handshake::<_, Bytes>(tls).await else {
                    return;
                };
                while let Some(Ok((mut req, mut respond))) = conn.accept().await {
                    let (paths, release) = (paths.clone(), release.clone());
                    tokio::spawn(async move {
                        let path = req.uri().path().to_owned();
                        let mut body = Vec::new();
                        loop {
                            match req.body_mut().data().await {
                                Some(Ok(c)) => {
                                    let _ = req.body_mut().flow_control().release_capacity(c.len());
                                    body.extend_from_slice(&c);
                                }
                                // Reset before its end: no whole request to act on.
                                Some(Err(_)) => return,
                                None => break,
                            }
                        }
                        paths.lock().unwrap().push((path.clone(), body));
                        if path == "/hold" {
                            release.notified().await;
                        }
                        let res = Response::builder().status(200).body(()).unwrap();
                        let _ = respond.send_response(res, true);
                    });
                }
            }
        },
    )
    .await;
    let client = support::client(addr, &pki).metrics(false).build().unwrap();
    assert_eq!(
        client
            .get("https://svc.example/warm")
            .await
            .expect("warm")
            .status(),
        200
    );
    let hold = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post("https://svc.example/hold", "hold")
                .await
                .map(|r| r.status())
        }
    });
    let p = paths.clone();
    assert!(eventually(move || p.lock().unwrap().iter().any(|x| x.0 == "/hold")).await);
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        client.post("https://svc.example/dropped", "pay"),
    )
    .await;
    assert!(dropped.is_err(), "cannot have been answered");
    release.notify_one();
    assert_eq!(hold.await.unwrap().expect("hold").as_u16(), 200);
    for _ in 0..3 {
        assert_eq!(
            client
                .get("https://svc.example/after")
                .await
                .expect("after")
                .status(),
            200
        );
    }
    let seen = paths.lock().unwrap().clone();
    eprintln!("server saw {seen:?}");
    assert!(
        !seen.iter().any(|x| x.0 == "/dropped"),
        "the POST its caller dropped while it waited for a stream reached the server whole later: {seen:?}"
    );
}
