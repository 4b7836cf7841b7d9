//! HTTP/1.1 framing and connection edges of `meshless::http::Client`, against raw TCP servers
//! on 127.0.0.1:0 that write their answers byte by byte: bodies cut short or framed twice,
//! early answers to uploads, interim answers, HTTP/1.0, stray bytes after bodiless answers, and
//! which of those are the stale keep-alive shape (a reused connection that ends before any
//! byte of its answer) and which are the endpoint's failure. Real clock, short real
//! deadlines, generous bounds; every case checks that the client's books balance.

#[path = "common/mod.rs"]
mod common;

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

// ------------------------------------------------------------------------------------------
// Probes
// ------------------------------------------------------------------------------------------

/// Broken chunked bodies ended with a clean FIN (not RST): typed errors, never a truncated
/// success; a GET whose head came is never sent again.
#[tokio::test]
async fn chunked_bodies_cut_by_a_clean_close_are_typed_errors_and_never_resent() {
    let cases: Vec<(&str, &[u8])> = vec![
        (
            "no-last-chunk",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        ),
        (
            "mid-chunk",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nabc",
        ),
        (
            "bad-size",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
        ),
        (
            "short-cl",
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc",
        ),
    ];
    for (name, answer) in cases {
        let s = serve(Arc::new(move |_, _, _| vec![w(answer), Step::Fin])).await;
        let c = builder(s.addr).build().unwrap();
        let end = finish(c.get("/x")).await;
        match &end {
            End::Body(200, _, Some(_), _) => {}
            other => panic!("{name}: expected a typed body error, got {other:?}"),
        }
        assert_eq!(
            s.hits(),
            1,
            "{name}: the GET whose head came was sent again"
        );
        let st = c.stats();
        assert_eq!(
            (st.successes, st.failures),
            (0, 1),
            "{name}: {}",
            stats_line(&c)
        );
        books(&c);
    }
}

/// The last chunk came but its terminating CRLF did not: all data is there, the message
/// is not complete.
#[tokio::test]
async fn a_last_chunk_without_its_final_crlf_then_close() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"),
            Step::Fin,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let end = finish(c.get("/x")).await;
    println!("last chunk without CRLF: {end:?}; {}", stats_line(&c));
    match end {
        End::Ok(200, b) => assert_eq!(&b[..], b"abc"),
        End::Body(200, _, Some(_), _) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.hits(), 1);
    books(&c);
}

