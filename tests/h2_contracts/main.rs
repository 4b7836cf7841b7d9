//! The contracts of `meshless::http::Client` over HTTP/2 (h2c prior knowledge, and h2 over TLS): black-box tests against
//! servers built with the `h2` crate and frame by frame.

#[path = "../common/mod.rs"]
mod common;

mod authority;
mod cancel;
mod deadline;
mod frames;
mod hedge;
mod keepalive;
mod queue;
mod release;
mod replay;
mod resets;
mod retry_cut;
mod tls;

use bytes::Bytes;
use meshless::backoff::Backoff;
use meshless::http::Client;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

pub use common::frames::{
    DATA, GOAWAY, HEADERS, PING, RST, SETTINGS, accept_preface, read_frame, write_frame,
};
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

// ---------------------------------------------------------------------------------------------
// `h2` crate server.

pub type Script =
    Arc<dyn Fn(Call) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> + Send + Sync + 'static>;

pub struct Call {
    pub index: usize,
    pub connection: usize,
    pub request: http::Request<h2::RecvStream>,
    pub respond: h2::server::SendResponse<Bytes>,
    pub log: H2Log,
}

#[derive(Clone, Default)]
pub struct H2Log {
    /// (connection, path) of every stream accepted.
    pub seen: Arc<Mutex<Vec<(usize, String)>>>,
    pub connections: Arc<AtomicUsize>,
    /// Reset reasons the server observed from the client, by stream index.
    pub resets: Arc<Mutex<Vec<(usize, h2::Reason)>>>,
}

impl H2Log {
    pub fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn resets(&self) -> Vec<(usize, h2::Reason)> {
        self.resets.lock().unwrap().clone()
    }
    pub fn paths(&self) -> Vec<(usize, String)> {
        self.seen.lock().unwrap().clone()
    }
}

pub fn script<F, Fut>(f: F) -> Script
where
    F: Fn(Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |c| Box::pin(f(c)))
}

pub async fn serve_h2(max_streams: Option<u32>, script: Script) -> (SocketAddr, H2Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = H2Log::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let connection = l.connections.fetch_add(1, Ordering::SeqCst);
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
                        g.push((connection, request.uri().path().to_owned()));
                        g.len() - 1
                    };
                    tokio::spawn(script(Call {
                        index,
                        connection,
                        request,
                        respond,
                        log: log.clone(),
                    }));
                }
            });
        }
    });
    (addr, log)
}

pub async fn wait_reset_response(
    respond: &mut h2::server::SendResponse<Bytes>,
) -> Option<h2::Reason> {
    std::future::poll_fn(|cx| respond.poll_reset(cx)).await.ok()
}

pub async fn wait_reset_stream(send: &mut h2::SendStream<Bytes>) -> Option<h2::Reason> {
    std::future::poll_fn(|cx| send.poll_reset(cx)).await.ok()
}

// ---------------------------------------------------------------------------------------------
// Frame-level server.

#[derive(Default, Debug)]
pub struct RawLog {
    /// (connection, type, flags, stream, payload) of every frame the client sent.
    pub frames: Vec<(usize, u8, u8, u32, Vec<u8>)>,
    pub connections: usize,
}

impl RawLog {
    /// (connection, stream) of every request HEADERS.
    pub fn heads(&self) -> Vec<(usize, u32)> {
        self.frames
            .iter()
            .filter(|f| f.1 == HEADERS)
            .map(|f| (f.0, f.3))
            .collect()
    }
    /// (connection, stream, body) of every request DATA with content.
    pub fn bodies(&self) -> Vec<(usize, u32, Vec<u8>)> {
        self.frames
            .iter()
            .filter(|f| f.1 == DATA && !f.4.is_empty())
            .map(|f| (f.0, f.3, f.4.clone()))
            .collect()
    }
}

pub type RawHandler = Arc<
    dyn Fn(usize, TcpStream, Arc<Mutex<RawLog>>) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

pub fn raw<F, Fut>(f: F) -> RawHandler
where
    F: Fn(usize, TcpStream, Arc<Mutex<RawLog>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |c, t, l| Box::pin(f(c, t, l)))
}

pub async fn serve_raw(handler: RawHandler) -> (SocketAddr, Arc<Mutex<RawLog>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(RawLog::default()));
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let conn = {
                let mut g = l.lock().unwrap();
                g.connections += 1;
                g.connections - 1
            };
            tokio::spawn(handler(conn, tcp, l.clone()));
        }
    });
    (addr, log)
}

/// Reads frames until one request is complete (END_STREAM), ACKing SETTINGS when `ack`, and
/// answering PINGs. Returns the stream and its body. `None` once the client closed.
pub async fn next_request(
    tcp: &mut TcpStream,
    conn: usize,
    log: &Arc<Mutex<RawLog>>,
    ack: bool,
    bodies: &mut std::collections::HashMap<u32, Vec<u8>>,
) -> Option<(u32, Vec<u8>)> {
    loop {
        let (kind, flags, stream, payload) = read_frame(tcp).await?;
        log.lock()
            .unwrap()
            .frames
            .push((conn, kind, flags, stream, payload.clone()));
        match kind {
            SETTINGS if flags & 1 == 0 && ack => write_frame(tcp, SETTINGS, 1, 0, &[]).await,
            PING if flags & 1 == 0 => write_frame(tcp, PING, 1, 0, &payload).await,
            HEADERS => {
                bodies.entry(stream).or_default();
                if flags & 1 != 0 {
                    return Some((stream, bodies.remove(&stream).unwrap_or_default()));
                }
            }
            DATA => {
                bodies
                    .entry(stream)
                    .or_default()
                    .extend_from_slice(&payload);
                if flags & 1 != 0 {
                    return Some((stream, bodies.remove(&stream).unwrap_or_default()));
                }
            }
            _ => {}
        }
    }
}

/// Answers `200` with `body` and END_STREAM.
pub async fn respond(tcp: &mut TcpStream, stream: u32, body: &[u8]) {
    if body.is_empty() {
        write_frame(tcp, HEADERS, 0x4 | 0x1, stream, &[0x88]).await;
    } else {
        write_frame(tcp, HEADERS, 0x4, stream, &[0x88]).await;
        write_frame(tcp, DATA, 0x1, stream, body).await;
    }
}

/// A well-behaved raw connection: every request answered 200 with its own body echoed.
pub async fn echo_connection(conn: usize, mut tcp: TcpStream, log: Arc<Mutex<RawLog>>) {
    if !accept_preface(&mut tcp, &[]).await {
        return;
    }
    let mut bodies = Default::default();
    while let Some((s, body)) = next_request(&mut tcp, conn, &log, true, &mut bodies).await {
        respond(&mut tcp, s, &body).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Client.

pub fn client_to(addrs: &[SocketAddr], deadline: Duration) -> Client {
    Client::builder()
        .endpoints(addrs.iter().map(|a| a.to_string()))
        .http2_prior_knowledge(true)
        .deadline(deadline)
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap()
}

pub fn client(addr: SocketAddr, deadline: Duration) -> Client {
    client_to(&[addr], deadline)
}

pub fn err(e: &meshless::Error) -> String {
    let mut out = format!("{:?} (attempts {}): {e}", e.kind(), e.attempts());
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(&format!(" <- {s:?}"));
        src = s.source();
    }
    out
}

/// Polls `f` every 10 ms for up to 3 s.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

pub fn books(client: &Client) {
    common::books_balance(&client.retry_stats(), &client.endpoints());
}
