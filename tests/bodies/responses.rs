//! Response bodies and heads: broken framing, trailers, stalls, interim answers, late reads.

use super::*;

/// Broken response bodies end with a typed meshless error, are charged to the endpoint once,
/// and the books balance: a content-length longer than what came then a close; chunked
/// encoding with a bad size line; a chunk larger than announced.
#[test]
fn broken_response_bodies_end_with_typed_errors() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            let Some(head) = read_head(&mut socket, &mut pending).await else {
                return;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            let reply: &[u8] = if head.contains("/short") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly-this"
            } else if head.contains("/badhex") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nxx\r\n"
            } else if head.contains("/overlong") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n"
            } else if head.contains("/hugechunk") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffffff\r\nab"
            } else {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
            };
            let _ = socket.write_all(reply).await;
            reset(socket);
        })
        .await;
        let client = quiet_client(&[addr], "broken").build().unwrap();
        for path in ["/short", "/badhex", "/overlong", "/hugechunk", "/cut"] {
            let res = match timeout(BOUND, client.get(path)).await.expect("no hang") {
                Ok(res) => res,
                Err(e) => {
                    // A head-level failure is a typed error too.
                    let _ = e.kind();
                    continue;
                }
            };
            let (_bytes, end) = drain(res.into_body()).await;
            let err = end.unwrap_or_else(|| panic!("{path}: a broken body must fail"));
            assert!(
                meshless_kind(&*err).is_some(),
                "{path}: not a meshless error: {}",
                chain(&*err)
            );
        }
        let s = client.stats();
        assert_eq!(s.successes, 0, "{s:?}");
        let v = settle_and_check(&client, &snap, "broken").await;
        report(&v, &client, &snap);
    })
}

/// Response trailers of a chunked body reach the caller.
#[test]
fn response_trailers_reach_the_caller() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            while read_head(&mut socket, &mut pending).await.is_some() {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ntrailer: x-sum\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 42\r\n\r\n")
                    .await;
            }
        })
        .await;
        let client = quiet_client(&[addr], "trailers").build().unwrap();
        let req = Request::get("/")
            .header("te", "trailers")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let res = client.request(req).await.unwrap();
        let collected = timeout(BOUND, res.into_body().collect())
            .await
            .expect("no hang")
            .expect("a whole body");
        let trailers = collected.trailers().cloned();
        assert_eq!(collected.to_bytes(), "abc");
        assert_eq!(
            trailers
                .as_ref()
                .and_then(|t| t.get("x-sum"))
                .map(|v| v.as_bytes()),
            Some(&b"42"[..]),
            "{trailers:?}"
        );
        let v = settle_and_check(&client, &snap, "trailers").await;
        report(&v, &client, &snap);
    })
}

/// A body that stalls mid-way (after some chunks) ends at the total deadline with
/// `DeadlineExceeded`, not later, and charges the endpoint.
#[test]
fn a_body_stalling_mid_way_ends_at_the_deadline() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            if read_head(&mut socket, &mut pending).await.is_none() {
                return;
            }
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for _ in 0..5 {
                let _ = socket.write_all(b"1\r\nx\r\n").await;
                sleep(ms(20)).await;
            }
            hold(socket).await;
        })
        .await;
        let client = client_for(&[addr], "stall")
            .deadline(ms(600))
            .build()
            .unwrap();
        let started = tokio::time::Instant::now();
        let res = client.get("/").await.unwrap();
        let (bytes, end) = drain(res.into_body()).await;
        let took = started.elapsed();
        let err = end.expect("the deadline ends the body");
        assert_eq!(
            meshless_kind(&*err),
            Some(Kind::DeadlineExceeded),
            "{}",
            chain(&*err)
        );
        assert_eq!(bytes.len(), 5);
        assert!(
            took >= ms(590) && took < ms(600) + Duration::from_secs(1),
            "{took:?}"
        );
        let e = &client.endpoints()[0];
        assert_eq!((e.requests, e.failures, e.cancelled), (1, 1, 0), "{e:?}");
        let v = settle_and_check(&client, &snap, "stall").await;
        report(&v, &client, &snap);
    })
}

