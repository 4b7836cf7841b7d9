//! GRPC streams through `meshless::tonic::Channel` against a raw HTTP/2 server:
//! resets and GOAWAY mid-stream, cancellation of client and bidi streams, replay of request
//! streams, idle streams, and endpoints removed while calls are in flight.
#![cfg(feature = "tonic")]

#[path = "tonic/support.rs"]
mod support;

#[path = "grpc_raw/mod.rs"]
mod raw;

mod common;

use bytes::Bytes;
use http::uri::PathAndQuery;
use meshless::backoff::Backoff;
use meshless::tonic::Channel;
use prost::Message;
use raw::{
    Call, Control, grpc_head, pong, read_at_least, read_body, script, serve as serve_raw, trailers,
    trailers_only,
};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use support::{GET, Ping, Pong, WATCH, endpoint, ping};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tonic::Code;
use tonic_prost::ProstCodec;

const UPLOAD: &str = "/test.Store/Upload";
const CHAT: &str = "/test.Store/Chat";

fn channel(addr: SocketAddr) -> meshless::tonic::ChannelBuilder {
    Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(GET)
        .idempotent_method(WATCH)
        .idempotent_method(UPLOAD)
        .idempotent_method(CHAT)
        .backoff(Backoff::none())
        .metrics(false)
}

fn stats_add_up(channel: &Channel) {
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

/// The caller's request stream, fed by a channel.
struct Feed(mpsc::UnboundedReceiver<Ping>);

impl futures_core::Stream for Feed {
    type Item = Ping;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Ping>> {
        self.0.poll_recv(cx)
    }
}

async fn grpc(channel: &Channel) -> tonic::client::Grpc<Channel> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    grpc
}

async fn open_watch(channel: &Channel) -> Result<tonic::Streaming<Pong>, tonic::Status> {
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    grpc(channel)
        .await
        .server_streaming(
            tonic::Request::new(ping("w")),
            PathAndQuery::from_static(WATCH),
            codec,
        )
        .await
        .map(tonic::Response::into_inner)
}

async fn drain(mut stream: tonic::Streaming<Pong>) -> (usize, Result<(), tonic::Status>) {
    let mut n = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream ended within 10 s")
        {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, Ok(())),
            Err(s) => return (n, Err(s)),
        }
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn encoded(pings: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pings {
        out.extend_from_slice(&raw::message(&ping(p).encode_to_vec()));
    }
    out
}

/// A stream that sent its head and a message, then RST_STREAM(INTERNAL_ERROR): one failure,
/// not sent again though the method is idempotent.
#[tokio::test]
async fn a_reset_after_a_message_is_one_failure_and_not_retried() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.send_reset(h2::Reason::INTERNAL_ERROR);
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!(n, 1);
    let status = end.unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    settle().await;
    assert_eq!(log.calls(), 1);
    let r = channel.retry_stats();
    assert_eq!(
        (r.requests(), r.failures(), r.retries()),
        (1, 1, 0),
        "{status:?}"
    );
    assert_eq!(channel.endpoints()[0].failures, 1);
    stats_add_up(&channel);
}

/// A unary call answered with a head, then RST_STREAM(REFUSED_STREAM): the server did answer,
/// so the "refused" code cannot prove it did not act; a non-idempotent call is sent once.
#[tokio::test]
async fn a_refused_stream_after_the_head_is_not_retried() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.send_reset(h2::Reason::REFUSED_STREAM);
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let out = support::unary(
        channel.clone(),
        support::CREATE,
        tonic::Request::new(ping("x")),
    )
    .await;
    assert!(out.is_err(), "{out:?}");
    settle().await;
    assert_eq!(log.calls(), 1);
    stats_add_up(&channel);
}

/// RST_STREAM(REFUSED_STREAM) before any head: nothing was processed, so even a
/// non-idempotent call is sent again (transparently).
#[tokio::test]
async fn a_refused_stream_before_the_head_is_retried_for_any_call() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        if c.index == 0 {
            c.respond.send_reset(h2::Reason::REFUSED_STREAM);
        } else {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("ok"), false);
            let _ = s.send_trailers(trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let out = support::unary(
        channel.clone(),
        support::CREATE,
        tonic::Request::new(ping("x")),
    )
    .await;
    assert_eq!(out.unwrap().from, "ok");
    assert_eq!(log.calls(), 2);
    stats_add_up(&channel);
}

