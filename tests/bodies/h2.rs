//! The same edges over HTTP/2.

use super::*;

/// An HTTP/2 server: `/hold` never answers; `/drip` answers a head and one chunk, then stays
/// open; `/stall` answers a head and nothing more; anything else `ok`. Each request's body is
/// read to its end first.
async fn h2_server() -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_string();
                        let _ = req.into_body().collect().await;
                        let (tx, body) = chan_body(SizeHint::new());
                        match path.as_str() {
                            "/hold" => sleep(Duration::from_secs(60)).await,
                            "/drip" => {
                                tx.send(Ok(Bytes::from_static(b"abc"))).unwrap();
                                tokio::spawn(async move {
                                    sleep(Duration::from_secs(60)).await;
                                    drop(tx);
                                });
                            }
                            "/stall" => {
                                tokio::spawn(async move {
                                    sleep(Duration::from_secs(60)).await;
                                    drop(tx);
                                });
                            }
                            _ => {
                                tx.send(Ok(Bytes::from_static(b"ok"))).unwrap();
                            }
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(body))
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    addr
}

/// Over HTTP/2: futures dropped while the server holds the stream, bodies dropped after a
/// first chunk: no failure, no ejection, the breaker closed, nothing in flight. And a stalled
/// body ends at the deadline with `DeadlineExceeded`, charged to the endpoint.
#[test]
fn h2_cancellations_and_a_stalled_body() {
    run(|snap| async move {
        let addr = h2_server().await;
        let client = client_for(&[addr], "h2cancel")
            .http2_prior_knowledge(true)
            .deadline(ms(800))
            .limit({
                let mut c = meshless::limit::LimitConfig::default();
                c.algorithm = meshless::limit::Algorithm::Fixed { max: 8 };
                c
            })
            .build()
            .unwrap();
        const N: u64 = 8;
        for i in 0..N {
            let fut = if i % 2 == 0 {
                client.get("/hold")
            } else {
                client.post("/hold", vec![b'p'; 3000])
            };
            assert!(timeout(ms(100), fut).await.is_err());
        }
        for _ in 0..N {
            let res = client.get("/drip").await.unwrap();
            let mut body = res.into_body();
            let f = timeout(BOUND, body.frame()).await.expect("a chunk");
            assert!(f.is_some());
            drop(body);
        }
        let e = &client.endpoints()[0];
        assert_eq!((e.failures, e.ejections), (0, 0), "{e:?}");
        assert_eq!(client.breaker().stats().state, BreakerState::Closed);

        let started = tokio::time::Instant::now();
        let res = client.get("/stall").await.unwrap();
        let (_bytes, end) = drain(res.into_body()).await;
        let took = started.elapsed();
        let err = end.expect("the deadline ends it");
        assert_eq!(
            meshless_kind(&*err),
            Some(Kind::DeadlineExceeded),
            "{}",
            chain(&*err)
        );
        assert!(took >= ms(790) && took < ms(2000), "{took:?}");
        let v = settle_and_check(&client, &snap, "h2cancel").await;
        report(&v, &client, &snap);
        let s = client.stats();
        assert_eq!((s.cancelled, s.failures), (N, 1), "{s:?}");
        let e = &client.endpoints()[0];
        assert_eq!(e.failures, 1, "{e:?}");
        let res = client.get("/ok").await.expect("still served");
        assert_eq!(res.status(), 200);
    })
}

/// The short body of `a_body_shorter_than_its_declared_length_is_the_callers_fault` over
/// HTTP/2: the caller's bug, counted against no endpoint.
#[test]
fn h2_a_body_shorter_than_its_declared_length_is_the_callers_fault() {
    run(|snap| async move {
        let addr = h2_server().await;
        let client = client_for(&[addr], "h2short")
            .http2_prior_knowledge(true)
            .deadline(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut outcomes = Vec::new();
        // FINDING: over HTTP/2 the server resets the stream (PROTOCOL_ERROR: DATA short of
        // content-length), and each such request is charged to the endpoint as a failure
        // (`Kind::Service`, "stream error received: unspecific protocol error detected").
        for _ in 0..3 {
            let req = Request::post("/ok")
                .body(chunks(vec![vec![b'x'; 10]], SizeHint::with_exact(100)))
                .unwrap();
            let out = timeout(BOUND, client.request(req)).await.expect("no hang");
            outcomes.push(match out {
                Ok(res) => format!("{}", res.status()),
                Err(e) => format!("{:?}: {}", e.kind(), chain(&e)),
            });
        }
        let v = settle_and_check(&client, &snap, "h2short").await;
        report(&v, &client, &snap);
        assert_eq!(
            endpoint_failures(&client),
            0,
            "{outcomes:#?} {:?}",
            client.endpoints()
        );
    })
}
