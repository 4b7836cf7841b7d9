//! Servers and checks shared by these tests.
#![allow(dead_code)]

pub use bytes::Bytes;
pub use http::{Request, Response};
pub use http_body::Frame;
pub use http_body_util::BodyExt;
pub use meshless::error::Kind;
pub use meshless::http::Client;
pub use std::net::SocketAddr;
pub use std::pin::Pin;
pub use std::sync::Arc;
pub use std::sync::atomic::{AtomicUsize, Ordering};
pub use std::task::{Context, Poll};
pub use std::time::Duration;
pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub use tokio::net::{TcpListener, TcpStream};
pub use tokio::sync::mpsc;
pub use tokio::time::timeout;

pub const BOUND: Duration = Duration::from_secs(3);

pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a test server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// A request head (method and path).
    Head(String),
    /// The handler of that path was dropped before it finished (HTTP/2: the stream was reset).
    HandlerGone(String),
    /// The response body the server was streaming was dropped (HTTP/2: the stream was reset).
    BodyGone(String),
    /// HTTP/1.1: the connection the request came on was closed by the client.
    Closed(String),
    /// The request body was read to its end (its length).
    BodyComplete(String, usize),
    /// The request body ended with an error or was abandoned, after this many bytes.
    BodyCut(String, usize),
}

pub type Events = mpsc::UnboundedReceiver<Ev>;

/// Waits for an event matching `pred` (other events are kept in `seen`), at most `bound`.
pub async fn expect(
    rx: &mut Events,
    seen: &mut Vec<Ev>,
    bound: Duration,
    pred: impl Fn(&Ev) -> bool,
) -> bool {
    if let Some(i) = seen.iter().position(&pred) {
        seen.remove(i);
        return true;
    }
    let until = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(ev)) => {
                if pred(&ev) {
                    return true;
                }
                seen.push(ev);
            }
            _ => return false,
        }
    }
}

/// Drains what arrives within `quiet`, into `seen`.
pub async fn drain(rx: &mut Events, seen: &mut Vec<Ev>, quiet: Duration) {
    while let Ok(Some(ev)) = timeout(quiet, rx.recv()).await {
        seen.push(ev);
    }
}

struct Guard {
    tx: mpsc::UnboundedSender<Ev>,
    ev: Option<Ev>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(ev) = self.ev.take() {
            let _ = self.tx.send(ev);
        }
    }
}

/// A response body that yields `first` then never ends, telling the test when it is dropped.
pub struct Drip {
    first: Option<Bytes>,
    _guard: Guard,
}

impl http_body::Body for Drip {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Pending,
        }
    }
}

type H2Body = http_body_util::Either<http_body_util::Full<Bytes>, Drip>;

/// An HTTP/2 (prior knowledge) server, hyper's, answering by path:
/// - `/hold*`: never answers (the handler's drop is reported: the client reset the stream);
/// - `/drip*`: a 200 head and `abc`, then nothing (the body's drop is reported);
/// - `/fail*`: 503 at once;
/// - `/read*`: reads the request body to its end (reported), then holds;
/// - anything else: 200 `ok`.
pub async fn h2_server() -> (SocketAddr, Events) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let _ = tx.send(Ev::Head(format!("{} {}", req.method(), path)));
                        let mut guard = Guard {
                            tx: tx.clone(),
                            ev: Some(Ev::HandlerGone(path.clone())),
                        };
                        let full = |s: &'static str, status: u16| {
                            let mut r = Response::new(H2Body::Left(http_body_util::Full::new(
                                Bytes::from_static(s.as_bytes()),
                            )));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            r
                        };
                        let res = if path.starts_with("/hold") {
                            std::future::pending::<()>().await;
                            unreachable!()
                        } else if path.starts_with("/drip") {
                            Response::new(H2Body::Right(Drip {
                                first: Some(Bytes::from_static(b"abc")),
                                _guard: Guard {
                                    tx: tx.clone(),
                                    ev: Some(Ev::BodyGone(path.clone())),
                                },
                            }))
                        } else if path.starts_with("/read") {
                            let mut body = req.into_body();
                            let mut n = 0;
                            let mut cut = false;
                            while let Some(f) = body.frame().await {
                                match f {
                                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len()),
                                    Err(_) => {
                                        cut = true;
                                        break;
                                    }
                                }
                            }
                            guard.ev = None;
                            let _ = tx.send(if cut {
                                Ev::BodyCut(path.clone(), n)
                            } else {
                                Ev::BodyComplete(path.clone(), n)
                            });
                            std::future::pending::<()>().await;
                            unreachable!()
                        } else if path.starts_with("/fail") {
                            full("busy", 503)
                        } else if path.starts_with("/push") {
                            let mut r = full("", 503);
                            r.headers_mut()
                                .insert("retry-after", http::HeaderValue::from_static("1"));
                            r
                        } else {
                            full("ok", 200)
                        };
                        guard.ev = None;
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// Reads one request head through its blank line; bytes after it stay in `pending`.
pub async fn read_head(socket: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
}

