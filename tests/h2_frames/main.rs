//! HTTP/2 and gRPC edges against raw servers (the `h2` crate, and a frame-level one written
//! here), through `meshless::http::Client` and `meshless::tonic::Channel`: streams reset with
//! `NO_ERROR`, missing or contradictory `grpc-status`, `SETTINGS_MAX_CONCURRENT_STREAMS` of 1
//! and 0, `GOAWAY` with streams above and below its last stream, a graceful `GOAWAY` while a
//! request waits for a stream, and bodies past their deadline.

#[path = "../tonic/support.rs"]
mod support;

mod goaway;
mod grpc_status;
mod lengths;
mod more;
mod resets;
mod streams;

#[path = "../common/mod.rs"]
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
use tokio::io::AsyncWriteExt;
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

/// Once the client has settled: the one request it sent ended as one failure, charged to the
/// endpoint, and its books balance. `body` is what the caller read, for the log.
async fn one_charged_failure(client: &Client, body: &impl std::fmt::Debug) {
    settle().await;
    let r = client.retry_stats();
    eprintln!(
        "body {body:?}; retry successes={} failures={}; endpoint {:?}",
        r.successes(),
        r.failures(),
        client.endpoints()[0]
    );
    assert_eq!((r.requests(), r.failures()), (1, 1));
    assert_eq!(client.endpoints()[0].failures, 1);
    books(client);
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
