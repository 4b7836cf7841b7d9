//! Audit 5: request/response bodies, replay and cancellation, through `meshless::http::Client`
//! against raw byte-by-byte TCP servers on 127.0.0.1:0.
//!
//! Real clock (the sockets would race a paused one); every bound is generous and no
//! assertion depends on a sleep winning against the scheduler.

mod common;
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

// ------------------------------------------------------------------------------------------
// Request bodies
// ------------------------------------------------------------------------------------------

/// A server that records every request it reads (a body short of its content-length is
/// recorded once the client closes) and answers a complete one with 200.
async fn recording_server() -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let (addr, _conns) = serve(move |_, mut socket| {
        let l = l.clone();
        async move {
            let mut pending = Vec::new();
            while let Some(head) = read_head(&mut socket, &mut pending).await {
                let head = String::from_utf8_lossy(&head).into_owned();
                let (body, complete) =
                    read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                l.lock().unwrap().push(Seen {
                    head,
                    body,
                    complete,
                });
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

/// A body that ends short of the length it declared (its size hint says 100 bytes, so hyper
/// sends `content-length: 100`; only 10 come) is the caller's bug. The code says so
/// (`classify/error.rs`, `hyper_callers_fault`: a body that "ended short of its declared
/// length" is the caller's fault), and the contract is that a caller's fault is counted
/// against no endpoint (README, `requests_completed_total`: "the caller's own request body
/// failing make it `cancelled`"). POSTs, so that retries play no part.
#[test]
fn a_body_shorter_than_its_declared_length_is_the_callers_fault() {
    run(|snap| async move {
        let (a, _log_a) = recording_server().await;
        let (b, _log_b) = recording_server().await;
        let client = quiet_client(&[a, b], "short").build().unwrap();
        const N: u64 = 12;
        for _ in 0..N {
            let req = Request::post("/short")
                .body(chunks(vec![vec![b'x'; 10]], SizeHint::with_exact(100)))
                .unwrap();
            let err = timeout(BOUND, client.request(req))
                .await
                .expect("no hang")
                .expect_err("a short body cannot succeed");
            // FINDING: hyper reports a short body as "user body write aborted" (source "early
            // end, expected 90 more bytes"), which `hyper_callers_fault` does not recognise:
            // the error is `Kind::Service`, and each one is charged to the endpoint as a failure.
            assert_eq!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
        }
        let endpoints = client.endpoints();
        let failures: u64 = endpoints.iter().map(|e| e.failures).sum();
        let ejections: u64 = endpoints.iter().map(|e| e.ejections).sum();
        assert_eq!((failures, ejections), (0, 0), "{endpoints:?}");
        let v = settle_and_check(&client, &snap, "short").await;
        report(&v, &client, &snap);
    })
}

/// The same caller's bug on a PUT (idempotent): the first attempt fails at once, and must
/// not be retried. Worse, the replayed body reports its end differently (the replay knows the
/// body ended, so hyper writes its 10 bytes as the *whole* body and waits for an answer the
/// server, still waiting for 90 bytes, never gives): the retry hangs until the deadline.
#[test]
fn a_short_put_is_not_retried_into_a_hang() {
    run(|snap| async move {
        let (addr, log) = recording_server().await;
        let client = quiet_client(&[addr], "shortput").build().unwrap();
        let started = tokio::time::Instant::now();
        let req = Request::put("/short")
            .body(chunks(vec![vec![b'x'; 10]], SizeHint::with_exact(100)))
            .unwrap();
        let err = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect_err("a short body cannot succeed");
        let took = started.elapsed();
        // FINDING: the PUT is retried (`attempts` 2) and the retry hangs until the 4 s
        // deadline: `DeadlineExceeded after 2 attempts`.
        assert_eq!(err.attempts(), 1, "{} after {took:?}", chain(&err));
        assert!(took < Duration::from_secs(1), "{took:?}: {}", chain(&err));
        assert_eq!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
        let _ = log;
        assert_eq!(endpoint_failures(&client), 0, "{:?}", client.endpoints());
        let v = settle_and_check(&client, &snap, "shortput").await;
        report(&v, &client, &snap);
    })
}

/// A POST with a streamed body larger than the replay cap (64 KiB), the server reading half
/// of it and then resetting the connection: it may have reached the server, so it is sent
/// exactly once, and ends with a typed error.
#[test]
fn a_large_streamed_post_reset_halfway_is_sent_once() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, conns) = serve(move |_, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                let Some(head) = read_head(&mut socket, &mut pending).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&head).into_owned();
                let (body, complete) = read_body(&mut socket, &mut pending, &head, 50_000).await;
                l.lock().unwrap().push(Seen {
                    head,
                    body,
                    complete,
                });
                reset(socket);
            }
        })
        .await;
        let client = quiet_client(&[addr], "bigpost").build().unwrap();
        let (tx, body) = chan_body(SizeHint::new());
        let data = pattern(200 * 1024);
        let feed = data.clone();
        tokio::spawn(async move {
            for c in feed.chunks(8192) {
                if tx.send(Ok(Bytes::copy_from_slice(c))).is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let req = Request::post("/upload").body(body).unwrap();
        let out = timeout(BOUND, client.request(req)).await.expect("no hang");
        let err = out.expect_err("reset midway");
        assert_eq!(err.attempts(), 1, "{}", chain(&err));
        assert_eq!(conns.load(Ordering::SeqCst), 1, "sent once");
        assert_eq!(log.lock().unwrap().len(), 1);
        let v = settle_and_check(&client, &snap, "bigpost").await;
        report(&v, &client, &snap);
    })
}