/// A close-delimited HTTP/1.1 body (no length, no chunked) is read whole to the close.
#[tokio::test]
async fn a_close_delimited_http11_body_is_read_whole() {
    let mut answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n".to_vec();
    answer.extend(std::iter::repeat_n(b'z', 200_000));
    let s = serve(Arc::new(move |n, _, _| match n {
        0 => vec![Step::W(answer.clone()), Step::Fin],
        _ => vec![w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    match finish(c.get("/x")).await {
        End::Ok(200, b) => assert_eq!(b.len(), 200_000),
        other => panic!("{other:?}"),
    }
    match finish(c.get("/y")).await {
        End::Ok(200, b) => assert_eq!(&b[..], b"ok"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.conns(), 2);
    let st = c.stats();
    assert_eq!(
        (st.successes, st.failures, st.retries),
        (2, 0, 0),
        "{}",
        stats_line(&c)
    );
    books(&c);
}

/// Transfer-Encoding and Content-Length together: chunked wins (RFC 9112 §6.3), and the next
/// request on the client gets its own answer, never the leftovers.
#[tokio::test]
async fn transfer_encoding_with_content_length_never_desyncs_the_next_answer() {
    let answers: Vec<&'static [u8]> = vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 50\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for first in answers {
        let s = serve(Arc::new(move |n, _, _| match n {
            0 => vec![w(first)],
            _ => vec![w(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond")],
        }))
        .await;
        let c = builder(s.addr).build().unwrap();
        let a = finish(c.get("/a")).await;
        let b = finish(c.get("/b")).await;
        println!("TE+CL: {a:?} then {b:?}; conns {}", s.conns());
        match a {
            End::Ok(200, body) => assert_eq!(&body[..], b"hello"),
            End::Head(..) | End::Body(..) => {}
            other => panic!("{other:?}"),
        }
        match b {
            End::Ok(200, body) => assert_eq!(&body[..], b"second"),
            other => panic!("second request: {other:?}"),
        }
        books(&c);
    }
}

/// Content-Length repeated with the same value (RFC 9110 §8.6 allows a recipient to accept
/// it): read, or a typed error; never a hang or a wrong body.
#[tokio::test]
async fn a_repeated_identical_content_length() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok"[..],
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok"[..],
    ] {
        let s = serve(Arc::new(move |_, _, _| vec![w(answer)])).await;
        let c = builder(s.addr).build().unwrap();
        let end = finish(c.get("/x")).await;
        println!("repeated CL: {end:?}");
        match end {
            End::Ok(200, b) => assert_eq!(&b[..], b"ok"),
            End::Head(..) => {}
            other => panic!("{other:?}"),
        }
        books(&c);
    }
}

/// HEAD and 304 answered with `transfer-encoding: chunked` and no body: no hang, and the
/// keep-alive connection carries the next GET's own answer.
#[tokio::test]
async fn head_and_304_with_chunked_framing_carry_no_body() {
    let s = serve(Arc::new(|_, _, head: &str| {
        if head.starts_with("HEAD") {
            vec![w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")]
        } else if head.contains("/304") {
            vec![w(
                b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
            )]
        } else {
            vec![w(OK)]
        }
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::head("/h")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    match finish(c.request(req)).await {
        End::Ok(200, b) => assert!(b.is_empty()),
        other => panic!("HEAD {other:?}"),
    }
    match finish(c.get("/304")).await {
        End::Ok(304, b) => assert!(b.is_empty()),
        other => panic!("304 {other:?}"),
    }
    match finish(c.get("/after")).await {
        End::Ok(200, b) => assert_eq!(&b[..], b"ok"),
        other => panic!("after {other:?}"),
    }
    assert_eq!(s.conns(), 1, "{:?}", s.heads());
    books(&c);
}

/// A HEAD answered with body bytes that form a complete answer, followed at once by a POST
/// on the same client: the POST never takes the stray bytes for its answer.
#[tokio::test]
async fn stray_bytes_after_a_head_answer_are_never_a_posts_answer() {
    let s = serve(Arc::new(|_, _, head: &str| {
        if head.starts_with("HEAD") {
            vec![w(
                b"HTTP/1.1 200 OK\r\ncontent-length: 44\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 6\r\n\r\nstolen",
            )]
        } else {
            vec![Step::ReadBody, w(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")]
        }
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::head("/h")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let _ = finish(c.request(req)).await;
    let end = finish(c.post("/p", "x")).await;
    println!(
        "POST after HEAD with stray bytes: {end:?}; heads {:?}",
        s.heads()
    );
    match end {
        End::Ok(200, b) => assert_eq!(&b[..], b"fresh"),
        End::Ok(s, b) => panic!("desync: the POST got {s} {b:?}"),
        _ => {}
    }
    let posts = s
        .heads()
        .iter()
        .filter(|(_, h)| h.starts_with("POST"))
        .count();
    assert!(posts <= 1, "POST sent {posts} times");
    books(&c);
}

/// An interim 103 then a clean close on a fresh connection: the GET is sent again (it is
/// idempotent) and answered; a POST is sent once and ends with a typed error.
#[tokio::test]
async fn an_interim_answer_then_a_close() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 | 2 => vec![
            w(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"),
            Step::Fin,
        ],
        _ => vec![Step::ReadBody, w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let get = finish(c.get("/g")).await;
    println!("GET: {get:?}; {}", stats_line(&c));
    assert!(matches!(get, End::Ok(200, _)), "{get:?}");
    // A fresh connection for the POST: hits 2 answers 103 and closes.
    let post = finish(c.post("/p", "order")).await;
    println!("POST: {post:?}; heads {:?}", s.heads());
    let posts = s
        .heads()
        .iter()
        .filter(|(_, h)| h.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "{post:?}");
    assert!(matches!(post, End::Head(..)), "{post:?}");
    books(&c);
}

/// An early complete 200 to a large POST, before its body was read, then the server closes
/// (the unread body makes it a reset): answered or a typed error, and sent once; on a fresh
/// and on a reused connection.
#[tokio::test]
async fn an_early_200_to_a_large_post_then_close_is_sent_once() {
    for reused in [false, true] {
        for end in [Step::Drop, Step::Fin] {
            let end2 = end.clone();
            let s = serve(Arc::new(move |_, _, head: &str| {
                if head.starts_with("GET") {
                    vec![w(OK)]
                } else {
                    vec![w(OK), end2.clone()]
                }
            }))
            .await;
            let c = builder(s.addr).build().unwrap();
            if reused {
                let _ = finish(c.get("/warm")).await;
            }
            let big = Bytes::from(vec![b'x'; 8 << 20]);
            let outcome = finish(c.post("/upload", big)).await;
            let posts = s
                .heads()
                .iter()
                .filter(|(_, h)| h.starts_with("POST"))
                .count();
            println!(
                "early 200 reused={reused} end={end:?}: {outcome:?}; posts {posts}; {}",
                stats_line(&c)
            );
            assert_eq!(posts, 1, "reused={reused} {end:?}: {outcome:?}");
            books(&c);
        }
    }
}

/// Same for a PUT (idempotent): it may be sent again, but only as counted.
#[tokio::test]
async fn an_early_200_to_a_large_put_then_reset() {
    let s = serve(Arc::new(|_, _, head: &str| {
        if head.starts_with("GET") {
            vec![w(OK)]
        } else {
            vec![w(OK), Step::Rst]
        }
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let _ = finish(c.get("/warm")).await;
    let req = http::Request::put("/upload")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 8 << 20])))
        .unwrap();
    let outcome = finish(c.request(req)).await;
    let puts = s
        .heads()
        .iter()
        .filter(|(_, h)| h.starts_with("PUT"))
        .count();
    println!(
        "early 200 PUT: {outcome:?}; puts {puts}; {}",
        stats_line(&c)
    );
    let st = c.stats();
    assert_eq!(
        puts as u64,
        1 + st.retries + st.stale_resends,
        "attempts must be requests + retries + stale_resends"
    );
    books(&c);
}

/// HTTP/1.0 answers: without `keep-alive` the connection is not used again.
#[tokio::test]
async fn http10_answers_close_unless_kept_alive() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![w(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")],
        // Hit 1 on the same connection would be a client that reused an HTTP/1.0 connection.
        _ => vec![
            w(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nOK"),
            Step::Fin,
        ],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let a = finish(c.get("/a")).await;
    let b = finish(c.get("/b")).await;
    println!("HTTP/1.0: {a:?} {b:?} heads {:?}", s.heads());
    assert!(matches!(b, End::Ok(200, _)));
    let heads = s.heads();
    assert_ne!(heads[0].0, heads[1].0, "an HTTP/1.0 connection was reused");
    books(&c);
}

/// A body cut by the deadline: the connection, with the rest of that body still to come,
/// never carries the next request.
#[tokio::test]
async fn a_body_cut_by_the_deadline_never_leaves_its_connection_to_the_next_request() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234"),
            Step::Sleep(600),
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstolen"),
        ],
        _ => vec![w(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")],
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_millis(200))
        .build()
        .unwrap();
    let start = Instant::now();
    let a = finish(c.get("/slow")).await;
    let took = start.elapsed();
    assert!(
        matches!(a, End::Body(200, _, Some(Kind::DeadlineExceeded), _)),
        "{a:?}"
    );
    assert!(took < Duration::from_millis(700), "ended after {took:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let c2 = c.clone();
    let b = finish(c2.get("/next")).await;
    println!("after a deadline cut: {b:?}; {}", stats_line(&c));
    match b {
        End::Ok(200, body) => assert_eq!(&body[..], b"fresh"),
        other => panic!("{other:?}"),
    }
    books(&c);
}

/// The attempt timeout bounds an attempt until its answer's head: a body that comes slowly
/// after it is the caller's answer, bounded by the deadline (a committed answer cannot be
/// retried, so cutting it at the attempt's limit could only turn it into a failure).
#[tokio::test]
async fn the_attempt_timeout_ends_at_the_head_and_the_deadline_bounds_the_body() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"),
            Step::Drip(vec![b'a'; 10], 50),
        ]
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_secs(5))
        .attempt_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let end = finish(c.get("/drip")).await;
    assert!(
        matches!(&end, End::Ok(200, body) if body.len() == 10),
        "{end:?}"
    );
    assert_eq!(s.hits(), 1, "{}", stats_line(&c));
    books(&c);

    let c = builder(s.addr)
        .deadline(Duration::from_millis(250))
        .build()
        .unwrap();
    let start = Instant::now();
    let end = finish(c.get("/drip")).await;
    let took = start.elapsed();
    assert!(
        matches!(end, End::Body(200, _, Some(Kind::DeadlineExceeded), _)),
        "{end:?}"
    );
    assert!(
        took < Duration::from_millis(750),
        "deadline extended: {took:?}"
    );
    books(&c);
}

/// A retryable answer (500 to a GET) whose body stalls: the retry does not wait on that body.
#[tokio::test]
async fn a_retryable_answer_with_a_stalled_body_does_not_hold_the_retry() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![
            w(b"HTTP/1.1 500 Oops\r\ncontent-length: 100\r\n\r\nabc"),
            Step::Hold,
        ],
        _ => vec![w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let start = Instant::now();
    let end = finish(c.get("/r")).await;
    let took = start.elapsed();
    println!(
        "500 stalled then 200: {end:?} after {took:?}; {}",
        stats_line(&c)
    );
    assert!(matches!(end, End::Ok(200, _)), "{end:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    books(&c);
}

/// A 503 with Retry-After to a POST, its body stalled: the POST is sent again (the server
/// said it did not act), once, and the stalled body does not hold it.
#[tokio::test]
async fn a_503_retry_after_with_a_stalled_body_to_a_post() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![
            Step::ReadBody,
            w(b"HTTP/1.1 503 Busy\r\nretry-after: 0\r\ncontent-length: 100\r\n\r\nabc"),
            Step::Hold,
        ],
        _ => vec![Step::ReadBody, w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let start = Instant::now();
    let end = finish(c.post("/p", "order")).await;
    let took = start.elapsed();
    println!(
        "503 RA stalled then 200: {end:?} after {took:?}; {}",
        stats_line(&c)
    );
    assert!(matches!(end, End::Ok(200, _)), "{end:?}");
    assert_eq!(s.hits(), 2);
    books(&c);
}

/// A chunk extension that never ends: bounded, a typed error.
#[tokio::test]
async fn an_endless_chunk_extension_is_a_typed_error() {
    let mut answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;".to_vec();
    answer.extend(std::iter::repeat_n(b'a', 4 << 20));
    let s = serve(Arc::new(move |_, _, _| {
        vec![Step::W(answer.clone()), Step::Hold]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let start = Instant::now();
    let end = finish(c.get("/x")).await;
    println!("endless chunk ext: {end:?} after {:?}", start.elapsed());
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "ran to the deadline"
    );
    assert!(matches!(end, End::Body(200, _, Some(_), _)), "{end:?}");
    books(&c);
}

/// `transfer-encoding: chunked` in an HTTP/1.0 answer.
#[tokio::test]
async fn chunked_in_an_http10_answer() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            Step::Fin,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let end = finish(c.get("/x")).await;
    println!("HTTP/1.0 chunked: {end:?}");
    books(&c);
}

/// A complete answer then a reset at once: the answer is the caller's, no failure charged.
#[tokio::test]
async fn a_complete_answer_then_a_reset() {
    let s = serve(Arc::new(|_, _, _| vec![w(OK), Step::Rst])).await;
    let c = builder(s.addr).build().unwrap();
    let end = finish(c.get("/x")).await;
    println!("answer then RST: {end:?}; {}", stats_line(&c));
    let end2 = finish(c.get("/y")).await;
    println!("next: {end2:?}; {}", stats_line(&c));
    assert!(matches!(end2, End::Ok(200, _)), "{end2:?}");
    books(&c);
}

/// The head trickled one byte per 50 ms: ends at the deadline with DeadlineExceeded.
#[tokio::test]
async fn a_trickled_head_ends_at_the_deadline() {
    let s = serve(Arc::new(|_, _, _| {
        vec![Step::Drip(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            50,
        )]
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let start = Instant::now();
    let end = finish(c.post("/p", "x")).await;
    let took = start.elapsed();
    println!("trickled head: {end:?} after {took:?}; {}", stats_line(&c));
    assert!(
        matches!(end, End::Head(Kind::DeadlineExceeded, _)),
        "{end:?}"
    );
    assert!(took < Duration::from_millis(800), "{took:?}");
    assert_eq!(s.hits(), 1);
    books(&c);
}

/// A fresh connection on which the server began its answer (the status line came) while the
/// client was still writing a large request body, then reset: bytes of the answer came and
/// the connection was never reused, so this is not the stale keep-alive shape. The README:
/// a stale connection is "reused, and ended before any byte of the answer"; "a fresh
/// connection that fails is the endpoint's failure".
#[tokio::test]
async fn a_fresh_connection_reset_after_the_answer_began_is_not_stale() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\n"),
            Step::Sleep(150),
            Step::ReadBody,
            Step::Rst,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::put("/upload")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 8 << 20])))
        .unwrap();
    let end = finish(c.request(req)).await;
    let st = c.stats();
    let puts = s.hits();
    let conns = s.conns();
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!(
        "fresh conn, answer begun, reset: {end:?}; puts {puts} conns {conns}; {}",
        stats_line(&c)
    );
    assert_eq!(conns, puts, "every attempt on its own fresh connection");
    assert_eq!(
        st.stale_resends,
        0,
        "fresh connections whose answer had begun taken for stale keep-alive ones: {}",
        stats_line(&c)
    );
    assert_eq!(
        failures as usize, puts,
        "each attempt is the endpoint's failure"
    );
    books(&c);
}

/// Held: a replayable 60 KB PUT, status line sent at once, then a reset. The body is written
/// whole before the status line is read, so the stale watch does not misfire: every attempt is
/// charged and retried as a retry. (The misfire needs writes after answer bytes: see
/// `a_streamed_put_whose_answer_began_on_a_fresh_connection_is_not_stale`.)
#[tokio::test]
async fn a_replayable_put_reset_after_its_answer_began_is_charged_when_written_at_once() {
    let s = serve_small_window(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\n"),
            Step::Sleep(100),
            Step::ReadBody,
            Step::Rst,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::put("/upload")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 60_000])))
        .unwrap();
    let end = finish(c.request(req)).await;
    let st = c.stats();
    let (puts, conns) = (s.hits(), s.conns());
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!(
        "small window: {end:?}; puts {puts} conns {conns}; {}",
        stats_line(&c)
    );
    assert_eq!(conns, puts, "every attempt on its own fresh connection");
    assert_eq!(st.stale_resends, 0, "{}", stats_line(&c));
    assert_eq!(failures as usize, puts, "{}", stats_line(&c));
    books(&c);
}

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

/// A streamed PUT (small, replayable) on a fresh connection: the server sends its status line
/// at once, the client sends the rest of its body after it read it, and the server resets.
/// Answer bytes came on a fresh connection: not the stale keep-alive shape, the endpoint's
/// failure, and a retry costs a retry.
#[tokio::test]
async fn a_streamed_put_whose_answer_began_on_a_fresh_connection_is_not_stale() {
    let s = serve(Arc::new(|_, _, _| {
        vec![w(b"HTTP/1.1 200 OK\r\n"), Step::Sleep(600), Step::Rst]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"first part;")).unwrap();
    // An exact length: hyper sends `content-length` and the body's bytes as they are.
    let req = http::Request::put("/upload")
        .body(ChanBody(rx, Some(22)))
        .unwrap();
    let call = tokio::spawn(finish(c.request(req)));
    // The server answers the head's arrival with its status line; give the client the time
    // to read it while its body waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Bytes::from_static(b"second part")).unwrap();
    drop(tx);
    let end = call.await.unwrap();
    let st = c.stats();
    let (puts, conns) = (s.hits(), s.conns());
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!(
        "streamed PUT: {end:?}; puts {puts} conns {conns}; {}",
        stats_line(&c)
    );
    assert_eq!(conns, puts, "every attempt on its own fresh connection");
    assert_eq!(
        st.stale_resends,
        0,
        "a fresh connection with answer bytes taken for a stale one: {}",
        stats_line(&c)
    );
    assert_eq!(failures as usize, puts, "{}", stats_line(&c));
    books(&c);
}

/// An early answer head and part of its body to a large PUT, the client still writing, then
/// a reset: a body cut short on a fresh connection is the endpoint's failure.
#[tokio::test]
async fn a_body_cut_after_an_early_answer_to_an_upload_is_the_endpoints_failure() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789"),
            Step::Sleep(150),
            Step::ReadBody,
            Step::Rst,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::put("/upload")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 8 << 20])))
        .unwrap();
    let end = finish(c.request(req)).await;
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!("early head, body cut: {end:?}; {}", stats_line(&c));
    assert!(matches!(end, End::Body(200, _, Some(_), _)), "{end:?}");
    assert_eq!(failures, 1, "{}", stats_line(&c));
    books(&c);
}

/// The caller's own framing headers, conflicting, on a body of unknown length: what goes on
/// the wire never carries both `transfer-encoding` and `content-length`, nor two lengths.
#[tokio::test]
async fn a_callers_conflicting_content_lengths_never_reach_the_wire_with_chunked() {
    let s = serve(Arc::new(|_, _, _| vec![w(OK), Step::Fin])).await;
    let c = builder(s.addr).build().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"abc")).unwrap();
    drop(tx);
    let req = http::Request::post("/cl")
        .header("content-length", "3")
        .header("content-length", "10")
        .body(ChanBody(rx, None))
        .unwrap();
    let end = finish(c.request(req)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let heads = s.heads();
    println!("conflicting caller CLs: {end:?}; heads {heads:?}");
    for (_, h) in &heads {
        let l = h.to_ascii_lowercase();
        let cls = l.matches("content-length").count();
        assert!(
            !(cls > 0 && l.contains("transfer-encoding")) && cls <= 1,
            "ambiguous framing on the wire: {h:?}"
        );
    }
    books(&c);
}

/// The body of a retry's answer is bounded by the request's deadline, counted from the
/// request's start, not from the retry.
#[tokio::test]
async fn a_retrys_body_ends_at_the_requests_deadline() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![
            Step::Sleep(150),
            w(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n"),
        ],
        _ => vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n"),
            Step::Drip(vec![b'a'; 40], 50),
        ],
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_millis(500))
        .attempt_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let start = Instant::now();
    let end = finish(c.get("/r")).await;
    let took = start.elapsed();
    println!("retry's body: {end:?} after {took:?}; {}", stats_line(&c));
    assert!(
        matches!(end, End::Body(200, _, Some(Kind::DeadlineExceeded), _)),
        "{end:?}"
    );
    assert!(
        took < Duration::from_millis(800),
        "deadline extended: {took:?}"
    );
    assert_eq!(s.hits(), 2);
    books(&c);
}

/// A stale keep-alive connection met by a GET whose retry's body is slow: still the request's
/// deadline.
#[tokio::test]
async fn after_a_stale_resend_the_body_keeps_the_requests_deadline() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![w(OK)],
        // The reused connection closes before any byte of the answer.
        1 => vec![Step::Sleep(150), Step::Fin],
        _ => vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n"),
            Step::Drip(vec![b'a'; 40], 50),
        ],
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let _ = finish(c.get("/warm")).await;
    let start = Instant::now();
    let end = finish(c.get("/r")).await;
    let took = start.elapsed();
    println!(
        "stale then slow body: {end:?} after {took:?}; {}",
        stats_line(&c)
    );
    assert!(
        matches!(end, End::Body(200, _, Some(Kind::DeadlineExceeded), _)),
        "{end:?}"
    );
    assert!(
        took < Duration::from_millis(800),
        "deadline extended: {took:?}"
    );
    books(&c);
}

