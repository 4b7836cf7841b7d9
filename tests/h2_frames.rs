//! HTTP/2 and gRPC edges against raw servers (the `h2` crate, and a frame-level one written
//! here), through `meshless::http::Client` and `meshless::tonic::Channel`: streams reset with
//! `NO_ERROR`, missing or contradictory `grpc-status`, `SETTINGS_MAX_CONCURRENT_STREAMS` of 1
//! and 0, `GOAWAY` with streams above and below its last stream, a graceful `GOAWAY` while a
//! request waits for a stream, and bodies past their deadline.

#[path = "tonic/support.rs"]
mod support;

mod common;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::{BodyExt, Full};
use meshless::backoff::Backoff;
use meshless::http::Client;
use meshless::tonic::Channel;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{CREATE, GET, endpoint, ping, unary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// An `h2` server with a configurable builder; each stream handed to a script.

type Script =
    Arc<dyn Fn(Call) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> + Send + Sync + 'static>;

struct Call {
    index: usize,
    request: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
}

#[derive(Clone, Debug)]
#[allow(dead_code)]
struct Seen {
    path: String,
    grpc_timeout: Option<String>,
    at: Instant,
    connection: usize,
}

#[derive(Clone, Default)]
struct Log {
    seen: Arc<Mutex<Vec<Seen>>>,
    open: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
}

impl Log {
    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn script<F, Fut>(f: F) -> Script
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |c| Box::pin(f(c)))
}

async fn serve_h2(max_streams: Option<u32>, script: Script) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let l = log.clone();
    tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            connections += 1;
            let connection = connections;
            let script = script.clone();
            let log = l.clone();
            tokio::spawn(async move {
                let mut b = h2::server::Builder::new();
                if let Some(m) = max_streams {
                    b.max_concurrent_streams(m);
                }
                let Ok(mut conn) = b.handshake::<_, Bytes>(tcp).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = conn.accept().await {
                    let index = {
                        let mut g = log.seen.lock().unwrap();
                        g.push(Seen {
                            path: request.uri().path().to_owned(),
                            grpc_timeout: request
                                .headers()
                                .get("grpc-timeout")
                                .map(|v| v.to_str().unwrap_or("?").to_owned()),
                            at: Instant::now(),
                            connection,
                        });
                        g.len() - 1
                    };
                    let open = log.open.fetch_add(1, Ordering::SeqCst) + 1;
                    log.max_open.fetch_max(open, Ordering::SeqCst);
                    let fut = script(Call {
                        index,
                        request,
                        respond,
                    });
                    let log = log.clone();
                    tokio::spawn(async move {
                        fut.await;
                        log.open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        }
    });
    (addr, log)
}

fn message(payload: &[u8]) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

fn pong(from: &str) -> Bytes {
    use prost::Message;
    message(&support::Pong { from: from.into() }.encode_to_vec())
}

fn grpc_head() -> Response<()> {
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

fn trailers(status: &[u8]) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_bytes(status).unwrap());
    t
}

async fn read_body(body: &mut h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(c) => {
                let _ = body.flow_control().release_capacity(c.len());
                out.extend_from_slice(&c);
            }
            Err(_) => break,
        }
    }
    out
}

fn client(addr: SocketAddr, deadline: Duration) -> Client {
    Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .deadline(deadline)
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap()
}

