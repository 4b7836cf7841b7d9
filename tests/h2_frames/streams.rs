//! `SETTINGS_MAX_CONCURRENT_STREAMS` of 1 and 0: every request served or ended at its deadline; a
//! request dropped while it waits is not charged.

use super::*;

// ---------------------------------------------------------------------------------------------
// SETTINGS_MAX_CONCURRENT_STREAMS.

/// max_concurrent_streams = 1 and 24 concurrent requests (GETs and POSTs) over the http
/// client: every one is answered, none dropped or resent, no deadlock.
#[tokio::test]
async fn one_stream_at_a_time_serves_every_request() {
    let (addr, log) = serve_h2(
        Some(1),
        script(|mut c: Call| async move {
            let _ = read_body(c.request.body_mut()).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let res = Response::builder().status(200).body(()).unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            let _ = s.send_data(Bytes::from(format!("{}", c.index)), true);
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(20));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let res = if i % 2 == 0 {
                client.get(format!("http://svc/g{i}")).await
            } else {
                client.post(format!("http://svc/p{i}"), "body").await
            };
            let res = res.map_err(|e| format!("{:?}: {e}", e.kind()))?;
            let status = res.status();
            res.into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok::<_, String>(status)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("no deadlock")
                .unwrap(),
        );
    }
    eprintln!("{out:?}");
    assert!(out.iter().all(|r| matches!(r, Ok(s) if s.as_u16() == 200)));
    assert_eq!(log.calls(), 24);
    assert!(log.max_open.load(Ordering::SeqCst) <= 1);
    books(&client);
}

/// The same through the tonic channel with non-idempotent unary calls.
#[tokio::test]
async fn tonic_one_stream_at_a_time_serves_every_call() {
    let (addr, log) = serve_h2(
        Some(1),
        script(|mut c: Call| async move {
            let _ = read_body(c.request.body_mut()).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("ok"), false);
            let _ = s.send_trailers(trailers(b"0"));
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 { GET } else { CREATE };
            unary(channel, path, tonic::Request::new(ping("x"))).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("no deadlock")
                .unwrap(),
        );
    }
    let errs: Vec<_> = out.iter().filter(|r| r.is_err()).collect();
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(log.calls(), 24);
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

/// max_concurrent_streams = 0: no stream can ever open. A request ends at its deadline,
/// typed, and does not hang.
#[tokio::test]
async fn zero_streams_allowed_ends_at_the_deadline() {
    let (addr, log) = serve_h2(
        Some(0),
        script(|_c: Call| async move {
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_millis(300));
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(5), client.post("http://svc/p", "x"))
        .await
        .expect("the request ended");
    let took = started.elapsed();
    let e = out.expect_err("no stream can open");
    eprintln!("{:?} after {took:?}: {e}", e.kind());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(log.calls(), 0);
    books(&client);
}

/// max_concurrent_streams = 1: a request queued behind a held stream, dropped by its caller
/// while queued: a cancellation, never the endpoint's failure; the held one then completes.
#[tokio::test]
async fn a_request_dropped_while_queued_for_a_stream_is_not_charged() {
    let release = Arc::new(Notify::new());
    let r2 = release.clone();
    let (addr, log) = serve_h2(
        Some(1),
        script(move |mut c: Call| {
            let release = r2.clone();
            async move {
                let _ = read_body(c.request.body_mut()).await;
                if c.index == 0 {
                    release.notified().await;
                }
                let res = Response::builder().status(200).body(()).unwrap();
                let _ = c.respond.send_response(res, true);
            }
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(10));
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.get("http://svc/held").await.map(|r| r.status()) }
    });
    // The held stream is open on the server.
    while log.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queued =
        tokio::time::timeout(Duration::from_millis(200), client.get("http://svc/queued")).await;
    assert!(
        queued.is_err(),
        "the queued request cannot have been answered"
    );
    settle().await;
    release.notify_one();
    let held = held.await.unwrap();
    assert_eq!(held.unwrap().as_u16(), 200);
    settle().await;
    let e = &client.endpoints()[0];
    let r = client.retry_stats();
    eprintln!(
        "endpoint {e:?}; retry requests={} successes={} failures={} cancelled={}; server saw {:?}",
        r.requests(),
        r.successes(),
        r.failures(),
        r.cancelled(),
        log.seen()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(e.failures, 0, "{e:?}");
    assert_eq!(r.failures(), 0);
    assert_eq!(r.cancelled(), 1);
    books(&client);
    // The connection still works.
    assert_eq!(client.get("http://svc/after").await.unwrap().status(), 200);
}