/// A keep-alive connection whose first answer came in small pieces, then closed by the
/// server while the next GET was on its way (before any byte of its answer): the README's
/// stale shape ("reused, and ended before any byte of the answer": no endpoint's failure,
/// sent again at no retry cost).
#[tokio::test]
async fn a_stale_connection_whose_first_answer_was_dribbled_is_still_stale() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![Step::Drip(OK.to_vec(), 5)],
        1 => vec![Step::Fin],
        _ => vec![w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    assert!(matches!(finish(c.get("/a")).await, End::Ok(200, _)));
    let end = finish(c.get("/b")).await;
    let st = c.stats();
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!(
        "dribbled then stale: {end:?}; heads {:?}; {}",
        s.heads(),
        stats_line(&c)
    );
    assert!(matches!(end, End::Ok(200, _)), "{end:?}");
    assert_eq!(
        s.heads()[1].0,
        0,
        "the second GET went on the reused connection"
    );
    assert_eq!(
        (st.stale_resends, st.retries, failures),
        (1, 0, 0),
        "{}",
        stats_line(&c)
    );
    books(&c);
}

/// A HEAD answered with chunked framing and (wrongly) the last chunk, then a POST at once on
/// the same client: the POST gets its own answer or a typed error, and is sent once.
#[tokio::test]
async fn a_head_answer_followed_by_a_last_chunk_then_a_post() {
    let s = serve(Arc::new(|_, _, head: &str| {
        if head.starts_with("HEAD") {
            vec![w(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            )]
        } else {
            vec![
                Step::ReadBody,
                w(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nfresh"),
            ]
        }
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::head("/h")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    assert!(matches!(finish(c.request(req)).await, End::Ok(200, _)));
    let end = finish(c.post("/p", "order")).await;
    let posts = s
        .heads()
        .iter()
        .filter(|(_, h)| h.starts_with("POST"))
        .count();
    println!(
        "HEAD + last chunk, then POST: {end:?}; posts {posts}; {}",
        stats_line(&c)
    );
    match end {
        End::Ok(201, b) => assert_eq!(&b[..], b"fresh"),
        End::Head(..) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(posts, 1);
    books(&c);
}

/// A caller that gives up while its large upload is stuck (the server reads nothing): a
/// cancellation, never the endpoint's failure; and the next request is served.
#[tokio::test]
async fn a_caller_giving_up_during_a_stuck_upload_is_not_charged() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![Step::Hold],
        _ => vec![Step::ReadBody, w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let big = Bytes::from(vec![b'x'; 8 << 20]);
    let gave_up = tokio::time::timeout(Duration::from_millis(200), c.post("/up", big)).await;
    assert!(gave_up.is_err(), "the upload cannot have finished");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let end = finish(c.post("/small", "x")).await;
    let st = c.stats();
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!("gave up during upload: next {end:?}; {}", stats_line(&c));
    assert!(matches!(end, End::Ok(200, _)), "{end:?}");
    assert_eq!(
        (failures, st.cancelled, st.failures),
        (0, 1, 0),
        "{}",
        stats_line(&c)
    );
    books(&c);
}