/// GOAWAY(NO_ERROR) mid-stream (graceful): the stream in flight finishes normally.
#[tokio::test]
async fn a_graceful_goaway_mid_stream_lets_the_stream_finish() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        let _ = c.control.send(Control::Graceful);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = s.send_data(pong("two"), false);
        let _ = s.send_trailers(trailers(b"0"));
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!(n, 2, "{end:?}");
    assert!(end.is_ok(), "{end:?}");
    settle().await;
    assert_eq!(log.calls(), 1);
    let r = channel.retry_stats();
    assert_eq!((r.successes(), r.failures()), (1, 0));
    stats_add_up(&channel);
}

/// GOAWAY(INTERNAL_ERROR) mid-stream: the stream fails once, not sent again, and the next
/// call goes out on a new connection.
#[tokio::test]
async fn an_abrupt_goaway_mid_stream_fails_once() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        if c.index == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = c.control.send(Control::Abrupt(h2::Reason::INTERNAL_ERROR));
        } else {
            let _ = s.send_trailers(trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!(n, 1);
    assert!(end.is_err());
    settle().await;
    assert_eq!(log.calls(), 1);
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!((n, end.is_ok()), (1, true), "{end:?}");
    let seen = log.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].connection, seen[1].connection);
    let r = channel.retry_stats();
    assert_eq!((r.requests(), r.successes(), r.failures()), (2, 1, 1));
    stats_add_up(&channel);
}