/// A PUT (idempotent) with a body larger than the replay cap that the server reads in full
/// and then resets: idempotent, but no replay buffer is left, so it is sent once and the
/// retry is refused as `BodyTooLarge` (with the reset kept as the cause).
#[test]
fn a_large_idempotent_put_reset_after_the_body_is_not_resent() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, conns) = serve(move |_, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                let Some(head) = read_head(&mut socket, &mut pending).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&head).into_owned();
                let (body, complete) =
                    read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                l.lock().unwrap().push(Seen {
                    head,
                    body,
                    complete,
                });
                reset(socket);
            }
        })
        .await;
        let client = quiet_client(&[addr], "bigput").build().unwrap();
        let data = pattern(100 * 1024);
        let parts: Vec<Vec<u8>> = data.chunks(4096).map(<[u8]>::to_vec).collect();
        let req = Request::put("/blob")
            .body(chunks(parts, SizeHint::new()))
            .unwrap();
        let err = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect_err("reset");
        assert_eq!(err.kind(), Kind::BodyTooLarge, "{}", chain(&err));
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].complete);
        assert_eq!(seen[0].body, data, "the one attempt got the whole body");
        assert_eq!(client.stats().retries, 0);
        let v = settle_and_check(&client, &snap, "bigput").await;
        report(&v, &client, &snap);
    })
}

/// A PUT with a small streamed (chunked) body: the first connection reads it all and resets,
/// the second answers. The retry's body must be byte-identical to the first.
#[test]
fn a_streamed_put_reset_is_replayed_byte_identical() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, _conns) = serve(move |n, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                while let Some(head) = read_head(&mut socket, &mut pending).await {
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let (body, complete) =
                        read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                    l.lock().unwrap().push(Seen {
                        head,
                        body,
                        complete,
                    });
                    if n == 0 {
                        reset(socket);
                        return;
                    }
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            }
        })
        .await;
        let client = quiet_client(&[addr], "replay")
            .backoff(meshless::backoff::Backoff::none())
            .build()
            .unwrap();
        let data = pattern(30_000);
        let (tx, body) = chan_body(SizeHint::new());
        let feed = data.clone();
        tokio::spawn(async move {
            for c in feed.chunks(1000) {
                if tx.send(Ok(Bytes::copy_from_slice(c))).is_err() {
                    return;
                }
                sleep(ms(1)).await;
            }
        });
        let req = Request::put("/doc").body(body).unwrap();
        let res = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect("the retry succeeds");
        assert_eq!(res.status(), 200);
        let (bytes, end) = drain(res.into_body()).await;
        assert!(end.is_none());
        assert_eq!(bytes, b"ok");
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for s in &seen {
            assert!(s.complete);
            assert_eq!(s.body.len(), data.len());
            assert!(s.body == data, "byte-identical");
        }
        let v = settle_and_check(&client, &snap, "replay").await;
        report(&v, &client, &snap);
    })
}

/// A kept-alive connection: the first POST is answered; the server reads the second POST in
/// full and then resets the connection. The second POST may have been acted on: it is sent
/// exactly once.
#[test]
fn a_post_on_a_reused_connection_reset_after_reading_is_sent_once() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, conns) = serve(move |_, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                let mut served = 0;
                while let Some(head) = read_head(&mut socket, &mut pending).await {
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let (body, complete) =
                        read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                    l.lock().unwrap().push(Seen {
                        head,
                        body,
                        complete,
                    });
                    served += 1;
                    if served == 2 {
                        reset(socket);
                        return;
                    }
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            }
        })
        .await;
        let client = quiet_client(&[addr], "reuse").build().unwrap();
        let res = client.post("/one", "first").await.unwrap();
        let _ = drain(res.into_body()).await;
        let err = timeout(BOUND, client.post("/two", "second"))
            .await
            .expect("no hang")
            .expect_err("reset after the server read it");
        assert_eq!(err.attempts(), 1, "{}", chain(&err));
        let seen = log.lock().unwrap().clone();
        let twos = seen.iter().filter(|s| s.head.contains("/two")).count();
        assert_eq!(twos, 1, "the second POST reached the server once: {seen:?}");
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        let v = settle_and_check(&client, &snap, "reuse").await;
        report(&v, &client, &snap);
    })
}

/// A server that answers 413 before reading a large streamed POST body, then closes: the
/// caller gets the 413 (or a typed error), never a hang, and the request is sent once.
#[test]
fn an_early_413_before_the_body_is_read_ends_cleanly() {
    run(|snap| async move {
        let (addr, conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            if read_head(&mut socket, &mut pending).await.is_none() {
                return;
            }
            let _ = socket
                .write_all(
                    b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbig",
                )
                .await;
            let _ = socket.shutdown().await;
            // Keep reading (and discarding) so that the client is not reset.
            hold(socket).await;
        })
        .await;
        let client = quiet_client(&[addr], "early").build().unwrap();
        let (tx, body) = chan_body(SizeHint::new());
        tokio::spawn(async move {
            for _ in 0..100 {
                if tx.send(Ok(Bytes::from(vec![b'z'; 8192]))).is_err() {
                    return;
                }
                sleep(ms(2)).await;
            }
        });
        let req = Request::post("/upload").body(body).unwrap();
        let out = timeout(BOUND, client.request(req)).await.expect("no hang");
        match out {
            Ok(res) => {
                assert_eq!(res.status(), 413);
                let (bytes, _end) = drain(res.into_body()).await;
                assert_eq!(bytes, b"big");
            }
            Err(e) => panic!("the 413 was lost: {}", chain(&e)),
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        let v = settle_and_check(&client, &snap, "early").await;
        report(&v, &client, &snap);
    })
}

