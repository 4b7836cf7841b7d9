//! Cancellation: futures and bodies dropped by their caller at every point, charged to no one.

use super::*;

/// Many callers dropping their futures while the server holds the request (after the request
/// was fully sent) and dropping response bodies half-way: no endpoint failure, no ejection,
/// the breaker stays closed, nothing left in flight, and the books balance.
#[test]
fn cancellations_charge_nothing_eject_nothing_open_nothing() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            while let Some(head) = read_head(&mut socket, &mut pending).await {
                let head = String::from_utf8_lossy(&head).into_owned();
                let _ = read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                if head.contains("/hold") {
                    hold(socket).await;
                    return;
                }
                if head.contains("/drip") {
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
                        )
                        .await;
                    hold(socket).await;
                    return;
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        })
        .await;
        let client = quiet_client(&[addr], "cancel")
            .limit({
                let mut c = meshless::limit::LimitConfig::default();
                c.algorithm = meshless::limit::Algorithm::Fixed { max: 4 };
                c
            })
            .breaker({
                let mut c = meshless::breaker::BreakerConfig::default();
                c.failure_rate_threshold = 0.5;
                c.minimum_calls = 4;
                c
            })
            .build()
            .unwrap();
        const N: usize = 12;
        // Futures dropped while the server holds the request.
        for i in 0..N {
            let fut = if i % 2 == 0 {
                client.get("/hold")
            } else {
                client.post("/hold", "payload")
            };
            assert!(timeout(ms(100), fut).await.is_err());
        }
        // Bodies dropped after the first chunk.
        for _ in 0..N {
            let res = client.get("/drip").await.unwrap();
            let mut body = res.into_body();
            let frame = timeout(BOUND, body.frame()).await.expect("a first chunk");
            assert!(frame.is_some());
            drop(body);
        }
        let v = settle_and_check(&client, &snap, "cancel").await;
        report(&v, &client, &snap);
        let e = &client.endpoints()[0];
        assert_eq!(e.failures, 0, "{e:?}");
        assert_eq!(e.ejections, 0, "{e:?}");
        assert_eq!(client.breaker().stats().state, BreakerState::Closed);
        let s = client.stats();
        assert_eq!(s.failures, 0, "{s:?}");
        assert_eq!(s.cancelled, N as u64, "{s:?}");
        let res = client.get("/ok").await.expect("still served");
        assert_eq!(res.status(), 200);
    })
}

/// Dropping the future during a retry's backoff: the one failure is the endpoint's, the
/// cancellation is not; nothing left in flight; the retry token goes back.
#[test]
fn a_future_dropped_during_backoff() {
    run(|snap| async move {
        let (addr, conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            while read_head(&mut socket, &mut pending).await.is_some() {
                let _ = socket
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        })
        .await;
        let client = quiet_client(&[addr], "backoff")
            .backoff(
                meshless::backoff::Backoff::decorrelated_jitter(
                    Duration::from_secs(2),
                    Duration::from_secs(2),
                )
                .unwrap(),
            )
            .build()
            .unwrap();
        let fut = client.get("/");
        assert!(timeout(ms(500), fut).await.is_err(), "in backoff");
        let v = settle_and_check(&client, &snap, "backoff").await;
        report(&v, &client, &snap);
        let s = client.stats();
        assert_eq!(
            (s.requests, s.cancelled, s.failures, s.retries),
            (1, 1, 0, 0),
            "{s:?}"
        );
        let e = &client.endpoints()[0];
        assert_eq!((e.requests, e.failures), (1, 1), "{e:?}");
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    })
}

/// A hedge race cancelled by the caller while both attempts are at the endpoints: neither
/// endpoint is charged a failure, nothing stays in flight.
#[test]
fn a_hedge_race_dropped_by_the_caller() {
    run(|snap| async move {
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let script = move |_, socket: TcpStream| {
            let s2 = s2.clone();
            async move {
                let mut socket = socket;
                let mut pending = Vec::new();
                if read_head(&mut socket, &mut pending).await.is_some() {
                    s2.fetch_add(1, Ordering::SeqCst);
                    hold(socket).await;
                }
            }
        };
        let (a, _) = serve(script.clone()).await;
        let (b, _) = serve(script).await;
        let client = quiet_client(&[a, b], "hedge")
            .hedge({
                let mut c = meshless::hedge::HedgeConfig::default();
                c.delay = meshless::hedge::HedgeDelay::Fixed(ms(50));
                c.min_per_second = 1000.0;
                c
            })
            .build()
            .unwrap();
        let fut = client.get("/");
        assert!(timeout(ms(400), fut).await.is_err());
        assert_eq!(seen.load(Ordering::SeqCst), 2, "the hedge was sent");
        let v = settle_and_check(&client, &snap, "hedge").await;
        report(&v, &client, &snap);
        let failures = endpoint_failures(&client);
        assert_eq!(failures, 0, "{:?}", client.endpoints());
        let cancelled: u64 = client.endpoints().iter().map(|e| e.cancelled).sum();
        assert_eq!(cancelled, 2, "{:?}", client.endpoints());
        assert_eq!(client.stats().cancelled, 1);
    })
}

