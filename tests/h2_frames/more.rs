//! Bodies longer than their length, oversized heads, streams trickling past the deadline, trailers-
//! only answers.

use super::*;

/// More DATA than the declared content-length (h2 resets the stream with PROTOCOL_ERROR):
/// a typed error, a POST sent once.
#[tokio::test]
async fn more_data_than_content_length_is_a_typed_error() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder()
                .status(200)
                .header("content-length", "3")
                .body(())
                .unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            let _ = s.send_data(Bytes::from_static(b"0123456789"), true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let out = tokio::time::timeout(Duration::from_secs(5), async {
        let res = client
            .post("http://svc/p", "x")
            .await
            .map_err(|e| format!("{:?}: {e}", e.kind()))?;
        res.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("body: {e}"))
    })
    .await
    .expect("ended");
    settle().await;
    eprintln!("{out:?}; endpoint {:?}", client.endpoints()[0]);
    assert!(out.is_err(), "{out:?}");
    assert_eq!(log.calls(), 1);
    books(&client);
}

/// A response head larger than the client's header list limit: a typed error, no hang.
#[tokio::test]
async fn an_oversized_response_head_is_a_typed_error() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut res = Response::builder().status(200);
            for i in 0..40 {
                res = res.header(format!("x-big-{i}"), "v".repeat(1000));
            }
            let _ = c.respond.send_response(res.body(()).unwrap(), true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(5), client.post("http://svc/p", "x"))
        .await
        .expect("ended");
    settle().await;
    let out = out
        .map(|r| r.status())
        .map_err(|e| format!("{:?}: {e}", e.kind()));
    eprintln!(
        "{out:?} after {:?}; seen {}; endpoint {:?}",
        started.elapsed(),
        log.calls(),
        client.endpoints()[0]
    );
    assert!(out.is_err());
    assert_eq!(
        log.calls(),
        1,
        "a POST that reached the server was sent again"
    );
    books(&client);
}

/// A gRPC server stream that trickles a message every 50 ms forever (never idle): the
/// channel's 500 ms deadline covers the whole stream and cuts it, DEADLINE_EXCEEDED.
#[tokio::test]
async fn tonic_a_trickling_stream_is_cut_at_the_deadline() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            for _ in 0..200 {
                if s.send_data(pong("t"), false).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }),
    )
    .await;
    let channel = Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(support::WATCH)
        .deadline(Duration::from_millis(500))
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let started = Instant::now();
    let (pongs, end) =
        tokio::time::timeout(Duration::from_secs(8), support::watch(channel.clone()))
            .await
            .expect("the stream was cut");
    let took = started.elapsed();
    eprintln!("{} messages, {end:?} after {took:?}", pongs.len());
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(end.unwrap_err().code(), tonic::Code::DeadlineExceeded);
}

/// The same through the http client: a gRPC body trickling forever is cut at the deadline.
#[tokio::test]
async fn http_a_trickling_grpc_body_is_cut_at_the_deadline() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            for _ in 0..200 {
                if s.send_data(pong("t"), false).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }),
    )
    .await;
    let client = client(addr, Duration::from_millis(500));
    let started = Instant::now();
    let res = client
        .request(grpc_request("/test.Store/Watch"))
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(8), res.into_body().collect())
        .await
        .expect("cut");
    let took = started.elapsed();
    let out = out.map(|_| ()).map_err(|e| {
        let kind = e.downcast_ref::<meshless::Error>().map(|m| m.kind());
        format!("{kind:?}: {e}")
    });
    eprintln!("{out:?} after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(out.unwrap_err().starts_with("Some(DeadlineExceeded)"));
}

/// An unmarked gRPC POST answered trailers-only UNAVAILABLE without pushback over the http
/// client: the server may have acted; sent once, the caller sees the status, one failure.
#[tokio::test]
async fn http_trailers_only_unavailable_without_pushback_is_sent_once() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut head = grpc_head();
            head.headers_mut()
                .insert("grpc-status", HeaderValue::from_static("14"));
            let _ = c.respond.send_response(head, true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let res = client.request(grpc_request("/test.Store/Create")).await;
    settle().await;
    let res = res.map(|r| r.headers().get("grpc-status").cloned());
    let r = client.retry_stats();
    eprintln!(
        "{res:?}; seen {}; failures {} endpoint {:?}",
        log.calls(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert_eq!(r.failures(), 1);
    books(&client);
}