fn grpc_request(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("http://svc{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(message(b"")))
        .unwrap()
}

fn channel(addr: SocketAddr) -> meshless::tonic::ChannelBuilder {
    Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(GET)
        .backoff(Backoff::none())
        .metrics(false)
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn books(client: &Client) {
    common::books_balance(&client.retry_stats(), &client.endpoints());
}

// ---------------------------------------------------------------------------------------------
// Truncated bodies: DATA without END_STREAM, then RST_STREAM(NO_ERROR).

/// A response head promising 100 bytes, 10 bytes of DATA without END_STREAM, then
/// RST_STREAM(NO_ERROR). The response never completed (RFC 9113 §8.1: NO_ERROR is an early
/// stop only *after* a complete response): the caller must get a typed error, not a short
/// body that reads as complete.
#[tokio::test]
async fn a_body_cut_by_rst_no_error_is_not_a_complete_body() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder()
                .status(200)
                .header("content-length", "100")
                .body(())
                .unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            let _ = s.send_data(Bytes::from_static(b"0123456789"), false);
            settle().await;
            s.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let res = client.get("http://svc/x").await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("the body ended")
        .map(|b| b.to_bytes());
    settle().await;
    let r = client.retry_stats();
    eprintln!(
        "body: {:?}; retry requests={} successes={} failures={}; endpoint {:?}",
        body,
        r.requests(),
        r.successes(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert!(
        body.is_err(),
        "a 10-byte body of a declared 100 read as complete"
    );
    assert_eq!(
        client.endpoints()[0].failures,
        1,
        "{:?}",
        client.endpoints()
    );
    assert_eq!(r.failures(), 1);
    books(&client);
}

/// A `HEAD` answered with the `content-length` of the body a `GET` would get, its stream then
/// reset with `NO_ERROR`: no body was due, so nothing is short.
#[tokio::test]
async fn a_head_answer_reset_with_no_error_is_complete() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder()
                .status(200)
                .header("content-length", "100")
                .body(())
                .unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            settle().await;
            s.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let req = http::Request::head("http://svc/x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("the body ended");
    assert!(body.is_ok(), "{body:?}");
    settle().await;
    assert_eq!(
        client.endpoints()[0].failures,
        0,
        "{:?}",
        client.endpoints()
    );
    books(&client);
}

/// gRPC over the http client: head, one message, RST_STREAM(NO_ERROR), no trailers. The call
/// has no status: a failure (INTERNAL) in the books, charged to the endpoint.
#[tokio::test]
async fn a_grpc_stream_cut_by_rst_no_error_is_a_failure() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), false);
            settle().await;
            s.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let res = client
        .request(grpc_request("/test.Store/Get"))
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("the body ended");
    settle().await;
    let r = client.retry_stats();
    eprintln!(
        "body ok: {}; retry successes={} failures={}; endpoint {:?}",
        body.is_ok(),
        r.successes(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!((r.requests(), r.failures()), (1, 1));
    assert_eq!(client.endpoints()[0].failures, 1);
    books(&client);
}

/// The same through the tonic channel: a unary call whose answer is a message and then
/// RST_STREAM(NO_ERROR) has no status. Whatever tonic makes of it, caller and books agree.
#[tokio::test]
async fn tonic_unary_cut_by_rst_no_error() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), false);
            settle().await;
            s.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        unary(channel.clone(), CREATE, tonic::Request::new(ping("a"))),
    )
    .await
    .expect("ended");
    settle().await;
    let r = channel.retry_stats();
    eprintln!(
        "caller: {out:?}; retry successes={} failures={}; endpoint {:?}",
        r.successes(),
        r.failures(),
        channel.endpoints()[0]
    );
    // tonic accepts a unary answer that never carried a status (see grpc_edges.rs); the
    // channel's books follow the protocol: one failure, sent once.
    assert_eq!(log.calls(), 1);
    assert_eq!((r.requests(), r.failures()), (1, 1));
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

// ---------------------------------------------------------------------------------------------
// Missing or contradictory grpc-status.

