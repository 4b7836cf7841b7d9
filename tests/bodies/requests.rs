//! Request bodies: declared lengths, replay, resets while a body is sent, early answers.

use super::*;

/// A body that ends short of the length it declared (its size hint says 100 bytes, so hyper
/// sends `content-length: 100`; only 10 come) is the caller's bug. The code says so
/// (`classify/error.rs`, `hyper_callers_fault`: a body that "ended short of its declared
/// length" is the caller's fault), and the contract is that a caller's fault is counted
/// against no endpoint (README, `requests_completed_total`: "the caller's own request body
/// failing make it `cancelled`"). POSTs, so that retries play no part.
#[test]
fn a_body_shorter_than_its_declared_length_is_the_callers_fault() {
    run(|snap| async move {
        let (a, _log_a) = recording_server().await;
        let (b, _log_b) = recording_server().await;
        let client = quiet_client(&[a, b], "short").build().unwrap();
        const N: u64 = 12;
        for _ in 0..N {
            let req = Request::post("/short")
                .body(chunks(vec![vec![b'x'; 10]], SizeHint::with_exact(100)))
                .unwrap();
            let err = timeout(BOUND, client.request(req))
                .await
                .expect("no hang")
                .expect_err("a short body cannot succeed");
            // FINDING: hyper reports a short body as "user body write aborted" (source "early
            // end, expected 90 more bytes"), which `hyper_callers_fault` does not recognise:
            // the error is `Kind::Service`, and each one is charged to the endpoint as a failure.
            assert_eq!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
        }
        let endpoints = client.endpoints();
        let failures: u64 = endpoints.iter().map(|e| e.failures).sum();
        let ejections: u64 = endpoints.iter().map(|e| e.ejections).sum();
        assert_eq!((failures, ejections), (0, 0), "{endpoints:?}");
        let v = settle_and_check(&client, &snap, "short").await;
        report(&v, &client, &snap);
    })
}

/// The same caller's bug on a PUT (idempotent): the first attempt fails at once, and must
/// not be retried. Worse, the replayed body reports its end differently (the replay knows the
/// body ended, so hyper writes its 10 bytes as the *whole* body and waits for an answer the
/// server, still waiting for 90 bytes, never gives): the retry hangs until the deadline.
#[test]
fn a_short_put_is_not_retried_into_a_hang() {
    run(|snap| async move {
        let (addr, log) = recording_server().await;
        let client = quiet_client(&[addr], "shortput").build().unwrap();
        let started = tokio::time::Instant::now();
        let req = Request::put("/short")
            .body(chunks(vec![vec![b'x'; 10]], SizeHint::with_exact(100)))
            .unwrap();
        let err = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect_err("a short body cannot succeed");
        let took = started.elapsed();
        // FINDING: the PUT is retried (`attempts` 2) and the retry hangs until the 4 s
        // deadline: `DeadlineExceeded after 2 attempts`.
        assert_eq!(err.attempts(), 1, "{} after {took:?}", chain(&err));
        assert!(took < Duration::from_secs(1), "{took:?}: {}", chain(&err));
        assert_eq!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
        let _ = log;
        assert_eq!(endpoint_failures(&client), 0, "{:?}", client.endpoints());
        let v = settle_and_check(&client, &snap, "shortput").await;
        report(&v, &client, &snap);
    })
}

/// A POST with a streamed body larger than the replay cap (64 KiB), the server reading half
/// of it and then resetting the connection: it may have reached the server, so it is sent
/// exactly once, and ends with a typed error.
#[test]
fn a_large_streamed_post_reset_halfway_is_sent_once() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, conns) = serve(move |_, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                let Some(head) = read_head(&mut socket, &mut pending).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&head).into_owned();
                let (body, complete) = read_body(&mut socket, &mut pending, &head, 50_000).await;
                l.lock().unwrap().push(Seen {
                    head,
                    body,
                    complete,
                });
                reset(socket);
            }
        })
        .await;
        let client = quiet_client(&[addr], "bigpost").build().unwrap();
        let (tx, body) = chan_body(SizeHint::new());
        let data = pattern(200 * 1024);
        let feed = data.clone();
        tokio::spawn(async move {
            for c in feed.chunks(8192) {
                if tx.send(Ok(Bytes::copy_from_slice(c))).is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let req = Request::post("/upload").body(body).unwrap();
        let out = timeout(BOUND, client.request(req)).await.expect("no hang");
        let err = out.expect_err("reset midway");
        assert_eq!(err.attempts(), 1, "{}", chain(&err));
        assert_eq!(conns.load(Ordering::SeqCst), 1, "sent once");
        assert_eq!(log.lock().unwrap().len(), 1);
        let v = settle_and_check(&client, &snap, "bigpost").await;
        report(&v, &client, &snap);
    })
}

