//! HTTP/1.1 framing and connection edges of `meshless::http::Client`, against raw TCP servers
//! on 127.0.0.1:0 that write their answers byte by byte: bodies cut short or framed twice,
//! early answers to uploads, interim answers, HTTP/1.0, stray bytes after bodiless answers, and
//! which of those are the stale keep-alive shape (a reused connection that ends before any
//! byte of its answer) and which are the endpoint's failure. Real clock, short real
//! deadlines, generous bounds; every case checks that the client's books balance.

#[path = "../common/mod.rs"]
mod common;

mod bad_data;
mod deadlines;
mod early_answers;
mod framing;
mod reqwest_wire;
mod stale_shapes;

use bytes::Bytes;
use http_body_util::BodyExt;
use meshless::error::Kind;
use meshless::http::Client;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(8);

/// One step of a server's answer.
#[derive(Clone, Debug)]
enum Step {
    /// Writes these bytes.
    W(Vec<u8>),
    /// Writes these bytes one at a time, `ms` apart.
    Drip(Vec<u8>, u64),
    /// Sleeps.
    Sleep(u64),
    /// Reads the request body (content-length) before going on.
    ReadBody,
    /// Closes with a FIN (after draining what the client sends for 300 ms so that no RST
    /// is provoked by unread data).
    Fin,
    /// Closes with a FIN at once (unread data, if any, makes the kernel send RST).
    Drop,
    /// Resets (RST).
    Rst,
    /// Holds the connection open, reading nothing more.
    Hold,
}

fn w(bytes: &[u8]) -> Step {
    Step::W(bytes.to_vec())
}

type Script = Arc<dyn Fn(usize, usize, &str) -> Vec<Step> + Send + Sync>;

struct Server {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<(usize, String)>>>,
    conns: Arc<AtomicUsize>,
}

impl Server {
    fn hits(&self) -> usize {
        self.heads.lock().unwrap().len()
    }
    fn heads(&self) -> Vec<(usize, String)> {
        self.heads.lock().unwrap().clone()
    }
    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

fn content_length(head: &str) -> usize {
    head.to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn serve(script: Script) -> Server {
    serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), script)
}

/// A server whose sockets have a small receive buffer, so that a client writing a body of a
/// few tens of KiB waits on the server's reads.
async fn serve_small_window(script: Script) -> Server {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    serve_on(socket.listen(64).unwrap(), script)
}

fn serve_on(listener: TcpListener, script: Script) -> Server {
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let conns = Arc::new(AtomicUsize::new(0));
    let (h2, c2) = (heads.clone(), conns.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let conn = c2.fetch_add(1, Ordering::SeqCst);
            let (heads, script) = (h2.clone(), script.clone());
            tokio::spawn(async move {
                let mut pending = Vec::new();
                loop {
                    let Some(head) = common::read_head(&mut socket, &mut pending).await else {
                        return;
                    };
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let n = {
                        let mut h = heads.lock().unwrap();
                        h.push((conn, text.clone()));
                        h.len() - 1
                    };
                    for step in script(n, conn, &text) {
                        match step {
                            Step::W(b) => {
                                if socket.write_all(&b).await.is_err() {
                                    return;
                                }
                            }
                            Step::Drip(b, ms) => {
                                for byte in b {
                                    if socket.write_all(&[byte]).await.is_err() {
                                        return;
                                    }
                                    tokio::time::sleep(Duration::from_millis(ms)).await;
                                }
                            }
                            Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                            Step::ReadBody => {
                                let len = content_length(&text);
                                let mut buf = [0u8; 65536];
                                while pending.len() < len {
                                    match socket.read(&mut buf).await {
                                        Ok(0) | Err(_) => return,
                                        Ok(k) => pending.extend_from_slice(&buf[..k]),
                                    }
                                }
                                pending.drain(..len);
                            }
                            Step::Fin => {
                                let _ = socket.shutdown().await;
                                let mut buf = [0u8; 65536];
                                let _ = tokio::time::timeout(Duration::from_millis(300), async {
                                    while let Ok(k) = socket.read(&mut buf).await {
                                        if k == 0 {
                                            break;
                                        }
                                    }
                                })
                                .await;
                                return;
                            }
                            Step::Drop => return,
                            Step::Rst => {
                                let _ = socket2::SockRef::from(&socket)
                                    .set_linger(Some(Duration::ZERO));
                                return;
                            }
                            Step::Hold => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Server { addr, heads, conns }
}

fn builder(addr: SocketAddr) -> meshless::http::ClientBuilder {
    Client::builder()
        .endpoints([addr.to_string()])
        .backoff(meshless::backoff::Backoff::none())
        .deadline(Duration::from_secs(3))
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(" <- ");
        out.push_str(&format!("{e} [{e:?}]"));
        cur = e.source();
    }
    out
}

fn meshless_kind(err: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(m) = e.downcast_ref::<meshless::Error>() {
            return Some(m.kind());
        }
        cur = e.source();
    }
    None
}

/// The outcome of one request read to its end.
#[derive(Debug)]
enum End {
    /// Status and whole body.
    Ok(u16, Bytes),
    /// The head failed.
    #[allow(dead_code)]
    Head(Kind, String),
    /// The head came (status), the body failed.
    #[allow(dead_code)]
    Body(u16, Bytes, Option<Kind>, String),
}

async fn finish(fut: meshless::http::ResponseFuture) -> End {
    tokio::time::timeout(BOUND, async move {
        let res = match fut.await {
            Ok(res) => res,
            Err(e) => return End::Head(e.kind(), chain(&e)),
        };
        let status = res.status().as_u16();
        let mut body = res.into_body();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        got.extend_from_slice(d);
                    }
                }
                Err(e) => {
                    return End::Body(status, got.into(), meshless_kind(&*e), chain(&*e));
                }
            }
        }
        End::Ok(status, got.into())
    })
    .await
    .expect("the request ended within the bound (no hang)")
}

fn books(client: &Client) {
    common::books_balance(&client.retry_stats(), &client.endpoints());
}

fn stats_line(client: &Client) -> String {
    let s = client.stats();
    let e = client.endpoints();
    format!(
        "requests {} ok {} fail {} cancelled {} retries {} stale {} | endpoints {:?}",
        s.requests,
        s.successes,
        s.failures,
        s.cancelled,
        s.retries,
        s.stale_resends,
        e.iter()
            .map(|e| (
                e.requests,
                e.failures,
                e.cancelled,
                e.ejections,
                e.in_flight
            ))
            .collect::<Vec<_>>()
    )
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A request body the test feeds by hand.
struct ChanBody(tokio::sync::mpsc::UnboundedReceiver<Bytes>, Option<u64>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        match self.1 {
            Some(n) => http_body::SizeHint::with_exact(n),
            None => http_body::SizeHint::default(),
        }
    }
}
