//! gRPC through `meshless::tonic::Channel`, against a raw HTTP/2 server (the `h2`
//! crate) that answers what tonic's server never would, and against real tonic servers.
//! Statuses in heads and trailers, pushback, `grpc-timeout` on the wire, malformed answers.
#![cfg(feature = "tonic")]

#[path = "tonic/support.rs"]
mod support;

#[path = "grpc_raw/mod.rs"]
mod raw;

mod common;

use bytes::Bytes;
use meshless::backoff::Backoff;
use meshless::tonic::Channel;
use raw::{Call, grpc_head, pong, script, serve as serve_raw, trailers, trailers_only};
use std::net::SocketAddr;
use std::time::Duration;
use support::{CREATE, GET, WATCH, endpoint, ping, unary};
use tokio::time::Instant;
use tonic::Code;

fn channel(addr: SocketAddr) -> meshless::tonic::ChannelBuilder {
    Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(GET)
        .idempotent_method(WATCH)
        .backoff(Backoff::none())
        .metrics(false)
}

async fn call(channel: &Channel, path: &'static str) -> Result<support::Pong, tonic::Status> {
    tokio::time::timeout(
        Duration::from_secs(10),
        unary(channel.clone(), path, tonic::Request::new(ping("x"))),
    )
    .await
    .expect("the call ended within 10 s")
}

fn stats_add_up(channel: &Channel) {
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

/// gRPC A6: a call whose response headers arrived is committed. An idempotent call answered
/// with a head and then UNAVAILABLE in the trailers (no message) is not retried; it fails once.
#[tokio::test]
async fn a_head_then_unavailable_in_trailers_is_committed() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_trailers(trailers(b"14"));
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let status = call(&channel, GET).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(log.calls(), 1, "a committed call was sent again");
    let r = channel.retry_stats();
    assert_eq!((r.requests(), r.failures(), r.retries()), (1, 1, 0));
    let e = &channel.endpoints()[0];
    assert_eq!(e.failures, 1, "{e:?}");
    stats_add_up(&channel);
}

