//! A logical request's outcome is settled at the end of its response body, through
//! `meshless::http::Client` against real sockets: a success head whose body then breaks (cut
//! mid-way, cut by the deadline, a gRPC status in the trailers) counts as a failure in
//! `client.stats()` and `meshless_requests_completed_total`; a body read to its end, or dropped
//! unread by its caller, counts as the success its head was.
//!
//! These run on the real clock (paused time would race the sockets), as tests/body_deadline.rs
//! does: every bound is generous and no assertion depends on a sleep winning a race.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshless::error::Kind;
use meshless::http::Client;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for something that should end far sooner: the hang detector.
const BOUND: Duration = Duration::from_secs(5);

/// A head that promises 100 bytes of body.
const HEAD_100: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n";

/// Serves every connection: reads one request head, then hands the socket to `script`.
async fn serve<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    common::serve_sockets(move |socket, _head| script(socket)).await
}

/// Writes `head` and 10 bytes of body, then closes the connection (`close`) or keeps it open,
/// silent, until the client goes away.
async fn ten_bytes(mut socket: TcpStream, head: &'static [u8], close: bool) {
    let _ = socket.write_all(head).await;
    let _ = socket.write_all(&[b'x'; 10]).await;
    let _ = socket.flush().await;
    if !close {
        // Held open, silent: read until the client closes its end.
        let mut sink = [0u8; 64];
        while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
    }
}

fn client(addr: SocketAddr) -> Client {
    Client::builder()
        .endpoints([addr.to_string()])
        .build()
        .expect("valid configuration")
}

/// `(successes, failures, cancelled)` of a client's logical requests.
fn outcomes(client: &Client) -> (u64, u64, u64) {
    let stats = client.stats();
    (stats.successes, stats.failures, stats.cancelled)
}

/// Runs `test` on a current-thread runtime (real clock) with a fresh recorder installed for
/// this thread, and returns the value of `meshless_requests_completed_total` with `labels`.
fn completed_total<F>(test: impl FnOnce() -> F, labels: &[(&str, &str)]) -> u64
where
    F: Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test());
    });
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "meshless_requests_completed_total")
        .filter(|(key, ..)| {
            labels
                .iter()
                .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            other => panic!("not a counter: {other:?}"),
        })
        .sum()
}

#[test]
fn a_body_cut_midway_counts_as_a_failure() {
    let failures = completed_total(
        || async {
            let addr = serve(|socket| ten_bytes(socket, HEAD_100, true)).await;
            let client = client(addr);
            let res = client.get("/").await.expect("the head arrives");
            assert_eq!(res.status(), 200);
            let read = tokio::time::timeout(BOUND, res.into_body().collect()).await;
            assert!(read.expect("no hang").is_err(), "the body is cut");
            assert_eq!(client.stats().requests, 1);
            assert_eq!(outcomes(&client), (0, 1, 0), "a failure, not a success");
            let recent = client.stats().recent;
            assert_eq!(recent.success_rate(), Some(0.0), "recent sees it too");
        },
        &[("class", "failure")],
    );
    assert_eq!(
        failures, 1,
        "meshless_requests_completed_total{{class=\"failure\"}}"
    );
}

#[tokio::test]
async fn a_body_read_to_its_end_counts_as_a_success() {
    const HEAD_10: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n";
    let addr = serve(|socket| ten_bytes(socket, HEAD_10, false)).await;
    let client = client(addr);
    let res = client.get("/").await.expect("the head arrives");
    let body = tokio::time::timeout(BOUND, res.into_body().collect())
        .await
        .expect("no hang")
        .expect("the whole body")
        .to_bytes();
    assert_eq!(&body[..], &[b'x'; 10]);
    assert_eq!(outcomes(&client), (1, 0, 0));
    assert_eq!(client.stats().recent.success_rate(), Some(1.0));
}

#[tokio::test]
async fn a_body_dropped_unread_counts_as_a_success() {
    let addr = serve(|socket| ten_bytes(socket, HEAD_100, false)).await;
    let client = client(addr);
    let res = client.get("/").await.expect("the head arrives");
    assert_eq!(res.status(), 200);
    assert_eq!(
        outcomes(&client),
        (0, 0, 0),
        "in flight until its body ends"
    );
    drop(res);
    assert_eq!(client.stats().requests, 1);
    assert_eq!(outcomes(&client), (1, 0, 0), "the caller stopped reading");
}

#[test]
fn a_body_cut_by_the_deadline_counts_as_a_timeout() {
    let timeouts = completed_total(
        || async {
            let addr = serve(|socket| ten_bytes(socket, HEAD_100, false)).await;
            let client = Client::builder()
                .endpoints([addr.to_string()])
                .deadline(Duration::from_millis(300))
                .build()
                .expect("valid configuration");
            let res = client.get("/").await.expect("the head arrives in time");
            let read = tokio::time::timeout(BOUND, res.into_body().collect()).await;
            let err = read
                .expect("no hang")
                .expect_err("the deadline cuts the body");
            let kind = err
                .downcast_ref::<meshless::Error>()
                .map(meshless::Error::kind);
            assert_eq!(kind, Some(Kind::DeadlineExceeded));
            assert_eq!(outcomes(&client), (0, 1, 0));
        },
        &[("class", "failure"), ("reason", "timeout")],
    );
    assert_eq!(timeouts, 1, "{{class=\"failure\",reason=\"timeout\"}}");
}

