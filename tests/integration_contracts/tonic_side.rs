//! `meshless::tonic::Channel` against a raw HTTP/2 server (the `h2` crate).

use crate::raw::{Call, grpc_head, pong, read_body, script, serve as serve_raw, trailers_only};
use crate::support::{GET, WATCH, endpoint, ping, unary, watch};
use meshless::backoff::Backoff;
use meshless::tonic::Channel;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Code;

const BOUND: Duration = Duration::from_secs(5);

fn channel(addr: SocketAddr) -> meshless::tonic::ChannelBuilder {
    Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(GET)
        .idempotent_method(WATCH)
        .backoff(Backoff::none())
        .metrics(false)
}

async fn settle(channel: &Channel) {
    let until = Instant::now() + BOUND;
    while channel.endpoints().iter().any(|e| e.in_flight > 0) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `n` unary GETs one after the other, each with the caller's own `timeout`: their codes.
async fn codes_under_callers_timeout(channel: &Channel, n: usize, timeout: Duration) -> Vec<Code> {
    let mut codes = Vec::new();
    for _ in 0..n {
        let mut req = tonic::Request::new(ping("x"));
        req.set_timeout(timeout);
        let r = tokio::time::timeout(BOUND, unary(channel.clone(), GET, req))
            .await
            .expect("ended by the caller's timeout");
        codes.push(r.expect_err("never answered").code());
    }
    codes
}

/// Once nothing is in flight: the failures charged to the (only) endpoint and to the breaker,
/// and both in full for a message.
async fn charged(channel: &Channel) -> ((u64, u64), String) {
    settle(channel).await;
    let eps = channel.endpoints();
    let b = channel.breaker().stats();
    ((eps[0].failures, b.failures), format!("{eps:#?} {b:?}"))
}

/// A server that reads each call and never ends it: after sending the answer's head when
/// `head`, else without a byte of answer.
async fn silent(head: bool) -> (SocketAddr, crate::raw::Log) {
    serve_raw(script(move |mut c: Call| async move {
        let _ = read_body(c.request.body_mut()).await;
        let _s = head.then(|| c.respond.send_response(grpc_head(), false).unwrap());
        std::future::pending::<()>().await;
    }))
    .await
}

/// Contract 3: a unary call whose head arrives and whose body never does is cut at the
/// channel's deadline with DEADLINE_EXCEEDED, sent once.
#[tokio::test]
async fn a_unary_head_then_stall_is_cut_at_the_deadline() {
    let (addr, log) = silent(true).await;
    let deadline = Duration::from_millis(300);
    let channel = channel(addr).deadline(deadline).build().unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(
        BOUND,
        unary(channel.clone(), GET, tonic::Request::new(ping("x"))),
    )
    .await
    .expect("the call ended within 5 s");
    let elapsed = started.elapsed();
    let status = r.expect_err("no message ever came");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        elapsed >= deadline && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(log.calls(), 1);
}

/// Contract 3: a unary call whose message arrives, and whose trailers never do.
#[tokio::test]
async fn a_unary_message_without_trailers_is_cut_at_the_deadline() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let _ = read_body(c.request.body_mut()).await;
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("a"), false);
        std::future::pending::<()>().await;
    }))
    .await;
    let deadline = Duration::from_millis(300);
    let channel = channel(addr).deadline(deadline).build().unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(
        BOUND,
        unary(channel.clone(), GET, tonic::Request::new(ping("x"))),
    )
    .await
    .expect("the call ended within 5 s");
    let elapsed = started.elapsed();
    let status = r.expect_err("no trailers ever came");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(log.calls(), 1);
}

/// Contract 4: the caller's own `set_timeout`, shorter than the channel's deadline, passing
/// while a unary call's body waits (head sent, then silence): the caller's impatience, no
/// failure of the endpoint nor of the breaker.
#[tokio::test]
async fn callers_timeout_mid_unary_body_charges_no_endpoint() {
    let (addr, _log) = silent(true).await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(10))
        .max_retries(0)
        .build()
        .unwrap();
    let codes = codes_under_callers_timeout(&channel, 3, Duration::from_millis(200)).await;
    let (failures, books) = charged(&channel).await;
    assert!(
        codes.iter().all(|c| *c == Code::DeadlineExceeded),
        "{codes:?}"
    );
    assert_eq!(
        failures,
        (0, 0),
        "the caller's own timeout mid-body was charged (endpoint failures, breaker failures): {books}"
    );
}