/// An unmarked POST answered early (before its body was read) with 503 + Retry-After: the
/// table lets it be retried (the server said it did not act). The retry must carry the whole
/// body, byte-identical, though the first attempt stopped sending it.
#[test]
fn an_early_503_retry_after_replays_the_whole_body() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, _conns) = serve(move |n, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                let Some(head) = read_head(&mut socket, &mut pending).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&head).into_owned();
                if n == 0 {
                    l.lock().unwrap().push(Seen {
                        head,
                        body: Vec::new(),
                        complete: false,
                    });
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                        )
                        .await;
                    let _ = socket.shutdown().await;
                    hold(socket).await;
                    return;
                }
                let (body, complete) =
                    read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                l.lock().unwrap().push(Seen {
                    head,
                    body,
                    complete,
                });
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                hold(socket).await;
            }
        })
        .await;
        let client = quiet_client(&[addr], "early503")
            .backoff(meshless::backoff::Backoff::none())
            .build()
            .unwrap();
        let data = pattern(20_000);
        let (tx, body) = chan_body(SizeHint::new());
        let feed = data.clone();
        tokio::spawn(async move {
            for c in feed.chunks(2000) {
                if tx.send(Ok(Bytes::copy_from_slice(c))).is_err() {
                    return;
                }
                sleep(ms(5)).await;
            }
        });
        let req = Request::post("/upload").body(body).unwrap();
        let res = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect("the retry is answered");
        assert_eq!(res.status(), 200);
        let _ = drain(res.into_body()).await;
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].complete);
        assert!(seen[1].body == data, "the retry's body is the whole body");
        let v = settle_and_check(&client, &snap, "early503").await;
        report(&v, &client, &snap);
    })
}

/// 100 Continue, then the final answer: the caller gets the final answer.
/// 100 Continue, then the connection closes: a typed error, no hang.
#[test]
fn interim_100_continue_answers() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |n, mut socket| async move {
            let mut pending = Vec::new();
            let Some(head) = read_head(&mut socket, &mut pending).await else {
                return;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            let _ = socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
            let _ = read_body(&mut socket, &mut pending, &head, usize::MAX).await;
            if head.contains("/close") {
                let _ = socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                reset(socket);
                return;
            }
            let _ = n;
            let _ = socket
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
                .await;
            hold(socket).await;
        })
        .await;
        let client = quiet_client(&[addr], "cont").build().unwrap();
        let req = Request::post("/ok")
            .header("expect", "100-continue")
            .body(http_body_util::Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let res = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect("answered");
        assert_eq!(res.status(), 201);
        let (bytes, end) = drain(res.into_body()).await;
        assert!(end.is_none());
        assert_eq!(bytes, b"ok");

        let err = timeout(BOUND, client.post("/close", "payload"))
            .await
            .expect("no hang")
            .expect_err("closed after 100");
        assert_eq!(err.attempts(), 1, "a POST: {}", chain(&err));
        let v = settle_and_check(&client, &snap, "cont").await;
        report(&v, &client, &snap);
    })
}

// ------------------------------------------------------------------------------------------
// Response bodies
// ------------------------------------------------------------------------------------------

/// Broken response bodies end with a typed meshless error, are charged to the endpoint once,
/// and the books balance: a content-length longer than what came then a close; chunked
/// encoding with a bad size line; a chunk larger than announced.
#[test]
fn broken_response_bodies_end_with_typed_errors() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            let Some(head) = read_head(&mut socket, &mut pending).await else {
                return;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            let reply: &[u8] = if head.contains("/short") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly-this"
            } else if head.contains("/badhex") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nxx\r\n"
            } else if head.contains("/overlong") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n"
            } else if head.contains("/hugechunk") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffffff\r\nab"
            } else {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
            };
            let _ = socket.write_all(reply).await;
            reset(socket);
        })
        .await;
        let client = quiet_client(&[addr], "broken").build().unwrap();
        for path in ["/short", "/badhex", "/overlong", "/hugechunk", "/cut"] {
            let res = match timeout(BOUND, client.get(path)).await.expect("no hang") {
                Ok(res) => res,
                Err(e) => {
                    // A head-level failure is a typed error too.
                    let _ = e.kind();
                    continue;
                }
            };
            let (_bytes, end) = drain(res.into_body()).await;
            let err = end.unwrap_or_else(|| panic!("{path}: a broken body must fail"));
            assert!(
                meshless_kind(&*err).is_some(),
                "{path}: not a meshless error: {}",
                chain(&*err)
            );
        }
        let s = client.stats();
        assert_eq!(s.successes, 0, "{s:?}");
        let v = settle_and_check(&client, &snap, "broken").await;
        report(&v, &client, &snap);
    })
}