/// Cancellation is never an endpoint's failure: a client-streaming call dropped while its
/// request stream is open.
#[tokio::test]
async fn dropping_a_client_stream_midway_is_a_cancellation() {
    let got = Arc::new(Notify::new());
    let g = got.clone();
    let (addr, log) = serve_raw(script(move |mut c: Call| {
        let g = g.clone();
        async move {
            let body = c.request.body_mut();
            let first = read_at_least(body, 5).await;
            assert!(!first.is_empty());
            g.notify_one();
            std::future::pending::<()>().await;
        }
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(ping("first")).unwrap();
    let ch = channel.clone();
    let call = tokio::spawn(async move {
        let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
        grpc(&ch)
            .await
            .client_streaming(
                tonic::Request::new(Feed(rx)),
                PathAndQuery::from_static(UPLOAD),
                codec,
            )
            .await
    });
    got.notified().await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    drop(tx);
    settle().await;
    assert_eq!(log.calls(), 1);
    let e = &channel.endpoints()[0];
    assert_eq!((e.failures, e.cancelled), (0, 1), "{e:?}");
    let r = channel.retry_stats();
    assert_eq!((r.failures(), r.cancelled()), (0, 1));
    stats_add_up(&channel);
}

/// Cancellation of a bidi stream after a reply arrived: dropping the response stream (the
/// request stream still open) is not a failure.
#[tokio::test]
async fn dropping_a_bidi_stream_midway_is_not_a_failure() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let first = read_at_least(c.request.body_mut(), 5).await;
        assert!(!first.is_empty());
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(ping("first")).unwrap();
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let mut stream = grpc(&channel)
        .await
        .streaming(
            tonic::Request::new(Feed(rx)),
            PathAndQuery::from_static(CHAT),
            codec,
        )
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);
    settle().await;
    assert_eq!(log.calls(), 1);
    let e = &channel.endpoints()[0];
    assert_eq!(e.failures, 0, "{e:?}");
    let r = channel.retry_stats();
    assert_eq!(r.failures(), 0);
    drop(tx);
    settle().await;
    stats_add_up(&channel);
}

/// A client stream answered UNAVAILABLE (trailers-only) is retried for an idempotent method,
/// and the retry carries the whole request stream, byte for byte.
#[tokio::test]
async fn a_retried_client_stream_is_replayed_whole() {
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = bodies.clone();
    let (addr, log) = serve_raw(script(move |mut c: Call| {
        let b = b.clone();
        async move {
            let body = read_body(c.request.body_mut()).await;
            b.lock().unwrap().push(body);
            if c.index == 0 {
                trailers_only(&mut c.respond, b"14", &[]);
            } else {
                let mut s = c.respond.send_response(grpc_head(), false).unwrap();
                let _ = s.send_data(pong("ok"), false);
                let _ = s.send_trailers(trailers(b"0"));
            }
            std::future::pending::<()>().await;
        }
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    for p in ["a", "bb", "ccc"] {
        tx.send(ping(p)).unwrap();
    }
    drop(tx);
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let out = grpc(&channel)
        .await
        .client_streaming(
            tonic::Request::new(Feed(rx)),
            PathAndQuery::from_static(UPLOAD),
            codec,
        )
        .await;
    assert_eq!(out.unwrap().into_inner().from, "ok");
    assert_eq!(log.calls(), 2);
    let bodies = bodies.lock().unwrap().clone();
    let expected = encoded(&["a", "bb", "ccc"]);
    assert_eq!(bodies[0], expected);
    assert_eq!(bodies[1], expected, "the retry's body differs");
    stats_add_up(&channel);
}

/// A bidi call answered UNAVAILABLE (trailers-only) while its request stream is still open:
/// if it is sent again, the retry must carry every message, those sent before and after.
#[tokio::test]
async fn a_bidi_call_retried_while_its_request_stream_is_open_gets_every_message() {
    let answered = Arc::new(Notify::new());
    let a = answered.clone();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = bodies.clone();
    let (addr, log) = serve_raw(script(move |mut c: Call| {
        let a = a.clone();
        let b = b.clone();
        async move {
            if c.index == 0 {
                let first = read_at_least(c.request.body_mut(), 5).await;
                b.lock().unwrap().push(first);
                trailers_only(&mut c.respond, b"14", &[]);
                a.notify_one();
            } else {
                let body = read_body(c.request.body_mut()).await;
                b.lock().unwrap().push(body);
                let mut s = c.respond.send_response(grpc_head(), false).unwrap();
                let _ = s.send_data(pong("ok"), false);
                let _ = s.send_trailers(trailers(b"0"));
            }
            std::future::pending::<()>().await;
        }
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(ping("first")).unwrap();
    let ch = channel.clone();
    let call = tokio::spawn(async move {
        let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
        let mut stream = grpc(&ch)
            .await
            .streaming(
                tonic::Request::new(Feed(rx)),
                PathAndQuery::from_static(CHAT),
                codec,
            )
            .await?
            .into_inner();
        let mut n = 0;
        while stream.message().await?.is_some() {
            n += 1;
        }
        Ok::<_, tonic::Status>(n)
    });
    answered.notified().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send(ping("second")).unwrap();
    drop(tx);
    let out = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("ended")
        .unwrap();
    let bodies = bodies.lock().unwrap().clone();
    eprintln!(
        "bidi call with an open request stream: {} attempts",
        log.calls()
    );
    match log.calls() {
        1 => assert_eq!(out.unwrap_err().code(), Code::Unavailable),
        2 => {
            assert_eq!(out.unwrap(), 1);
            assert_eq!(
                bodies[1],
                encoded(&["first", "second"]),
                "the retry lost messages"
            );
        }
        n => panic!("{n} calls"),
    }
    stats_add_up(&channel);
}

/// A client stream longer than the replay buffer (64 KiB) and answered UNAVAILABLE is not sent
/// again (it cannot be replayed), and the caller gets the server's status.
#[tokio::test]
async fn a_client_stream_beyond_the_replay_buffer_is_sent_once() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let _ = read_body(c.request.body_mut()).await;
        trailers_only(&mut c.respond, b"14", &[("grpc-message", b"busy")]);
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let big = "x".repeat(8 * 1024);
    for _ in 0..12 {
        tx.send(ping(&big)).unwrap();
    }
    drop(tx);
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        grpc(&channel).await.client_streaming(
            tonic::Request::new(Feed(rx)),
            PathAndQuery::from_static(UPLOAD),
            codec,
        ),
    )
    .await
    .expect("ended");
    let status = out.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "busy");
    assert_eq!(log.calls(), 1);
    stats_add_up(&channel);
}

/// A stream silent after its first message ends at the body idle timeout (not the 30 s
/// deadline) with DEADLINE_EXCEEDED.
#[tokio::test]
async fn a_silent_stream_ends_at_the_idle_timeout() {
    let (addr, _log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        std::future::pending::<()>().await;
    }))
    .await;
    let idle = Duration::from_millis(300);
    let channel = channel(addr)
        .deadline(Duration::from_secs(30))
        .body_idle_timeout(idle)
        .build()
        .unwrap();
    let mut stream = open_watch(&channel).await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("cut within 5 s");
    let took = started.elapsed();
    assert_eq!(end.unwrap_err().code(), Code::DeadlineExceeded);
    assert!(took < idle + Duration::from_millis(250), "{took:?}");
    drop(stream);
    settle().await;
    stats_add_up(&channel);
}

/// A stream in flight on an endpoint that is removed keeps streaming to its end.
#[tokio::test]
async fn a_stream_survives_the_removal_of_its_endpoint() {
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let (addr, _log) = serve_raw(script(move |mut c: Call| {
        let r = r.clone();
        async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), false);
            r.notified().await;
            let _ = s.send_data(pong("two"), false);
            let _ = s.send_trailers(trailers(b"0"));
            std::future::pending::<()>().await;
        }
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let mut stream = open_watch(&channel).await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    channel.remove(endpoint(addr).uri());
    release.notify_one();
    let (n, end) = drain(stream).await;
    assert_eq!((n, end.is_ok()), (1, true), "{end:?}");
    settle().await;
    let r = channel.retry_stats();
    assert_eq!((r.successes(), r.failures()), (1, 0));
    let _ = Bytes::new();
    stats_add_up(&channel);
}

/// A server stream refused before any message (trailers-only UNAVAILABLE) is not committed:
/// an idempotent one is sent again and the caller gets the second attempt's messages.
#[tokio::test]
async fn a_server_stream_refused_trailers_only_is_retried_when_idempotent() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        if c.index == 0 {
            trailers_only(&mut c.respond, b"14", &[]);
        } else {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), false);
            let _ = s.send_data(pong("two"), false);
            let _ = s.send_trailers(trailers(b"0"));
        }
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let (n, end) = drain(open_watch(&channel).await.unwrap()).await;
    assert_eq!((n, end.is_ok()), (2, true), "{end:?}");
    assert_eq!(log.calls(), 2);
    settle().await;
    stats_add_up(&channel);
}

