//! `meshless::tonic::Channel` under tonic's own client, against real tonic servers on
//! 127.0.0.1: idempotency, deadlines from the call's timeout, statuses in trailers, refused
//! connections and cancellation.
//!
//! Run with `cargo test --features tonic --test tonic_channel`.
#![cfg(feature = "tonic")]

#[path = "tonic/support.rs"]
mod support;

mod common;

use meshless::backoff::Backoff;
use meshless::balance::EndpointStats;
use meshless::breaker::BreakerConfig;
use meshless::error::Kind;
use meshless::hedge::{HedgeConfig, HedgeDelay};
use meshless::limit::{Algorithm, LimitConfig};
use meshless::tonic::Channel;
use std::net::SocketAddr;
use std::time::Duration;
use support::{Behaviour, CREATE, GET, Store, endpoint, ping, refusing, serve, unary, watch};
use tokio::time::Instant;
use tonic::Code;

/// A channel over `addrs` where `GET` is idempotent and `CREATE` is not, retrying at once.
fn channel(addrs: &[SocketAddr]) -> meshless::tonic::ChannelBuilder {
    Channel::builder()
        .endpoints(addrs.iter().copied().map(endpoint))
        .idempotent_method(GET)
        .backoff(Backoff::none())
        .metrics(false)
}

fn stats(channel: &Channel, addr: SocketAddr) -> EndpointStats<http::Uri> {
    let uri = endpoint(addr).uri().clone();
    channel
        .endpoints()
        .into_iter()
        .find(|e| e.key == uri)
        .expect("the endpoint is in the channel")
}

