//! `meshless::http::Client` against raw TCP servers that answer exactly the bytes given:
//! gRPC-web statuses carried in the body, and server pushback kept per endpoint.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use meshless::error::Kind;
use meshless::http::Client;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A server that answers every request on every connection with `response` (whole bytes), and
/// counts the requests it read.
async fn raw_server(response: Vec<u8>) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = common::serve_heads(move |_head| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(response.clone())
    })
    .await;
    (addr, hits)
}

/// A gRPC-web body: one message frame, then the trailer frame with `status`.
fn grpc_web_body(status: u32) -> Vec<u8> {
    let mut body = vec![0x00, 0, 0, 0, 3, b'a', b'b', b'c'];
    let trailers = format!("grpc-status:{status}\r\ngrpc-message:x\r\n");
    body.push(0x80);
    body.extend_from_slice(&(trailers.len() as u32).to_be_bytes());
    body.extend_from_slice(trailers.as_bytes());
    body
}

fn grpc_web_response(status: u32) -> Vec<u8> {
    let body = grpc_web_body(status);
    let mut res = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    res.extend_from_slice(&body);
    res
}

fn grpc_web_request(client: &Client) -> meshless::http::ResponseFuture {
    let req = http::Request::post("/greet.Greeter/Hello")
        .header("content-type", "application/grpc-web+proto")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    client.request(req)
}

#[tokio::test]
async fn grpc_web_answers_are_classified_by_the_status_in_their_body() {
    let (ok, _) = raw_server(grpc_web_response(0)).await;
    let client = Client::builder()
        .endpoints([ok.to_string()])
        .build()
        .unwrap();
    for _ in 0..10 {
        let res = grpc_web_request(&client).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            &grpc_web_body(0)[..],
            "the body reaches the caller intact"
        );
    }
    let endpoint = &client.endpoints()[0];
    assert_eq!((endpoint.requests, endpoint.failures), (10, 0));

    // The same framing with UNAVAILABLE in the trailer frame is a failure of the endpoint.
    let (unavailable, _) = raw_server(grpc_web_response(14)).await;
    let client = Client::builder()
        .endpoints([unavailable.to_string()])
        .max_retries(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        let res = grpc_web_request(&client).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    let endpoint = &client.endpoints()[0];
    assert_eq!((endpoint.requests, endpoint.failures), (3, 3));
}

#[tokio::test]
async fn endpoints_pushing_back_get_nothing_before_their_first_probe() {
    let throttled =
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n".to_vec();
    let (a, hits_a) = raw_server(throttled.clone()).await;
    let (b, hits_b) = raw_server(throttled).await;
    let client = Client::builder()
        .endpoints([a.to_string(), b.to_string()])
        .deadline(Duration::from_millis(900))
        .build()
        .unwrap();
    // Each endpoint answers 429 once; the retry finds both quiet for two seconds, with their
    // first probe a second in, after the deadline: the request fails at once, saying so.
    let started = tokio::time::Instant::now();
    let err = client.get("/quote").await.unwrap_err();
    assert_eq!(err.kind(), Kind::EndpointsPushingBack, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (hits_a.load(Ordering::SeqCst), hits_b.load(Ordering::SeqCst)),
        (1, 1)
    );
    // The next request, before the first probe, reaches neither.
    let err = client.get("/quote").await.unwrap_err();
    assert_eq!(err.kind(), Kind::EndpointsPushingBack);
    assert_eq!(
        (hits_a.load(Ordering::SeqCst), hits_b.load(Ordering::SeqCst)),
        (1, 1)
    );
}

#[tokio::test]
async fn a_request_waits_for_a_pushback_that_ends_within_its_deadline() {
    let throttled =
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n".to_vec();
    let (a, hits) = raw_server(throttled).await;
    let client = Client::builder()
        .endpoints([a.to_string()])
        .deadline(Duration::from_secs(5))
        .max_retries(1)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let res = client.get("/quote").await.unwrap();
    assert_eq!(res.status(), 503);
    // The retry went out only once the endpoint's second of quiet was over.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// A server that answers the first request it gets with `first`, and every later one `200`.
async fn first_then_ok(first: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = common::serve_heads(move |_head| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let response: &[u8] = if n == 0 {
            first
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        };
        std::future::ready(response.to_vec())
    })
    .await;
    (addr, hits)
}

#[tokio::test]
async fn a_request_waits_out_a_pushback_longer_than_its_attempt_timeout_within_its_deadline() {
    let throttled: &[u8] =
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n";
    let (a, hits_a) = first_then_ok(throttled).await;
    let (b, hits_b) = first_then_ok(throttled).await;
    // An attempt timeout shorter than the second to the quiet's first probe.
    let client = Client::builder()
        .endpoints([a.to_string(), b.to_string()])
        .deadline(Duration::from_secs(5))
        .attempt_timeout(Duration::from_millis(600))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let res = client.get("/quote").await.unwrap();
    assert_eq!(res.status(), 200);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "sent again after {took:?}, before the first probe"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    // One 429 each, then one 200 from whichever was free first.
    let (a, b) = (hits_a.load(Ordering::SeqCst), hits_b.load(Ordering::SeqCst));
    assert_eq!(a + b, 3, "{a} + {b}");
    // The first retry went to the other endpoint; the second found both quiet, waited, and
    // went out once one was free. The wait itself was no retry: two in all, not three.
    assert_eq!(client.stats().retries, 2, "{:?}", client.stats());
}

#[tokio::test]
async fn a_retry_token_comes_back_when_the_caller_gives_up_before_the_retry_is_sent() {
    let throttled: &[u8] =
        b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 5\r\ncontent-length: 0\r\n\r\n";
    let (a, hits) = first_then_ok(throttled).await;
    let budget = meshless::budget::Budget::default();
    let client = Client::builder()
        .endpoints([a.to_string()])
        .budget(budget.clone())
        .deadline(Duration::from_secs(30))
        .attempt_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let before = budget.balance();
    // The retry waits in the balancer for the endpoint's five seconds of quiet; the caller
    // leaves first.
    let gave_up = tokio::time::timeout(Duration::from_millis(500), client.get("/")).await;
    assert!(gave_up.is_err());
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the retry was never sent");
    // The request's deposit stays; the retry's token came back.
    let after = budget.balance();
    assert!(after > before, "token not given back: {before} -> {after}");
}

/// A connection lost in the middle of a body is a typed error too: a `meshless::Error` of kind
/// `Service`, with hyper's error (what it knows of the cut) as its source.
#[tokio::test]
async fn a_body_cut_short_ends_with_a_meshless_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "the request head never came");
            head.extend_from_slice(&buf[..n]);
        }
        // A hundred bytes promised, ten sent, and the connection closed.
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .build()
        .unwrap();
    let res = client.get("/").await.unwrap();
    assert_eq!(res.status(), 200);
    let err = res.into_body().collect().await.unwrap_err();
    let err = err
        .downcast_ref::<meshless::Error>()
        .unwrap_or_else(|| panic!("not a meshless error: {err:?}"));
    assert_eq!(err.kind(), Kind::Service, "{err}");
    let source = std::error::Error::source(err).expect("the cut is the source");
    assert!(source.is::<hyper::Error>(), "{source:?}");
}