/// A gRPC answer whose DATA carries END_STREAM and no trailers: no grpc-status at all. A
/// failure (INTERNAL) in the books.
#[tokio::test]
async fn a_grpc_answer_ending_without_trailers_is_a_failure() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("one"), true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let res = client
        .request(grpc_request("/test.Store/Get"))
        .await
        .unwrap();
    let body = res.into_body().collect().await;
    settle().await;
    let r = client.retry_stats();
    eprintln!(
        "body ok: {}; successes={} failures={} endpoint {:?}",
        body.is_ok(),
        r.successes(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!((r.requests(), r.failures()), (1, 1));
    assert_eq!(client.endpoints()[0].failures, 1);
    books(&client);
}

/// A trailers-only head (END_STREAM on HEADERS) with the gRPC content type and no grpc-status:
/// a failure in the books, even if the caller only looks at the head and drops the body.
#[tokio::test]
async fn a_trailers_only_head_without_grpc_status_is_a_failure() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let _ = c.respond.send_response(grpc_head(), true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    // The caller reads the body to its end.
    let res = client
        .request(grpc_request("/test.Store/Get"))
        .await
        .unwrap();
    let _ = res.into_body().collect().await;
    settle().await;
    let r = client.retry_stats();
    eprintln!(
        "read: successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!((r.requests(), r.failures()), (1, 1));
    books(&client);
}

/// Tonic channel: a head with `grpc-status: 14` but no END_STREAM, then a message and
/// `grpc-status: 0` trailers. tonic reports UNAVAILABLE from the head; the books must say the
/// same (a failure), and a non-idempotent call is sent once.
#[tokio::test]
async fn tonic_status_in_head_and_trailers_disagreeing() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut head = grpc_head();
            head.headers_mut()
                .insert("grpc-status", HeaderValue::from_static("14"));
            let mut s = c.respond.send_response(head, false).unwrap();
            let _ = s.send_data(pong("one"), false);
            let _ = s.send_trailers(trailers(b"0"));
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let out = unary(channel.clone(), CREATE, tonic::Request::new(ping("a"))).await;
    settle().await;
    let r = channel.retry_stats();
    eprintln!(
        "caller: {out:?}; successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        channel.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert_eq!(out.is_err(), r.failures() == 1, "caller and books disagree");
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

/// Tonic channel, the other way: head `grpc-status: 0` (no END_STREAM), a message, then
/// `grpc-status: 13` in the trailers. Caller and books must agree.
#[tokio::test]
async fn tonic_ok_in_head_internal_in_trailers() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut head = grpc_head();
            head.headers_mut()
                .insert("grpc-status", HeaderValue::from_static("0"));
            let mut s = c.respond.send_response(head, false).unwrap();
            let _ = s.send_data(pong("one"), false);
            let _ = s.send_trailers(trailers(b"13"));
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let out = unary(channel.clone(), CREATE, tonic::Request::new(ping("a"))).await;
    settle().await;
    let r = channel.retry_stats();
    eprintln!(
        "caller: {out:?}; successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        channel.endpoints()[0]
    );
    assert_eq!(out.is_err(), r.failures() == 1, "caller and books disagree");
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

// ---------------------------------------------------------------------------------------------
// SETTINGS_MAX_CONCURRENT_STREAMS.

/// max_concurrent_streams = 1 and 24 concurrent requests (GETs and POSTs) over the http
/// client: every one is answered, none dropped or resent, no deadlock.
#[tokio::test]
async fn one_stream_at_a_time_serves_every_request() {
    let (addr, log) = serve_h2(
        Some(1),
        script(|mut c: Call| async move {
            let _ = read_body(c.request.body_mut()).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let res = Response::builder().status(200).body(()).unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            let _ = s.send_data(Bytes::from(format!("{}", c.index)), true);
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(20));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let res = if i % 2 == 0 {
                client.get(format!("http://svc/g{i}")).await
            } else {
                client.post(format!("http://svc/p{i}"), "body").await
            };
            let res = res.map_err(|e| format!("{:?}: {e}", e.kind()))?;
            let status = res.status();
            res.into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok::<_, String>(status)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("no deadlock")
                .unwrap(),
        );
    }
    eprintln!("{out:?}");
    assert!(out.iter().all(|r| matches!(r, Ok(s) if s.as_u16() == 200)));
    assert_eq!(log.calls(), 24);
    assert!(log.max_open.load(Ordering::SeqCst) <= 1);
    books(&client);
}

/// The same through the tonic channel with non-idempotent unary calls.
#[tokio::test]
async fn tonic_one_stream_at_a_time_serves_every_call() {
    let (addr, log) = serve_h2(
        Some(1),
        script(|mut c: Call| async move {
            let _ = read_body(c.request.body_mut()).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            let _ = s.send_data(pong("ok"), false);
            let _ = s.send_trailers(trailers(b"0"));
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 { GET } else { CREATE };
            unary(channel, path, tonic::Request::new(ping("x"))).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("no deadlock")
                .unwrap(),
        );
    }
    let errs: Vec<_> = out.iter().filter(|r| r.is_err()).collect();
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(log.calls(), 24);
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

/// max_concurrent_streams = 0: no stream can ever open. A request ends at its deadline,
/// typed, and does not hang.
#[tokio::test]
async fn zero_streams_allowed_ends_at_the_deadline() {
    let (addr, log) = serve_h2(
        Some(0),
        script(|_c: Call| async move {
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_millis(300));
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(5), client.post("http://svc/p", "x"))
        .await
        .expect("the request ended");
    let took = started.elapsed();
    let e = out.expect_err("no stream can open");
    eprintln!("{:?} after {took:?}: {e}", e.kind());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(log.calls(), 0);
    books(&client);
}

/// max_concurrent_streams = 1: a request queued behind a held stream, dropped by its caller
/// while queued: a cancellation, never the endpoint's failure; the held one then completes.
#[tokio::test]
async fn a_request_dropped_while_queued_for_a_stream_is_not_charged() {
    let release = Arc::new(Notify::new());
    let r2 = release.clone();
    let (addr, log) = serve_h2(
        Some(1),
        script(move |mut c: Call| {
            let release = r2.clone();
            async move {
                let _ = read_body(c.request.body_mut()).await;
                if c.index == 0 {
                    release.notified().await;
                }
                let res = Response::builder().status(200).body(()).unwrap();
                let _ = c.respond.send_response(res, true);
            }
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(10));
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.get("http://svc/held").await.map(|r| r.status()) }
    });
    // The held stream is open on the server.
    while log.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queued =
        tokio::time::timeout(Duration::from_millis(200), client.get("http://svc/queued")).await;
    assert!(
        queued.is_err(),
        "the queued request cannot have been answered"
    );
    settle().await;
    release.notify_one();
    let held = held.await.unwrap();
    assert_eq!(held.unwrap().as_u16(), 200);
    settle().await;
    let e = &client.endpoints()[0];
    let r = client.retry_stats();
    eprintln!(
        "endpoint {e:?}; retry requests={} successes={} failures={} cancelled={}; server saw {:?}",
        r.requests(),
        r.successes(),
        r.failures(),
        r.cancelled(),
        log.seen()
            .iter()
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(e.failures, 0, "{e:?}");
    assert_eq!(r.failures(), 0);
    assert_eq!(r.cancelled(), 1);
    books(&client);
    // The connection still works.
    assert_eq!(client.get("http://svc/after").await.unwrap().status(), 200);
}

// ---------------------------------------------------------------------------------------------
// RST_STREAM codes.

/// A complete answer (END_STREAM) to a large POST whose body the server did not read, then
/// RST_STREAM(NO_ERROR) to stop the upload (RFC 9113 §8.1): a success, sent once.
#[tokio::test]
async fn an_early_complete_answer_then_rst_no_error_is_a_success() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder().status(200).body(()).unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            let _ = s.send_data(Bytes::from_static(b"early"), true);
            // h2 drops a stream's queued frames on reset: let the answer leave first.
            settle().await;
            c.respond.send_reset(h2::Reason::NO_ERROR);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        client.post("http://svc/upload", vec![7u8; 1 << 20]),
    )
    .await
    .expect("ended");
    let out = match out {
        Ok(res) => {
            let status = res.status();
            res.into_body()
                .collect()
                .await
                .map(|b| (status, b.to_bytes()))
                .map_err(|e| format!("body: {e}"))
        }
        Err(e) => {
            let mut chain = format!("{:?}: {e}", e.kind());
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                chain.push_str(&format!(" <- {s} [{s:?}]"));
                src = s.source();
            }
            Err(chain)
        }
    };
    settle().await;
    let r = client.retry_stats();
    eprintln!(
        "{out:?}; successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert_eq!(
        out,
        Ok((http::StatusCode::OK, Bytes::from_static(b"early")))
    );
    assert_eq!(client.endpoints()[0].failures, 0);
    books(&client);
}

/// Every stream refused (REFUSED_STREAM): even a POST is sent again, but a bounded number of
/// times; the request ends with a typed error, no hang.
#[tokio::test]
async fn refused_forever_is_bounded() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            c.respond.send_reset(h2::Reason::REFUSED_STREAM);
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(6), client.post("http://svc/p", "x"))
        .await
        .expect("ended");
    let e = out.expect_err("refused");
    eprintln!(
        "{:?} {:?} after {:?}, {} attempts seen: {e}",
        e.kind(),
        e.attempts(),
        started.elapsed(),
        log.calls()
    );
    assert!(log.calls() <= 4, "{}", log.calls());
    books(&client);
}

/// Tonic channel: RST_STREAM(CANCEL) after the response head of a non-idempotent call: the
/// call may have been processed; sent once, a typed status.
#[tokio::test]
async fn tonic_cancel_after_head_is_not_resent() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let _ = read_body(c.request.body_mut()).await;
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            settle().await;
            s.send_reset(h2::Reason::CANCEL);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        unary(channel.clone(), CREATE, tonic::Request::new(ping("a"))),
    )
    .await
    .expect("ended");
    settle().await;
    let r = channel.retry_stats();
    eprintln!(
        "caller: {out:?}; successes={} failures={} endpoint {:?}",
        r.successes(),
        r.failures(),
        channel.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert!(out.is_err());
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

// ---------------------------------------------------------------------------------------------
// A frame-level server for GOAWAY last-stream-id under tonic.

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;

async fn write_frame(tcp: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut head = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    head.extend_from_slice(&stream.to_be_bytes());
    head.extend_from_slice(payload);
    let _ = tcp.write_all(&head).await;
}

async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.ok()?;
    let len = ((head[0] as usize) << 16) | ((head[1] as usize) << 8) | head[2] as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// HPACK: `:status: 200`, `content-type: application/grpc` (literal, indexed name 31).
fn hpack_grpc_head() -> Vec<u8> {
    let mut b = vec![0x88, 0x0f, 0x10, 16];
    b.extend_from_slice(b"application/grpc");
    b
}

/// HPACK: `grpc-status: <code>` (literal, new name).
fn hpack_status(code: &[u8]) -> Vec<u8> {
    let mut b = vec![0x00, 11];
    b.extend_from_slice(b"grpc-status");
    b.push(code.len() as u8);
    b.extend_from_slice(code);
    b
}

async fn answer_grpc(tcp: &mut TcpStream, stream: u32) {
    write_frame(tcp, HEADERS, 0x4, stream, &hpack_grpc_head()).await;
    write_frame(tcp, DATA, 0, stream, &pong("ok")).await;
    write_frame(tcp, HEADERS, 0x4 | 0x1, stream, &hpack_status(b"0")).await;
}

#[derive(Default, Debug)]
struct FrameLog {
    /// (connection, stream) of each request head.
    heads: Vec<(usize, u32)>,
}

/// First connection: once `n` requests are complete, GOAWAY(last = the first stream, code);
/// then, if `answer_last`, answer the first stream; then close. Later connections answer all.
async fn goaway_server(
    n: usize,
    code: u32,
    answer_last: bool,
) -> (SocketAddr, Arc<Mutex<FrameLog>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(FrameLog::default()));
    let l = log.clone();
    tokio::spawn(async move {
        let mut conns = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let conn = conns;
            conns += 1;
            let log = l.clone();
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if tcp.read_exact(&mut preface).await.is_err() {
                    return;
                }
                write_frame(&mut tcp, SETTINGS, 0, 0, &[]).await;
                let mut complete = Vec::new();
                while let Some((kind, flags, stream, payload)) = read_frame(&mut tcp).await {
                    match kind {
                        SETTINGS if flags & 1 == 0 => {
                            write_frame(&mut tcp, SETTINGS, 1, 0, &[]).await
                        }
                        PING if flags & 1 == 0 => write_frame(&mut tcp, PING, 1, 0, &payload).await,
                        HEADERS => {
                            log.lock().unwrap().heads.push((conn, stream));
                            if flags & 1 != 0 {
                                complete.push(stream);
                            }
                        }
                        DATA if flags & 1 != 0 => complete.push(stream),
                        _ => {}
                    }
                    if conn > 0 {
                        for s in complete.drain(..) {
                            answer_grpc(&mut tcp, s).await;
                        }
                    } else if complete.len() >= n {
                        complete.sort();
                        let first = complete[0];
                        let mut p = first.to_be_bytes().to_vec();
                        p.extend_from_slice(&code.to_be_bytes());
                        write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                        if answer_last {
                            answer_grpc(&mut tcp, first).await;
                        }
                        let _ = tcp.flush().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                }
            });
        }
    });
    (addr, log)
}

