//! Idempotency is absolute: a request that may have reached the server is sent again only when
//! it is idempotent or the server proved it did not act, and an explicit `Idempotent(false)`
//! only when the attempt never left. Against raw TCP and raw HTTP/2 servers on 127.0.0.1, where
//! the bytes on the wire are what is counted.

mod common;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use meshless::budget::Budget;
use meshless::classify::{Retryable, classify_error};
use meshless::retry::{Idempotent, ReplayBody, RetryLayer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceExt, service_fn};

/// A raw HTTP/1.1 server: answers the n-th request with the n-th response (the last one
/// repeating) and counts the requests whose head and body it read.
async fn raw_server(responses: Vec<&'static str>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (hits, responses) = (counter.clone(), responses.clone());
            tokio::spawn(async move { serve_connection(socket, hits, responses).await });
        }
    });
    (addr, hits)
}

async fn serve_connection(
    mut socket: TcpStream,
    hits: Arc<AtomicUsize>,
    responses: Vec<&'static str>,
) {
    let mut buf = Vec::new();
    loop {
        // Read one request: the head, then `content-length` bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 1024];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let n = hits.fetch_add(1, Ordering::SeqCst);
        let response = responses[n.min(responses.len() - 1)];
        if socket.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
const UNAVAILABLE: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
const UNAVAILABLE_RETRY_AFTER: &str =
    "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\n\r\n";
const TOO_MANY: &str =
    "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 0\r\n\r\n";

fn client(addr: SocketAddr) -> meshless::http::Client {
    meshless::http::Client::builder()
        .endpoints([addr.to_string()])
        .build()
        .unwrap()
}

fn post(marked: Option<bool>) -> Request<Full<Bytes>> {
    let mut req = Request::post("/charge")
        .body(Full::new(Bytes::from_static(b"charge-42")))
        .unwrap();
    if let Some(marked) = marked {
        req.extensions_mut().insert(Idempotent(marked));
    }
    req
}

/// Sends `req` through `meshless::http::Client` to a server scripted with `responses`, and
/// returns the status the caller got and how many times the request reached the server.
async fn sent(responses: Vec<&'static str>, req: Request<Full<Bytes>>) -> (u16, usize) {
    let (addr, hits) = raw_server(responses).await;
    let res = client(addr).request(req).await.unwrap();
    let status = res.status().as_u16();
    res.into_body().collect().await.unwrap();
    (status, hits.load(Ordering::SeqCst))
}

#[tokio::test]
async fn marked_not_idempotent_post_answered_503_is_sent_once() {
    assert_eq!(
        sent(vec![UNAVAILABLE, OK], post(Some(false))).await,
        (503, 1)
    );
    // Even a 503 that says when to come back.
    let got = sent(vec![UNAVAILABLE_RETRY_AFTER, OK], post(Some(false))).await;
    assert_eq!(got, (503, 1));
}

#[tokio::test]
async fn marked_not_idempotent_post_answered_429_is_sent_once() {
    assert_eq!(sent(vec![TOO_MANY, OK], post(Some(false))).await, (429, 1));
}

#[tokio::test]
async fn unmarked_post_answered_plain_503_is_sent_once() {
    assert_eq!(sent(vec![UNAVAILABLE, OK], post(None)).await, (503, 1));
}

#[tokio::test]
async fn unmarked_post_answered_429_is_retried() {
    assert_eq!(sent(vec![TOO_MANY, OK], post(None)).await, (200, 2));
    // So is a 503 with Retry-After: the server declined the request.
    let got = sent(vec![UNAVAILABLE_RETRY_AFTER, OK], post(None)).await;
    assert_eq!(got, (200, 2));
}

#[tokio::test]
async fn get_answered_503_is_retried() {
    let (addr, hits) = raw_server(vec![UNAVAILABLE, OK]).await;
    let res = client(addr).get("/items").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // And `Idempotent(true)` makes a POST one.
    assert_eq!(
        sent(vec![UNAVAILABLE, OK], post(Some(true))).await,
        (200, 2)
    );
}

/// A port with nothing listening: a connection to it is refused.
async fn dead_port() -> SocketAddr {
    common::refusing_port()
}

/// The first attempt goes to a port where nothing listens, every later one to the live
/// server: a refused connection never left the client, so even `Idempotent(false)` is
/// retried, transparently.
#[tokio::test]
async fn marked_not_idempotent_post_to_a_refused_port_is_retried_transparently() {
    let (live, hits) = raw_server(vec![OK]).await;
    let dead = dead_port().await;
    let hyper = HyperClient::builder(TokioExecutor::new()).build_http();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let route = service_fn(move |mut req: Request<ReplayBody<Full<Bytes>>>| {
        let target = if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            dead
        } else {
            live
        };
        *req.uri_mut() = format!("http://{target}/charge").parse().unwrap();
        hyper.request(req)
    });
    let retry = RetryLayer::new(Budget::default());
    let stats = retry.stats();
    let res = retry.layer(route).oneshot(post(Some(false))).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the server saw it once");
    assert_eq!(stats.retries(), 1);
}

/// A raw HTTP/2 server: `refuse` decides, per stream number (from 0), whether to answer it
/// with `RST_STREAM(REFUSED_STREAM)`; others get 200. Returns the streams it answered 200.
async fn h2_server(refuse: fn(usize) -> bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (streams, served) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (streams, served) = (streams.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    if refuse(streams.fetch_add(1, Ordering::SeqCst)) {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    served.fetch_add(1, Ordering::SeqCst);
                    let res = http::Response::new(());
                    if let Ok(mut body) = respond.send_response(res, false) {
                        let _ = body.send_data(Bytes::from_static(b"ok"), true);
                    }
                }
            });
        }
    });
    (addr, served)
}