/// gRPC A6: `grpc-retry-pushback-ms` negative or unparseable means "do not retry", even for
/// an idempotent method and a retryable code.
#[tokio::test]
async fn garbage_or_negative_pushback_stops_retries_of_an_idempotent_call() {
    let mut wrong = Vec::new();
    for pushback in [&b"-1"[..], b"abc", b"1.5", b"", b"-0"] {
        let p = pushback.to_vec();
        let (addr, log) = serve_raw(script(move |mut c: Call| {
            let p = p.clone();
            async move {
                trailers_only(&mut c.respond, b"14", &[("grpc-retry-pushback-ms", &p)]);
                std::future::pending::<()>().await;
            }
        }))
        .await;
        let channel = channel(addr).build().unwrap();
        let status = call(&channel, GET).await.unwrap_err();
        if status.code() != Code::Unavailable || log.calls() != 1 {
            wrong.push(format!(
                "pushback {:?}: {} calls, {:?}",
                String::from_utf8_lossy(pushback),
                log.calls(),
                status.code()
            ));
        }
        stats_add_up(&channel);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// FINDING: the retry waits out the pushback inside the balancer, after the attempt layer wrote
// its `grpc-timeout`: the retry reaches the server ~300 ms later, telling it ~2.997 s with
// ~2.697 s left. A deadline told downstream is longer than what is left.
/// gRPC A6: UNAVAILABLE with `grpc-retry-pushback-ms: 300` says the server did not act: a
/// non-idempotent call is retried, not before 300 ms, and the retry's `grpc-timeout` is at
/// most what is left of the deadline.
#[tokio::test]
async fn a_pushback_is_waited_and_the_retry_is_told_what_is_left() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        if c.index == 0 {
            trailers_only(&mut c.respond, b"14", &[("grpc-retry-pushback-ms", b"300")]);
        } else {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("ok"), false);
            let _ = s.send_trailers(trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let deadline = Duration::from_secs(3);
    let channel = channel(addr).deadline(deadline).build().unwrap();
    let started = Instant::now();
    let pong = call(&channel, CREATE).await.unwrap();
    assert_eq!(pong.from, "ok");
    let seen = log.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(300), "retried after {gap:?}");
    for (i, s) in seen.iter().enumerate() {
        let told = s.grpc_timeout.as_deref().and_then(common::grpc_timeout);
        let told = told.unwrap_or_else(|| panic!("bad grpc-timeout {:?}", s.grpc_timeout));
        let left = deadline.saturating_sub(s.at - started);
        assert!(
            told <= left + Duration::from_millis(10),
            "attempt {i} ({:?} after the first) told {told:?} with {left:?} left",
            s.at - seen[0].at
        );
    }
    stats_add_up(&channel);
}

/// Deadlines are never extended: across retries each attempt's `grpc-timeout` is at most what
/// is left of the call's deadline, the caller's own shorter `grpc-timeout` included.
#[tokio::test]
async fn grpc_timeout_shrinks_across_retries_under_the_callers_own() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        if c.index < 2 {
            // Some time passes before each UNAVAILABLE.
            tokio::time::sleep(Duration::from_millis(50)).await;
            trailers_only(&mut c.respond, b"14", &[]);
        } else {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("ok"), false);
            let _ = s.send_trailers(trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(30))
        .build()
        .unwrap();
    let own = Duration::from_millis(1500);
    let mut request = tonic::Request::new(ping("x"));
    request.set_timeout(own);
    let started = Instant::now();
    let out = unary(channel.clone(), GET, request).await;
    assert!(out.is_ok(), "{out:?}");
    let seen = log.seen();
    assert_eq!(seen.len(), 3);
    let mut previous = Duration::MAX;
    for s in &seen {
        let told = s.grpc_timeout.as_deref().and_then(common::grpc_timeout);
        let told = told.unwrap_or_else(|| panic!("bad grpc-timeout {:?}", s.grpc_timeout));
        let left = own.saturating_sub(s.at - started);
        assert!(
            told <= left + Duration::from_millis(10),
            "told {told:?} with {left:?} left of the caller's own"
        );
        assert!(
            told < previous,
            "not shrinking: {told:?} after {previous:?}"
        );
        previous = told;
    }
    stats_add_up(&channel);
}

