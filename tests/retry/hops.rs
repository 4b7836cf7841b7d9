//! One retry layer per call chain, over real sockets on 127.0.0.1: A (a meshless retry client)
//! calls B (a hyper server behind `CallerRetriesLayer`, whose handler calls C with its own
//! meshless retry client), and C always answers 503.
//!
//! C is a raw TCP server that keeps the bytes of every request head, so the attempt headers
//! are checked as they went over the wire.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use meshless::backoff::Backoff;
use meshless::budget::Budget;
use meshless::retry::{
    CallerRetries, CallerRetriesLayer, Idempotent, ReplayBody, Retry, RetryLayer,
};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceExt, service_fn};

type Client = Retry<HyperClient<HttpConnector, ReplayBody<Full<Bytes>>>>;

/// A retry client with `max_retries`, no backoff (real time), and the switch.
fn client(max_retries: u32, defer_to_caller: bool) -> Client {
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http();
    RetryLayer::new(Budget::default())
        .max_retries(max_retries)
        .backoff(Backoff::none())
        .defer_to_caller(defer_to_caller)
        .metrics(false)
        .layer(hyper)
}

/// C: answers every request 503 and keeps its head (lower-cased).
async fn always_503() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let record = heads.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_503(socket, record.clone()));
        }
    });
    (addr, heads)
}

async fn serve_503(mut socket: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        // One request: its head, then as many body bytes as it announces.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let body = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < end + body {
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + body);
        heads.lock().unwrap().push(head);
        let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        if socket.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// How B's handler calls C.
#[derive(Clone, Copy)]
enum Call {
    /// In the handler's own task: the scope tells the client.
    InPlace,
    /// From a spawned task, outside the scope: the request carries the inbound extension.
    Spawned,
}

/// B: behind `CallerRetriesLayer`, each request calls C once through `b_client` and answers
/// with C's status. Keeps the `x-meshless-attempt` of every request it receives.
async fn middle(
    c: SocketAddr,
    b_client: Client,
    call: Call,
) -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (record, b_client) = (record.clone(), b_client.clone());
            let handler = service_fn(move |req: Request<Incoming>| {
                let attempt = req.headers().get("x-meshless-attempt");
                let attempt = attempt.map(|v| v.to_str().unwrap().to_string());
                record.lock().unwrap().push(attempt);
                let mut out = Request::get(format!("http://{c}/c"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let client = b_client.clone();
                async move {
                    let res = match call {
                        Call::InPlace => client.oneshot(out).await,
                        Call::Spawned => {
                            if let Some(mark) = req.extensions().get::<CallerRetries>() {
                                out.extensions_mut().insert(*mark);
                            }
                            tokio::spawn(client.oneshot(out)).await.unwrap()
                        }
                    };
                    let status = res.map_or(502, |r| r.status().as_u16());
                    let res = Response::builder().status(status);
                    Ok::<_, Infallible>(res.body(Full::new(Bytes::new())).unwrap())
                }
            });
            let service = TowerToHyperService::new(CallerRetriesLayer::new().layer(handler));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service),
            );
        }
    });
    (addr, seen)
}