/// Interim 1xx answers forever, a head that drips a byte at a time forever: each ends at the
/// deadline with `DeadlineExceeded`.
#[test]
fn endless_interim_answers_and_dripping_heads_end_at_the_deadline() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            let Some(head) = read_head(&mut socket, &mut pending).await else {
                return;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            for _ in 0..2000 {
                let bytes: &[u8] = if head.contains("/interim") {
                    b"HTTP/1.1 102 Processing\r\n\r\n"
                } else if head.contains("/drip") {
                    b"x"
                } else {
                    b"x-more: yes\r\n"
                };
                if socket.write_all(bytes).await.is_err() {
                    return;
                }
                sleep(ms(10)).await;
            }
        })
        .await;
        let client = client_for(&[addr], "endless")
            .deadline(ms(500))
            .max_retries(0)
            .build()
            .unwrap();
        for path in ["/interim", "/drip", "/headers"] {
            let started = tokio::time::Instant::now();
            // The dripped head starts as a valid status line for "/headers".
            let out = timeout(BOUND, client.get(path)).await.expect("no hang");
            let took = started.elapsed();
            let err = out.expect_err(path);
            assert!(
                took < Duration::from_millis(1500),
                "{path}: {took:?} {}",
                chain(&err)
            );
            let _ = err.kind();
        }
        let v = settle_and_check(&client, &snap, "endless").await;
        report(&v, &client, &snap);
    })
}

/// Huge response headers, a status line that is not HTTP, a body after a 204: typed errors
/// or answers, never a panic or a hang.
#[test]
fn malformed_heads_are_typed_errors() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            let Some(head) = read_head(&mut socket, &mut pending).await else {
                return;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            let reply: Vec<u8> = if head.contains("/huge") {
                let mut r = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
                r.extend(std::iter::repeat_n(b'a', 2 << 20));
                r.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
                r
            } else if head.contains("/garbage") {
                b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()
            } else if head.contains("/twocl") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 5\r\n\r\nhello".to_vec()
            } else {
                b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello".to_vec()
            };
            let _ = socket.write_all(&reply).await;
            hold(socket).await;
        })
        .await;
        let client = quiet_client(&[addr], "malformed")
            .max_retries(0)
            .build()
            .unwrap();
        for path in ["/huge", "/garbage", "/twocl", "/204"] {
            match timeout(BOUND, client.get(path)).await.expect("no hang") {
                Ok(res) => {
                    let (_b, _e) = drain(res.into_body()).await;
                }
                Err(e) => {
                    let _ = e.kind();
                }
            }
        }
        let v = settle_and_check(&client, &snap, "malformed").await;
        report(&v, &client, &snap);
    })
}

/// A body whose every byte (and, for the chunked one, its end) arrived well inside the
/// deadline, which the caller reads slowly: its last poll comes after the deadline. The server
/// did nothing wrong: the endpoint is not charged, and the request is no failure (README:
/// "a frame read after the deadline ... make it `cancelled`").
#[test]
fn a_complete_body_polled_after_the_deadline_charges_no_endpoint() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            while let Some(head) = read_head(&mut socket, &mut pending).await {
                let head = String::from_utf8_lossy(&head).into_owned();
                let reply: &[u8] = if head.contains("/chunked") {
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                };
                let _ = socket.write_all(reply).await;
            }
        })
        .await;
        let client = client_for(&[addr], "slowtail")
            .deadline(ms(300))
            .build()
            .unwrap();
        let mut ends = Vec::new();
        for path in ["/length", "/chunked"] {
            let res = client.get(path).await.unwrap();
            let mut body = res.into_body();
            let first = body.frame().await.expect("a frame").expect("data");
            assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"ok"[..]));
            sleep(ms(500)).await; // past the deadline, every byte long received
            let end = timeout(BOUND, body.frame()).await.expect("no hang");
            ends.push(format!(
                "{path}: {:?}",
                end.map(|f| f.map(|_| ()).map_err(|e| chain(&*e)))
            ));
        }
        let v = settle_and_check(&client, &snap, "slowtail").await;
        report(&v, &client, &snap);
        let s = client.stats();
        assert_eq!(
            endpoint_failures(&client),
            0,
            "{ends:?} {:?}",
            client.endpoints()
        );
        assert_eq!(s.failures, 0, "{ends:?} {s:?}");
    })
}