/// Response trailers of a chunked body reach the caller.
#[test]
fn response_trailers_reach_the_caller() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            while read_head(&mut socket, &mut pending).await.is_some() {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ntrailer: x-sum\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 42\r\n\r\n")
                    .await;
            }
        })
        .await;
        let client = quiet_client(&[addr], "trailers").build().unwrap();
        let req = Request::get("/")
            .header("te", "trailers")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let res = client.request(req).await.unwrap();
        let collected = timeout(BOUND, res.into_body().collect())
            .await
            .expect("no hang")
            .expect("a whole body");
        let trailers = collected.trailers().cloned();
        assert_eq!(collected.to_bytes(), "abc");
        assert_eq!(
            trailers
                .as_ref()
                .and_then(|t| t.get("x-sum"))
                .map(|v| v.as_bytes()),
            Some(&b"42"[..]),
            "{trailers:?}"
        );
        let v = settle_and_check(&client, &snap, "trailers").await;
        report(&v, &client, &snap);
    })
}

/// A body that stalls mid-way (after some chunks) ends at the total deadline with
/// `DeadlineExceeded`, not later, and charges the endpoint.
#[test]
fn a_body_stalling_mid_way_ends_at_the_deadline() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            if read_head(&mut socket, &mut pending).await.is_none() {
                return;
            }
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for _ in 0..5 {
                let _ = socket.write_all(b"1\r\nx\r\n").await;
                sleep(ms(20)).await;
            }
            hold(socket).await;
        })
        .await;
        let client = client_for(&[addr], "stall")
            .deadline(ms(600))
            .build()
            .unwrap();
        let started = tokio::time::Instant::now();
        let res = client.get("/").await.unwrap();
        let (bytes, end) = drain(res.into_body()).await;
        let took = started.elapsed();
        let err = end.expect("the deadline ends the body");
        assert_eq!(
            meshless_kind(&*err),
            Some(Kind::DeadlineExceeded),
            "{}",
            chain(&*err)
        );
        assert_eq!(bytes.len(), 5);
        assert!(
            took >= ms(590) && took < ms(600) + Duration::from_secs(1),
            "{took:?}"
        );
        let e = &client.endpoints()[0];
        assert_eq!((e.requests, e.failures, e.cancelled), (1, 1, 0), "{e:?}");
        let v = settle_and_check(&client, &snap, "stall").await;
        report(&v, &client, &snap);
    })
}

// ------------------------------------------------------------------------------------------
// Cancellation
// ------------------------------------------------------------------------------------------

/// Many callers dropping their futures while the server holds the request (after the request
/// was fully sent) and dropping response bodies half-way: no endpoint failure, no ejection,
/// the breaker stays closed, nothing left in flight, and the books balance.
#[test]
fn cancellations_charge_nothing_eject_nothing_open_nothing() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            while let Some(head) = read_head(&mut socket, &mut pending).await {
                let head = String::from_utf8_lossy(&head).into_owned();
                let _ = read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                if head.contains("/hold") {
                    hold(socket).await;
                    return;
                }
                if head.contains("/drip") {
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
                        )
                        .await;
                    hold(socket).await;
                    return;
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        })
        .await;
        let client = quiet_client(&[addr], "cancel")
            .limit({
                let mut c = meshless::limit::LimitConfig::default();
                c.algorithm = meshless::limit::Algorithm::Fixed { max: 4 };
                c
            })
            .breaker({
                let mut c = meshless::breaker::BreakerConfig::default();
                c.failure_rate_threshold = 0.5;
                c.minimum_calls = 4;
                c
            })
            .build()
            .unwrap();
        const N: usize = 12;
        // Futures dropped while the server holds the request.
        for i in 0..N {
            let fut = if i % 2 == 0 {
                client.get("/hold")
            } else {
                client.post("/hold", "payload")
            };
            assert!(timeout(ms(100), fut).await.is_err());
        }
        // Bodies dropped after the first chunk.
        for _ in 0..N {
            let res = client.get("/drip").await.unwrap();
            let mut body = res.into_body();
            let frame = timeout(BOUND, body.frame()).await.expect("a first chunk");
            assert!(frame.is_some());
            drop(body);
        }
        let v = settle_and_check(&client, &snap, "cancel").await;
        report(&v, &client, &snap);
        let e = &client.endpoints()[0];
        assert_eq!(e.failures, 0, "{e:?}");
        assert_eq!(e.ejections, 0, "{e:?}");
        assert_eq!(client.breaker().stats().state, BreakerState::Closed);
        let s = client.stats();
        assert_eq!(s.failures, 0, "{s:?}");
        assert_eq!(s.cancelled, N as u64, "{s:?}");
        let res = client.get("/ok").await.expect("still served");
        assert_eq!(res.status(), 200);
    })
}

/// Dropping the future during a retry's backoff: the one failure is the endpoint's, the
/// cancellation is not; nothing left in flight; the retry token goes back.
#[test]
fn a_future_dropped_during_backoff() {
    run(|snap| async move {
        let (addr, conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            while read_head(&mut socket, &mut pending).await.is_some() {
                let _ = socket
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        })
        .await;
        let client = quiet_client(&[addr], "backoff")
            .backoff(
                meshless::backoff::Backoff::decorrelated_jitter(
                    Duration::from_secs(2),
                    Duration::from_secs(2),
                )
                .unwrap(),
            )
            .build()
            .unwrap();
        let fut = client.get("/");
        assert!(timeout(ms(500), fut).await.is_err(), "in backoff");
        let v = settle_and_check(&client, &snap, "backoff").await;
        report(&v, &client, &snap);
        let s = client.stats();
        assert_eq!(
            (s.requests, s.cancelled, s.failures, s.retries),
            (1, 1, 0, 0),
            "{s:?}"
        );
        let e = &client.endpoints()[0];
        assert_eq!((e.requests, e.failures), (1, 1), "{e:?}");
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    })
}

