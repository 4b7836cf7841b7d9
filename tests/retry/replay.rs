//! Request bodies are replayed byte for byte.

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn replay_streaming_body_is_resent_byte_for_byte() {
    let chunks: [&[u8]; 4] = [b"hello ", b"streaming ", b"", b"world\0\xff"];
    let trailers = header_map(&[("x-checksum", "abc123")]);
    let (inner, log) = mock::<Chunked>(vec![reply(429), reply(200)]);
    let layer = quick();
    let stats = layer.stats();
    let req = request(
        Method::POST,
        "/upload",
        Chunked::new(&chunks, Some(trailers.clone())),
    );
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 200);

    let seen = log.all();
    assert_eq!(seen.len(), 2);
    let expected: Vec<Bytes> = chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect();
    for s in &seen {
        assert_eq!(s.body_error, None, "attempt {}", s.attempt);
        assert_eq!(s.chunks, expected, "attempt {}: same frames", s.attempt);
        assert_eq!(
            s.trailers.as_ref(),
            Some(&trailers),
            "attempt {}",
            s.attempt
        );
    }
    assert_eq!(seen[1].body(), b"hello streaming world\0\xff");
    assert_eq!(stats.body_too_large(), 0);
}

#[tokio::test(start_paused = true)]
async fn replay_body_over_the_cap_is_sent_once_and_not_retried() {
    let chunks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 1024]).collect();
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let whole = chunks.concat();

    // A streamed body: found to be too large while the first attempt reads it.
    let (inner, log) = mock::<Chunked>(vec![reply(503), reply(200)]);
    let layer = quick().replay_cap(1024);
    let stats = layer.stats();
    let req = request(Method::PUT, "/blob", Chunked::new(&slices, None));
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 503);
    let seen = log.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body(), whole, "the one attempt got the whole body");
    assert_eq!(seen[0].body_error, None);
    assert_eq!(stats.body_too_large(), 1);
    assert_eq!(stats.retries(), 0);

    // A body whose size is known up front: the same.
    let (inner, log) = mock::<http_body_util::Full<Bytes>>(vec![reply(503), reply(200)]);
    let layer = quick().replay_cap(1024);
    let stats = layer.stats();
    let body = http_body_util::Full::new(Bytes::from(whole.clone()));
    let res = send(&mut layer.layer(inner), request(Method::PUT, "/blob", body))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let seen = log.all();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body(), whole);
    assert_eq!(stats.body_too_large(), 1);

    // Nothing is read ahead: an attempt that never read the body leaves it replayable, and the
    // next attempt still gets all of it (and is the one that finds it too large).
    let (inner, log) = mock::<Chunked>(vec![
        reply(503).reading(Read::Nothing),
        reply(503),
        reply(200),
    ]);
    let layer = quick().replay_cap(1024);
    let stats = layer.stats();
    let req = request(Method::PUT, "/blob", Chunked::new(&slices, None));
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(text(res).await, "attempt 2");
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].chunks.is_empty());
    assert_eq!(seen[1].body(), whole);
    assert_eq!((stats.retries(), stats.body_too_large()), (1, 1));

    // Exactly the cap is still replayed (the control).
    let (inner, log) = mock::<Chunked>(vec![reply(503), reply(200)]);
    let layer = quick().replay_cap(4096);
    let req = request(Method::PUT, "/blob", Chunked::new(&slices, None));
    let res = send(&mut layer.layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body(), whole);
}

#[tokio::test(start_paused = true)]
async fn replay_partially_read_body_is_replayed_intact() {
    let chunks: [&[u8]; 3] = [b"one-", b"two-", b"three"];
    let (inner, log) = mock::<Chunked>(vec![
        reply(429).reading(Read::Chunks(1)),
        reply(429).reading(Read::Chunks(2)),
        reply(200),
    ]);
    let req = request(Method::POST, "/upload", Chunked::new(&chunks, None));
    let res = send(&mut quick().layer(inner), req).await.unwrap();
    assert_eq!(res.status(), 200);
    let seen = log.all();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].body(), b"one-");
    assert_eq!(seen[1].body(), b"one-two-");
    assert_eq!(seen[2].body(), b"one-two-three");
    assert_eq!(seen[2].chunks.len(), 3, "same chunk boundaries");
    assert!(seen.iter().all(|s| s.body_error.is_none()));
}