async fn three_creates(channel: &Channel) -> Vec<Result<String, String>> {
    let calls = (0..3).map(|i| {
        let channel = channel.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(8),
                unary(channel, CREATE, tonic::Request::new(ping(&format!("{i}")))),
            )
            .await
            .expect("no hang")
            .map(|p| p.from)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        }
    });
    futures_join_all(calls).await
}

async fn futures_join_all<F: Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.map(|f| Box::pin(f)).collect();
    let mut out = Vec::new();
    // Poll all concurrently.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.push(r.unwrap());
    }
    out
}

/// Tonic channel, three non-idempotent calls on one connection; GOAWAY(last = first stream,
/// NO_ERROR), the first answered, then close: the two above were not processed and are sent
/// again; the first is not. Every call succeeds.
#[tokio::test]
async fn tonic_goaway_retries_only_streams_above_last_id() {
    let (addr, log) = goaway_server(3, 0, true).await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(6))
        .build()
        .unwrap();
    // Warm the connection so the three calls share it.
    let out = three_creates(&channel).await;
    let heads = log.lock().unwrap().heads.clone();
    eprintln!("{out:?}; heads {heads:?}");
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let first_conn: Vec<_> = heads.iter().filter(|(c, _)| *c == 0).collect();
    assert_eq!(first_conn.len(), 3, "{heads:?}");
    assert_eq!(
        heads.len(),
        5,
        "the processed stream was sent again: {heads:?}"
    );
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

