//! What the caller does is never the endpoint's failure: a future it stops polling and drops
//! after the deadline, a response body it holds and then drops, a request body of its own that
//! fails. The balancer, the breaker and the client's counters all agree on it, and meshless's
//! own deadline still charges the endpoint.
//!
//! Real sockets, real time: each wait only makes sure that something happened after something
//! else (a drop after the deadline, a hold longer than the endpoint's answer), never that two
//! things race.

mod common;

use bytes::Bytes;
use http::Request;
use http_body::Frame;
use meshless::breaker::BreakerState;
use meshless::error::Kind;
use meshless::http::Client;
use meshless::outlier::Status;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::sleep;

/// A server that answers `GET /` at once (`ok`), `GET /big` at once with 64 KiB, and never
/// answers anything else. Each request head received is announced on the channel.
async fn server() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = common::serve_heads(move |head| {
        let _ = tx.send(());
        async move {
            if head.starts_with(b"GET /big ") {
                let mut big = b"HTTP/1.1 200 OK\r\ncontent-length: 65536\r\n\r\n".to_vec();
                big.resize(big.len() + 65536, b'x');
                big
            } else if head.starts_with(b"GET / ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
            } else {
                std::future::pending().await
            }
        }
    })
    .await;
    (addr, rx)
}

/// The endpoints' counters say nothing was charged to any of them.
fn assert_no_endpoint_failed(client: &Client) {
    for e in client.endpoints() {
        assert_eq!(e.failures, 0, "{e:?}");
        assert_eq!(e.ejections, 0, "{e:?}");
        assert_eq!(e.status, Status::Active, "{e:?}");
        assert_eq!(e.in_flight, 0, "{e:?}");
    }
}

/// Polls `call` until the server has received its request, then leaves it unpolled.
async fn send_then_stop_polling<F: Future + Unpin>(
    call: &mut F,
    received: &mut mpsc::UnboundedReceiver<()>,
) {
    tokio::select! {
        _ = &mut *call => panic!("the request ended before its server had it"),
        _ = received.recv() => {}
    }
}

#[tokio::test]
async fn a_future_dropped_unpolled_after_the_deadline_is_a_cancellation_everywhere() {
    let (addr, mut received) = server().await;
    let deadline = Duration::from_millis(300);
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(deadline)
        .metrics(false)
        .build()
        .unwrap();
    const DROPS: u64 = 3;
    for _ in 0..DROPS {
        let mut call = Box::pin(client.get("/"));
        send_then_stop_polling(&mut call, &mut received).await;
        // The server answered at once; the caller neither read it nor dropped the future
        // before the deadline. Then it gives up: no timer of meshless's ended the request.
        sleep(deadline + Duration::from_millis(100)).await;
        drop(call);
    }
    let stats = client.stats();
    assert_eq!(
        stats.failures, 0,
        "the client counted the caller's drops as failures"
    );
    assert_eq!(stats.cancelled, DROPS);
    let breaker = client.breaker().stats();
    assert_eq!(
        breaker.failures, 0,
        "the breaker counted the caller's drops: {breaker:?}"
    );
    assert_eq!(breaker.state, BreakerState::Closed);
    assert_no_endpoint_failed(&client);
    let cancelled: u64 = client.endpoints().iter().map(|e| e.cancelled).sum();
    assert_eq!(cancelled, DROPS, "the balancer agrees: cancellations");
    let res = client
        .get("/")
        .await
        .expect("a healthy endpoint still serves");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_deadline_expiring_a_request_is_still_a_failure_everywhere() {
    let (addr, _received) = server().await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_millis(100))
        .metrics(false)
        .build()
        .unwrap();
    // Polled throughout: the deadline layer's timer ends it, and drops what is below.
    let err = client
        .get("/never")
        .await
        .expect_err("the server never answers");
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(client.stats().failures, 1);
    assert_eq!(client.stats().cancelled, 0);
    assert_eq!(client.breaker().stats().failures, 1);
    // Every attempt (a retry may have followed the first) was charged.
    let e = &client.endpoints()[0];
    assert!(e.failures >= 1, "{e:?}");
    assert_eq!((e.failures, e.cancelled), (e.requests, 0), "{e:?}");
}

