//! Streams reset by the server: `NO_ERROR` before and after a complete answer, `REFUSED_STREAM` on
//! every try, `CANCEL` after the head.

use super::*;

// ---------------------------------------------------------------------------------------------
// Truncated bodies: DATA without END_STREAM, then RST_STREAM(NO_ERROR).

/// A response head promising 100 bytes, 10 bytes of DATA without END_STREAM, then
/// RST_STREAM(NO_ERROR). The response never completed (RFC 9113 §8.1: NO_ERROR is an early
/// stop only *after* a complete response): the caller must get a typed error, not a short
/// body that reads as complete.
#[tokio::test]
async fn a_body_cut_by_rst_no_error_is_not_a_complete_body() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder()
                .status(200)
                .header("content-length", "100")
                .body(())
                .unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            let _ = s.send_data(Bytes::from_static(b"0123456789"), false);
            settle().await;
            s.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let res = client.get("http://svc/x").await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("the body ended")
        .map(|b| b.to_bytes());
    settle().await;
    let r = client.retry_stats();
    eprintln!(
        "body: {:?}; retry requests={} successes={} failures={}; endpoint {:?}",
        body,
        r.requests(),
        r.successes(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert!(
        body.is_err(),
        "a 10-byte body of a declared 100 read as complete"
    );
    assert_eq!(
        client.endpoints()[0].failures,
        1,
        "{:?}",
        client.endpoints()
    );
    assert_eq!(r.failures(), 1);
    books(&client);
}

/// A `HEAD` answered with the `content-length` of the body a `GET` would get, its stream then
/// reset with `NO_ERROR`: no body was due, so nothing is short.
#[tokio::test]
async fn a_head_answer_reset_with_no_error_is_complete() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder()
                .status(200)
                .header("content-length", "100")
                .body(())
                .unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            settle().await;
            s.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let req = http::Request::head("http://svc/x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("the body ended");
    assert!(body.is_ok(), "{body:?}");
    settle().await;
    assert_eq!(
        client.endpoints()[0].failures,
        0,
        "{:?}",
        client.endpoints()
    );
    books(&client);
}

/// gRPC over the http client: head, one message, RST_STREAM(NO_ERROR), no trailers. The call
/// has no status: a failure (INTERNAL) in the books, charged to the endpoint.
#[tokio::test]
async fn a_grpc_stream_cut_by_rst_no_error_is_a_failure() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), false);
            settle().await;
            s.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let res = client
        .request(grpc_request("/test.Store/Get"))
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("the body ended");
    one_charged_failure(&client, &body).await;
}

/// The same through the tonic channel: a unary call whose answer is a message and then
/// RST_STREAM(NO_ERROR) has no status. Whatever tonic makes of it, caller and books agree.
#[tokio::test]
async fn tonic_unary_cut_by_rst_no_error() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), false);
            settle().await;
            s.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        unary(channel.clone(), CREATE, tonic::Request::new(ping("a"))),
    )
    .await
    .expect("ended");
    settle().await;
    let r = channel.retry_stats();
    eprintln!(
        "caller: {out:?}; retry successes={} failures={}; endpoint {:?}",
        r.successes(),
        r.failures(),
        channel.endpoints()[0]
    );
    // tonic accepts a unary answer that never carried a status (see grpc_edges.rs); the
    // channel's books follow the protocol: one failure, sent once.
    assert_eq!(log.calls(), 1);
    assert_eq!((r.requests(), r.failures()), (1, 1));
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

// ---------------------------------------------------------------------------------------------
// RST_STREAM codes.

/// A complete answer (END_STREAM) to a large POST whose body the server did not read, then
/// RST_STREAM(NO_ERROR) to stop the upload (RFC 9113 §8.1): a success, sent once.
#[tokio::test]
async fn an_early_complete_answer_then_rst_no_error_is_a_success() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder().status(200).body(()).unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            let _ = s.send_data(Bytes::from_static(b"early"), true);
            // h2 drops a stream's queued frames on reset: let the answer leave first.
            settle().await;
            c.respond.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        client.post("http://svc/upload", vec![7u8; 1 << 20]),
    )
    .await
    .expect("ended");
    let out = match out {
        Ok(res) => {
            let status = res.status();
            res.into_body()
                .collect()
                .await
                .map(|b| (status, b.to_bytes()))
                .map_err(|e| format!("body: {e}"))
        }
        Err(e) => {
            let mut chain = format!("{:?}: {e}", e.kind());
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                chain.push_str(&format!(" <- {s} [{s:?}]"));
                src = s.source();
            }
            Err(chain)
        }
    };
    settle().await;
    let r = client.retry_stats();
    eprintln!(
        "{out:?}; successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert_eq!(
        out,
        Ok((http::StatusCode::OK, Bytes::from_static(b"early")))
    );
    assert_eq!(client.endpoints()[0].failures, 0);
    books(&client);
}

/// Every stream refused (REFUSED_STREAM): even a POST is sent again, but a bounded number of
/// times; the request ends with a typed error, no hang.
#[tokio::test]
async fn refused_forever_is_bounded() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            c.respond.send_reset(h2::Reason::REFUSED_STREAM);
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(6), client.post("http://svc/p", "x"))
        .await
        .expect("ended");
    let e = out.expect_err("refused");
    eprintln!(
        "{:?} {:?} after {:?}, {} attempts seen: {e}",
        e.kind(),
        e.attempts(),
        started.elapsed(),
        log.calls()
    );
    assert!(log.calls() <= 4, "{}", log.calls());
    books(&client);
}

/// Tonic channel: RST_STREAM(CANCEL) after the response head of a non-idempotent call: the
/// call may have been processed; sent once, a typed status.
#[tokio::test]
async fn tonic_cancel_after_head_is_not_resent() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let _ = read_body(c.request.body_mut()).await;
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            settle().await;
            s.send_reset(h2::Reason::CANCEL);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        unary(channel.clone(), CREATE, tonic::Request::new(ping("a"))),
    )
    .await
    .expect("ended");
    settle().await;
    let r = channel.retry_stats();
    eprintln!(
        "caller: {out:?}; successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        channel.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert!(out.is_err());
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}