/// The same for a server stream: one message, then silence.
#[tokio::test]
async fn callers_timeout_mid_stream_charges_no_endpoint() {
    let (addr, _log) = serve_raw(script(|mut c: Call| async move {
        let _ = read_body(c.request.body_mut()).await;
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("a"), false);
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(10))
        .max_retries(0)
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let codec: tonic_prost::ProstCodec<crate::support::Ping, crate::support::Pong> =
            Default::default();
        let mut req = tonic::Request::new(ping("w"));
        req.set_timeout(Duration::from_millis(200));
        let path = http::uri::PathAndQuery::from_static(WATCH);
        let res = tokio::time::timeout(BOUND, async {
            let mut stream = grpc.server_streaming(req, path, codec).await?.into_inner();
            let mut n = 0;
            loop {
                match stream.message().await {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => return Ok::<_, tonic::Status>(n),
                    Err(s) => return Err(s),
                }
            }
        })
        .await
        .expect("ended by the caller's timeout");
        outcomes.push(res.map_err(|s| s.code()));
    }
    let (failures, books) = charged(&channel).await;
    assert!(
        outcomes.iter().all(|o| *o == Err(Code::DeadlineExceeded)),
        "{outcomes:?}"
    );
    assert_eq!(
        failures,
        (0, 0),
        "the caller's own timeout mid-stream was charged (endpoint failures, breaker failures): {books}"
    );
}