/// A client stream the caller never finishes, to a server that waits for all of it: the call
/// ends at the deadline with DEADLINE_EXCEEDED, not later.
#[tokio::test]
async fn a_client_stream_the_caller_never_finishes_ends_at_the_deadline() {
    let (addr, _log) = serve_raw(script(|mut c: Call| async move {
        let _ = read_body(c.request.body_mut()).await;
        trailers_only(&mut c.respond, b"0", &[]);
        std::future::pending::<()>().await;
    }))
    .await;
    let deadline = Duration::from_millis(400);
    let channel = channel(addr).deadline(deadline).build().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(ping("first")).unwrap();
    let codec: ProstCodec<Ping, Pong> = ProstCodec::default();
    let mut g = grpc(&channel).await;
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        g.client_streaming(
            tonic::Request::new(Feed(rx)),
            PathAndQuery::from_static(UPLOAD),
            codec,
        ),
    )
    .await
    .expect("ended within 5 s");
    let took = started.elapsed();
    assert_eq!(out.unwrap_err().code(), Code::DeadlineExceeded);
    assert!(
        took >= deadline && took < deadline + Duration::from_millis(300),
        "{took:?}"
    );
    drop(tx);
    settle().await;
    stats_add_up(&channel);
}

/// A concurrency permit is held while a stream is open and released when the caller drops
/// it midway: with a limit of 1, the next call goes through.
#[tokio::test]
async fn a_dropped_stream_gives_its_concurrency_permit_back() {
    let (addr, _log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("one"), false);
        std::future::pending::<()>().await;
    }))
    .await;
    let mut limit = meshless::limit::LimitConfig::default();
    limit.algorithm = meshless::limit::Algorithm::Fixed { max: 1 };
    let channel = channel(addr).limit(limit).build().unwrap();
    let mut stream = open_watch(&channel).await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    assert_eq!(channel.limit().in_flight(), 1);
    let refused = open_watch(&channel).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    drop(stream);
    settle().await;
    assert_eq!(channel.limit().in_flight(), 0);
    let mut again = open_watch(&channel).await.unwrap();
    assert!(again.message().await.unwrap().is_some());
    drop(again);
    settle().await;
    let r = channel.retry_stats();
    assert_eq!(r.failures(), 0, "a refusal or a drop counted as a failure");
    stats_add_up(&channel);
}