/// An HTTP/2 server whose every answer is a gRPC head (no status), one message, and trailers
/// with `grpc-status: status`.
async fn grpc_server(status: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_req| async move {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static(status));
                let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
                    .with_trailers(async move { Some(Ok(trailers)) });
                let res = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(body)
                    .unwrap();
                Ok::<_, std::convert::Infallible>(res)
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service),
            );
        }
    });
    addr
}

/// Sends one unary gRPC call and reads its response to the end (trailers included).
async fn grpc_call(addr: SocketAddr) -> Client {
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .build()
        .expect("valid configuration");
    let req = http::Request::post("/greet.Greeter/Hello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let res = client.request(req).await.expect("the head arrives");
    assert_eq!(res.status(), 200);
    let body = tokio::time::timeout(BOUND, res.into_body().collect())
        .await
        .expect("no hang")
        .expect("the whole body");
    assert!(body.trailers().is_some(), "the status came in trailers");
    client
}

#[tokio::test]
async fn a_grpc_status_in_the_trailers_settles_the_call() {
    let unavailable = grpc_call(grpc_server("14").await).await;
    assert_eq!(
        outcomes(&unavailable),
        (0, 1, 0),
        "UNAVAILABLE is a failure"
    );
    let ok = grpc_call(grpc_server("0").await).await;
    assert_eq!(outcomes(&ok), (1, 0, 0), "OK is a success");
}

/// Writes `response` whole, then keeps the connection open, silent, until the client goes away.
async fn answer(mut socket: TcpStream, response: Vec<u8>) {
    let _ = socket.write_all(&response).await;
    let mut sink = [0u8; 64];
    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// A gRPC-web answer: a head without status, one message, then the trailer frame with `status`.
fn grpc_web_response(status: u32) -> Vec<u8> {
    let mut body = vec![0x00, 0, 0, 0, 3, b'a', b'b', b'c'];
    let trailers = format!("grpc-status:{status}\r\n");
    body.push(0x80);
    body.extend_from_slice(&(trailers.len() as u32).to_be_bytes());
    body.extend_from_slice(trailers.as_bytes());
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body].concat()
}

#[tokio::test]
async fn a_grpc_web_status_in_the_body_settles_the_call() {
    for (status, expected) in [(14, (0, 1, 0)), (0, (1, 0, 0))] {
        let addr = serve(move |socket| answer(socket, grpc_web_response(status))).await;
        let client = client(addr);
        let req = http::Request::post("/greet.Greeter/Hello")
            .header("content-type", "application/grpc-web+proto")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap();
        let res = client.request(req).await.expect("the head arrives");
        assert_eq!(
            outcomes(&client),
            (0, 0, 0),
            "in flight until its body ends"
        );
        tokio::time::timeout(BOUND, res.into_body().collect())
            .await
            .expect("no hang")
            .expect("the whole body");
        assert_eq!(outcomes(&client), expected, "grpc-status {status}");
    }
}

#[tokio::test]
async fn heads_that_decide_are_counted_at_once() {
    // A complete body: nothing is left to go wrong.
    let empty = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec();
    let addr = serve(move |socket| answer(socket, empty.clone())).await;
    let client = client(addr);
    let res = client.get("/").await.expect("the head arrives");
    assert_eq!(outcomes(&client), (1, 0, 0), "counted with its head");
    drop(res);
    assert_eq!(outcomes(&client), (1, 0, 0), "and only once");

    // A failure head: its body cannot make it better.
    const HEAD_500: &[u8] = b"HTTP/1.1 500 Oops\r\ncontent-length: 100\r\n\r\n";
    let addr = serve(|socket| ten_bytes(socket, HEAD_500, false)).await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .max_retries(0)
        .build()
        .expect("valid configuration");
    let res = client.get("/").await.expect("the head arrives");
    assert_eq!(res.status(), 500);
    assert_eq!(outcomes(&client), (0, 1, 0), "counted with its head");
    drop(res);
    assert_eq!(outcomes(&client), (0, 1, 0), "and only once");
}

/// A gRPC head that leaves its status to the end of a stream that has already ended (no
/// status, no body): the end of the stream decides, and a missing status is a failure, as the
/// balancer counts it, not the success the undecided head stood for.
#[tokio::test]
async fn a_grpc_head_without_status_and_no_body_is_a_failure() {
    let head =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: 0\r\n\r\n";
    let addr = serve(move |socket| answer(socket, head.to_vec())).await;
    let client = client(addr);
    let req = http::Request::post("/greet.Greeter/Hello")
        .header("content-type", "application/grpc-web+proto")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let res = client.request(req).await.expect("the head arrives");
    assert!(http_body::Body::is_end_stream(res.body()));
    assert_eq!(
        outcomes(&client),
        (0, 1, 0),
        "counted with the head, as a failure"
    );
    assert_eq!(
        client.endpoints()[0].failures,
        1,
        "as the balancer counts it"
    );
}
