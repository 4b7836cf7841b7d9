//! Streams that end early (the deadline, the attempt timeout, a dropped body) give back their
//! stream and their flow-control window.

use super::*;
use http::Response;
use http_body_util::BodyExt;
use std::time::Instant;

/// /trickle: head, one byte every 20 ms until reset (recorded). /big: head, then 1 MiB DATA as
/// the window allows, until reset or done. /hold: nothing, until reset (recorded). Else 200 "ok".
fn script_all() -> Script {
    script(|mut c: Call| async move {
        let path = c.request.uri().path().to_owned();
        match path.as_str() {
            "/trickle" => {
                let res = Response::builder().status(200).body(()).unwrap();
                let mut send = c.respond.send_response(res, false).unwrap();
                loop {
                    if send.send_data(Bytes::from_static(b"x"), false).is_err() {
                        break;
                    }
                    tokio::select! {
                        r = wait_reset_stream(&mut send) => {
                            if let Some(r) = r { c.log.resets.lock().unwrap().push((c.index, r)); }
                            return;
                        }
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
            }
            "/big" => {
                let res = Response::builder().status(200).body(()).unwrap();
                let mut send = c.respond.send_response(res, false).unwrap();
                let mut left = 4usize << 20;
                while left > 0 {
                    send.reserve_capacity(left.min(64 * 1024));
                    let cap = std::future::poll_fn(|cx| {
                        if let std::task::Poll::Ready(r) = send.poll_reset(cx) {
                            return std::task::Poll::Ready(Err(r.ok()));
                        }
                        send.poll_capacity(cx).map(Ok)
                    })
                    .await;
                    let cap = match cap {
                        Ok(cap) => cap,
                        Err(r) => {
                            if let Some(r) = r {
                                c.log.resets.lock().unwrap().push((c.index, r));
                            }
                            return;
                        }
                    };
                    let Some(Ok(n)) = cap else { return };
                    if n == 0 {
                        continue;
                    }
                    if send.send_data(Bytes::from(vec![b'b'; n]), false).is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = send.send_data(Bytes::new(), true);
            }
            "/hold" => {
                if let Some(r) = wait_reset_response(&mut c.respond).await {
                    c.log.resets.lock().unwrap().push((c.index, r));
                }
            }
            _ => {
                let res = Response::builder().status(200).body(()).unwrap();
                let mut send = c.respond.send_response(res, false).unwrap();
                let _ = send.send_data(Bytes::from_static(b"ok"), true);
            }
        }
    })
}

/// A body cut by the deadline: the caller got its error and still holds the body (to log it,
/// say). The stream must be reset then (RST_STREAM), not left open until the body is dropped.
#[tokio::test]
async fn a_body_cut_by_the_deadline_resets_its_stream_at_once() {
    let (addr, log) = serve_h2(None, script_all()).await;
    let client = client(addr, Duration::from_millis(300));
    let res = client.get("http://svc/trickle").await.expect("head");
    let mut body = res.into_body();
    let started = Instant::now();
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(3), body.frame())
            .await
            .expect("cut")
        {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e.to_string(),
            None => break "ended cleanly?!".to_owned(),
        }
    };
    eprintln!("body error after {:?}: {error}", started.elapsed());
    let reset = eventually(|| !log.resets().is_empty()).await;
    let held = body; // still held by the caller
    assert!(
        reset,
        "the server saw no RST_STREAM 3 s after the deadline cut the body (the stream stays open while the caller holds the body)"
    );
    drop(held);
}

/// GET to an endpoint that never answers, a second that does: the attempt timeout cuts the
/// first attempt, which is reset (RST_STREAM(CANCEL)), and the retry is answered.
#[tokio::test]
async fn an_attempt_cut_by_the_attempt_timeout_resets_its_stream() {
    let (hold, hlog) = serve_h2(
        None,
        script(|mut c: Call| async move {
            if let Some(r) = wait_reset_response(&mut c.respond).await {
                c.log.resets.lock().unwrap().push((c.index, r));
            }
        }),
    )
    .await;
    let (good, _glog) = serve_h2(None, script_all()).await;
    let client = Client::builder()
        .endpoints([hold.to_string(), good.to_string()])
        .http2_prior_knowledge(true)
        .deadline(Duration::from_secs(3))
        .attempt_timeout(Duration::from_millis(200))
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    // Several GETs, so that at least one goes first to the holding endpoint.
    for i in 0..6 {
        let r = client.get("http://svc/x").await;
        assert_eq!(
            r.as_ref().map(|r| r.status().as_u16()).map_err(err),
            Ok(200),
            "GET {i}"
        );
    }
    let calls = hlog.calls();
    eprintln!("hold saw {calls}; resets {:?}", hlog.resets());
    assert!(calls >= 1, "the holding endpoint got an attempt");
    assert!(
        eventually(|| hlog.resets().len() == calls).await,
        "every cut attempt reset: {calls} attempts, resets {:?}",
        hlog.resets()
    );
    assert!(hlog.resets().iter().all(|r| r.1 == h2::Reason::CANCEL));
}

/// Large bodies the caller drops unread give the connection's flow-control window back: 10
/// dropped 4 MiB bodies on one connection (hyper's window is 5 MiB), then 20 more requests,
/// each answered well before its deadline.
#[tokio::test]
async fn dropped_unread_bodies_give_the_connection_window_back() {
    let (addr, log) = serve_h2(None, script_all()).await;
    let client = client(addr, Duration::from_secs(2));
    for i in 0..10 {
        let res = client
            .get("http://svc/big")
            .await
            .unwrap_or_else(|e| panic!("big {i}: {}", err(&e)));
        // Let the server fill the stream's window, then drop.
        let mut body = res.into_body();
        let _ = body.frame().await;
        drop(body);
    }
    let started = Instant::now();
    for i in 0..20 {
        let r = client.get("http://svc/ok").await;
        let r = match r {
            Ok(r) => r
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| e.to_string()),
            Err(e) => Err(err(&e)),
        };
        assert_eq!(
            r,
            Ok(Bytes::from_static(b"ok")),
            "request {i} after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(log.connections(), 1);
    assert_eq!(client.stats().failures, 0);
}

/// Three bodies held unread by the caller (each filling its stream's window) must not make
/// the next request on the connection hang: it is answered, or ends at its deadline.
#[tokio::test]
async fn unread_bodies_holding_the_window_do_not_hang_other_requests() {
    let (addr, _log) = serve_h2(None, script_all()).await;
    let client = client(addr, Duration::from_millis(500));
    let mut held = Vec::new();
    for _ in 0..3 {
        let res = client.get("http://svc/big").await.expect("head");
        held.push(res);
    }
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        let res = client.get("http://svc/ok").await.map_err(|e| err(&e))?;
        res.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string())
    })
    .await
    .expect("not hung");
    eprintln!("{r:?} after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(held);
}