/// `grpc-timeout` is at most 8 digits and a unit, whatever the deadline: a channel deadline of
/// ~3 years, and a caller's own timeout of ~31 years under an unlimited channel deadline.
#[tokio::test]
async fn grpc_timeout_on_the_wire_is_well_formed_for_huge_deadlines() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("ok"), false);
        let _ = s.send_trailers(trailers(b"0"));
        std::future::pending::<()>().await;
    }))
    .await;
    let big = Duration::from_secs(100_000_000);
    let channel = channel(addr).deadline(big).build().unwrap();
    call(&channel, GET).await.unwrap();

    let unlimited = Channel::builder()
        .endpoint(endpoint(addr))
        .deadline(Duration::MAX)
        .metrics(false)
        .build()
        .unwrap();
    let mut request = tonic::Request::new(ping("x"));
    request.set_timeout(Duration::from_secs(1_000_000_000));
    unary(unlimited.clone(), GET, request).await.unwrap();
    call(&unlimited, GET).await.unwrap();

    let seen = log.seen();
    let mut wrong = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        match s.grpc_timeout.as_deref() {
            None if i == 2 => {}
            Some(v) if common::grpc_timeout(v).is_some() => {}
            other => wrong.push(format!("call {i}: grpc-timeout {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Bad network data gives a typed error, never a panic or a hang: malformed `grpc-status`
/// values in a trailers-only head and in trailers. None is retried (UNKNOWN is not retryable),
/// none is a success.
#[tokio::test]
async fn malformed_grpc_status_values_end_the_call_with_a_status() {
    let mut wrong = Vec::new();
    for (in_trailers, value) in [
        (false, &b"abc"[..]),
        (false, b"99999999999999999999"),
        (false, b"-1"),
        (false, b"17"),
        (false, b""),
        (false, b"+0"),
        (true, b"abc"),
        (true, b"4294967296"),
        (true, b""),
        (true, b" 0"),
    ] {
        let v = value.to_vec();
        let (addr, log) = serve_raw(script(move |mut c: Call| {
            let v = v.clone();
            async move {
                if in_trailers {
                    let mut s = c.respond.send_response(grpc_head(), false).unwrap();
                    let _ = s.send_data(pong("ok"), false);
                    let _ = s.send_trailers(trailers(&v));
                } else {
                    trailers_only(&mut c.respond, &v, &[]);
                }
                std::future::pending::<()>().await;
            }
        }))
        .await;
        let channel = channel(addr).build().unwrap();
        let out = call(&channel, GET).await;
        let what = format!(
            "{:?} in {}",
            String::from_utf8_lossy(value),
            if in_trailers { "trailers" } else { "head" }
        );
        match out {
            Ok(p) => wrong.push(format!("{what}: a success {p:?}")),
            Err(s) if log.calls() != 1 => {
                wrong.push(format!("{what}: {} calls, {s:?}", log.calls()))
            }
            Err(_) => {}
        }
        let r = channel.retry_stats();
        if r.failures() != 1 {
            wrong.push(format!("{what}: retry stats failures {}", r.failures()));
        }
        stats_add_up(&channel);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// FINDING: a gRPC call through the tonic channel answered by HTTP 200 without a gRPC content
/// type is classified as plain HTTP: a success, whatever the caller got. The caller sees
/// INTERNAL (an HTML body), UNKNOWN/INTERNAL (no grpc-status at all) or even UNAVAILABLE (a
/// trailers-only `grpc-status: 14` without content-type), yet the retry layer counts a success,
/// the endpoint is not charged, and the UNAVAILABLE is not retried. Bad network data must be
/// a failure in the books too. The control case (gRPC content type, no trailers) is counted
/// a failure already.
#[tokio::test]
async fn http_200_without_grpc_content_type_is_a_failure_in_the_books() {
    #[derive(Clone, Copy, Debug)]
    enum Answer {
        Html,
        EmptyNoStatus,
        StatusInHeadNoContentType,
        GrpcNoTrailers,
    }
    let mut wrong = Vec::new();
    for answer in [
        Answer::Html,
        Answer::EmptyNoStatus,
        Answer::StatusInHeadNoContentType,
        Answer::GrpcNoTrailers,
    ] {
        let (addr, _log) = serve_raw(script(move |mut c: Call| async move {
            match answer {
                Answer::Html => {
                    let res = http::Response::builder()
                        .status(200)
                        .header("content-type", "text/html")
                        .body(())
                        .unwrap();
                    let mut s = c.respond.send_response(res, false).unwrap();
                    let _ = s.send_data(Bytes::from_static(b"<html>hello</html>"), true);
                }
                Answer::EmptyNoStatus => {
                    let res = http::Response::builder().status(200).body(()).unwrap();
                    let _ = c.respond.send_response(res, true);
                }
                Answer::StatusInHeadNoContentType => {
                    let res = http::Response::builder()
                        .status(200)
                        .header("grpc-status", "14")
                        .body(())
                        .unwrap();
                    let _ = c.respond.send_response(res, true);
                }
                Answer::GrpcNoTrailers => {
                    let mut s = c.respond.send_response(grpc_head(), false).unwrap();
                    let _ = s.send_data(pong("ok"), true);
                }
            }
            std::future::pending::<()>().await;
        }))
        .await;
        let channel = channel(addr).build().unwrap();
        let out = call(&channel, CREATE).await;
        let code = out.as_ref().err().map(tonic::Status::code);
        let r = channel.retry_stats();
        let e = &channel.endpoints()[0];
        // tonic itself accepts a unary answer whose trailers never came (GrpcNoTrailers); the
        // channel's books follow the protocol (a missing grpc-status is INTERNAL).
        let caller_failed = code.is_some() || matches!(answer, Answer::GrpcNoTrailers);
        if !caller_failed || r.failures() != 1 || e.failures != 1 {
            wrong.push(format!(
                "{answer:?}: caller got {code:?}; retry stats successes {} failures {}; endpoint failures {}",
                r.successes(),
                r.failures(),
                e.failures
            ));
        }
        stats_add_up(&channel);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// HTTP 503 to a gRPC call (a proxy in between): UNAVAILABLE. Without Retry-After it may have
/// acted: a non-idempotent call is sent once, an idempotent one retried; with `Retry-After: 0`
/// the proxy declined, and the non-idempotent call is retried.
#[tokio::test]
async fn http_503_to_a_grpc_call() {
    for (path, retry_after, expected_calls) in
        [(CREATE, false, 1), (GET, false, 3), (CREATE, true, 3)]
    {
        let (addr, log) = serve_raw(script(move |mut c: Call| async move {
            let mut res = http::Response::builder()
                .status(503)
                .header("content-type", "text/plain");
            if retry_after {
                res = res.header("retry-after", "0");
            }
            let mut s = c
                .respond
                .send_response(res.body(()).unwrap(), false)
                .unwrap();
            let _ = s.send_data(Bytes::from_static(b"no healthy upstream"), true);
            std::future::pending::<()>().await;
        }))
        .await;
        let channel = channel(addr).build().unwrap();
        let status = call(&channel, path).await.unwrap_err();
        // tonic reads the text body as a gRPC frame (INTERNAL); meshless's classification
        // of the 503 decides the retries.
        assert_ne!(status.code(), Code::Ok, "{path} {status:?}");
        assert_eq!(
            log.calls(),
            expected_calls,
            "{path} retry-after {retry_after}"
        );
        let r = channel.retry_stats();
        assert_eq!(r.failures(), 1, "{path} retry-after {retry_after}");
        stats_add_up(&channel);
    }
}

/// A message with the compressed flag and no `grpc-encoding`, and a message whose length
/// prefix is 4 GiB: a typed error, no hang.
#[tokio::test]
async fn compressed_flag_and_huge_length_prefix_are_typed_errors() {
    for frame in [
        Bytes::from_static(&[1, 0, 0, 0, 2, 0x0a, 0x00]),
        Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff, 0x0a]),
    ] {
        let f = frame.clone();
        let (addr, log) = serve_raw(script(move |mut c: Call| {
            let f = f.clone();
            async move {
                let mut s = c.respond.send_response(grpc_head(), false).unwrap();
                let _ = s.send_data(f, false);
                let _ = s.send_trailers(trailers(b"0"));
                std::future::pending::<()>().await;
            }
        }))
        .await;
        let channel = channel(addr).build().unwrap();
        let status = call(&channel, GET).await.unwrap_err();
        assert_ne!(status.code(), Code::Ok, "{frame:?}");
        assert_eq!(log.calls(), 1);
        stats_add_up(&channel);
    }
}

/// Statuses that are not retryable by default (DEADLINE_EXCEEDED, INTERNAL,
/// RESOURCE_EXHAUSTED) in a trailers-only answer end an idempotent call at once; the failures
/// among them count against the endpoint, RESOURCE_EXHAUSTED does not.
#[tokio::test]
async fn non_retryable_codes_end_an_idempotent_call_once() {
    for (code, failure) in [(&b"4"[..], true), (b"13", true), (b"8", false)] {
        let (addr, log) = serve_raw(script(move |mut c: Call| async move {
            trailers_only(&mut c.respond, code, &[]);
            std::future::pending::<()>().await;
        }))
        .await;
        let channel = channel(addr).build().unwrap();
        let status = call(&channel, GET).await.unwrap_err();
        assert_eq!(
            status.code() as i32,
            std::str::from_utf8(code).unwrap().parse::<i32>().unwrap()
        );
        assert_eq!(log.calls(), 1, "{status:?}");
        let e = &channel.endpoints()[0];
        assert_eq!(e.failures, u64::from(failure), "{status:?} {e:?}");
        stats_add_up(&channel);
    }
}

/// A server's pushback longer than what is left of the deadline: the call is not held until
/// the deadline, it ends at once with the server's UNAVAILABLE, sent once.
#[tokio::test]
async fn a_pushback_past_the_deadline_ends_the_call_at_once() {
    for pushback in [&b"5000"[..], b"99999999999999999999"] {
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
        let status = call(&channel, CREATE).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(took < Duration::from_millis(500), "held {took:?}");
        assert_eq!(log.calls(), 1);
        stats_add_up(&channel);
    }
}

/// A caller that gives up while its retry waits out a server's pushback: a cancellation, not
/// a failure, and nothing is sent again.
#[tokio::test]
async fn a_caller_cancelling_during_a_pushback_wait_is_a_cancellation() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        trailers_only(
            &mut c.respond,
            b"14",
            &[("grpc-retry-pushback-ms", b"2000")],
        );
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let ch = channel.clone();
    let task = tokio::spawn(async move { call(&ch, CREATE).await });
    while log.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.calls(), 1);
    let r = channel.retry_stats();
    assert_eq!((r.requests(), r.failures(), r.cancelled()), (1, 0, 1));
    stats_add_up(&channel);
}

/// A pushback in the trailers of a committed call (head sent, then UNAVAILABLE with
/// `grpc-retry-pushback-ms: 500`) still keeps its endpoint quiet for 500 ms: the next call
/// reaches it no sooner.
#[tokio::test]
async fn a_pushback_in_trailers_keeps_the_endpoint_quiet() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        if c.index == 0 {
            let mut t = trailers(b"14");
            t.insert(
                "grpc-retry-pushback-ms",
                http::HeaderValue::from_static("500"),
            );
            let _ = s.send_trailers(t);
        } else {
            let _ = s.send_data(pong("ok"), false);
            let _ = s.send_trailers(trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    assert_eq!(
        call(&channel, GET).await.unwrap_err().code(),
        Code::Unavailable
    );
    assert_eq!(log.calls(), 1, "a committed call was sent again");
    assert_eq!(call(&channel, GET).await.unwrap().from, "ok");
    let seen = log.seen();
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(490),
        "the endpoint was called again after {gap:?}"
    );
    stats_add_up(&channel);
}

/// A caller's own `grpc-timeout` at the top of the format (`99999999H`, ~11,000 years) under
/// a channel with no deadline: no panic, the call is answered, and the server is told a
/// well-formed value no longer than the caller's.
#[tokio::test]
async fn the_largest_grpc_timeout_a_caller_can_send_is_handled() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("ok"), false);
        let _ = s.send_trailers(trailers(b"0"));
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = Channel::builder()
        .endpoint(endpoint(addr))
        .deadline(Duration::MAX)
        .metrics(false)
        .build()
        .unwrap();
    for value in ["99999999H", "99999999M", "99999999S", "1n"] {
        let mut request = tonic::Request::new(ping("x"));
        request
            .metadata_mut()
            .insert("grpc-timeout", value.parse().unwrap());
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            unary(channel.clone(), GET, request),
        )
        .await
        .expect("ended");
        if value == "1n" {
            assert_eq!(out.unwrap_err().code(), Code::DeadlineExceeded);
            continue;
        }
        assert!(out.is_ok(), "{value}: {out:?}");
        let told = log.seen().last().unwrap().grpc_timeout.clone();
        let told = told.as_deref().and_then(common::grpc_timeout);
        let caller = common::grpc_timeout(value).unwrap();
        assert!(told.is_some_and(|t| t <= caller), "{value}: told {told:?}");
    }
    stats_add_up(&channel);
}
