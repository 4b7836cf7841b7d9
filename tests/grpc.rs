//! meshless under a real tonic client and real tonic servers on 127.0.0.1: a gRPC endpoint that
//! answers UNAVAILABLE (trailers-only, `grpc-status: 14`) is retried around and avoided.
//!
//! The stack is built by hand here, layer by layer, over tonic channels adapted to the retry
//! layer's body; `tests/tonic_channel.rs` tests the same stack as `meshless::tonic::Channel`.
//!
//! Run with `cargo test --features tonic --test grpc` (the example it borrows from needs it).
#![cfg(feature = "tonic")]

// The servers, messages and client are the example's own (`cargo run --example grpc`).
#[path = "../examples/grpc.rs"]
#[allow(dead_code)] // the example's `main` and its table are not used here
mod example;

mod common;

use example::{Greeter, GreeterClient, HelloReply, HelloRequest, SAY_HELLO, serve};
use meshless::balance::{Balance, EndpointStats};
use meshless::budget::Budget;
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use meshless::retry::{Idempotency, ReplayBody, RetryLayer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::Code;
use tonic::body::Body;
use tonic::transport::Endpoint;
use tower::{ServiceBuilder, ServiceExt};

/// Generous limits: on a loaded CI machine a slow attempt must not turn into a failed call.
const DEADLINE: Duration = Duration::from_secs(10);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn calls_route_around_an_unavailable_endpoint() {
    let bad = serve(Greeter {
        name: "bad",
        healthy: false,
    })
    .unwrap();
    let good_1 = serve(Greeter {
        name: "good-1",
        healthy: true,
    })
    .unwrap();
    let good_2 = serve(Greeter {
        name: "good-2",
        healthy: true,
    })
    .unwrap();

    let balance = Balance::builder().build();
    let retry = RetryLayer::new(Budget::default()).idempotency(idempotency());
    let retry_stats = retry.stats();
    let service = ServiceBuilder::new()
        .layer(DeadlineLayer::new(DEADLINE))
        .layer(retry)
        .layer(AttemptTimeoutLayer::new(ATTEMPT_TIMEOUT))
        .service(balance.clone());
    let mut client = GreeterClient::new(service);

    // Warm-up, made deterministic: with the failing endpoint alone in the balancer, a call has
    // nowhere else to go. SayHello is declared idempotent, so UNAVAILABLE is retried: it is
    // tried 1 + 2 times, and then the caller gets the server's own status, untouched.
    balance.insert("bad", channel(bad));
    let status = client.say_hello(hello("warm-up")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "draining");
    assert_eq!(retry_stats.requests(), 1);
    assert_eq!(retry_stats.retries(), 2);
    assert_eq!(retry_stats.retries_exhausted(), 1);
    let warm_up = stats(&balance, "bad");
    assert_eq!((warm_up.requests, warm_up.failures), (3, 3));

    // Now the healthy endpoints join, and 100 calls go out, 4 at a time.
    balance.insert("good-1", channel(good_1));
    balance.insert("good-2", channel(good_2));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut client = client.clone();
        let next = next.clone();
        workers.spawn(async move {
            let mut replies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < 100 {
                replies.push(client.say_hello(hello("test")).await);
            }
            replies
        });
    }
    let mut replies = Vec::new();
    while let Some(batch) = workers.join_next().await {
        replies.extend(batch.unwrap());
    }

    // Every call succeeded, and was answered by a healthy endpoint.
    assert_eq!(replies.len(), 100);
    let replies: Vec<HelloReply> = replies
        .into_iter()
        .map(|r| r.expect("every call succeeds").into_inner())
        .collect();
    for reply in &replies {
        assert!(
            reply.message == "hello test, from good-1"
                || reply.message == "hello test, from good-2",
            "{}",
            reply.message
        );
        // The per-attempt limit reached the server as `grpc-timeout`, never above the limit.
        let limit =
            common::grpc_timeout(&reply.grpc_timeout).expect("a grpc-timeout on every attempt");
        assert!(limit <= ATTEMPT_TIMEOUT, "{limit:?}");
    }
    assert_eq!(retry_stats.requests(), 101);

    // The failing endpoint: every answer it gave was a failure, and after the warm-up taught the
    // balancer that, it got a small share of the 100 calls (none, unless the machine stalls the
    // healthy endpoints for a second) — or it was ejected.
    let bad = stats(&balance, "bad");
    assert!(bad.failures >= 3);
    assert_eq!(bad.failures, bad.requests);
    let after_warm_up = bad.requests - warm_up.requests;
    assert!(
        after_warm_up <= 10 || bad.ejections >= 1,
        "the failing endpoint got {after_warm_up} of 100 calls and was never ejected"
    );

    // The healthy endpoints failed nothing and served every call; any retry the calls needed
    // was one that met the failing endpoint.
    let good: Vec<_> = ["good-1", "good-2"]
        .into_iter()
        .map(|k| stats(&balance, k))
        .collect();
    assert!(good.iter().all(|e| e.failures == 0));
    assert_eq!(good.iter().map(|e| e.requests).sum::<u64>(), 100);
    assert_eq!(retry_stats.retries() - 2, after_warm_up);
}

fn hello(name: &str) -> HelloRequest {
    HelloRequest { name: name.into() }
}

fn stats(balance: &Balance<&'static str, Attempt>, key: &str) -> EndpointStats<&'static str> {
    balance
        .endpoints()
        .into_iter()
        .find(|e| e.key == key)
        .expect("the endpoint is in the balancer")
}

// ---------------------------------------------------------------------------------------------
// Client side: a tonic Channel per endpoint, adapted to the body the retry layer sends.

/// An endpoint as the balancer holds it.
type Attempt = tower::util::MapRequest<
    tonic::transport::Channel,
    fn(http::Request<ReplayBody<Body>>) -> http::Request<Body>,
>;

/// Every gRPC call is a POST: SayHello is declared idempotent by its path.
fn idempotency() -> Idempotency {
    Idempotency::default().route(|_, uri, _| uri.path() == SAY_HELLO)
}

/// The retry layer hands each attempt a replayable copy of tonic's request body; a tonic
/// Channel only takes `tonic::body::Body`, so every endpoint re-boxes it.
fn into_tonic_body(req: http::Request<ReplayBody<Body>>) -> http::Request<Body> {
    req.map(Body::new)
}

fn channel(addr: SocketAddr) -> Attempt {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    channel.map_request(into_tonic_body as fn(_) -> _)
}