/// A unary call abandoned after its response head arrived (the message never came): not the
/// endpoint's failure, nor the call's.
#[tokio::test]
async fn a_unary_call_abandoned_after_its_head_is_no_failure() {
    let (addr, log) = serve_raw(script(|mut c: Call| async move {
        let _s = c.respond.send_response(grpc_head(), false).unwrap();
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(addr).build().unwrap();
    let ch = channel.clone();
    let task =
        tokio::spawn(async move { support::unary(ch, GET, tonic::Request::new(ping("x"))).await });
    while log.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    settle().await;
    // A body dropped after its head is timed to its head by design (tests/caller_fault.rs):
    // what matters is that nothing counts it as a failure.
    let e = &channel.endpoints()[0];
    assert_eq!(e.failures, 0, "{e:?}");
    let r = channel.retry_stats();
    assert_eq!(r.failures(), 0);
    assert_eq!(log.calls(), 1);
    stats_add_up(&channel);
}

/// RST_STREAM before any head with codes that do not prove the server did nothing (CANCEL,
/// INTERNAL_ERROR, ENHANCE_YOUR_CALM): a non-idempotent call is sent once, an idempotent one
/// is retried.
#[tokio::test]
async fn resets_before_the_head_retry_only_idempotent_calls() {
    for reason in [
        h2::Reason::CANCEL,
        h2::Reason::INTERNAL_ERROR,
        h2::Reason::ENHANCE_YOUR_CALM,
    ] {
        for (path, expected) in [(support::CREATE, 1), (GET, 3)] {
            let (addr, log) = serve_raw(script(move |mut c: Call| async move {
                c.respond.send_reset(reason);
                std::future::pending::<()>().await;
            }))
            .await;
            let channel = channel(addr).build().unwrap();
            let out = tokio::time::timeout(
                Duration::from_secs(10),
                support::unary(channel.clone(), path, tonic::Request::new(ping("x"))),
            )
            .await
            .expect("ended");
            assert!(out.is_err());
            assert_eq!(log.calls(), expected, "{reason:?} {path}");
            stats_add_up(&channel);
        }
    }
}

/// An endpoint added while a retry waits out the only endpoint's pushback takes the retry
/// soon, rather than after the pushback; the retry goes there and not to the pushing one.
#[tokio::test]
async fn an_endpoint_added_during_a_pushback_wait_takes_the_retry() {
    let (a, a_log) = serve_raw(script(|mut c: Call| async move {
        trailers_only(
            &mut c.respond,
            b"14",
            &[("grpc-retry-pushback-ms", b"3000")],
        );
        std::future::pending::<()>().await;
    }))
    .await;
    let (b, b_log) = serve_raw(script(|mut c: Call| async move {
        let mut s = c.respond.send_response(grpc_head(), false).unwrap();
        let _ = s.send_data(pong("b"), false);
        let _ = s.send_trailers(trailers(b"0"));
        std::future::pending::<()>().await;
    }))
    .await;
    let channel = channel(a)
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let ch = channel.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        support::unary(ch, support::CREATE, tonic::Request::new(ping("x"))).await
    });
    while a_log.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    channel.insert(endpoint(b)).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("ended")
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.unwrap().from, "b");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!((a_log.calls(), b_log.calls()), (1, 1));
    stats_add_up(&channel);
}
