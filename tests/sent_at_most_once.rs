//! Requests that may have reached the server are sent at most once, and failing servers are
//! charged, where the connection's own signals mislead: hyper's "dispatch task is gone" (an
//! HTTP/2 request whose HEADERS left just before a graceful `GOAWAY` was read; an HTTP/1.1
//! request written on a connection whose runtime shut down; requests queued on a hung HTTP/2
//! server) proves nothing about whether the request was written; and body bytes that begin
//! like a method (`SELECT 1;`) after an interim or early answer are no new request on a reused
//! connection, while an extension method (`BASELINE-CONTROL`) on an idle-closed one still is.

#[path = "common/mod.rs"]
mod common;

use common::frames::{
    GOAWAY, HEADERS, ONE_STREAM, PING, SETTINGS, accept_preface, frame, read_frame,
};

use bytes::Bytes;
use http_body_util::BodyExt;
use meshless::backoff::Backoff;
use meshless::http::Client;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

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

fn stats_line(client: &Client) -> String {
    let s = client.stats();
    let e = client.endpoints();
    format!(
        "requests {} ok {} fail {} retries {} stale {} | endpoints (req, fail, cancelled) {:?}",
        s.requests,
        s.successes,
        s.failures,
        s.retries,
        s.stale_resends,
        e.iter()
            .map(|e| (e.requests, e.failures, e.cancelled))
            .collect::<Vec<_>>()
    )
}

// ---------------------------------------------------------------------------------------------
// (a) HTTP/2: DispatchGone for a request whose HEADERS were written.

fn goaway(last: u32, code: u32) -> Vec<u8> {
    let mut p = last.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    frame(GOAWAY, 0, 0, &p)
}