fn first_line(head: &str) -> String {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let m = parts.next().unwrap_or("");
    let p = parts.next().unwrap_or("");
    format!("{m} {p}")
}

/// A raw HTTP/1.1 server, byte by byte, with the same paths as [`h2_server`] (`/read` reads a
/// `content-length` or chunked body only as far as it comes and reports the close). Every
/// close of a connection by the client is reported with the last path it carried.
pub async fn h1_server() -> (SocketAddr, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut last = String::new();
                loop {
                    let Some(head) = read_head(&mut socket, &mut pending).await else {
                        let _ = tx.send(Ev::Closed(last));
                        return;
                    };
                    let line = first_line(&head);
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    last = path.clone();
                    let _ = tx.send(Ev::Head(line));
                    if path.starts_with("/hold") || path.starts_with("/read") {
                        // Holds; counts what body bytes come until the close.
                        let mut n = pending.len();
                        let mut chunk = [0u8; 4096];
                        loop {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => break,
                                Ok(k) => n += k,
                            }
                        }
                        if path.starts_with("/read") {
                            let _ = tx.send(Ev::BodyCut(path.clone(), n));
                        }
                        let _ = tx.send(Ev::Closed(path));
                        return;
                    }
                    let out: &[u8] = if path.starts_with("/drip") {
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
                    } else if path.starts_with("/fail") {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy"
                    } else if path.starts_with("/push") {
                        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    };
                    if socket.write_all(out).await.is_err() {
                        let _ = tx.send(Ev::Closed(path));
                        return;
                    }
                    if path.starts_with("/drip") {
                        let mut chunk = [0u8; 256];
                        while matches!(socket.read(&mut chunk).await, Ok(n) if n > 0) {}
                        let _ = tx.send(Ev::BodyGone(path.clone()));
                        let _ = tx.send(Ev::Closed(path));
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// The client's books, asserted: every request ended once, nothing in flight anywhere.
pub fn assert_books(client: &Client) {
    let s = client.stats();
    assert_eq!(
        s.requests,
        s.successes + s.failures + s.cancelled,
        "requests = successes + failures + cancelled: {s:?}"
    );
    for e in &s.endpoints {
        assert_eq!(e.in_flight, 0, "endpoint in flight: {e:?}");
    }
    assert_eq!(client.limit().in_flight(), 0, "limit permits held");
    assert_eq!(client.limit().waiting(), 0, "limit waiters");
}

/// Waits until nothing is in flight (endpoints and limit), at most `BOUND`.
pub async fn settle(client: &Client) {
    let until = tokio::time::Instant::now() + BOUND;
    while tokio::time::Instant::now() < until {
        if client.endpoints().iter().all(|e| e.in_flight == 0) && client.limit().in_flight() == 0 {
            return;
        }
        tokio::time::sleep(ms(5)).await;
    }
}

pub fn failures(client: &Client) -> u64 {
    client.endpoints().iter().map(|e| e.failures).sum()
}

pub fn cancelled(client: &Client) -> u64 {
    client.endpoints().iter().map(|e| e.cancelled).sum()
}

pub fn ejections(client: &Client) -> u64 {
    client.endpoints().iter().map(|e| e.ejections).sum()
}

pub fn builder(addrs: &[SocketAddr], h2: bool) -> meshless::http::ClientBuilder {
    Client::builder()
        .endpoints(addrs.iter().map(|a| a.to_string()))
        .http2_prior_knowledge(h2)
        .metrics(false)
}

pub fn fixed_limit(max: u32, wait: Duration) -> meshless::limit::LimitConfig {
    let mut l = meshless::limit::LimitConfig::default();
    l.algorithm = meshless::limit::Algorithm::Fixed { max };
    l.max_wait = wait;
    l
}

pub fn hedge_fixed(delay: Duration) -> meshless::hedge::HedgeConfig {
    let mut h = meshless::hedge::HedgeConfig::default();
    h.enabled = true;
    h.delay = meshless::hedge::HedgeDelay::Fixed(delay);
    h.max_extra_load = 1.0;
    h.min_per_second = 1000.0;
    h
}

/// A request body fed by the test: frames from a channel, no known length.
pub struct ChanBody(pub mpsc::UnboundedReceiver<Bytes>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