/// A request body still streaming when the caller drops the future: a cancellation, not a
/// failure, and the half-sent POST is not sent again.
#[test]
fn a_future_dropped_while_its_body_streams() {
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
            }
        })
        .await;
        let client = quiet_client(&[addr], "streaming").build().unwrap();
        let (tx, body) = chan_body(SizeHint::new());
        tx.send(Ok(Bytes::from_static(b"first"))).unwrap();
        let req = Request::post("/up").body(body).unwrap();
        assert!(timeout(ms(300), client.request(req)).await.is_err());
        drop(tx);
        let v = settle_and_check(&client, &snap, "streaming").await;
        report(&v, &client, &snap);
        // The server sees the connection end.
        assert!(
            wait_until(BOUND, || !log.lock().unwrap().is_empty()).await,
            "the server saw the connection end"
        );
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(!seen[0].complete);
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        let e = &client.endpoints()[0];
        assert_eq!((e.failures, e.cancelled), (0, 1), "{e:?}");
    })
}

/// The same drop while a retry waits out a server's `Retry-After` (every endpoint pushing
/// back): the retry never left, so it is not a retry sent (`ClientStats::retries` is
/// "Retries sent"; `retries_total` "retries sent").
#[test]
fn a_future_dropped_while_waiting_out_a_pushback() {
    run(|snap| async move {
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let (addr, _conns) = serve(move |_, mut socket| {
            let s2 = s2.clone();
            async move {
                let mut pending = Vec::new();
                while read_head(&mut socket, &mut pending).await.is_some() {
                    s2.fetch_add(1, Ordering::SeqCst);
                    let _ = socket
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            }
        })
        .await;
        let client = quiet_client(&[addr], "pushback").build().unwrap();
        let fut = client.get("/");
        assert!(timeout(ms(500), fut).await.is_err(), "waiting");
        let v = settle_and_check(&client, &snap, "pushback").await;
        report(&v, &client, &snap);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "one request reached the server"
        );
        let s = client.stats();
        assert_eq!((s.requests, s.cancelled, s.failures), (1, 1, 0), "{s:?}");
        // FINDING (counting): the retry that waited out the pushback was counted in
        // `retries` (and `attempts_total`) when it went down to the balancer, which refused it
        // (every endpoint pushing back); it never reached a server (`seen` is 1).
        assert_eq!(s.retries, 0, "no retry was sent: {s:?}");
    })
}

/// The other side of the same drop: a retry that reached its server before the caller gave
/// up is a retry sent, and counted once.
#[test]
fn a_future_dropped_while_its_retry_is_at_the_server() {
    run(|snap| async move {
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let (addr, _conns) = serve(move |_, mut socket| {
            let s2 = s2.clone();
            async move {
                let mut pending = Vec::new();
                while read_head(&mut socket, &mut pending).await.is_some() {
                    if s2.fetch_add(1, Ordering::SeqCst) == 0 {
                        let _ = socket
                            .write_all(
                                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                    }
                    // The retry is held: no answer.
                }
            }
        })
        .await;
        let client = quiet_client(&[addr], "retry_held").build().unwrap();
        let fut = client.get("/");
        assert!(timeout(ms(500), fut).await.is_err(), "held");
        let v = settle_and_check(&client, &snap, "retry_held").await;
        report(&v, &client, &snap);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "the retry reached the server"
        );
        let s = client.stats();
        assert_eq!((s.requests, s.cancelled, s.retries), (1, 1, 1), "{s:?}");
    })
}

/// Futures dropped at their first poll (mid-connect) and right after: nothing is charged,
/// nothing stays in flight, the books balance.
#[test]
fn futures_dropped_before_and_while_connecting() {
    run(|snap| async move {
        let (addr, _log) = recording_server().await;
        let client = quiet_client(&[addr], "early_drop").build().unwrap();
        for i in 0..20u64 {
            let fut = if i % 2 == 0 {
                client.get("/x")
            } else {
                client.post("/x", "payload")
            };
            if i % 4 < 2 {
                drop(fut); // never polled
            } else {
                let _ = timeout(Duration::ZERO, fut).await; // polled once
            }
        }
        let v = settle_and_check(&client, &snap, "early_drop").await;
        report(&v, &client, &snap);
        assert_eq!(endpoint_failures(&client), 0, "{:?}", client.endpoints());
        let s = client.stats();
        assert_eq!(s.failures, 0, "{s:?}");
        let res = client.get("/x").await.expect("still served");
        assert_eq!(res.status(), 200);
    })
}

/// A response whose body is never read, dropped at once: it keeps its head's class (a
/// success), the endpoint is not charged, the books balance.
#[test]
fn a_response_dropped_unread_keeps_its_class() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            if read_head(&mut socket, &mut pending).await.is_none() {
                return;
            }
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nsome")
                .await;
            hold(socket).await;
        })
        .await;
        let client = quiet_client(&[addr], "unread").build().unwrap();
        for _ in 0..3 {
            let res = client.get("/").await.unwrap();
            drop(res);
        }
        let v = settle_and_check(&client, &snap, "unread").await;
        report(&v, &client, &snap);
        let s = client.stats();
        assert_eq!((s.successes, s.failures, s.cancelled), (3, 0, 0), "{s:?}");
        assert_eq!(endpoint_failures(&client), 0);
    })
}