/// A hedge race cancelled by the caller while both attempts are at the endpoints: neither
/// endpoint is charged a failure, nothing stays in flight.
#[test]
fn a_hedge_race_dropped_by_the_caller() {
    run(|snap| async move {
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let script = move |_, socket: TcpStream| {
            let s2 = s2.clone();
            async move {
                let mut socket = socket;
                let mut pending = Vec::new();
                if read_head(&mut socket, &mut pending).await.is_some() {
                    s2.fetch_add(1, Ordering::SeqCst);
                    hold(socket).await;
                }
            }
        };
        let (a, _) = serve(script.clone()).await;
        let (b, _) = serve(script).await;
        let client = quiet_client(&[a, b], "hedge")
            .hedge({
                let mut c = meshless::hedge::HedgeConfig::default();
                c.delay = meshless::hedge::HedgeDelay::Fixed(ms(50));
                c.min_per_second = 1000.0;
                c
            })
            .build()
            .unwrap();
        let fut = client.get("/");
        assert!(timeout(ms(400), fut).await.is_err());
        assert_eq!(seen.load(Ordering::SeqCst), 2, "the hedge was sent");
        let v = settle_and_check(&client, &snap, "hedge").await;
        report(&v, &client, &snap);
        let failures = endpoint_failures(&client);
        assert_eq!(failures, 0, "{:?}", client.endpoints());
        let cancelled: u64 = client.endpoints().iter().map(|e| e.cancelled).sum();
        assert_eq!(cancelled, 2, "{:?}", client.endpoints());
        assert_eq!(client.stats().cancelled, 1);
    })
}

/// A request body still streaming when the caller drops the future: a cancellation, not a
/// failure, and the half-sent POST is not sent again.
#[test]
fn a_future_dropped_while_its_body_streams() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let l = log.clone();
        let (addr, conns) = serve(move |_, mut socket| {
            let l = l.clone();
            async move {
                let mut pending = Vec::new();
                let Some(head) = read_head(&mut socket, &mut pending).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&head).into_owned();
                let (body, complete) =
                    read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                l.lock().unwrap().push(Seen {
                    head,
                    body,
                    complete,
                });
            }
        })
        .await;
        let client = quiet_client(&[addr], "streaming").build().unwrap();
        let (tx, body) = chan_body(SizeHint::new());
        tx.send(Ok(Bytes::from_static(b"first"))).unwrap();
        let req = Request::post("/up").body(body).unwrap();
        assert!(timeout(ms(300), client.request(req)).await.is_err());
        drop(tx);
        let v = settle_and_check(&client, &snap, "streaming").await;
        report(&v, &client, &snap);
        // The server sees the connection end.
        assert!(
            wait_until(BOUND, || !log.lock().unwrap().is_empty()).await,
            "the server saw the connection end"
        );
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(!seen[0].complete);
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        let e = &client.endpoints()[0];
        assert_eq!((e.failures, e.cancelled), (0, 1), "{e:?}");
    })
}

/// The same drop while a retry waits out a server's `Retry-After` (every endpoint pushing
/// back): the retry never left, so it is not a retry sent (`ClientStats::retries` is
/// "Retries sent"; `retries_total` "retries sent").
#[test]
fn a_future_dropped_while_waiting_out_a_pushback() {
    run(|snap| async move {
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let (addr, _conns) = serve(move |_, mut socket| {
            let s2 = s2.clone();
            async move {
                let mut pending = Vec::new();
                while read_head(&mut socket, &mut pending).await.is_some() {
                    s2.fetch_add(1, Ordering::SeqCst);
                    let _ = socket
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            }
        })
        .await;
        let client = quiet_client(&[addr], "pushback").build().unwrap();
        let fut = client.get("/");
        assert!(timeout(ms(500), fut).await.is_err(), "waiting");
        let v = settle_and_check(&client, &snap, "pushback").await;
        report(&v, &client, &snap);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "one request reached the server"
        );
        let s = client.stats();
        assert_eq!((s.requests, s.cancelled, s.failures), (1, 1, 0), "{s:?}");
        // FINDING (counting): the retry that waited out the pushback was counted in
        // `retries` (and `attempts_total`) when it went down to the balancer, which refused it
        // (every endpoint pushing back); it never reached a server (`seen` is 1).
        assert_eq!(s.retries, 0, "no retry was sent: {s:?}");
    })
}

/// The other side of the same drop: a retry that reached its server before the caller gave
/// up is a retry sent, and counted once.
#[test]
fn a_future_dropped_while_its_retry_is_at_the_server() {
    run(|snap| async move {
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let (addr, _conns) = serve(move |_, mut socket| {
            let s2 = s2.clone();
            async move {
                let mut pending = Vec::new();
                while read_head(&mut socket, &mut pending).await.is_some() {
                    if s2.fetch_add(1, Ordering::SeqCst) == 0 {
                        let _ = socket
                            .write_all(
                                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                    }
                    // The retry is held: no answer.
                }
            }
        })
        .await;
        let client = quiet_client(&[addr], "retry_held").build().unwrap();
        let fut = client.get("/");
        assert!(timeout(ms(500), fut).await.is_err(), "held");
        let v = settle_and_check(&client, &snap, "retry_held").await;
        report(&v, &client, &snap);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "the retry reached the server"
        );
        let s = client.stats();
        assert_eq!((s.requests, s.cancelled, s.retries), (1, 1, 1), "{s:?}");
    })
}

