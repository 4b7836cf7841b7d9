//! How streams end: idle limits, deadlines, and endpoints that come and go mid-call.

use super::*;

/// A stream silent after its first message ends at the body idle timeout (not the 30 s
/// deadline) with DEADLINE_EXCEEDED.
#[tokio::test]
async fn a_silent_stream_ends_at_the_idle_timeout() {
    let (addr, _log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        std::future::pending::<()>().await;
    }))
    .await;
    let idle = Duration::from_millis(300);
    let channel = channel(addr)
        .deadline(Duration::from_secs(30))
        .body_idle_timeout(idle)
        .build()
        .unwrap();
    let mut stream = open_watch(&channel).await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("cut within 5 s");
    let took = started.elapsed();
    assert_eq!(end.unwrap_err().code(), Code::DeadlineExceeded);
    assert!(took < idle + Duration::from_millis(250), "{took:?}");
    drop(stream);
    settle().await;
    stats_add_up(&channel);
}

/// A client stream the caller never finishes, to a server that waits for all of it: the call
/// ends at the deadline with DEADLINE_EXCEEDED, not later.
#[tokio::test]
async fn a_client_stream_the_caller_never_finishes_ends_at_the_deadline() {
    let (addr, _log) = serve_raw(script(|mut c: Call| async move {
        let _ = read_body(c.request.body_mut()).await;
        trailers_only(&mut c.respond, b"0", &[]);
        std::future::pending::<()>().await;
    }))
    .await;
    let deadline = Duration::from_millis(400);
    let channel = channel(addr).deadline(deadline).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(ping("first")).unwrap();
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let mut g = grpc(&channel).await;
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        g.client_streaming(
            tonic::Request::new(Feed(rx)),
            PathAndQuery::from_static(UPLOAD),
            codec,
        ),
    )
    .await
    .expect("ended within 5 s");
    let took = started.elapsed();
    assert_eq!(out.unwrap_err().code(), Code::DeadlineExceeded);
    assert!(
        took >= deadline && took < deadline + Duration::from_millis(300),
        "{took:?}"
    );
    drop(tx);
    settle().await;
    stats_add_up(&channel);
}

/// A stream in flight on an endpoint that is removed keeps streaming to its end.
#[tokio::test]
async fn a_stream_survives_the_removal_of_its_endpoint() {
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let (addr, _log) = serve_raw(script(move |mut c: Call| {
        let r = r.clone();
        async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), false);
            r.notified().await;
            let _ = s.send_data(pong("two"), false);
            let _ = s.send_trailers(trailers(b"0"));
            std::future::pending::<()>().await;
        }
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let mut stream = open_watch(&channel).await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    channel.remove(endpoint(addr).uri());
    release.notify_one();
    let (n, end) = drain(stream).await;
    assert_eq!((n, end.is_ok()), (1, true), "{end:?}");
    settle().await;
    let r = channel.retry_stats();
    assert_eq!((r.successes(), r.failures()), (1, 0));
    let _ = Bytes::new();
    stats_add_up(&channel);
}

/// An endpoint added while a retry waits out the only endpoint's pushback takes the retry
/// soon, rather than after the pushback; the retry goes there and not to the pushing one.
#[tokio::test]
async fn an_endpoint_added_during_a_pushback_wait_takes_the_retry() {
    let (a, a_log) = serve_raw(script(|mut c: Call| async move {
        trailers_only(
            &mut c.respond,
            b"14",
            &[("grpc-retry-pushback-ms", b"3000")],
        );
        std::future::pending::<()>().await;
    }))
    .await;
    let (b, b_log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("b"), false);
        let _ = s.send_trailers(trailers(b"0"));
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(a)
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let ch = channel.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        support::unary(ch, support::CREATE, tonic::Request::new(ping("x"))).await
    });
    while a_log.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    channel.insert(endpoint(b)).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ended")
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.unwrap().from, "b");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!((a_log.calls(), b_log.calls()), (1, 1));
    stats_add_up(&channel);
}
