//! A POST refused with REFUSED_STREAM (or above a GOAWAY's last stream) is sent again, as the
//! docs say. Its second attempt is still a POST that will not be sent again once it may have
//! reached the server, so the attempt timeout the client derives from the deadline must let it
//! run to the deadline (README, defaults: "a request that would not be sent again once it may
//! have reached the server, such as a POST, runs to the deadline: cutting it could only turn a
//! late answer into a failure").

use super::*;
use http::Response;
use std::time::Instant;

/// First stream: RST_STREAM(REFUSED_STREAM). Later streams: answered 200 after `delay`.
async fn refuse_then_slow(delay: Duration) -> (SocketAddr, H2Log) {
    serve_h2(
        None,
        script(move |mut c: Call| async move {
            if c.index == 0 {
                c.respond.send_reset(h2::Reason::REFUSED_STREAM);
                return;
            }
            tokio::time::sleep(delay).await;
            let res = Response::builder().status(200).body(()).unwrap();
            let _ = c.respond.send_response(res, true);
        }),
    )
    .await
}

/// Control: a POST answered after 1 s under a 2 s deadline, first attempt: runs to its answer.
#[tokio::test]
async fn control_a_slow_post_first_attempt_runs_to_its_answer() {
    let (addr, _log) = serve_h2(
        None,
        script(|c: Call| async move {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let res = Response::builder().status(200).body(()).unwrap();
            let mut respond = c.respond;
            let _ = respond.send_response(res, true);
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(2));
    let started = Instant::now();
    let r = client.post("http://svc/pay", "money").await;
    eprintln!(
        "{:?} after {:?}",
        r.as_ref().map(|r| r.status()).map_err(err),
        started.elapsed()
    );
    assert_eq!(r.map(|r| r.status().as_u16()).map_err(|e| err(&e)), Ok(200));
}

/// The same POST, refused once (REFUSED_STREAM) then answered after 1 s: its second attempt
/// must run to the answer too, not be cut at deadline / 3 into a failure.
#[tokio::test]
async fn a_post_resent_after_refused_stream_runs_to_the_deadline() {
    let (addr, log) = refuse_then_slow(Duration::from_millis(1000)).await;
    let client = client(addr, Duration::from_secs(2));
    let started = Instant::now();
    let r = client.post("http://svc/pay", "money").await;
    let took = started.elapsed();
    let shown = r.as_ref().map(|r| r.status().as_u16()).map_err(err);
    eprintln!("{shown:?} after {took:?}; server saw {:?}", log.paths());
    assert_eq!(log.calls(), 2, "refused once, then sent again");
    assert_eq!(
        shown,
        Ok(200),
        "the resent POST (processed by the server, answered at 1 s) was cut after {took:?}"
    );
}

/// GOAWAY(last = 0) then close on the first connection (nothing processed), then a server that
/// answers after 1 s: the resent POST runs to its answer.
#[tokio::test]
async fn a_post_resent_after_goaway_runs_to_the_deadline() {
    let (addr, log) = serve_raw(raw(|conn, mut tcp, log| async move {
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        let mut bodies = Default::default();
        while let Some((s, _)) = next_request(&mut tcp, conn, &log, true, &mut bodies).await {
            if conn == 0 {
                let mut p = 0u32.to_be_bytes().to_vec();
                p.extend_from_slice(&0u32.to_be_bytes());
                write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
            respond(&mut tcp, s, b"done").await;
        }
    }))
    .await;
    let client = client(addr, Duration::from_secs(2));
    let started = Instant::now();
    let r = client.post("http://svc/pay", "money").await;
    let took = started.elapsed();
    let shown = r.as_ref().map(|r| r.status().as_u16()).map_err(err);
    eprintln!(
        "{shown:?} after {took:?}; heads {:?}",
        log.lock().unwrap().heads()
    );
    assert_eq!(log.lock().unwrap().heads().len(), 2);
    assert_eq!(shown, Ok(200), "the resent POST was cut after {took:?}");
}

/// Two endpoints, each refusing its first stream (REFUSED_STREAM) and answering every later
/// POST after 1 s: the first POST meets a refusal wherever P2C sends it, and is sent again. The
/// endpoint that takes it must get the same 2 s as a first attempt would, not be cut at
/// deadline / 3 and charged a timeout for an answer it was about to give.
#[tokio::test]
async fn a_post_refused_by_one_endpoint_gets_its_deadline_at_the_other() {
    let refuse_first = || {
        script(|mut c: Call| async move {
            if c.index == 0 {
                c.respond.send_reset(h2::Reason::REFUSED_STREAM);
                return;
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let res = Response::builder().status(200).body(()).unwrap();
            let _ = c.respond.send_response(res, true);
        })
    };
    let (a, alog) = serve_h2(None, refuse_first()).await;
    let (b, blog) = serve_h2(None, refuse_first()).await;
    let client = client_to(&[a, b], Duration::from_secs(2));
    let started = Instant::now();
    let r = client.post("http://svc/pay", "money").await;
    let outcome = r.map(|r| r.status().as_u16()).map_err(|e| err(&e));
    let took = started.elapsed();
    let stats = client.stats();
    assert_eq!(
        outcome,
        Ok(200),
        "processed at its second attempt and answered at 1 s ({took:?}; A saw {}, B saw {})",
        alog.calls(),
        blog.calls()
    );
    // The refusals count against the endpoints that refused; the answer given in time, not.
    let requests: u64 = stats.endpoints.iter().map(|e| e.requests).sum();
    let failures: u64 = stats.endpoints.iter().map(|e| e.failures).sum();
    assert_eq!(
        failures,
        requests - 1,
        "the attempt answered in time was charged: {:?}",
        stats.endpoints
    );
}