/// Tonic channel: GOAWAY(last = first stream, INTERNAL_ERROR) then close without answering:
/// the first (maybe processed, non-idempotent) fails once with a status, the two above are
/// retried and succeed.
#[tokio::test]
async fn tonic_goaway_error_then_close_fails_only_the_processed_stream() {
    let (addr, log) = goaway_server(3, 2, false).await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(6))
        .build()
        .unwrap();
    let out = three_creates(&channel).await;
    let heads = log.lock().unwrap().heads.clone();
    eprintln!("{out:?}; heads {heads:?}");
    assert_eq!(out.iter().filter(|r| r.is_err()).count(), 1, "{out:?}");
    assert_eq!(heads.len(), 5, "{heads:?}");
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}

// ---------------------------------------------------------------------------------------------
// More edges.

/// SETTINGS_MAX_CONCURRENT_STREAMS = 1: POST A holds the only stream, POST B waits in the
/// client's queue. GOAWAY(last = A's stream, NO_ERROR), A answered, close. hyper fails B with
/// "dispatch task is gone", the error it also gives a request already written when its
/// connection's task ends (a graceful `GOAWAY` read right after, a runtime shut down): it
/// proves nothing, so B, a POST, reaches the server at most once, answered or failed.
#[tokio::test]
async fn a_post_queued_for_a_stream_when_goaway_arrives_is_sent_at_most_once() {
    queued_when_goaway_arrives(true).await;
}

