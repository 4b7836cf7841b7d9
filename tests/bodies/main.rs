//! Request and response bodies, replay and cancellation, through `meshless::http::Client`
//! against raw byte-by-byte TCP servers on 127.0.0.1:0.
//!
//! Real clock (the sockets would race a paused one); every bound is generous and no
//! assertion depends on a sleep winning against the scheduler.

#[path = "../common/mod.rs"]
mod common;
#[path = "../edges_support/mod.rs"]
mod edges_support;

use common::read_head;
use edges_support::*;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use meshless::breaker::BreakerState;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

/// The hang detector.
const BOUND: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// What a server saw of one request: its head (text) and the body bytes it received (decoded
/// from chunked), and whether the body arrived complete.
#[derive(Debug, Clone, Default)]
struct Seen {
    head: String,
    body: Vec<u8>,
    complete: bool,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads at least `n` bytes into `pending`; false at EOF or error.
async fn fill(socket: &mut TcpStream, pending: &mut Vec<u8>, n: usize) -> bool {
    let mut chunk = [0u8; 8192];
    while pending.len() < n {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => pending.extend_from_slice(&chunk[..k]),
        }
    }
    true
}

/// Reads a line (through CRLF) from `pending`/`socket`.
async fn line(socket: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
            let l: Vec<u8> = pending.drain(..end + 2).collect();
            return Some(String::from_utf8_lossy(&l[..end]).into_owned());
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => pending.extend_from_slice(&chunk[..k]),
        }
    }
}

/// Reads the body of the request whose head is `head`, up to `limit` bytes (then stops
/// reading, `complete` false). Records what was read even when the peer closes midway.
async fn read_body(
    socket: &mut TcpStream,
    pending: &mut Vec<u8>,
    head: &str,
    limit: usize,
) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    if let Some(len) = header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        let want = len.min(limit);
        let ok = fill(socket, pending, want).await;
        let take = pending.len().min(want);
        body.extend(pending.drain(..take));
        return (body, ok && len <= limit);
    }
    if header(head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let Some(size) = line(socket, pending).await else {
                return (body, false);
            };
            let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16) else {
                return (body, false);
            };
            if size == 0 {
                // Trailers until a blank line.
                loop {
                    match line(socket, pending).await {
                        Some(l) if l.is_empty() => return (body, true),
                        Some(_) => {}
                        None => return (body, false),
                    }
                }
            }
            if body.len() + size > limit {
                let ok = fill(socket, pending, limit - body.len()).await;
                let take = pending.len().min(limit - body.len());
                body.extend(pending.drain(..take));
                let _ = ok;
                return (body, false);
            }
            let ok = fill(socket, pending, size + 2).await;
            let take = pending.len().min(size);
            body.extend(pending.drain(..take));
            if !ok {
                return (body, false);
            }
            pending.drain(..2);
        }
    }
    (body, true)
}

/// A server on 127.0.0.1:0: each connection gets its index and the socket; the script
/// drives it. Returns the address and the connection count.
async fn serve<F, Fut>(script: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            tokio::spawn(async move { script(n, socket).await });
        }
    });
    (addr, conns)
}

/// Closes `socket` with a reset (SO_LINGER 0; it does not block: the socket is non-blocking).
#[allow(deprecated)]
fn reset(socket: TcpStream) {
    let _ = socket.set_linger(Some(Duration::ZERO));
    drop(socket);
}

/// A request body fed through a channel: frames arrive as the test sends them; `Err` frames
/// fail the body. `hint` is what it claims as its size.
struct ChanBody {
    rx: mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>,
    hint: SizeHint,
}

impl Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn chan_body(
    hint: SizeHint,
) -> (
    mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
    ChanBody,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, ChanBody { rx, hint })
}

/// A body of fixed chunks, all ready at once, claiming `hint` as its size.
struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
    hint: SizeHint,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }
    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

fn chunks(parts: Vec<Vec<u8>>, hint: SizeHint) -> Chunks {
    Chunks {
        chunks: parts.into_iter().map(Bytes::from).collect(),
        hint,
    }
}

/// The pattern of bytes `0..n` (no two 256-byte blocks alike over a megabyte).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(" <- ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// The kind of the meshless error somewhere in `err`'s source chain.
fn meshless_kind(err: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(ours) = e.downcast_ref::<meshless::Error>() {
            return Some(ours.kind());
        }
        next = e.source();
    }
    None
}

/// Reads `body` to its end within `BOUND`: bytes and the error it ended with.
async fn drain(
    mut body: meshless::http::ResponseBody,
) -> (Vec<u8>, Option<Box<dyn std::error::Error + Send + Sync>>) {
    let mut bytes = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(d) = frame.data_ref() {
                        bytes.extend_from_slice(d);
                    }
                }
                Err(e) => return Some(e),
            }
        }
        None
    };
    let end = timeout(BOUND, read).await.expect("the body never hangs");
    (bytes, end)
}

fn quiet_client(addrs: &[SocketAddr], service: &str) -> meshless::http::ClientBuilder {
    client_for(addrs, service)
        .deadline(Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(1))
}

fn endpoint_failures(client: &Client) -> u64 {
    client.endpoints().iter().map(|e| e.failures).sum()
}

/// Reads one request as the server saw it: its head and its whole body (decoded from chunked),
/// and whether the body arrived complete; `None` once the client closed before a head.
async fn read_seen(socket: &mut TcpStream, pending: &mut Vec<u8>) -> Option<Seen> {
    let head = read_head(socket, pending).await?;
    let head = String::from_utf8_lossy(&head).into_owned();
    let (body, complete) = read_body(socket, pending, &head, usize::MAX).await;
    Some(Seen {
        head,
        body,
        complete,
    })
}

/// A server that records every request it reads (a body short of its content-length is
/// recorded once the client closes) and answers a complete one with 200.
async fn recording_server() -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let (addr, _conns) = serve(move |_, mut socket| {
        let l = l.clone();
        async move {
            let mut pending = Vec::new();
            while let Some(seen) = read_seen(&mut socket, &mut pending).await {
                let complete = seen.complete;
                l.lock().unwrap().push(seen);
                if !complete {
                    return;
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
    .await;
    (addr, log)
}

mod cancellation;
mod h2;
mod requests;
mod responses;