// ---------------------------------------------------------------------------------------------
// 9. Cancellation.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cancel_dropping_the_future_during_backoff_stops_retries() {
    // Decorrelated jitter with base = cap waits exactly 5 s.
    let backoff = || Backoff::decorrelated_jitter(ms(5_000), ms(5_000)).unwrap();

    // Control: left alone, the retry happens 5 s later.
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let mut svc = RetryLayer::new(Budget::default())
        .backoff(backoff())
        .layer(inner);
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.arrivals(), vec![ms(0), ms(5_000)]);

    // Dropped 2 s into the backoff: no further attempt, however long we wait.
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let layer = RetryLayer::new(Budget::default()).backoff(backoff());
    let stats = layer.stats();
    let mut svc = layer.layer(inner);
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(get("/items")));
    tokio::select! {
        _ = &mut fut => panic!("the request finished during its backoff"),
        _ = tokio::time::sleep(ms(2_000)) => {}
    }
    assert_eq!(log.count(), 1);
    drop(fut);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(log.count(), 1);
    assert_eq!(stats.retries(), 0);
}

// ---------------------------------------------------------------------------------------------
// 10. gRPC status in trailers.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn grpc_status_in_trailers_is_committed_and_not_retried() {
    let streamed = || {
        reply(200)
            .header("content-type", "application/grpc")
            .trailer("grpc-status", "14")
    };
    let (inner, log) = mock::<String>(vec![streamed(), grpc("0")]);
    let layer = quick();
    let stats = layer.stats();
    let res = send(&mut layer.layer(inner), grpc_post()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("grpc-status").is_none());
    // The caller gets the whole stream, failure status included.
    let collected = res.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
    assert_eq!(collected.to_bytes(), "attempt 1");
    assert_eq!(log.count(), 1);
    assert_eq!(stats.retries(), 0);

    // The same status in a trailers-only response (in the head) is retried, for a method
    // declared idempotent.
    let (inner, log) = mock::<String>(vec![grpc("14"), grpc("0")]);
    let res = send(&mut quick().layer(inner), idempotent_grpc_post())
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(log.count(), 2);
}

// ---------------------------------------------------------------------------------------------
// Bugs found.
// ---------------------------------------------------------------------------------------------

/// A request body that yields one chunk, then fails (the client's own upload broke).
struct FailingBody {
    sent: bool,
}

impl Body for FailingBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if !this.sent {
            this.sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))));
        }
        Poll::Ready(Some(Err(io::Error::other("client body broke"))))
    }
}

#[tokio::test(start_paused = true)]
async fn replay_failed_request_body_is_not_reported_as_too_large() {
    let (inner, log) = mock::<FailingBody>(vec![
        fail(io::ErrorKind::ConnectionReset).reading(Read::All),
        reply(200),
    ]);
    let layer = quick();
    let stats = layer.stats();
    let req = request(Method::PUT, "/blob", FailingBody { sent: false });
    let err = send(&mut layer.layer(inner), req).await.unwrap_err();
    // Not retried, rightly: a body that failed cannot be replayed.
    assert_eq!(log.count(), 1);
    assert_eq!(
        log.all()[0].body_error.as_deref(),
        Some("client body broke")
    );
    assert_eq!(io_kind_in_chain(&err), Some(io::ErrorKind::ConnectionReset));
    // But 4 bytes did not outgrow a 64 KiB replay buffer.
    assert_ne!(err.kind(), Kind::BodyTooLarge, "{err}");
    assert_eq!(stats.body_too_large(), 0);
}

// ---------------------------------------------------------------------------------------------
// Duration::MAX settings.
// ---------------------------------------------------------------------------------------------

/// `Duration::MAX` means "no limit" where a limit is optional, counts as the largest supported
/// value where the setting must stay finite, and never panics.
#[tokio::test(start_paused = true)]
async fn duration_max_settings_never_panic() {
    // No limit on the pushback honoured: the server's 2 s are waited out.
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "2"), reply(200)]);
    let layer = quick().max_pushback(Duration::MAX);
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.arrivals(), vec![Duration::ZERO, ms(2_000)]);

    // An uncapped backoff under a deadline: the retry would end past it, so it is not started.
    let backoff = Backoff::decorrelated_jitter(Duration::from_secs(3_600), Duration::MAX).unwrap();
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let retry = RetryLayer::new(Budget::default()).backoff(backoff);
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .service(inner);
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 1);
    assert_eq!(stats.deadline_refused(), 1);

    // Settings that must stay finite count as their largest value (see tests/duration_limits.rs).
    let backoff = Backoff::full_jitter(Duration::MAX, Duration::MAX).unwrap();
    assert!(backoff.start().next_delay() <= Duration::from_secs(3_600));
    let budget = Budget::builder().ttl(Duration::MAX).build().unwrap();
    assert_eq!(budget.ttl(), Duration::from_secs(3_600));
}
