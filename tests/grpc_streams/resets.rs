//! Resets, refusals and GOAWAY: what is retried and what is committed.

use super::*;

/// A stream that sent its head and a message, then RST_STREAM(INTERNAL_ERROR): one failure,
/// not sent again though the method is idempotent.
#[tokio::test]
async fn a_reset_after_a_message_is_one_failure_and_not_retried() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.send_reset(h2::Reason::INTERNAL_ERROR);
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!(n, 1);
    let status = end.unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    settle().await;
    assert_eq!(log.calls(), 1);
    let r = channel.retry_stats();
    assert_eq!(
        (r.requests(), r.failures(), r.retries()),
        (1, 1, 0),
        "{status:?}"
    );
    assert_eq!(channel.endpoints()[0].failures, 1);
    stats_add_up(&channel);
}

/// A unary call answered with a head, then RST_STREAM(REFUSED_STREAM): the server did answer,
/// so the "refused" code cannot prove it did not act; a non-idempotent call is sent once.
#[tokio::test]
async fn a_refused_stream_after_the_head_is_not_retried() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.send_reset(h2::Reason::REFUSED_STREAM);
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let out = support::unary(
        channel.clone(),
        support::CREATE,
        tonic::Request::new(ping("x")),
    )
    .await;
    assert!(out.is_err(), "{out:?}");
    settle().await;
    assert_eq!(log.calls(), 1);
    stats_add_up(&channel);
}

/// RST_STREAM(REFUSED_STREAM) before any head: nothing was processed, so even a
/// non-idempotent call is sent again (transparently).
#[tokio::test]
async fn a_refused_stream_before_the_head_is_retried_for_any_call() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        if c.index == 0 {
            c.respond.send_reset(h2::Reason::REFUSED_STREAM);
        } else {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("ok"), false);
            let _ = s.send_trailers(trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let out = support::unary(
        channel.clone(),
        support::CREATE,
        tonic::Request::new(ping("x")),
    )
    .await;
    assert_eq!(out.unwrap().from, "ok");
    assert_eq!(log.calls(), 2);
    stats_add_up(&channel);
}

/// GOAWAY(NO_ERROR) mid-stream (graceful): the stream in flight finishes normally.
#[tokio::test]
async fn a_graceful_goaway_mid_stream_lets_the_stream_finish() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        let _ = c.control.send(Control::Graceful);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = s.send_data(pong("two"), false);
        let _ = s.send_trailers(trailers(b"0"));
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!(n, 2, "{end:?}");
    assert!(end.is_ok(), "{end:?}");
    settle().await;
    assert_eq!(log.calls(), 1);
    let r = channel.retry_stats();
    assert_eq!((r.successes(), r.failures()), (1, 0));
    stats_add_up(&channel);
}

/// GOAWAY(INTERNAL_ERROR) mid-stream: the stream fails once, not sent again, and the next
/// call goes out on a new connection.
#[tokio::test]
async fn an_abrupt_goaway_mid_stream_fails_once() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        if c.index == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = c.control.send(Control::Abrupt(h2::Reason::INTERNAL_ERROR));
        } else {
            let _ = s.send_trailers(trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!(n, 1);
    assert!(end.is_err());
    settle().await;
    assert_eq!(log.calls(), 1);
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!((n, end.is_ok()), (1, true), "{end:?}");
    let seen = log.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].connection, seen[1].connection);
    let r = channel.retry_stats();
    assert_eq!((r.requests(), r.successes(), r.failures()), (2, 1, 1));
    stats_add_up(&channel);
}

/// RST_STREAM before any head with codes that do not prove the server did nothing (CANCEL,
/// INTERNAL_ERROR, ENHANCE_YOUR_CALM): a non-idempotent call is sent once, an idempotent one
/// is retried.
#[tokio::test]
async fn resets_before_the_head_retry_only_idempotent_calls() {
    for reason in [
        h2::Reason::CANCEL,
        h2::Reason::INTERNAL_ERROR,
        h2::Reason::ENHANCE_YOUR_CALM,
    ] {
        for (path, expected) in [(support::CREATE, 1), (GET, 3)] {
            let (addr, log) = serve_raw(script(move |mut c: Call| async move {
                c.respond.send_reset(reason);
                std::future::pending::<()>().await;
            }))
            .await;
            let channel = channel(addr).build().unwrap();
            let out = tokio::time::timeout(
                Duration::from_secs(10),
                support::unary(channel.clone(), path, tonic::Request::new(ping("x"))),
            )
            .await
            .expect("ended");
            assert!(out.is_err());
            assert_eq!(log.calls(), expected, "{reason:?} {path}");
            stats_add_up(&channel);
        }
    }
}

/// A server stream refused before any message (trailers-only UNAVAILABLE) is not committed:
/// an idempotent one is sent again and the caller gets the second attempt's messages.
#[tokio::test]
async fn a_server_stream_refused_trailers_only_is_retried_when_idempotent() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        if c.index == 0 {
            trailers_only(&mut c.respond, b"14", &[]);
        } else {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), false);
            let _ = s.send_data(pong("two"), false);
            let _ = s.send_trailers(trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!((n, end.is_ok()), (2, true), "{end:?}");
    assert_eq!(log.calls(), 2);
    settle().await;
    stats_add_up(&channel);
}