/// Contract 6: odd `grpc-retry-pushback-ms` values. Per the parser's docs: `+300` (a sign)
/// is unparseable, so "do not retry"; a value beyond the deadline (saturating, clamped to an
/// hour) ends the call at once (1 s deadline: see
/// `a_pushback_past_a_3s_deadline_charges_no_phantom_failures` for 3 s). Either way the idempotent call is sent once and ends quickly
/// with the server's UNAVAILABLE.
#[tokio::test]
async fn odd_pushback_values_are_not_retried() {
    let mut wrong = Vec::new();
    for pushback in [
        &b"+300"[..],
        b"99999999999999999999999999",
        b"3600001",
        b"0x10",
        b"300ms",
        b"1,2",
    ] {
        let p = pushback.to_vec();
        let (addr, log) = serve_raw(script(move |mut c: Call| {
            let p = p.clone();
            async move {
                trailers_only(&mut c.respond, b"14", &[("grpc-retry-pushback-ms", &p)]);
                std::future::pending::<()>().await;
            }
        }))
        .await;
        let channel = channel(addr)
            .deadline(Duration::from_secs(1))
            .build()
            .unwrap();
        let started = Instant::now();
        let r = tokio::time::timeout(
            BOUND,
            unary(channel.clone(), GET, tonic::Request::new(ping("x"))),
        )
        .await
        .expect("ended");
        let elapsed = started.elapsed();
        let code = r.err().map(|s| s.code());
        if code != Some(Code::Unavailable) || log.calls() != 1 || elapsed > Duration::from_secs(1) {
            wrong.push(format!(
                "pushback {:?}: {} calls, {code:?}, {elapsed:?}",
                String::from_utf8_lossy(pushback),
                log.calls()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Contract 6: a valid pushback of 400 ms on the only endpoint: the idempotent call's retry
/// is not sent sooner.
#[tokio::test]
async fn a_pushback_is_waited_on_the_only_endpoint() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        if c.index == 0 {
            trailers_only(&mut c.respond, b"14", &[("grpc-retry-pushback-ms", b"400")]);
        } else {
            let _ = read_body(c.request.body_mut()).await;
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("ok"), false);
            let _ = s.send_trailers(crate::raw::trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let r = tokio::time::timeout(
        BOUND,
        unary(channel.clone(), GET, tonic::Request::new(ping("x"))),
    )
    .await
    .expect("ended");
    let seen = log.seen();
    if seen.len() >= 2 {
        let gap = seen[1].at - seen[0].at;
        assert!(
            gap >= Duration::from_millis(380),
            "retry {gap:?} after a 400 ms pushback"
        );
    }
    assert!(r.is_ok(), "{r:?}");
}

/// Contract 1/6: a server stream whose trailers carry a `grpc-status` that is no number,
/// after a message: a typed status, once, and a failure in the books.
#[tokio::test]
async fn a_stream_with_garbage_grpc_status_trailers_fails_once() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let _ = read_body(c.request.body_mut()).await;
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("a"), false);
        let _ = s.send_trailers(crate::raw::trailers(b"ok"));
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let (pongs, end) = tokio::time::timeout(BOUND, watch(channel.clone()))
        .await
        .expect("ended");
    settle(&channel).await;
    assert_eq!(pongs.len(), 1);
    let status = end.expect_err("garbage status is no success");
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(log.calls(), 1);
    let eps = channel.endpoints();
    assert_eq!(eps[0].failures, 1, "{eps:#?}");
    assert_eq!(channel.retry_stats().failures(), 1);
}

/// Contract 6 and the books: the only endpoint answers UNAVAILABLE with a 5 s pushback;
/// the channel has a 3 s deadline and default settings (2 retries, so a 1 s attempt timeout,
/// which is also when a quiet endpoint's first probe is due). Whatever the channel does while
/// the endpoint is quiet (README: fail at once, or a probe a second), the caller must end
/// with the server's UNAVAILABLE (or, at the deadline, DEADLINE_EXCEEDED), and the endpoint
/// must be charged no failure for an attempt that never reached it: failures == calls the
/// server saw.
#[tokio::test]
async fn a_pushback_past_a_3s_deadline_charges_no_phantom_failures() {
    let mut wrong = Vec::new();
    for path in [GET, crate::support::CREATE] {
        let (addr, log) = serve_raw(script(|mut c: Call| async move {
            trailers_only(
                &mut c.respond,
                b"14",
                &[("grpc-retry-pushback-ms", b"5000")],
            );
            std::future::pending::<()>().await;
        }))
        .await;
        let channel = channel(addr)
            .deadline(Duration::from_secs(3))
            .build()
            .unwrap();
        let started = Instant::now();
        let r = tokio::time::timeout(
            BOUND,
            unary(channel.clone(), path, tonic::Request::new(ping("x"))),
        )
        .await
        .expect("ended");
        let took = started.elapsed();
        settle(&channel).await;
        let status = r.expect_err("UNAVAILABLE");
        let e = &channel.endpoints()[0];
        let fair_end = status.code() == Code::Unavailable
            || (status.code() == Code::DeadlineExceeded && took >= Duration::from_millis(2900));
        if !fair_end || e.failures as usize != log.calls() {
            wrong.push(format!(
                "{path}: {:?} {:?} after {took:?}; server saw {} call(s); endpoint requests={} failures={}",
                status.code(),
                status.message(),
                log.calls(),
                e.requests,
                e.failures
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The channel's documented mapping (`ResponseFuture`: "DEADLINE_EXCEEDED for the deadline
/// (the caller's grpc-timeout or the channel's) and the attempt timeout"): an idempotent call
/// whose every attempt is cut by the attempt timeout (the server holds each call without a
/// head) ends DEADLINE_EXCEEDED, whether the retries, the budget or the deadline ran out.
/// (tonic's own timer for the attempt's `grpc-timeout` is due at the same instant as
/// meshless's; when tonic's fires first the code is right, so each case runs 8 times.)
#[tokio::test]
async fn attempts_cut_by_the_attempt_timeout_end_deadline_exceeded() {
    let (addr, _log) = silent(false).await;
    let mut wrong = Vec::new();
    // (deadline, attempt timeout, retries, budget empty)
    for (deadline, attempt, retries, broke) in [
        (3000u64, 100u64, 2u32, false),
        (3000, 100, 0, false),
        (3000, 100, 2, true),
        (350, 100, 5, false),
    ] {
        for _ in 0..8 {
            let mut b = channel(addr)
                .deadline(Duration::from_millis(deadline))
                .attempt_timeout(Duration::from_millis(attempt))
                .max_retries(retries);
            if broke {
                // No retry is ever granted: the first attempt's timeout ends the call.
                let budget = meshless::budget::Budget::builder()
                    .min_per_second(0.0)
                    .ratio(0.0)
                    .build()
                    .unwrap();
                b = b.budget(budget);
            }
            let channel = b.build().unwrap();
            let r = tokio::time::timeout(
                BOUND,
                unary(channel.clone(), GET, tonic::Request::new(ping("x"))),
            )
            .await
            .expect("ended");
            let status = r.expect_err("never answered");
            if status.code() != Code::DeadlineExceeded {
                wrong.push(format!(
                    "deadline {deadline} ms, attempt timeout {attempt} ms, {retries} retries, empty budget {broke}: {:?} {:?}",
                    status.code(),
                    status.message(),
                ));
            }
        }
    }
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The channel's documented mapping: "UNAVAILABLE for a connection that failed". Every
/// endpoint refuses connections: an idempotent call, retried until the retries run out, ends
/// UNAVAILABLE.
#[tokio::test]
async fn refused_everywhere_ends_unavailable() {
    let a = crate::support::refusing();
    let b = crate::support::refusing();
    let mut wrong = Vec::new();
    for retries in [0u32, 2] {
        let channel = Channel::builder()
            .endpoint(endpoint(a))
            .endpoint(endpoint(b))
            .idempotent_method(GET)
            .backoff(Backoff::none())
            .max_retries(retries)
            .deadline(Duration::from_secs(3))
            .metrics(false)
            .build()
            .unwrap();
        let r = tokio::time::timeout(
            BOUND,
            unary(channel.clone(), GET, tonic::Request::new(ping("x"))),
        )
        .await
        .expect("ended");
        let status = r.expect_err("refused");
        if status.code() != Code::Unavailable {
            wrong.push(format!(
                "{retries} retries: {:?} {:?}",
                status.code(),
                status.message()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Contract 4: the caller's own `set_timeout` (100 ms) shorter than both the channel's
/// attempt timeout (1 s) and its deadline (10 s), against a server that never answers: the
/// caller's impatience, charged to no endpoint and no breaker, and never retried.
#[tokio::test]
async fn callers_timeout_under_an_attempt_timeout_charges_no_endpoint() {
    let (addr, log) = silent(false).await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let codes = codes_under_callers_timeout(&channel, 8, Duration::from_millis(100)).await;
    let (failures, books) = charged(&channel).await;
    assert!(
        codes.iter().all(|c| *c == Code::DeadlineExceeded),
        "{codes:?}"
    );
    assert_eq!(
        (failures, log.calls()),
        ((0, 0), 8),
        "((endpoint failures, breaker failures), calls the server saw): {books}"
    );
}