#[tokio::test]
async fn a_body_held_then_dropped_is_timed_to_its_head() {
    let (addr, _received) = server().await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_secs(10))
        .metrics(false)
        .build()
        .unwrap();
    let hold = Duration::from_millis(600);
    const HELD: u64 = 3;
    for _ in 0..HELD {
        let res = client.get("/big").await.unwrap();
        assert_eq!(res.status(), 200);
        // The endpoint sent everything at once; the caller holds the body unread, then drops
        // it: a success (its head's class), timed to the head, not to the drop.
        sleep(hold).await;
        drop(res);
    }
    let e = &client.endpoints()[0];
    assert_eq!((e.requests, e.failures, e.cancelled), (HELD, 0, 0), "{e:?}");
    assert!(
        e.rtt < hold / 2,
        "the caller's hold became the endpoint's latency: {:?}",
        e.rtt
    );
    assert_eq!(client.stats().successes, HELD);
}

/// A request body that sends a chunk, then fails: the caller's own error.
struct FailingBody {
    sent: bool,
}

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if std::mem::replace(&mut self.sent, true) {
            Poll::Ready(Some(Err(std::io::Error::other("the caller's body failed"))))
        } else {
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"start")))))
        }
    }
}

/// The whole source chain as text.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(" <- ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

#[tokio::test]
async fn a_failing_request_body_is_the_callers_fault_not_the_endpoints() {
    let (a, _received_a) = server().await;
    let (b, _received_b) = server().await;
    let client = Client::builder()
        .endpoints([a.to_string(), b.to_string()])
        .deadline(Duration::from_secs(10))
        .metrics(false)
        .build()
        .unwrap();
    let rtt_before: Vec<Duration> = client.endpoints().iter().map(|e| e.rtt).collect();
    const FAILED: u64 = 8;
    for _ in 0..FAILED {
        let req = Request::post("/upload")
            .body(FailingBody { sent: false })
            .unwrap();
        let err = client.request(req).await.expect_err("the body failed");
        assert_eq!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
        assert!(
            chain(&err).contains("the caller's body failed"),
            "{}",
            chain(&err)
        );
        assert_eq!(err.attempts(), 1, "not retried: {}", chain(&err));
    }
    assert_no_endpoint_failed(&client);
    let endpoints = client.endpoints();
    let cancelled: u64 = endpoints.iter().map(|e| e.cancelled).sum();
    assert_eq!(cancelled, FAILED, "{endpoints:?}");
    for (e, before) in endpoints.iter().zip(rtt_before) {
        assert!(e.rtt <= before, "an RTT penalty: {e:?}, was {before:?}");
    }
    let breaker = client.breaker().stats();
    assert_eq!(breaker.failures, 0, "{breaker:?}");
    assert_eq!(breaker.state, BreakerState::Closed);
    let stats = client.stats();
    assert_eq!((stats.failures, stats.retries), (0, 0));
    assert_eq!(stats.cancelled, FAILED);
    let res = client.get("/").await.expect("the endpoints still serve");
    assert_eq!(res.status(), 200);
}

/// The same over HTTP/2, where hyper resets the stream instead of the connection: still the
/// caller's fault, never the endpoint's.
#[tokio::test]
async fn a_failing_request_body_over_http2_is_the_callers_fault() {
    use meshless::testing::{Behavior, Fleet};
    let fleet = Fleet::builder()
        .backend(Behavior::healthy())
        .backend(Behavior::healthy())
        .start()
        .await
        .expect("fleet starts");
    let client = Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .http2_prior_knowledge(true)
        .deadline(Duration::from_secs(10))
        .metrics(false)
        .build()
        .unwrap();
    const FAILED: u64 = 8;
    for _ in 0..FAILED {
        let req = Request::post("/upload")
            .body(FailingBody { sent: false })
            .unwrap();
        let err = client.request(req).await.expect_err("the body failed");
        assert_eq!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
        assert_eq!(err.attempts(), 1, "not retried: {}", chain(&err));
    }
    assert_no_endpoint_failed(&client);
    let breaker = client.breaker().stats();
    assert_eq!(breaker.failures, 0, "{breaker:?}");
    let stats = client.stats();
    assert_eq!((stats.failures, stats.retries), (0, 0), "{stats:?}");
    assert_eq!(stats.cancelled, FAILED);
    let res = client.get("/").await.expect("the endpoints still serve");
    assert_eq!(res.status(), 200);
}