#[tokio::test]
async fn unavailable_is_retried_for_an_idempotent_method_and_not_for_another() {
    let bad = Store::new("bad", Behaviour::Unavailable);
    let addr = serve(bad.clone());
    let channel = channel(&[addr]).build().unwrap();

    // Alone in the channel, the endpoint takes every attempt: 1 + 2 retries for GET, and the
    // caller gets the server's own status.
    let status = unary(channel.clone(), GET, tonic::Request::new(ping("a")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "draining");
    assert_eq!(bad.calls(), 3);
    assert_eq!(channel.retry_stats().retries(), 2);

    // CREATE may have acted before it answered UNAVAILABLE: sent once.
    let status = unary(channel.clone(), CREATE, tonic::Request::new(ping("b")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(bad.calls(), 4);
    assert_eq!(channel.retry_stats().retries(), 2);

    // One call can be marked safe to repeat, whatever its method: tonic carries the mark.
    let mut request = tonic::Request::new(ping("c"));
    request
        .extensions_mut()
        .insert(meshless::retry::Idempotent(true));
    unary(channel.clone(), CREATE, request).await.unwrap_err();
    assert_eq!(bad.calls(), 7);
    let e = stats(&channel, addr);
    assert_eq!((e.requests, e.failures), (7, 7));
}

#[tokio::test]
async fn callers_of_an_idempotent_method_never_see_an_unavailable_endpoint() {
    let stores = [
        Store::new("good-1", Behaviour::Healthy),
        Store::new("good-2", Behaviour::Healthy),
        Store::new("bad", Behaviour::Unavailable),
    ];
    let addrs: Vec<_> = stores.iter().cloned().map(serve).collect();
    let channel = channel(&addrs).build().unwrap();
    for i in 0..60 {
        let pong = unary(channel.clone(), GET, tonic::Request::new(ping("x")))
            .await
            .unwrap_or_else(|s| panic!("call {i} failed: {s:?}"));
        assert_ne!(pong.from, "bad");
    }
    let served: usize = stores[..2].iter().map(Store::calls).sum();
    assert_eq!(served, 60, "every call answered once by a healthy server");
    let retries = channel.retry_stats().retries();
    assert_eq!(
        retries as usize,
        stores[2].calls(),
        "each bad answer was retried"
    );
}

#[tokio::test(start_paused = true)]
async fn the_call_timeout_becomes_the_deadline() {
    let stall = Store::new("stall", Behaviour::Stall);
    let addr = serve(stall.clone());
    // The channel's own limits are far longer: the call's timeout must be the one that fires.
    let channel = channel(&[addr])
        .deadline(Duration::from_secs(30))
        .attempt_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let timeout = Duration::from_millis(300);
    let mut request = tonic::Request::new(ping("slow"));
    request.set_timeout(timeout);
    let started = Instant::now();
    let status = unary(channel.clone(), GET, request).await.unwrap_err();
    let elapsed = started.elapsed();

    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(elapsed >= timeout, "failed early, after {elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_millis(50),
        "failed late, after {elapsed:?}"
    );
    let error = std::error::Error::source(&status)
        .and_then(|s| s.downcast_ref::<meshless::Error>())
        .expect("the channel's error is the status's source");
    assert!(error.is_timeout(), "{error:?}");
    // The server was told, and no retry was started that could not finish in time.
    assert_eq!(stall.calls(), 1);
    let told = stall.timeouts.lock().unwrap()[0].clone();
    let told = common::grpc_timeout(&told).expect("a grpc-timeout");
    assert!(told <= timeout, "the server was told {told:?}");
}

#[tokio::test]
async fn a_status_in_the_trailers_of_a_streamed_answer_counts_against_its_endpoint() {
    let failing = Store::new("failing", Behaviour::FailMidStream);
    let addr = serve(failing.clone());
    let channel = channel(&[addr]).build().unwrap();

    let (pongs, end) = watch(channel.clone()).await;
    assert_eq!(pongs.len(), 1, "the message before the failure arrives");
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(status.message(), "lost the cursor");
    let e = stats(&channel, addr);
    assert_eq!((e.requests, e.failures), (1, 1));
    assert_eq!(
        failing.calls(),
        1,
        "an answer already streaming is never retried"
    );

    // The same stream ending with OK is a success for the endpoint.
    let healthy = Store::new("healthy", Behaviour::Healthy);
    let addr = serve(healthy.clone());
    let channel = self::channel(&[addr]).build().unwrap();
    let (pongs, end) = watch(channel.clone()).await;
    assert_eq!(pongs.len(), 1);
    end.unwrap();
    let e = stats(&channel, addr);
    assert_eq!((e.requests, e.failures), (1, 0));
}

#[tokio::test]
async fn a_refused_connection_is_retried_even_for_a_method_that_is_not_idempotent() {
    let down = refusing();
    let channel = channel(&[down]).build().unwrap();

    // Alone, the closed endpoint takes all three attempts: never sent, so retried although
    // CREATE is not idempotent; the caller gets UNAVAILABLE, as from tonic alone.
    let status = unary(channel.clone(), CREATE, tonic::Request::new(ping("a")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(channel.retry_stats().retries(), 2);
    let warm_up = stats(&channel, down);
    assert_eq!((warm_up.requests, warm_up.failures), (3, 3));

    // Two servers join: every CREATE succeeds, and each reached a server exactly once.
    let stores = [
        Store::new("up-1", Behaviour::Healthy),
        Store::new("up-2", Behaviour::Healthy),
    ];
    for store in &stores {
        channel.insert(endpoint(serve(store.clone()))).unwrap();
    }
    for i in 0..30 {
        unary(channel.clone(), CREATE, tonic::Request::new(ping("x")))
            .await
            .unwrap_or_else(|s| panic!("call {i} failed: {s:?}"));
    }
    assert_eq!(stores.iter().map(Store::calls).sum::<usize>(), 30);
    let down = stats(&channel, down);
    assert_eq!(down.failures, down.requests, "every attempt there failed");
    assert_eq!(
        channel.retry_stats().retries() - 2,
        down.requests - warm_up.requests,
        "each attempt at the closed endpoint was retried elsewhere"
    );
}

#[tokio::test]
async fn a_caller_dropping_the_call_is_not_charged_to_the_endpoint() {
    let stall = Store::new("stall", Behaviour::Stall);
    let addr = serve(stall.clone());
    let channel = channel(&[addr]).build().unwrap();

    let arrived = stall.arrived.clone();
    let call = tokio::spawn(unary(
        channel.clone(),
        GET,
        tonic::Request::new(ping("abandoned")),
    ));
    arrived.notified().await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());

    let e = stats(&channel, addr);
    assert_eq!((e.requests, e.failures, e.cancelled), (0, 0, 1));
    assert_eq!(channel.retry_stats().cancelled(), 1);
    assert_eq!(channel.retry_stats().failures(), 0);
    assert_eq!(stall.calls(), 1, "nothing was sent again");
}

#[tokio::test(start_paused = true)]
async fn only_idempotent_methods_are_hedged() {
    let stall = Store::new("stall", Behaviour::Stall);
    let addr = serve(stall.clone());
    let channel = channel(&[addr]).hedge(hedged()).build().unwrap();

    // GET goes to the stalling server; a healthy one joins; 50 ms later the hedge goes there
    // and wins. The loser is cancelled, which charges its endpoint nothing.
    let arrived = stall.arrived.clone();
    let call = tokio::spawn(unary(channel.clone(), GET, tonic::Request::new(ping("a"))));
    arrived.notified().await;
    let healthy = Store::new("healthy", Behaviour::Healthy);
    channel.insert(endpoint(serve(healthy.clone()))).unwrap();
    let pong = call.await.unwrap().expect("the hedge answers");
    assert_eq!(pong.from, "healthy");
    assert_eq!(channel.hedge_stats().hedges(), 1);
    assert_eq!((stall.calls(), healthy.calls()), (1, 1));
    assert_eq!(stats(&channel, addr).failures, 0);

    // CREATE is never hedged: alone on the stalling server, it waits out its own timeout.
    let only_stall = self::channel(&[addr]).hedge(hedged()).build().unwrap();
    let mut request = tonic::Request::new(ping("b"));
    request.set_timeout(Duration::from_millis(300));
    let status = unary(only_stall.clone(), CREATE, request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(only_stall.hedge_stats().hedges(), 0);
    assert_eq!(stall.calls(), 2, "CREATE reached the server once");
}

/// Hedging after a fixed 50 ms.
fn hedged() -> HedgeConfig {
    let mut hedge = HedgeConfig::default();
    hedge.delay = HedgeDelay::Fixed(Duration::from_millis(50));
    hedge
}

#[tokio::test]
async fn the_breaker_and_the_limit_answer_with_grpc_codes_without_sending() {
    // Two failures in a row open the circuit: the third call is refused with UNAVAILABLE
    // before it reaches the server.
    let bad = Store::new("bad", Behaviour::Unavailable);
    let addr = serve(bad.clone());
    let mut breaker = BreakerConfig::default();
    breaker.consecutive_failures = 2;
    let channel = channel(&[addr]).breaker(breaker).build().unwrap();
    for _ in 0..2 {
        let status = unary(channel.clone(), CREATE, tonic::Request::new(ping("a")))
            .await
            .unwrap_err();
        assert_eq!(status.message(), "draining");
    }
    let status = unary(channel.clone(), CREATE, tonic::Request::new(ping("a")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let error = std::error::Error::source(&status)
        .and_then(|s| s.downcast_ref::<meshless::Error>())
        .expect("the channel's error is the status's source");
    assert_eq!(error.kind(), Kind::CircuitOpen);
    assert_eq!(bad.calls(), 2);

    // One call in flight at most: a second one is refused at once with RESOURCE_EXHAUSTED.
    let stall = Store::new("stall", Behaviour::Stall);
    let addr = serve(stall.clone());
    let mut limit = LimitConfig::default();
    limit.algorithm = Algorithm::Fixed { max: 1 };
    let channel = self::channel(&[addr]).limit(limit).build().unwrap();
    let arrived = stall.arrived.clone();
    let first = tokio::spawn(unary(channel.clone(), GET, tonic::Request::new(ping("1"))));
    arrived.notified().await;
    let status = unary(channel.clone(), GET, tonic::Request::new(ping("2")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(channel.limit().rejected(), 1);
    assert_eq!(stall.calls(), 1);
    first.abort();
}
