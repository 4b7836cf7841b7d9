//! Deadlines over HTTP/2: trickling bodies, requests queued behind SETTINGS_MAX_CONCURRENT_STREAMS,
//! a server that never ACKs SETTINGS or raises its stream limit late.

use super::*;
use http::Response;
use http_body_util::BodyExt;
use std::time::Instant;

/// A plain (non-gRPC) body: head, then one byte every 20 ms forever. A 300 ms deadline cuts
/// the body at about the deadline, typed.
#[tokio::test]
async fn a_body_trickling_one_byte_at_a_time_ends_at_the_deadline() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder().status(200).body(()).unwrap();
            let mut send = c.respond.send_response(res, false).unwrap();
            for _ in 0..1000 {
                if send.send_data(Bytes::from_static(b"x"), false).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }),
    )
    .await;
    let client = client(addr, Duration::from_millis(300));
    let started = Instant::now();
    let res = client.get("http://svc/trickle").await.expect("head");
    let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("cut, not hung");
    let took = started.elapsed();
    eprintln!(
        "after {took:?}: {:?}",
        body.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    assert!(
        body.is_err(),
        "a trickling body past the deadline is an error"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// SETTINGS_MAX_CONCURRENT_STREAMS = 1, the one stream held by the server forever, 10 more
/// requests (GETs and POSTs) queued behind it with a 300 ms deadline: each ends with a typed
/// error at about the deadline.
#[tokio::test]
async fn requests_queued_behind_a_held_stream_end_at_the_deadline() {
    let (addr, log) = serve_h2(
        Some(1),
        script(|mut c: Call| async move {
            let _ = wait_reset_response(&mut c.respond).await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_millis(300));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..11 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = if i % 2 == 0 {
                client.get(format!("http://svc/g{i}")).await
            } else {
                client.post(format!("http://svc/p{i}"), "x").await
            };
            (
                r.map(|r| r.status()).map_err(|e| err(&e)),
                started.elapsed(),
            )
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("ended")
                .unwrap(),
        );
    }
    eprintln!("{out:#?}\nseen {:?}", log.paths());
    for (r, took) in &out {
        assert!(r.is_err(), "{r:?}");
        assert!(*took < Duration::from_secs(2), "took {took:?}");
    }
    let posts = log.paths().iter().filter(|p| p.1.starts_with("/p")).count();
    assert!(posts <= 5, "no POST sent twice: {:?}", log.paths());
    settle_books(&client).await;
}

async fn settle_books(client: &Client) {
    let c = client.clone();
    eventually(move || c.endpoints().iter().all(|e| e.in_flight == 0)).await;
    books(client);
}

/// A server that never ACKs the client's SETTINGS but answers requests: requests are answered
/// (or at least end by their deadline).
#[tokio::test]
async fn a_server_that_never_acks_settings_is_served_or_ends_at_the_deadline() {
    let (addr, _log) = serve_raw(raw(|conn, mut tcp, log| async move {
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        let mut bodies = Default::default();
        while let Some((s, _)) = next_request(&mut tcp, conn, &log, false, &mut bodies).await {
            respond(&mut tcp, s, b"ok").await;
        }
    }))
    .await;
    let client = client(addr, Duration::from_millis(500));
    let started = Instant::now();
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_secs(5), client.get("http://svc/"))
            .await
            .expect("not hung");
        let took = started.elapsed();
        eprintln!(
            "{:?} after {took:?}",
            r.as_ref().map(|r| r.status()).map_err(err)
        );
        assert!(r.is_ok(), "{:?}", r.as_ref().err().map(err));
    }
}

/// SETTINGS_MAX_CONCURRENT_STREAMS = 0 at first, raised to 10 a moment later: a request waiting
/// for a stream is then sent and answered.
#[tokio::test]
async fn a_stream_limit_raised_from_zero_lets_the_waiting_request_through() {
    let (addr, _log) = serve_raw(raw(|conn, mut tcp, log| async move {
        if !accept_preface(&mut tcp, &[0, 3, 0, 0, 0, 0]).await {
            return;
        }
        let (mut rd, mut wr) = tcp.into_split();
        // Raise the limit after 200 ms.
        let raise = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tokio::io::AsyncWriteExt::write_all(
                &mut wr,
                &common::frames::frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 10]),
            )
            .await;
            wr
        });
        // Read until the first request arrives (ACKs can wait for the writer).
        let mut acks = 0;
        let req;
        loop {
            let mut head = [0u8; 9];
            if tokio::io::AsyncReadExt::read_exact(&mut rd, &mut head)
                .await
                .is_err()
            {
                return;
            }
            let len = ((head[0] as usize) << 16) | ((head[1] as usize) << 8) | head[2] as usize;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut p = vec![0u8; len];
            if tokio::io::AsyncReadExt::read_exact(&mut rd, &mut p)
                .await
                .is_err()
            {
                return;
            }
            log.lock()
                .unwrap()
                .frames
                .push((conn, head[3], head[4], stream, p));
            if head[3] == SETTINGS && head[4] & 1 == 0 {
                acks += 1;
            }
            if (head[3] == HEADERS || head[3] == DATA) && head[4] & 1 != 0 {
                req = Some(stream);
                break;
            }
        }
        let mut wr = raise.await.unwrap();
        for _ in 0..acks {
            let _ = tokio::io::AsyncWriteExt::write_all(
                &mut wr,
                &common::frames::frame(SETTINGS, 1, 0, &[]),
            )
            .await;
        }
        let s = req.unwrap();
        let _ = tokio::io::AsyncWriteExt::write_all(
            &mut wr,
            &common::frames::frame(HEADERS, 5, s, &[0x88]),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(rd);
    }))
    .await;
    let client = client(addr, Duration::from_secs(2));
    let r = tokio::time::timeout(Duration::from_secs(5), client.get("http://svc/"))
        .await
        .expect("not hung");
    assert_eq!(r.map_err(|e| err(&e)).map(|r| r.status().as_u16()), Ok(200));
}