/// Runs one A request through B to C and returns C's request heads, B's inbound attempt
/// numbers, and B's client's caller-retries count.
async fn chain(defer_to_caller: bool, call: Call) -> (Vec<String>, Vec<Option<String>>, u64) {
    let (c, c_heads) = always_503().await;
    let b_client = client(1, defer_to_caller);
    let b_stats = b_client.stats();
    let (b, b_seen) = middle(c, b_client, call).await;
    let a = client(1, true);
    let req = Request::get(format!("http://{b}/b"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = a.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(a.stats().retries(), 1, "A retries once");
    let c_heads = c_heads.lock().unwrap().clone();
    let b_seen = b_seen.lock().unwrap().clone();
    (c_heads, b_seen, b_stats.caller_retries())
}

fn attempt_of(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|l| l.strip_prefix("x-meshless-attempt:"))
        .map(str::trim)
}

#[tokio::test]
async fn a_service_whose_caller_retries_does_not_retry() {
    let (c_heads, b_seen, deferred) = chain(true, Call::InPlace).await;
    // Only A retries: one attempt at C per attempt at B.
    assert_eq!(c_heads.len(), 2, "{c_heads:?}");
    assert_eq!(deferred, 2);
    // B received A's attempts, numbered; C received B's first attempts.
    assert_eq!(b_seen, [Some("1".into()), Some("2".into())]);
    let c_attempts: Vec<_> = c_heads.iter().map(|h| attempt_of(h)).collect();
    assert_eq!(c_attempts, [Some("1"), Some("1")]);
}

#[tokio::test]
async fn the_extension_carries_the_mark_to_a_spawned_call() {
    let (c_heads, _, deferred) = chain(true, Call::Spawned).await;
    assert_eq!(c_heads.len(), 2, "{c_heads:?}");
    assert_eq!(deferred, 2);
}

#[tokio::test]
async fn switched_off_the_retries_multiply() {
    let (c_heads, b_seen, deferred) = chain(false, Call::InPlace).await;
    // A's 2 attempts, each retried once by B: 4 attempts at C.
    assert_eq!(c_heads.len(), 4, "{c_heads:?}");
    assert_eq!(deferred, 0);
    assert_eq!(b_seen, [Some("1".into()), Some("2".into())]);
    let c_attempts: Vec<_> = c_heads.iter().map(|h| attempt_of(h)).collect();
    assert_eq!(c_attempts, [Some("1"), Some("2"), Some("1"), Some("2")]);
    // No gRPC header on HTTP requests.
    assert!(
        c_heads
            .iter()
            .all(|h| !h.contains("grpc-previous-rpc-attempts"))
    );
}

/// Sends one request from a client with `max_retries` straight to C; returns C's heads.
async fn direct(max_retries: u32, grpc: bool) -> Vec<String> {
    let (c, heads) = always_503().await;
    let mut req = Request::post(format!("http://{c}/svc.Echo/Say"));
    if grpc {
        req = req.header("content-type", "application/grpc+proto");
    }
    let mut req = req.body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut().insert(Idempotent(true));
    let res = client(max_retries, true).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    heads.lock().unwrap().clone()
}

fn previous_attempts(head: &str) -> Option<&str> {
    head.lines()
        .find_map(|l| l.strip_prefix("grpc-previous-rpc-attempts:"))
        .map(str::trim)
}

#[tokio::test]
async fn grpc_retries_carry_the_previous_attempts() {
    let heads = direct(2, true).await;
    let attempts: Vec<_> = heads.iter().map(|h| attempt_of(h)).collect();
    assert_eq!(attempts, [Some("1"), Some("2"), Some("3")]);
    let previous: Vec<_> = heads.iter().map(|h| previous_attempts(h)).collect();
    assert_eq!(previous, [None, Some("1"), Some("2")]);
}

#[tokio::test]
async fn http_attempts_are_numbered_without_the_grpc_header() {
    let heads = direct(2, false).await;
    let attempts: Vec<_> = heads.iter().map(|h| attempt_of(h)).collect();
    assert_eq!(attempts, [Some("1"), Some("2"), Some("3")]);
    assert!(heads.iter().all(|h| previous_attempts(h).is_none()));
}

#[tokio::test]
async fn a_client_that_cannot_retry_announces_nothing() {
    let heads = direct(0, true).await;
    assert_eq!(heads.len(), 1);
    assert_eq!(attempt_of(&heads[0]), None);
    assert_eq!(previous_attempts(&heads[0]), None);
}

/// Under a caller that retries, an attempt that never left is still sent again (it cost the
/// upstream nothing), and the failure after it goes back to the caller.
#[tokio::test]
async fn attempts_that_never_left_are_still_sent_again() {
    let calls = Arc::new(Mutex::new(0u32));
    let counter = calls.clone();
    let upstream = service_fn(move |_: Request<ReplayBody<Full<Bytes>>>| {
        let n = {
            let mut calls = counter.lock().unwrap();
            *calls += 1;
            *calls
        };
        async move {
            if n == 1 {
                let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
                return Err(refused);
            }
            Ok(Response::builder()
                .status(503)
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap())
        }
    });
    let layer = RetryLayer::new(Budget::default())
        .max_retries(3)
        .backoff(Backoff::none())
        .metrics(false);
    let stats = layer.stats();
    let svc = layer.layer(upstream);
    let req = Request::get("http://c/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = CallerRetries::scope(true, svc.oneshot(req)).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(*calls.lock().unwrap(), 2);
    assert_eq!((stats.retries(), stats.caller_retries()), (1, 1));
}

/// The same chain with `meshless::http::Client` as B's client: its default stack defers to a
/// caller that retries, read from the handler's scope when its future is first polled.
#[tokio::test]
async fn the_http_client_defers_inside_the_handler_scope() {
    http_client_chain(false).await;
}

/// The client's future spawned from the handler runs outside the scope: the client carries
/// the scope's answer from `request()`, where it is still inside.
#[tokio::test]
async fn the_http_client_defers_from_a_spawned_task_too() {
    http_client_chain(true).await;
}

async fn http_client_chain(spawned: bool) {
    let (c, c_heads) = always_503().await;
    let b_client = meshless::http::Client::builder()
        .endpoints([c.to_string()])
        .max_retries(1)
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let b_stats = b_client.retry_stats();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let b_client = b_client.clone();
            let handler = service_fn(move |_: Request<Incoming>| {
                let call = b_client.get("/c");
                async move {
                    let result = if spawned {
                        tokio::spawn(call).await.unwrap()
                    } else {
                        call.await
                    };
                    let status = result.map_or(502, |r| r.status().as_u16());
                    let res = Response::builder().status(status);
                    Ok::<_, Infallible>(res.body(Full::new(Bytes::new())).unwrap())
                }
            });
            let service = TowerToHyperService::new(CallerRetriesLayer::new().layer(handler));
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service),
            );
        }
    });
    let a = client(1, true);
    let req = Request::get(format!("http://{b}/b"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(a.oneshot(req).await.unwrap().status(), 503);
    assert_eq!(c_heads.lock().unwrap().len(), 2);
    assert_eq!(b_stats.caller_retries(), 2);
}