/// Futures dropped at their first poll (mid-connect) and right after: nothing is charged,
/// nothing stays in flight, the books balance.
#[test]
fn futures_dropped_before_and_while_connecting() {
    run(|snap| async move {
        let (addr, _log) = recording_server().await;
        let client = quiet_client(&[addr], "early_drop").build().unwrap();
        for i in 0..20u64 {
            let fut = if i % 2 == 0 {
                client.get("/x")
            } else {
                client.post("/x", "payload")
            };
            if i % 4 < 2 {
                drop(fut); // never polled
            } else {
                let _ = timeout(Duration::ZERO, fut).await; // polled once
            }
        }
        let v = settle_and_check(&client, &snap, "early_drop").await;
        report(&v, &client, &snap);
        assert_eq!(endpoint_failures(&client), 0, "{:?}", client.endpoints());
        let s = client.stats();
        assert_eq!(s.failures, 0, "{s:?}");
        let res = client.get("/x").await.expect("still served");
        assert_eq!(res.status(), 200);
    })
}

/// A response whose body is never read, dropped at once: it keeps its head's class (a
/// success), the endpoint is not charged, the books balance.
#[test]
fn a_response_dropped_unread_keeps_its_class() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            if read_head(&mut socket, &mut pending).await.is_none() {
                return;
            }
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nsome")
                .await;
            hold(socket).await;
        })
        .await;
        let client = quiet_client(&[addr], "unread").build().unwrap();
        for _ in 0..3 {
            let res = client.get("/").await.unwrap();
            drop(res);
        }
        let v = settle_and_check(&client, &snap, "unread").await;
        report(&v, &client, &snap);
        let s = client.stats();
        assert_eq!((s.successes, s.failures, s.cancelled), (3, 0, 0), "{s:?}");
        assert_eq!(endpoint_failures(&client), 0);
    })
}

/// Interim 1xx answers forever, a head that drips a byte at a time forever: each ends at the
/// deadline with `DeadlineExceeded`.
#[test]
fn endless_interim_answers_and_dripping_heads_end_at_the_deadline() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            let Some(head) = read_head(&mut socket, &mut pending).await else {
                return;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            for _ in 0..2000 {
                let bytes: &[u8] = if head.contains("/interim") {
                    b"HTTP/1.1 102 Processing\r\n\r\n"
                } else if head.contains("/drip") {
                    b"x"
                } else {
                    b"x-more: yes\r\n"
                };
                if socket.write_all(bytes).await.is_err() {
                    return;
                }
                sleep(ms(10)).await;
            }
        })
        .await;
        let client = client_for(&[addr], "endless")
            .deadline(ms(500))
            .max_retries(0)
            .build()
            .unwrap();
        for path in ["/interim", "/drip", "/headers"] {
            let started = tokio::time::Instant::now();
            // The dripped head starts as a valid status line for "/headers".
            let out = timeout(BOUND, client.get(path)).await.expect("no hang");
            let took = started.elapsed();
            let err = out.expect_err(path);
            assert!(
                took < Duration::from_millis(1500),
                "{path}: {took:?} {}",
                chain(&err)
            );
            let _ = err.kind();
        }
        let v = settle_and_check(&client, &snap, "endless").await;
        report(&v, &client, &snap);
    })
}

/// Huge response headers, a status line that is not HTTP, a body after a 204: typed errors
/// or answers, never a panic or a hang.
#[test]
fn malformed_heads_are_typed_errors() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            let Some(head) = read_head(&mut socket, &mut pending).await else {
                return;
            };
            let head = String::from_utf8_lossy(&head).into_owned();
            let reply: Vec<u8> = if head.contains("/huge") {
                let mut r = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
                r.extend(std::iter::repeat_n(b'a', 2 << 20));
                r.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
                r
            } else if head.contains("/garbage") {
                b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()
            } else if head.contains("/twocl") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 5\r\n\r\nhello".to_vec()
            } else {
                b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello".to_vec()
            };
            let _ = socket.write_all(&reply).await;
            hold(socket).await;
        })
        .await;
        let client = quiet_client(&[addr], "malformed")
            .max_retries(0)
            .build()
            .unwrap();
        for path in ["/huge", "/garbage", "/twocl", "/204"] {
            match timeout(BOUND, client.get(path)).await.expect("no hang") {
                Ok(res) => {
                    let (_b, _e) = drain(res.into_body()).await;
                }
                Err(e) => {
                    let _ = e.kind();
                }
            }
        }
        let v = settle_and_check(&client, &snap, "malformed").await;
        report(&v, &client, &snap);
    })
}