/// A PUT (idempotent) with a body larger than the replay cap that the server reads in full
/// and then resets: idempotent, but no replay buffer is left, so it is sent once and the
/// retry is refused as `BodyTooLarge` (with the reset kept as the cause).
#[test]
fn a_large_idempotent_put_reset_after_the_body_is_not_resent() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, conns) = serve(move |_, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                let Some(seen) = read_seen(&mut socket, &mut pending).await else {
                    return;
                };
                l.lock().unwrap().push(seen);
                reset(socket);
            }
        })
        .await;
        let client = quiet_client(&[addr], "bigput").build().unwrap();
        let data = pattern(100 * 1024);
        let parts: Vec<Vec<u8>> = data.chunks(4096).map(<[u8]>::to_vec).collect();
        let req = Request::put("/blob")
            .body(chunks(parts, SizeHint::new()))
            .unwrap();
        let err = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect_err("reset");
        assert_eq!(err.kind(), Kind::BodyTooLarge, "{}", chain(&err));
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].complete);
        assert_eq!(seen[0].body, data, "the one attempt got the whole body");
        assert_eq!(client.stats().retries, 0);
        let v = settle_and_check(&client, &snap, "bigput").await;
        report(&v, &client, &snap);
    })
}

/// A PUT with a small streamed (chunked) body: the first connection reads it all and resets,
/// the second answers. The retry's body must be byte-identical to the first.
#[test]
fn a_streamed_put_reset_is_replayed_byte_identical() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, _conns) = serve(move |n, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                while let Some(seen) = read_seen(&mut socket, &mut pending).await {
                    l.lock().unwrap().push(seen);
                    if n == 0 {
                        reset(socket);
                        return;
                    }
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            }
        })
        .await;
        let client = quiet_client(&[addr], "replay")
            .backoff(meshless::backoff::Backoff::none())
            .build()
            .unwrap();
        let data = pattern(30_000);
        let (tx, body) = chan_body(SizeHint::new());
        let feed = data.clone();
        tokio::spawn(async move {
            for c in feed.chunks(1000) {
                if tx.send(Ok(Bytes::copy_from_slice(c))).is_err() {
                    return;
                }
                sleep(ms(1)).await;
            }
        });
        let req = Request::put("/doc").body(body).unwrap();
        let res = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect("the retry succeeds");
        assert_eq!(res.status(), 200);
        let (bytes, end) = drain(res.into_body()).await;
        assert!(end.is_none());
        assert_eq!(bytes, b"ok");
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for s in &seen {
            assert!(s.complete);
            assert_eq!(s.body.len(), data.len());
            assert!(s.body == data, "byte-identical");
        }
        let v = settle_and_check(&client, &snap, "replay").await;
        report(&v, &client, &snap);
    })
}

/// A kept-alive connection: the first POST is answered; the server reads the second POST in
/// full and then resets the connection. The second POST may have been acted on: it is sent
/// exactly once.
#[test]
fn a_post_on_a_reused_connection_reset_after_reading_is_sent_once() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, conns) = serve(move |_, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                let mut served = 0;
                while let Some(seen) = read_seen(&mut socket, &mut pending).await {
                    l.lock().unwrap().push(seen);
                    served += 1;
                    if served == 2 {
                        reset(socket);
                        return;
                    }
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            }
        })
        .await;
        let client = quiet_client(&[addr], "reuse").build().unwrap();
        let res = client.post("/one", "first").await.unwrap();
        let _ = drain(res.into_body()).await;
        let err = timeout(BOUND, client.post("/two", "second"))
            .await
            .expect("no hang")
            .expect_err("reset after the server read it");
        assert_eq!(err.attempts(), 1, "{}", chain(&err));
        let seen = log.lock().unwrap().clone();
        let twos = seen.iter().filter(|s| s.head.contains("/two")).count();
        assert_eq!(twos, 1, "the second POST reached the server once: {seen:?}");
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        let v = settle_and_check(&client, &snap, "reuse").await;
        report(&v, &client, &snap);
    })
}