/// The same with B a GET: retried as idempotent, and answered.
#[tokio::test]
async fn a_get_queued_for_a_stream_when_goaway_arrives_is_sent_elsewhere() {
    queued_when_goaway_arrives(false).await;
}

/// Frame-level server with SETTINGS_MAX_CONCURRENT_STREAMS = 1. First connection: on the
/// first complete request, wait for `b_started`, then GOAWAY(last = that stream, NO_ERROR),
/// answer it, close. Later connections answer everything.
async fn queued_goaway_server(grpc: bool) -> (SocketAddr, Arc<Mutex<FrameLog>>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(FrameLog::default()));
    let l = log.clone();
    let b_started = Arc::new(Notify::new());
    let bs = b_started.clone();
    tokio::spawn(async move {
        let mut conns = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let conn = conns;
            conns += 1;
            let log = l.clone();
            let bs = bs.clone();
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if tcp.read_exact(&mut preface).await.is_err() {
                    return;
                }
                // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) = 1
                write_frame(&mut tcp, SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 1]).await;
                while let Some((kind, flags, stream, payload)) = read_frame(&mut tcp).await {
                    let mut complete = None;
                    match kind {
                        SETTINGS if flags & 1 == 0 => {
                            write_frame(&mut tcp, SETTINGS, 1, 0, &[]).await
                        }
                        PING if flags & 1 == 0 => write_frame(&mut tcp, PING, 1, 0, &payload).await,
                        HEADERS => {
                            log.lock().unwrap().heads.push((conn, stream));
                            if flags & 1 != 0 {
                                complete = Some(stream);
                            }
                        }
                        DATA if flags & 1 != 0 => complete = Some(stream),
                        _ => {}
                    }
                    let Some(s) = complete else { continue };
                    if conn == 0 {
                        // B is queued in the client once the caller started it.
                        bs.notified().await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let mut p = s.to_be_bytes().to_vec();
                        p.extend_from_slice(&0u32.to_be_bytes());
                        write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                        if grpc {
                            answer_grpc(&mut tcp, s).await;
                        } else {
                            write_frame(&mut tcp, HEADERS, 0x4 | 0x1, s, &[0x88]).await;
                        }
                        let _ = tcp.flush().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                    if grpc {
                        answer_grpc(&mut tcp, s).await;
                    } else {
                        write_frame(&mut tcp, HEADERS, 0x4 | 0x1, s, &[0x88]).await;
                    }
                }
            });
        }
    });
    (addr, log, b_started)
}

