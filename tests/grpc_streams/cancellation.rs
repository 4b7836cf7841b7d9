//! Streams and calls dropped by their caller: cancellations, never failures.

use super::*;

/// Cancellation is never an endpoint's failure: a client-streaming call dropped while its
/// request stream is open.
#[tokio::test]
async fn dropping_a_client_stream_midway_is_a_cancellation() {
    let got = Arc::new(Notify::new());
    let g = got.clone();
    let (addr, log) = serve_raw(script(move |mut c: Call| {
        let g = g.clone();
        async move {
            let body = c.request.body_mut();
            let first = read_at_least(body, 5).await;
            assert!(!first.is_empty());
            g.notify_one();
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
        grpc(&ch)
            .await
            .client_streaming(
                tonic::Request::new(Feed(rx)),
                PathAndQuery::from_static(UPLOAD),
                codec,
            )
            .await
    });
    got.notified().await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    drop(tx);
    settle().await;
    assert_eq!(log.calls(), 1);
    let e = &channel.endpoints()[0];
    assert_eq!((e.failures, e.cancelled), (0, 1), "{e:?}");
    let r = channel.retry_stats();
    assert_eq!((r.failures(), r.cancelled()), (0, 1));
    stats_add_up(&channel);
}

/// Cancellation of a bidi stream after a reply arrived: dropping the response stream (the
/// request stream still open) is not a failure.
#[tokio::test]
async fn dropping_a_bidi_stream_midway_is_not_a_failure() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let first = read_at_least(c.request.body_mut(), 5).await;
        assert!(!first.is_empty());
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(ping("first")).unwrap();
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let mut stream = grpc(&channel)
        .await
        .streaming(
            tonic::Request::new(Feed(rx)),
            PathAndQuery::from_static(CHAT),
            codec,
        )
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);
    settle().await;
    assert_eq!(log.calls(), 1);
    let e = &channel.endpoints()[0];
    assert_eq!(e.failures, 0, "{e:?}");
    let r = channel.retry_stats();
    assert_eq!(r.failures(), 0);
    drop(tx);
    settle().await;
    stats_add_up(&channel);
}

/// A concurrency permit is held while a stream is open and released when the caller drops
/// it midway: with a limit of 1, the next call goes through.
#[tokio::test]
async fn a_dropped_stream_gives_its_concurrency_permit_back() {
    let (addr, _log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        std::future::pending::<()>().await;
    }))
    .await;
    let mut limit = meshless::limit::LimitConfig::default();
    limit.algorithm = meshless::limit::Algorithm::Fixed { max: 1 };
    let channel = channel(addr).limit(limit).build().unwrap();
    let mut stream = open_watch(&channel).await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    assert_eq!(channel.limit().in_flight(), 1);
    let refused = open_watch(&channel).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    drop(stream);
    settle().await;
    assert_eq!(channel.limit().in_flight(), 0);
    let mut again = open_watch(&channel).await.unwrap();
    assert!(again.message().await.unwrap().is_some());
    drop(again);
    settle().await;
    let r = channel.retry_stats();
    assert_eq!(r.failures(), 0, "a refusal or a drop counted as a failure");
    stats_add_up(&channel);
}

/// A unary call abandoned after its response head arrived (the message never came): not the
/// endpoint's failure, nor the call's.
#[tokio::test]
async fn a_unary_call_abandoned_after_its_head_is_no_failure() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let _s = c.respond.send_response(grpc_head(), false).unwrap();
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let ch = channel.clone();
    let task =
        tokio::spawn(async move { support::unary(ch, GET, tonic::Request::new(ping("x"))).await });
    while log.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    settle().await;
    // A body dropped after its head is timed to its head by design (tests/caller_fault.rs):
    // what matters is that nothing counts it as a failure.
    let e = &channel.endpoints()[0];
    assert_eq!(e.failures, 0, "{e:?}");
    let r = channel.retry_stats();
    assert_eq!(r.failures(), 0);
    assert_eq!(log.calls(), 1);
    stats_add_up(&channel);
}
