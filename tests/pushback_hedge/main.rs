//! Retries, pushback, hedging and deadlines through `meshless::http::Client`, against raw
//! HTTP/1.1 servers on 127.0.0.1 that count requests: hostile `Retry-After` and
//! `grpc-retry-pushback-ms` values (`pushback.rs`); hedges and an answer that forbids retries
//! (`hedges.rs`); what retries held back by pushback cost the budget (`budget.rs`).

mod budget;
mod hedges;
mod pushback;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Full};
use meshless::budget::Budget;
use meshless::hedge::{HedgeConfig, HedgeDelay};
use meshless::http::Client;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a server does with one request.
#[derive(Clone)]
enum Act {
    /// Writes these bytes at once.
    Reply(Vec<u8>),
    /// Waits, then writes these bytes.
    After(Duration, Vec<u8>),
    /// Waits, then closes the connection without answering.
    Close(Duration),
}

/// One request as a server saw it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Seen {
    port: usize,
    method: String,
    path: String,
    headers: String,
    at: Duration,
}

type Handler = Arc<dyn Fn(usize, usize, &Seen) -> Act + Send + Sync>;

/// `n` raw HTTP/1.1 servers sharing one log; `handler(global index, port index, request)`.
struct Servers {
    addrs: Vec<SocketAddr>,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Servers {
    async fn start(
        n: usize,
        handler: impl Fn(usize, usize, &Seen) -> Act + Send + Sync + 'static,
    ) -> Self {
        let handler: Handler = Arc::new(handler);
        let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let mut addrs = Vec::new();
        for port in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            let (handler, log) = (handler.clone(), log.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (handler, log) = (handler.clone(), log.clone());
                    tokio::spawn(serve(stream, port, handler, log));
                }
            });
        }
        Servers { addrs, log }
    }

    fn endpoints(&self) -> Vec<String> {
        self.addrs.iter().map(|a| a.to_string()).collect()
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    fn on(&self, port: usize) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.port == port)
            .count()
    }
}

async fn serve(mut stream: TcpStream, port: usize, handler: Handler, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        // The head.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default().to_string();
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + len);
        let seen = Seen {
            port,
            method,
            path,
            headers: head,
            at: epoch().elapsed(),
        };
        let index = {
            let mut log = log.lock().unwrap();
            log.push(seen.clone());
            log.len() - 1
        };
        let act = handler(index, port, &seen);
        let bytes = match act {
            Act::Reply(b) => b,
            Act::After(d, b) => {
                tokio::time::sleep(d).await;
                b
            }
            Act::Close(d) => {
                tokio::time::sleep(d).await;
                return;
            }
        };
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

fn ok() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
}

fn status_with(status: &str, extra: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\n{extra}content-length: 0\r\n\r\n").into_bytes()
}

/// A gRPC trailers-only answer: UNAVAILABLE with this pushback header (if any).
fn grpc_unavailable(pushback: Option<&str>) -> Vec<u8> {
    let extra = match pushback {
        Some(p) => format!("grpc-retry-pushback-ms: {p}\r\n"),
        None => String::new(),
    };
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 14\r\n{extra}content-length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn grpc_request(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .extension(meshless::retry::Idempotent(true))
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap()
}

fn hedging(max_hedges: u32, delay: Duration) -> HedgeConfig {
    let mut config = HedgeConfig::default();
    config.enabled = true;
    config.max_hedges = max_hedges;
    config.delay = HedgeDelay::Fixed(delay);
    config
}

fn books_balance(client: &Client) {
    let s = client.retry_stats();
    assert_eq!(
        s.requests(),
        s.successes() + s.failures() + s.cancelled(),
        "requests {} != successes {} + failures {} + cancelled {}",
        s.requests(),
        s.successes(),
        s.failures(),
        s.cancelled()
    );
}

fn grpc_ok() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 0\r\ncontent-length: 0\r\n\r\n"
        .to_vec()
}

fn chain(e: &meshless::Error) -> String {
    let mut out = format!("{:?} (attempts {}): {e}", e.kind(), e.attempts());
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(&format!(" <- {s}"));
        src = s.source();
    }
    out
}