async fn queued_when_goaway_arrives(b_is_post: bool) {
    let (addr, log, b_started) = queued_goaway_server(false).await;
    let client = client(addr, Duration::from_secs(5));
    let a = client.post("http://svc/a", "a");
    let b = async {
        while log.lock().unwrap().heads.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let f = if b_is_post {
            client.post("http://svc/b", "b")
        } else {
            client.get("http://svc/b")
        };
        tokio::pin!(f);
        // Poll B once so it reaches the connection's queue, then tell the server.
        let first = futures_poll_once(f.as_mut()).await;
        b_started.notify_one();
        match first {
            Some(r) => r,
            None => f.await,
        }
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(8), async { tokio::join!(a, b) })
        .await
        .expect("no hang");
    let heads = log.lock().unwrap().heads.clone();
    let a = a
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{:?}: {e}", e.kind()));
    let b = b.map(|r| r.status().as_u16()).map_err(|e| chain(&e));
    eprintln!(
        "A {a:?} B {b:?}; heads {heads:?}; endpoint {:?}",
        client.endpoints()[0]
    );
    assert_eq!(a, Ok(200));
    if b_is_post {
        // A once, B at most once.
        assert!(heads.len() <= 2, "{heads:?}");
    } else {
        assert_eq!(b, Ok(200));
    }
    assert_eq!(
        heads.iter().filter(|(c, _)| *c == 0).count(),
        1,
        "{heads:?}"
    );
    books(&client);
}

async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Option<F::Output> {
    let mut polled = false;
    std::future::poll_fn(|cx| {
        if polled {
            return std::task::Poll::Ready(None);
        }
        polled = true;
        match Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }
    })
    .await
}

/// More DATA than the declared content-length (h2 resets the stream with PROTOCOL_ERROR):
/// a typed error, a POST sent once.
#[tokio::test]
async fn more_data_than_content_length_is_a_typed_error() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let res = Response::builder()
                .status(200)
                .header("content-length", "3")
                .body(())
                .unwrap();
            let mut s = c.respond.send_response(res, false).unwrap();
            let _ = s.send_data(Bytes::from_static(b"0123456789"), true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let out = tokio::time::timeout(Duration::from_secs(5), async {
        let res = client
            .post("http://svc/p", "x")
            .await
            .map_err(|e| format!("{:?}: {e}", e.kind()))?;
        res.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("body: {e}"))
    })
    .await
    .expect("ended");
    settle().await;
    eprintln!("{out:?}; endpoint {:?}", client.endpoints()[0]);
    assert!(out.is_err(), "{out:?}");
    assert_eq!(log.calls(), 1);
    books(&client);
}

/// A response head larger than the client's header list limit: a typed error, no hang.
#[tokio::test]
async fn an_oversized_response_head_is_a_typed_error() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut res = Response::builder().status(200);
            for i in 0..40 {
                res = res.header(format!("x-big-{i}"), "v".repeat(1000));
            }
            let _ = c.respond.send_response(res.body(()).unwrap(), true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(5), client.post("http://svc/p", "x"))
        .await
        .expect("ended");
    settle().await;
    let out = out
        .map(|r| r.status())
        .map_err(|e| format!("{:?}: {e}", e.kind()));
    eprintln!(
        "{out:?} after {:?}; seen {}; endpoint {:?}",
        started.elapsed(),
        log.calls(),
        client.endpoints()[0]
    );
    assert!(out.is_err());
    assert_eq!(
        log.calls(),
        1,
        "a POST that reached the server was sent again"
    );
    books(&client);
}

/// A gRPC server stream that trickles a message every 50 ms forever (never idle): the
/// channel's 500 ms deadline covers the whole stream and cuts it, DEADLINE_EXCEEDED.
#[tokio::test]
async fn tonic_a_trickling_stream_is_cut_at_the_deadline() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            for _ in 0..200 {
                if s.send_data(pong("t"), false).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }),
    )
    .await;
    let channel = Channel::builder()
        .endpoint(endpoint(addr))
        .idempotent_method(support::WATCH)
        .deadline(Duration::from_millis(500))
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let started = Instant::now();
    let (pongs, end) =
        tokio::time::timeout(Duration::from_secs(8), support::watch(channel.clone()))
            .await
            .expect("the stream was cut");
    let took = started.elapsed();
    eprintln!("{} messages, {end:?} after {took:?}", pongs.len());
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(end.unwrap_err().code(), tonic::Code::DeadlineExceeded);
}

