//! A gRPC answer with no `grpc-status`, or one that says two things.

use super::*;

// ---------------------------------------------------------------------------------------------
// Missing or contradictory grpc-status.

/// A gRPC answer whose DATA carries END_STREAM and no trailers: no grpc-status at all. A
/// failure (INTERNAL) in the books.
#[tokio::test]
async fn a_grpc_answer_ending_without_trailers_is_a_failure() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let res = client
        .request(grpc_request("/test.Store/Get"))
        .await
        .unwrap();
    let body = res.into_body().collect().await;
    one_charged_failure(&client, &body).await;
}

/// A trailers-only head (END_STREAM on HEADERS) with the gRPC content type and no grpc-status:
/// a failure in the books, even if the caller only looks at the head and drops the body.
#[tokio::test]
async fn a_trailers_only_head_without_grpc_status_is_a_failure() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let _ = c.respond.send_response(grpc_head(), true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    // The caller reads the body to its end.
    let res = client
        .request(grpc_request("/test.Store/Get"))
        .await
        .unwrap();
    let _ = res.into_body().collect().await;
    settle().await;
    let r = client.retry_stats();
    eprintln!(
        "read: successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!((r.requests(), r.failures()), (1, 1));
    books(&client);
}

/// Tonic channel: a head with `grpc-status: 14` but no END_STREAM, then a message and
/// `grpc-status: 0` trailers. tonic reports UNAVAILABLE from the head; the books must say the
/// same (a failure), and a non-idempotent call is sent once.
#[tokio::test]
async fn tonic_status_in_head_and_trailers_disagreeing() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut head = grpc_head();
            head.headers_mut()
                .insert("grpc-status", HeaderValue::from_static("14"));
            let mut s = c.respond.send_response(head, false).unwrap();
            let _ = s.send_data(pong("one"), false);
            let _ = s.send_trailers(trailers(b"0"));
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let out = unary(channel.clone(), CREATE, tonic::Request::new(ping("a"))).await;
    settle().await;
    let r = channel.retry_stats();
    eprintln!(
        "caller: {out:?}; successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        channel.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert_eq!(out.is_err(), r.failures() == 1, "caller and books disagree");
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

/// Tonic channel, the other way: head `grpc-status: 0` (no END_STREAM), a message, then
/// `grpc-status: 13` in the trailers. Caller and books must agree.
#[tokio::test]
async fn tonic_ok_in_head_internal_in_trailers() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut head = grpc_head();
            head.headers_mut()
                .insert("grpc-status", HeaderValue::from_static("0"));
            let mut s = c.respond.send_response(head, false).unwrap();
            let _ = s.send_data(pong("one"), false);
            let _ = s.send_trailers(trailers(b"13"));
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let out = unary(channel.clone(), CREATE, tonic::Request::new(ping("a"))).await;
    settle().await;
    let r = channel.retry_stats();
    eprintln!(
        "caller: {out:?}; successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        channel.endpoints()[0]
    );
    assert_eq!(out.is_err(), r.failures() == 1, "caller and books disagree");
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}