/// A server that answers 413 before reading a large streamed POST body, then closes: the
/// caller gets the 413 (or a typed error), never a hang, and the request is sent once.
#[test]
fn an_early_413_before_the_body_is_read_ends_cleanly() {
    run(|snap| async move {
        let (addr, conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            if read_head(&mut socket, &mut pending).await.is_none() {
                return;
            }
            let _ = socket
                .write_all(
                    b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbig",
                )
                .await;
            let _ = socket.shutdown().await;
            // Keep reading (and discarding) so that the client is not reset.
            hold(socket).await;
        })
        .await;
        let client = quiet_client(&[addr], "early").build().unwrap();
        let (tx, body) = chan_body(SizeHint::new());
        tokio::spawn(async move {
            for _ in 0..100 {
                if tx.send(Ok(Bytes::from(vec![b'z'; 8192]))).is_err() {
                    return;
                }
                sleep(ms(2)).await;
            }
        });
        let req = Request::post("/upload").body(body).unwrap();
        let out = timeout(BOUND, client.request(req)).await.expect("no hang");
        match out {
            Ok(res) => {
                assert_eq!(res.status(), 413);
                let (bytes, _end) = drain(res.into_body()).await;
                assert_eq!(bytes, b"big");
            }
            Err(e) => panic!("the 413 was lost: {}", chain(&e)),
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        let v = settle_and_check(&client, &snap, "early").await;
        report(&v, &client, &snap);
    })
}

/// An unmarked POST answered early (before its body was read) with 503 + Retry-After: the
/// table lets it be retried (the server said it did not act). The retry must carry the whole
/// body, byte-identical, though the first attempt stopped sending it.
#[test]
fn an_early_503_retry_after_replays_the_whole_body() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, _conns) = serve(move |n, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                let Some(head) = read_head(&mut socket, &mut pending).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&head).into_owned();
                if n == 0 {
                    l.lock().unwrap().push(Seen {
                        head,
                        body: Vec::new(),
                        complete: false,
                    });
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                        )
                        .await;
                    let _ = socket.shutdown().await;
                    hold(socket).await;
                    return;
                }
                let (body, complete) =
                    read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                l.lock().unwrap().push(Seen {
                    head,
                    body,
                    complete,
                });
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                hold(socket).await;
            }
        })
        .await;
        let client = quiet_client(&[addr], "early503")
            .backoff(meshless::backoff::Backoff::none())
            .build()
            .unwrap();
        let data = pattern(20_000);
        let (tx, body) = chan_body(SizeHint::new());
        let feed = data.clone();
        tokio::spawn(async move {
            for c in feed.chunks(2000) {
                if tx.send(Ok(Bytes::copy_from_slice(c))).is_err() {
                    return;
                }
                sleep(ms(5)).await;
            }
        });
        let req = Request::post("/upload").body(body).unwrap();
        let res = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect("the retry is answered");
        assert_eq!(res.status(), 200);
        let _ = drain(res.into_body()).await;
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].complete);
        assert!(seen[1].body == data, "the retry's body is the whole body");
        let v = settle_and_check(&client, &snap, "early503").await;
        report(&v, &client, &snap);
    })
}

/// 100 Continue, then the final answer: the caller gets the final answer.
/// 100 Continue, then the connection closes: a typed error, no hang.
#[test]
fn interim_100_continue_answers() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |n, mut socket| async move {
            let mut pending = Vec::new();
            let Some(head) = read_head(&mut socket, &mut pending).await else {
                return;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            let _ = socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            let _ = read_body(&mut socket, &mut pending, &head, usize::MAX).await;
            if head.contains("/close") {
                let _ = socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                reset(socket);
                return;
            }
            let _ = n;
            let _ = socket
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
                .await;
            hold(socket).await;
        })
        .await;
        let client = quiet_client(&[addr], "cont").build().unwrap();
        let req = Request::post("/ok")
            .header("expect", "100-continue")
            .body(http_body_util::Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let res = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect("answered");
        assert_eq!(res.status(), 201);
        let (bytes, end) = drain(res.into_body()).await;
        assert!(end.is_none());
        assert_eq!(bytes, b"ok");

        let err = timeout(BOUND, client.post("/close", "payload"))
            .await
            .expect("no hang")
            .expect_err("closed after 100");
        assert_eq!(err.attempts(), 1, "a POST: {}", chain(&err));
        let v = settle_and_check(&client, &snap, "cont").await;
        report(&v, &client, &snap);
    })
}