/// A hedged PUT: both attempts carry the same body, byte-identical, and the loser (cancelled)
/// is charged nothing.
#[test]
fn a_hedged_put_sends_the_same_body_twice() {
    run(|snap| async move {
        let log: Log = Arc::default();
        let mk = |answer: bool, log: Log| {
            move |_, mut socket: TcpStream| {
                let log = log.clone();
                async move {
                    let mut pending = Vec::new();
                    while let Some(head) = read_head(&mut socket, &mut pending).await {
                        let head = String::from_utf8_lossy(&head).into_owned();
                        let (body, complete) =
                            read_body(&mut socket, &mut pending, &head, usize::MAX).await;
                        log.lock().unwrap().push(Seen {
                            head,
                            body,
                            complete,
                        });
                        if !answer {
                            hold(socket).await;
                            return;
                        }
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            }
        };
        let (a, _) = serve(mk(false, log.clone())).await;
        let (b, _) = serve(mk(false, log.clone())).await;
        let client = quiet_client(&[a, b], "hedgeput")
            .hedge({
                let mut c = meshless::hedge::HedgeConfig::default();
                c.delay = meshless::hedge::HedgeDelay::Fixed(ms(50));
                c.min_per_second = 1000.0;
                c
            })
            .build()
            .unwrap();
        let data = pattern(40_000);
        let req = Request::put("/doc")
            .body(http_body_util::Full::new(Bytes::from(data.clone())))
            .unwrap();
        assert!(timeout(ms(400), client.request(req)).await.is_err());
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "a hedge was sent");
        for s in &seen {
            assert!(s.complete);
            assert!(s.body == data, "byte-identical");
        }
        let v = settle_and_check(&client, &snap, "hedgeput").await;
        report(&v, &client, &snap);
        assert_eq!(endpoint_failures(&client), 0);
    })
}

/// A port nothing listens on.
async fn dead_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A body larger than the replay cap, to a refused port beside a healthy one: a refused
/// connection is one nothing reached (README: "sent again for every request"), and the body
/// was never read, so the request may go to the other endpoint. Observed, not a contract
/// breach if it fails: the cap may forbid it. The control with a small body must succeed.
#[test]
fn a_refused_connection_with_a_small_body_goes_elsewhere() {
    run(|snap| async move {
        let (ok, log) = recording_server().await;
        let dead = dead_port().await;
        let client = quiet_client(&[dead, ok], "refused").build().unwrap();
        for _ in 0..8 {
            let res = timeout(BOUND, client.post("/small", vec![b's'; 1000]))
                .await
                .expect("no hang")
                .expect("refused connections are retried elsewhere");
            assert_eq!(res.status(), 200);
            let _ = drain(res.into_body()).await;
        }
        assert!(
            log.lock()
                .unwrap()
                .iter()
                .all(|s| s.complete && s.body.len() == 1000)
        );
        let v = settle_and_check(&client, &snap, "refused").await;
        report(&v, &client, &snap);
    })
}

/// A PUT whose streamed body fails after its first chunk was sent: the caller's fault, not
/// retried (it would fail again), not charged to the endpoint.
#[test]
fn a_put_body_failing_midstream_is_not_retried() {
    run(|snap| async move {
        let (addr, log) = recording_server().await;
        let client = quiet_client(&[addr], "failput").build().unwrap();
        let (tx, body) = chan_body(SizeHint::new());
        tx.send(Ok(Bytes::from(vec![b'a'; 5000]))).unwrap();
        let feeder = tokio::spawn(async move {
            sleep(ms(50)).await;
            let _ = tx.send(Err(std::io::Error::other("the caller's disk failed")));
            tx
        });
        let req = Request::put("/doc").body(body).unwrap();
        let err = timeout(BOUND, client.request(req))
            .await
            .expect("no hang")
            .expect_err("the body failed");
        let _tx = feeder.await.unwrap();
        assert_eq!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
        assert_eq!(err.attempts(), 1, "{}", chain(&err));
        assert!(wait_until(BOUND, || log.lock().unwrap().len() == 1).await);
        sleep(ms(50)).await;
        assert_eq!(log.lock().unwrap().len(), 1, "sent once");
        assert_eq!(endpoint_failures(&client), 0, "{:?}", client.endpoints());
        let v = settle_and_check(&client, &snap, "failput").await;
        report(&v, &client, &snap);
    })
}

/// The same over a body larger than the replay cap to a refused port beside a healthy one.
/// Reported as observed: with the body never read, a second endpoint could take it.
#[test]
fn observe_a_refused_connection_with_a_large_body() {
    run(|snap| async move {
        let (ok, _log) = recording_server().await;
        let dead = dead_port().await;
        let client = quiet_client(&[dead, ok], "refusedbig").build().unwrap();
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            let out = timeout(BOUND, client.post("/big", vec![b'b'; 100 * 1024]))
                .await
                .expect("no hang");
            outcomes.push(match out {
                Ok(res) => format!("{}", res.status()),
                Err(e) => format!("{:?}", e.kind()),
            });
        }
        eprintln!("large body via a refused endpoint: {outcomes:?}");
        let v = settle_and_check(&client, &snap, "refusedbig").await;
        report(&v, &client, &snap);
    })
}

/// A body whose every byte (and, for the chunked one, its end) arrived well inside the
/// deadline, which the caller reads slowly: its last poll comes after the deadline. The server
/// did nothing wrong: the endpoint is not charged, and the request is no failure (README:
/// "a frame read after the deadline ... make it `cancelled`").
#[test]
fn a_complete_body_polled_after_the_deadline_charges_no_endpoint() {
    run(|snap| async move {
        let (addr, _conns) = serve(move |_, mut socket| async move {
            let mut pending = Vec::new();
            while let Some(head) = read_head(&mut socket, &mut pending).await {
                let head = String::from_utf8_lossy(&head).into_owned();
                let reply: &[u8] = if head.contains("/chunked") {
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                };
                let _ = socket.write_all(reply).await;
            }
        })
        .await;
        let client = client_for(&[addr], "slowtail")
            .deadline(ms(300))
            .build()
            .unwrap();
        let mut ends = Vec::new();
        for path in ["/length", "/chunked"] {
            let res = client.get(path).await.unwrap();
            let mut body = res.into_body();
            let first = body.frame().await.expect("a frame").expect("data");
            assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"ok"[..]));
            sleep(ms(500)).await; // past the deadline, every byte long received
            let end = timeout(BOUND, body.frame()).await.expect("no hang");
            ends.push(format!(
                "{path}: {:?}",
                end.map(|f| f.map(|_| ()).map_err(|e| chain(&*e)))
            ));
        }
        let v = settle_and_check(&client, &snap, "slowtail").await;
        report(&v, &client, &snap);
        let s = client.stats();
        assert_eq!(
            endpoint_failures(&client),
            0,
            "{ends:?} {:?}",
            client.endpoints()
        );
        assert_eq!(s.failures, 0, "{ends:?} {s:?}");
    })
}