/// Sends one request over a raw h2 client connection and returns its error.
async fn h2_error(addr: SocketAddr) -> h2::Error {
    let socket = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(socket).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::post(format!("http://{addr}/charge"))
        .body(())
        .unwrap();
    let result = async {
        let mut send = send.clone().ready().await?;
        let (response, _) = send.send_request(req, true)?;
        response.await
    }
    .await;
    drop(send);
    result.expect_err("the stream must fail")
}

#[tokio::test]
async fn refused_stream_is_classified_as_never_sent() {
    let (addr, _) = h2_server(|_| true).await;
    let err = h2_error(addr).await;
    assert_eq!(err.reason(), Some(h2::Reason::REFUSED_STREAM));
    assert!(err.is_remote());
    assert_eq!(classify_error(&err).retryable(), Retryable::NeverSent);
}

#[tokio::test]
async fn goaway_above_the_stream_is_classified_as_never_sent() {
    // A server that says GOAWAY (last stream 0) as soon as the connection is up: no stream was
    // processed.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(socket).await.unwrap();
        conn.abrupt_shutdown(h2::Reason::NO_ERROR);
        while let Some(Ok((_req, _respond))) = conn.accept().await {}
    });
    let err = h2_error(addr).await;
    assert!(err.is_go_away() && err.is_remote(), "{err:?}");
    assert_eq!(classify_error(&err).retryable(), Retryable::NeverSent);
}

/// End to end over hyper-util's HTTP/2 client: a refused stream is retried even for
/// `Idempotent(false)`, and the server processed the request once.
#[tokio::test]
async fn marked_not_idempotent_post_refused_by_http2_is_retried() {
    let (addr, served) = h2_server(|n| n == 0).await;
    let hyper = HyperClient::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let uri: http::Uri = format!("http://{addr}/charge").parse().unwrap();
    let route = service_fn(move |mut req: Request<ReplayBody<Full<Bytes>>>| {
        *req.uri_mut() = uri.clone();
        hyper.request(req)
    });
    let retry = RetryLayer::new(Budget::default());
    let stats = retry.stats();
    let res = retry.layer(route).oneshot(post(Some(false))).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(stats.retries(), 1);
}