/// SETTINGS_MAX_CONCURRENT_STREAMS = 1. Connection 0: GET A (stream 1) is held until B is
/// queued in the client; then ONE write carries A's answer (freeing the slot) followed by the
/// first GOAWAY of a graceful shutdown (last = 2^31-1, NO_ERROR, as the h2 crate's and hyper's
/// servers send it). Every HEADERS that reaches the server is logged as (conn, stream);
/// streams after A on connection 0 are answered 200 (the server processed them), then the
/// final GOAWAY(last = that stream). Later connections answer everything.
async fn graceful_goaway_server(
    second_goaway: Vec<u8>,
) -> (SocketAddr, Arc<Mutex<Vec<(usize, u32)>>>, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
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
            let second_goaway = second_goaway.clone();
            tokio::spawn(async move {
                if !accept_preface(&mut tcp, ONE_STREAM).await {
                    return;
                }
                while let Some((kind, flags, stream, payload)) = read_frame(&mut tcp).await {
                    match kind {
                        SETTINGS if flags & 1 == 0 => {
                            let _ = tcp.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                        }
                        PING if flags & 1 == 0 => {
                            let _ = tcp.write_all(&frame(PING, 1, 0, &payload)).await;
                        }
                        HEADERS => {
                            log.lock().unwrap().push((conn, stream));
                            if conn == 0 && stream == 1 {
                                bs.notified().await;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                let mut out = frame(HEADERS, 0x4 | 0x1, 1, &[0x88]);
                                out.extend_from_slice(&goaway(0x7fff_ffff, 0));
                                let _ = tcp.write_all(&out).await;
                            } else {
                                // Processed and answered.
                                let _ = tcp
                                    .write_all(&frame(HEADERS, 0x4 | 0x1, stream, &[0x88]))
                                    .await;
                                if conn == 0 {
                                    let _ = tcp.write_all(&second_goaway).await;
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                    return;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, log, b_started)
}

async fn poll_once<F: Future + Unpin>(mut f: F) -> Option<F::Output> {
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

async fn post_written_then_goaway(second_goaway: Vec<u8>) {
    let (addr, log, b_started) = graceful_goaway_server(second_goaway).await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .deadline(Duration::from_secs(5))
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let a = client.get("http://svc/a");
    let b = async {
        while log.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let f = client.post("http://svc/b", "");
        tokio::pin!(f);
        let first = poll_once(f.as_mut()).await;
        b_started.notify_one();
        match first {
            Some(r) => r,
            None => f.await,
        }
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(8), async { tokio::join!(a, b) })
        .await
        .expect("no hang");
    // Let the server read what reached it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heads = log.lock().unwrap().clone();
    let a = a.map(|r| r.status().as_u16()).map_err(|e| chain(&e));
    let b = b.map(|r| r.status().as_u16()).map_err(|e| chain(&e));
    let posts = heads.iter().filter(|h| **h != (0, 1)).count();
    println!(
        "A {a:?}\nB {b:?}\nheads (conn, stream) {heads:?}\n{}",
        stats_line(&client)
    );
    assert_eq!(
        posts, 1,
        "the POST's HEADERS reached the server {posts} times: {heads:?}"
    );
}

/// The graceful shutdown of an h2-crate server (GOAWAY(2^31-1) first): B's HEADERS leave the
/// client, then the GOAWAY is read before hyper's dispatch task takes B up again: hyper drops
/// B's callback ("dispatch task is gone"), and the POST the server processed must not be sent
/// a second time on a new connection.
#[tokio::test]
async fn a_post_written_before_a_graceful_goaway_is_read_is_not_sent_twice() {
    post_written_then_goaway(goaway(3, 0)).await;
}

/// (a) The same when the server then ends with an error GOAWAY covering B (it processed B).
#[tokio::test]
async fn a_post_written_before_a_graceful_goaway_then_final_error_goaway() {
    post_written_then_goaway(goaway(3, 2)).await;
}

// ---------------------------------------------------------------------------------------------
// (a) HTTP/1.1: DispatchGone for a request written when the connection's task is dropped
// (its runtime shut down): a connection made on one runtime, reused by a caller on another.

#[test]
fn a_post_written_on_a_connection_whose_runtime_shuts_down_is_not_sent_twice() {
    runtime_shutdown();
}

fn runtime_shutdown() {
    let rt_server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let posts = Arc::new(Mutex::new(Vec::<usize>::new()));
    let p = posts.clone();
    let got_post = Arc::new(Notify::new());
    let gp = got_post.clone();
    let addr = rt_server.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut conns = 0;
            while let Ok((mut tcp, _)) = listener.accept().await {
                let conn = conns;
                conns += 1;
                let (p, gp) = (p.clone(), gp.clone());
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    while let Some(head) = common::read_head(&mut tcp, &mut pending).await {
                        if head.starts_with(b"POST") {
                            p.lock().unwrap().push(conn);
                            gp.notify_one();
                            if conn == 0 {
                                // Processing; slow.
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                        }
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        });
        addr
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_secs(8))
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    // Runtime 1 makes the connection (its task lives there).
    let rt1 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt1.block_on(async {
        let r = client.get("/warm").await.unwrap();
        r.into_body().collect().await.unwrap();
    });
    // Keep runtime 1 running on a thread so its connection task is alive.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let t1 = std::thread::spawn(move || {
        rt1.block_on(async {
            loop {
                if stop_rx.try_recv().is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        // Dropping rt1 drops its tasks: the connection's dispatch task among them.
        drop(rt1);
    });
    // Runtime 2 sends a POST: the pool hands it the connection of runtime 1.
    let rt2 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c2 = client.clone();
    let gp2 = got_post.clone();
    let result = rt2.block_on(async move {
        let call = tokio::spawn(async move {
            match c2.post("/order", "x").await {
                Ok(r) => Ok(r.status().as_u16()),
                Err(e) => Err(chain(&e)),
            }
        });
        gp2.notified().await;
        stop_tx.send(()).unwrap();
        call.await.unwrap()
    });
    t1.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let posts = posts.lock().unwrap().clone();
    println!(
        "POST: {result:?}; POST heads by connection {posts:?}; {}",
        stats_line(&client)
    );
    assert_eq!(
        posts.len(),
        1,
        "the POST reached the server {} times",
        posts.len()
    );
}

// ---------------------------------------------------------------------------------------------
// (c) Body bytes after answer bytes that look like a request line.

const BOUND: Duration = Duration::from_secs(8);

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

/// A server that answers each head with `first`, waits, then resets.
async fn early_then_reset(first: &'static [u8]) -> (SocketAddr, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                if common::read_head(&mut tcp, &mut pending).await.is_none() {
                    return;
                }
                *h.lock().unwrap() += 1;
                let _ = tcp.write_all(first).await;
                tokio::time::sleep(Duration::from_millis(600)).await;
                let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            });
        }
    });
    (addr, hits)
}

async fn streamed_put(first: &'static [u8], second: &'static [u8]) {
    let (addr, hits) = early_then_reset(first).await;
    let c = Client::builder()
        .endpoints([addr.to_string()])
        .backoff(Backoff::none())
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"first part;")).unwrap();
    let len = (11 + second.len()) as u64;
    let req = http::Request::put("/upload")
        .header("expect", "100-continue")
        .body(ChanBody(rx, Some(len)))
        .unwrap();
    let call = tokio::spawn(async move {
        let r = tokio::time::timeout(BOUND, c.request(req))
            .await
            .expect("no hang");
        (r.map(|r| r.status().as_u16()).map_err(|e| chain(&e)), c)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Bytes::from_static(second)).unwrap();
    drop(tx);
    let (end, c) = call.await.unwrap();
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    let puts = *hits.lock().unwrap();
    println!("{end:?}\nputs {puts}; {}", stats_line(&c));
    assert!(
        !end.as_ref().err().is_some_and(|e| e.contains("stale")),
        "a fresh connection that answered is taken for a stale keep-alive one: {end:?}"
    );
    assert_eq!(failures as usize, puts, "{}", stats_line(&c));
}

/// (c) Control: lowercase body after `100 Continue`: charged.
#[tokio::test]
async fn control_lowercase_body_after_100_continue_then_reset_is_charged() {
    streamed_put(b"HTTP/1.1 100 Continue\r\n\r\n", b"second part").await;
}

/// (c) A body (SQL, upper-case text) written after `100 Continue` on a FRESH connection, then
/// a reset: taken for a new request on a reused connection, so a stale connection.
#[tokio::test]
async fn an_sql_body_after_100_continue_then_reset_is_charged() {
    streamed_put(b"HTTP/1.1 100 Continue\r\n\r\n", b"SELECT 1;").await;
}

/// (c) The same after an early status line.
#[tokio::test]
async fn an_sql_body_after_an_early_status_line_then_reset_is_charged() {
    streamed_put(b"HTTP/1.1 200 OK\r\n", b"INSERT INTO t VALUES (1);").await;
}

// ---------------------------------------------------------------------------------------------
// (c) Regression: a real new request whose method token is not `[A-Z]{3,} ` on a reused
// connection the server had closed is no longer the stale shape.

/// A keep-alive server: answers the first request on each connection, then closes (FIN)
/// after 100 ms, as an idle timeout does; the client reuses the connection after 300 ms.
async fn answer_once_then_idle_close() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let h = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let Some(head) = common::read_head(&mut tcp, &mut pending).await else {
                    return;
                };
                h.lock().unwrap().push(
                    String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                );
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Idle timeout: FIN, and nothing read after.
                let _ = tcp.shutdown().await;
                drop(tcp);
            });
        }
    });
    (addr, heads)
}