/// The same through the http client: a gRPC body trickling forever is cut at the deadline.
#[tokio::test]
async fn http_a_trickling_grpc_body_is_cut_at_the_deadline() {
    let (addr, _log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut s = c.respond.send_response(grpc_head(), false).unwrap();
            for _ in 0..200 {
                if s.send_data(pong("t"), false).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }),
    )
    .await;
    let client = client(addr, Duration::from_millis(500));
    let started = Instant::now();
    let res = client
        .request(grpc_request("/test.Store/Watch"))
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(8), res.into_body().collect())
        .await
        .expect("cut");
    let took = started.elapsed();
    let out = out.map(|_| ()).map_err(|e| {
        let kind = e.downcast_ref::<meshless::Error>().map(|m| m.kind());
        format!("{kind:?}: {e}")
    });
    eprintln!("{out:?} after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(out.unwrap_err().starts_with("Some(DeadlineExceeded)"));
}

/// An unmarked gRPC POST answered trailers-only UNAVAILABLE without pushback over the http
/// client: the server may have acted; sent once, the caller sees the status, one failure.
#[tokio::test]
async fn http_trailers_only_unavailable_without_pushback_is_sent_once() {
    let (addr, log) = serve_h2(
        None,
        script(|mut c: Call| async move {
            let mut head = grpc_head();
            head.headers_mut()
                .insert("grpc-status", HeaderValue::from_static("14"));
            let _ = c.respond.send_response(head, true);
            std::future::pending::<()>().await;
        }),
    )
    .await;
    let client = client(addr, Duration::from_secs(3));
    let res = client.request(grpc_request("/test.Store/Create")).await;
    settle().await;
    let res = res.map(|r| r.headers().get("grpc-status").cloned());
    let r = client.retry_stats();
    eprintln!(
        "{res:?}; seen {}; failures {} endpoint {:?}",
        log.calls(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!(log.calls(), 1);
    assert_eq!(r.failures(), 1);
    books(&client);
}

fn chain(e: &meshless::Error) -> String {
    let mut out = format!("{:?} (attempts {}): {e}", e.kind(), e.attempts());
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(&format!(" <- {s:?}"));
        src = s.source();
    }
    out
}

/// Tonic channel, the same: CREATE A holds the only stream, CREATE B waits in the client;
/// GOAWAY(last = A, NO_ERROR), A answered, close. B, not idempotent, reaches the server at
/// most once (see `a_post_queued_for_a_stream_when_goaway_arrives_is_sent_at_most_once`).
#[tokio::test]
async fn tonic_a_call_queued_for_a_stream_when_goaway_arrives_is_sent_at_most_once() {
    let (addr, log, b_started) = queued_goaway_server(true).await;
    let channel = channel(addr)
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let a = unary(channel.clone(), CREATE, tonic::Request::new(ping("a")));
    let b = async {
        while log.lock().unwrap().heads.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let f = unary(channel.clone(), CREATE, tonic::Request::new(ping("b")));
        tokio::pin!(f);
        let first = futures_poll_once(f.as_mut()).await;
        // Let the call reach the connection before the server acts.
        b_started.notify_one();
        match first {
            Some(r) => r,
            None => f.await,
        }
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(8), async { tokio::join!(a, b) })
        .await
        .expect("no hang");
    settle().await;
    let heads = log.lock().unwrap().heads.clone();
    eprintln!(
        "A {:?} B {:?}; heads {heads:?}; endpoint {:?}",
        a.as_ref().map(|p| &p.from),
        b.as_ref().map(|p| &p.from),
        channel.endpoints()[0]
    );
    assert!(a.is_ok());
    assert!(heads.len() <= 2, "B sent twice: {heads:?}, {b:?}");
    assert_eq!(
        heads.iter().filter(|(c, _)| *c == 0).count(),
        1,
        "{heads:?}"
    );
    common::books_balance(&channel.retry_stats(), &channel.endpoints());
}