/// An HTTP/2 server: `/hold` never answers; `/drip` answers a head and one chunk, then stays
/// open; `/stall` answers a head and nothing more; anything else `ok`. Each request's body is
/// read to its end first.
async fn h2_server() -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_string();
                        let _ = req.into_body().collect().await;
                        let (tx, body) = chan_body(SizeHint::new());
                        match path.as_str() {
                            "/hold" => sleep(Duration::from_secs(60)).await,
                            "/drip" => {
                                tx.send(Ok(Bytes::from_static(b"abc"))).unwrap();
                                tokio::spawn(async move {
                                    sleep(Duration::from_secs(60)).await;
                                    drop(tx);
                                });
                            }
                            "/stall" => {
                                tokio::spawn(async move {
                                    sleep(Duration::from_secs(60)).await;
                                    drop(tx);
                                });
                            }
                            _ => {
                                tx.send(Ok(Bytes::from_static(b"ok"))).unwrap();
                            }
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(body))
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    addr
}

/// Over HTTP/2: futures dropped while the server holds the stream, bodies dropped after a
/// first chunk: no failure, no ejection, the breaker closed, nothing in flight. And a stalled
/// body ends at the deadline with `DeadlineExceeded`, charged to the endpoint.
#[test]
fn h2_cancellations_and_a_stalled_body() {
    run(|snap| async move {
        let addr = h2_server().await;
        let client = client_for(&[addr], "h2cancel")
            .http2_prior_knowledge(true)
            .deadline(ms(800))
            .limit({
                let mut c = meshless::limit::LimitConfig::default();
                c.algorithm = meshless::limit::Algorithm::Fixed { max: 8 };
                c
            })
            .build()
            .unwrap();
        const N: u64 = 8;
        for i in 0..N {
            let fut = if i % 2 == 0 {
                client.get("/hold")
            } else {
                client.post("/hold", vec![b'p'; 3000])
            };
            assert!(timeout(ms(100), fut).await.is_err());
        }
        for _ in 0..N {
            let res = client.get("/drip").await.unwrap();
            let mut body = res.into_body();
            let f = timeout(BOUND, body.frame()).await.expect("a chunk");
            assert!(f.is_some());
            drop(body);
        }
        let e = &client.endpoints()[0];
        assert_eq!((e.failures, e.ejections), (0, 0), "{e:?}");
        assert_eq!(client.breaker().stats().state, BreakerState::Closed);

        let started = tokio::time::Instant::now();
        let res = client.get("/stall").await.unwrap();
        let (_bytes, end) = drain(res.into_body()).await;
        let took = started.elapsed();
        let err = end.expect("the deadline ends it");
        assert_eq!(
            meshless_kind(&*err),
            Some(Kind::DeadlineExceeded),
            "{}",
            chain(&*err)
        );
        assert!(took >= ms(790) && took < ms(2000), "{took:?}");
        let v = settle_and_check(&client, &snap, "h2cancel").await;
        report(&v, &client, &snap);
        let s = client.stats();
        assert_eq!((s.cancelled, s.failures), (N, 1), "{s:?}");
        let e = &client.endpoints()[0];
        assert_eq!(e.failures, 1, "{e:?}");
        let res = client.get("/ok").await.expect("still served");
        assert_eq!(res.status(), 200);
    })
}

/// The short body of `a_body_shorter_than_its_declared_length_is_the_callers_fault` over
/// HTTP/2: the caller's bug, counted against no endpoint.
#[test]
fn h2_a_body_shorter_than_its_declared_length_is_the_callers_fault() {
    run(|snap| async move {
        let addr = h2_server().await;
        let client = client_for(&[addr], "h2short")
            .http2_prior_knowledge(true)
            .deadline(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut outcomes = Vec::new();
        // FINDING: over HTTP/2 the server resets the stream (PROTOCOL_ERROR: DATA short of
        // content-length), and each such request is charged to the endpoint as a failure
        // (`Kind::Service`, "stream error received: unspecific protocol error detected").
        for _ in 0..3 {
            let req = Request::post("/ok")
                .body(chunks(vec![vec![b'x'; 10]], SizeHint::with_exact(100)))
                .unwrap();
            let out = timeout(BOUND, client.request(req)).await.expect("no hang");
            outcomes.push(match out {
                Ok(res) => format!("{}", res.status()),
                Err(e) => format!("{:?}: {}", e.kind(), chain(&e)),
            });
        }
        let v = settle_and_check(&client, &snap, "h2short").await;
        report(&v, &client, &snap);
        assert_eq!(
            endpoint_failures(&client),
            0,
            "{outcomes:#?} {:?}",
            client.endpoints()
        );
    })
}
