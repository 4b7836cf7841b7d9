//! Request streams replayed whole on a retry, or sent once when they outgrow the buffer.

use super::*;

/// A client stream answered UNAVAILABLE (trailers-only) is retried for an idempotent method,
/// and the retry carries the whole request stream, byte for byte.
#[tokio::test]
async fn a_retried_client_stream_is_replayed_whole() {
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = bodies.clone();
    let (addr, log) = serve_raw(script(move |mut c: Call| {
        let b = b.clone();
        async move {
            let body = read_body(c.request.body_mut()).await;
            b.lock().unwrap().push(body);
            if c.index == 0 {
                trailers_only(&mut c.respond, b"14", &[]);
            } else {
                let mut s = c.respond.send_response(grpc_head(), false).unwrap();
                let _ = s.send_data(pong("ok"), false);
                let _ = s.send_trailers(trailers(b"0"));
            }
            std::future::pending::<()>().await;
        }
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    for p in ["a", "bb", "ccc"] {
        tx.send(ping(p)).unwrap();
    }
    drop(tx);
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let out = grpc(&channel)
        .await
        .client_streaming(
            tonic::Request::new(Feed(rx)),
            PathAndQuery::from_static(UPLOAD),
            codec,
        )
        .await;
    assert_eq!(out.unwrap().into_inner().from, "ok");
    assert_eq!(log.calls(), 2);
    let bodies = bodies.lock().unwrap().clone();
    let expected = encoded(&["a", "bb", "ccc"]);
    assert_eq!(bodies[0], expected);
    assert_eq!(bodies[1], expected, "the retry's body differs");
    stats_add_up(&channel);
}

/// A bidi call answered UNAVAILABLE (trailers-only) while its request stream is still open:
/// if it is sent again, the retry must carry every message, those sent before and after.
#[tokio::test]
async fn a_bidi_call_retried_while_its_request_stream_is_open_gets_every_message() {
    let answered = Arc::new(Notify::new());
    let a = answered.clone();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = bodies.clone();
    let (addr, log) = serve_raw(script(move |mut c: Call| {
        let a = a.clone();
        let b = b.clone();
        async move {
            if c.index == 0 {
                let first = read_at_least(c.request.body_mut(), 5).await;
                b.lock().unwrap().push(first);
                trailers_only(&mut c.respond, b"14", &[]);
                a.notify_one();
            } else {
                let body = read_body(c.request.body_mut()).await;
                b.lock().unwrap().push(body);
                let mut s = c.respond.send_response(grpc_head(), false).unwrap();
                let _ = s.send_data(pong("ok"), false);
                let _ = s.send_trailers(trailers(b"0"));
            }
            std::future::pending::<()>().await;
        }
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(ping("first")).unwrap();
    let ch = channel.clone();
    let call = tokio::spawn(async move {
        let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
        let mut stream = grpc(&ch)
            .await
            .streaming(
                tonic::Request::new(Feed(rx)),
                PathAndQuery::from_static(CHAT),
                codec,
            )
            .await?
            .into_inner();
        let mut n = 0;
        while stream.message().await?.is_some() {
            n += 1;
        }
        Ok::<_, tonic::Status>(n)
    });
    answered.notified().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send(ping("second")).unwrap();
    drop(tx);
    let out = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("ended")
        .unwrap();
    let bodies = bodies.lock().unwrap().clone();
    eprintln!(
        "bidi call with an open request stream: {} attempts",
        log.calls()
    );
    match log.calls() {
        1 => assert_eq!(out.unwrap_err().code(), Code::Unavailable),
        2 => {
            assert_eq!(out.unwrap(), 1);
            assert_eq!(
                bodies[1],
                encoded(&["first", "second"]),
                "the retry lost messages"
            );
        }
        n => panic!("{n} calls"),
    }
    stats_add_up(&channel);
}

/// A client stream longer than the replay buffer (64 KiB) and answered UNAVAILABLE is not sent
/// again (it cannot be replayed), and the caller gets the server's status.
#[tokio::test]
async fn a_client_stream_beyond_the_replay_buffer_is_sent_once() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let _ = read_body(c.request.body_mut()).await;
        trailers_only(&mut c.respond, b"14", &[("grpc-message", b"busy")]);
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let big = "x".repeat(8 * 1024);
    for _ in 0..12 {
        tx.send(ping(&big)).unwrap();
    }
    drop(tx);
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        grpc(&channel).await.client_streaming(
            tonic::Request::new(Feed(rx)),
            PathAndQuery::from_static(UPLOAD),
            codec,
        ),
    )
    .await
    .expect("ended");
    let status = out.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "busy");
    assert_eq!(log.calls(), 1);
    stats_add_up(&channel);
}