async fn reuse_after_idle_close(method: &str) {
    let (addr, heads) = answer_once_then_idle_close().await;
    let c = Client::builder()
        .endpoints([addr.to_string()])
        .backoff(Backoff::none())
        .deadline(Duration::from_secs(3))
        .metrics(false)
        .build()
        .unwrap();
    let r = c.get("/warm").await.unwrap();
    r.into_body().collect().await.unwrap();
    // Reuse before hyper notices the FIN: race the idle close with a request written at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let req = http::Request::builder()
        .method(method)
        .uri("/x")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let end = c
        .request(req)
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| chain(&e));
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!(
        "{method}: {end:?}\nheads {:?}\n{}",
        heads.lock().unwrap(),
        stats_line(&c)
    );
    assert_eq!(
        failures,
        0,
        "a stale keep-alive connection charged to the endpoint: {}",
        stats_line(&c)
    );
}

/// Control: `GET` on the stale connection.
#[tokio::test]
async fn control_get_on_an_idle_closed_connection() {
    reuse_after_idle_close("GET").await;
}

/// A WebDAV method with a hyphen (`BASELINE-CONTROL`, RFC 3253), same shape.
#[tokio::test]
async fn a_hyphenated_method_on_an_idle_closed_connection() {
    reuse_after_idle_close("BASELINE-CONTROL").await;
}

// ---------------------------------------------------------------------------------------------
// (b) HTTP/2 keep-alive timeout of a hung server: a request queued for a stream gets
// DispatchGone, which is now charged to nobody.

/// A hung HTTP/2 server: SETTINGS_MAX_CONCURRENT_STREAMS = 1, acks the client's SETTINGS,
/// then reads and ignores everything (no answers, no PING acks).
async fn hung_h2_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !accept_preface(&mut tcp, ONE_STREAM).await {
                    return;
                }
                while let Some((kind, flags, _, _)) = read_frame(&mut tcp).await {
                    if kind == SETTINGS && flags & 1 == 0 {
                        let _ = tcp.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn requests_queued_on_a_hung_h2_server_are_charged_at_keepalive_timeout() {
    let addr = hung_h2_server().await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .http2_keepalive(Some(Duration::from_millis(200)))
        .http2_keepalive_timeout(Duration::from_millis(200))
        .deadline(Duration::from_secs(10))
        .max_retries(0)
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let a = client.post("http://svc/a", "a");
    let b = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.post("http://svc/b", "b").await
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(12), async { tokio::join!(a, b) })
        .await
        .expect("no hang");
    let a = a.map(|r| r.status().as_u16()).map_err(|e| chain(&e));
    let b = b.map(|r| r.status().as_u16()).map_err(|e| chain(&e));
    let failures: u64 = client.endpoints().iter().map(|e| e.failures).sum();
    println!("A {a:?}\nB {b:?}\n{}", stats_line(&client));
    assert_eq!(
        failures,
        2,
        "both attempts ended on the hung server's keep-alive timeout: {}",
        stats_line(&client)
    );
}