/// A hedged PUT: both attempts carry the same body, byte-identical, and the loser (cancelled)
/// is charged nothing.
#[test]
fn a_hedged_put_sends_the_same_body_twice() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let mk = |answer: bool, log: Log| {
            move |_, mut socket: TcpStream| {
                let log = log.clone();
                async move {
                    let mut pending = Vec::new();
                    while let Some(seen) = read_seen(&mut socket, &mut pending).await {
                        log.lock().unwrap().push(seen);
                        if !answer {
                            hold(socket).await;
                            return;
                        }
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            }
        };
        let (a, _) = serve(mk(false, log.clone())).await;
        let (b, _) = serve(mk(false, log.clone())).await;
        let client = quiet_client(&[a, b], "hedgeput")
            .hedge({
                let mut c = meshless::hedge::HedgeConfig::default();
                c.delay = meshless::hedge::HedgeDelay::Fixed(ms(50));
                c.min_per_second = 1000.0;
                c
            })
            .build()
            .unwrap();
        let data = pattern(40_000);
        let req = Request::put("/doc")
            .body(http_body_util::Full::new(Bytes::from(data.clone())))
            .unwrap();
        assert!(timeout(ms(400), client.request(req)).await.is_err());
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "a hedge was sent");
        for s in &seen {
            assert!(s.complete);
            assert!(s.body == data, "byte-identical");
        }
        let v = settle_and_check(&client, &snap, "hedgeput").await;
        report(&v, &client, &snap);
        assert_eq!(endpoint_failures(&client), 0);
    })
}

/// A port nothing listens on.
async fn dead_port() -> SocketAddr {
    common::refusing_port()
}

/// A body larger than the replay cap, to a refused port beside a healthy one: a refused
/// connection is one nothing reached (README: "sent again for every request"), and the body
/// was never read, so the request may go to the other endpoint. Observed, not a contract
/// breach if it fails: the cap may forbid it. The control with a small body must succeed.
#[test]
fn a_refused_connection_with_a_small_body_goes_elsewhere() {
    run(|snap| async move {
        let (ok, log) = recording_server().await;
        let dead = dead_port().await;
        let client = quiet_client(&[dead, ok], "refused").build().unwrap();
        for _ in 0..8 {
            let res = timeout(BOUND, client.post("/small", vec![b's'; 1000]))
                .await
                .expect("no hang")
                .expect("refused connections are retried elsewhere");
            assert_eq!(res.status(), 200);
            let _ = drain(res.into_body()).await;
        }
        assert!(
            log.lock()
                .unwrap()
                .iter()
                .all(|s| s.complete && s.body.len() == 1000)
        );
        let v = settle_and_check(&client, &snap, "refused").await;
        report(&v, &client, &snap);
    })
}

/// A PUT whose streamed body fails after its first chunk was sent: the caller's fault, not
/// retried (it would fail again), not charged to the endpoint.
#[test]
fn a_put_body_failing_midstream_is_not_retried() {
    run(|snap| async move {
        let (addr, log) = recording_server().await;
        let client = quiet_client(&[addr], "failput").build().unwrap();
        let (tx, body) = chan_body(SizeHint::new());
        tx.send(Ok(Bytes::from(vec![b'a'; 5000]))).unwrap();
        let feeder = tokio::spawn(async move {
            sleep(ms(50)).await;
            let _ = tx.send(Err(std::io::Error::other("the caller's disk failed")));
            tx
        });
        let req = Request::put("/doc").body(body).unwrap();
        let err = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect_err("the body failed");
        let _tx = feeder.await.unwrap();
        assert_eq!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
        assert_eq!(err.attempts(), 1, "{}", chain(&err));
        assert!(wait_until(BOUND, || log.lock().unwrap().len() == 1).await);
        sleep(ms(50)).await;
        assert_eq!(log.lock().unwrap().len(), 1, "sent once");
        assert_eq!(endpoint_failures(&client), 0, "{:?}", client.endpoints());
        let v = settle_and_check(&client, &snap, "failput").await;
        report(&v, &client, &snap);
    })
}

/// The same over a body larger than the replay cap to a refused port beside a healthy one.
/// Reported as observed: with the body never read, a second endpoint could take it.
#[test]
fn observe_a_refused_connection_with_a_large_body() {
    run(|snap| async move {
        let (ok, _log) = recording_server().await;
        let dead = dead_port().await;
        let client = quiet_client(&[dead, ok], "refusedbig").build().unwrap();
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            let out = timeout(BOUND, client.post("/big", vec![b'b'; 100 * 1024]))
                .await
                .expect("no hang");
            outcomes.push(match out {
                Ok(res) => format!("{}", res.status()),
                Err(e) => format!("{:?}", e.kind()),
            });
        }
        eprintln!("large body via a refused endpoint: {outcomes:?}");
        let v = settle_and_check(&client, &snap, "refusedbig").await;
        report(&v, &client, &snap);
    })
}
