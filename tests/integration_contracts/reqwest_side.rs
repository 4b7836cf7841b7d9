//! `meshless::reqwest::Client` against raw HTTP/1.1 servers.

use meshless::backoff::Backoff;
use meshless::deadline::RequestDeadline;
use meshless::error::Kind;
use meshless::reqwest::Client;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const BOUND: Duration = Duration::from_secs(5);

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .build()
        .expect("reqwest client")
}

fn reqwest_no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// The kind of the first meshless error in `err`'s source chain.
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

/// What a server does once it has read a request's head (and, if `read_body`, its body).
#[derive(Clone, Copy)]
enum Act {
    /// Writes `head`, then one byte of `drip` every `every`, then stalls forever.
    Drip {
        head: &'static [u8],
        every: Duration,
    },
    /// Writes these bytes, then stalls forever.
    Stall(&'static [u8]),
    /// Writes these bytes and reads the next request.
    Answer(&'static [u8]),
    /// Closes (FIN) without answering.
    Close,
    /// Resets (SO_LINGER 0).
    Reset,
}

struct Server {
    addr: SocketAddr,
    /// Request heads read.
    heads: Arc<AtomicUsize>,
    /// When each head arrived.
    at: Arc<Mutex<Vec<Instant>>>,
    /// Every byte any connection sent, in order of arrival.
    bytes: Arc<Mutex<Vec<u8>>>,
}

/// A raw HTTP/1.1 server: for each request, `act(n)` (n from 0); the body is read first when
/// `read_body` (by content-length).
async fn server(read_body: bool, act: fn(usize) -> Act) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let at = Arc::new(Mutex::new(Vec::new()));
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let (h, a, b) = (heads.clone(), at.clone(), bytes.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(
                socket,
                read_body,
                act,
                h.clone(),
                a.clone(),
                b.clone(),
            ));
        }
    });
    Server {
        addr,
        heads,
        at,
        bytes,
    }
}

async fn serve(
    mut socket: TcpStream,
    read_body: bool,
    act: fn(usize) -> Act,
    heads: Arc<AtomicUsize>,
    at: Arc<Mutex<Vec<Instant>>>,
    bytes: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    bytes.lock().unwrap().extend_from_slice(&chunk[..n]);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let n = heads.fetch_add(1, Ordering::SeqCst);
        at.lock().unwrap().push(Instant::now());
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if read_body {
            while buf.len() < head_end + len {
                let mut chunk = [0u8; 65536];
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        bytes.lock().unwrap().extend_from_slice(&chunk[..n]);
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
            buf.drain(..head_end + len);
        } else {
            buf.drain(..head_end);
        }
        match act(n) {
            Act::Drip { head, every } => {
                if socket.write_all(head).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(every).await;
                    if socket.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            }
            Act::Stall(b) => {
                let _ = socket.write_all(b).await;
                std::future::pending::<()>().await;
            }
            Act::Answer(b) => {
                if socket.write_all(b).await.is_err() {
                    return;
                }
                if !read_body {
                    return;
                }
            }
            Act::Close => {
                let _ = socket.shutdown().await;
                return;
            }
            Act::Reset => {
                let _ = socket.set_zero_linger();
                return;
            }
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

fn client(http: &reqwest::Client, addrs: &[SocketAddr]) -> meshless::reqwest::ClientBuilder {
    Client::builder(http.clone())
        .endpoints(addrs.iter().map(|a| format!("http://{a}")))
        .backoff(Backoff::none())
        .metrics(false)
}

/// Waits (bounded) until no endpoint has a request in flight.
async fn settle(client: &Client) {
    let until = Instant::now() + BOUND;
    while client.endpoints().iter().any(|e| e.in_flight > 0) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Contract 3: the deadline covers the body. A content-length body dripped one byte every
/// 20 ms (never idle), read with `chunk()`: ends with DeadlineExceeded at about 300 ms.
#[tokio::test]
async fn a_dripping_body_read_by_chunk_ends_at_the_deadline() {
    let s = server(true, |_| Act::Drip {
        head: b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n",
        every: Duration::from_millis(20),
    })
    .await;
    let http = reqwest_client();
    let deadline = Duration::from_millis(300);
    let client = client(&http, &[s.addr]).deadline(deadline).build().unwrap();
    let started = Instant::now();
    let mut res = client.send(http.get("http://svc/drip")).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match res.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    let err = outcome
        .unwrap_or_else(|_| panic!("the body was still being read after 3 s (deadline 300 ms)"))
        .expect_err("the body cannot end: 100000 bytes announced");
    assert!(
        elapsed >= deadline,
        "ended before the deadline: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "ended late: {elapsed:?}");
    assert_eq!(meshless_kind(&err), Some(Kind::DeadlineExceeded), "{err:?}");
}

/// The same with a chunked body (no content-length), read with `bytes()`.
#[tokio::test]
async fn a_dripping_chunked_body_read_by_bytes_ends_at_the_deadline() {
    // Each dripped "x" is invalid chunk framing only after a size line: send a chunk-size
    // header of 0x10000 bytes then drip its content.
    let s = server(true, |_| Act::Drip {
        head: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10000\r\n",
        every: Duration::from_millis(20),
    })
    .await;
    let http = reqwest_client();
    let deadline = Duration::from_millis(300);
    let client = client(&http, &[s.addr]).deadline(deadline).build().unwrap();
    let started = Instant::now();
    let res = client.send(http.get("http://svc/drip")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(3), res.bytes())
        .await
        .expect("the body was still being read after 3 s (deadline 300 ms)")
        .expect_err("the chunk never completes");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= deadline && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(meshless_kind(&err), Some(Kind::DeadlineExceeded), "{err:?}");
}

/// Contract 4: the caller's own shorter deadline (a `RequestDeadline` on an `http::Request`
/// through `Client::request`) passing before the head is no failure of the endpoint, nor of
/// the breaker.
#[tokio::test]
async fn callers_own_deadline_before_the_head_charges_no_endpoint() {
    let s = server(true, |_| Act::Stall(b"")).await;
    let http = reqwest_client();
    let client = client(&http, &[s.addr])
        .deadline(Duration::from_secs(10))
        .max_retries(0)
        .build()
        .unwrap();
    for i in 0..6 {
        let mut req = http::Request::get("/hold")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        req.extensions_mut()
            .insert(RequestDeadline::after(Duration::from_millis(50)));
        let e = tokio::time::timeout(BOUND, client.request(req))
            .await
            .expect("ended by the caller's deadline")
            .expect_err("never answered");
        assert_eq!(e.kind(), Kind::DeadlineExceeded, "request {i}: {e:?}");
    }
    settle(&client).await;
    let eps = client.endpoints();
    let b = client.breaker().stats();
    assert_eq!(
        (eps[0].failures, b.failures),
        (0, 0),
        "the caller's own deadline was charged (endpoint failures, breaker failures): {eps:#?} {b:?}"
    );
}

/// Contract 4, mid-body: the caller's own deadline passing while the body waits.
#[tokio::test]
async fn callers_own_deadline_mid_body_charges_no_endpoint() {
    let s = server(true, |_| {
        Act::Stall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nfirst")
    })
    .await;
    let http = reqwest_client();
    let client = client(&http, &[s.addr])
        .deadline(Duration::from_secs(10))
        .max_retries(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        let mut req = http::Request::get("/drip")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        req.extensions_mut()
            .insert(RequestDeadline::after(Duration::from_millis(150)));
        let res = tokio::time::timeout(BOUND, client.request(req))
            .await
            .expect("head")
            .expect("head in time");
        use http_body_util::BodyExt;
        let r = tokio::time::timeout(BOUND, res.into_body().collect())
            .await
            .expect("ended by the caller's deadline");
        assert!(r.is_err());
    }
    settle(&client).await;
    let eps = client.endpoints();
    let b = client.breaker().stats();
    assert_eq!(
        (eps[0].failures, b.failures),
        (0, 0),
        "the caller's own deadline mid-body was charged: {eps:#?} {b:?}"
    );
}

/// One POST of `body`, redirects followed or not, through two endpoints that both end it with
/// `act` (reading the whole body first when `read_body`): it fails, and the number of times
/// its head reached a server, for each of the two reqwest clients.
async fn heads_of_a_failed_post(
    read_body: bool,
    act: fn(usize) -> Act,
    body: Vec<u8>,
) -> Vec<usize> {
    let mut seen = Vec::new();
    for follow in [true, false] {
        let a = server(read_body, act).await;
        let b = server(read_body, act).await;
        let http = if follow {
            reqwest_client()
        } else {
            reqwest_no_redirects()
        };
        let client = client(&http, &[a.addr, b.addr]).build().unwrap();
        let r = tokio::time::timeout(
            BOUND,
            client.send(http.post("http://svc/orders").body(body.clone())),
        )
        .await
        .expect("ended");
        assert!(r.is_err(), "redirects {follow}: {r:?}");
        seen.push(a.heads.load(Ordering::SeqCst) + b.heads.load(Ordering::SeqCst));
    }
    seen
}

/// Contract 2: a POST whose bytes were read in full, then the connection closed (FIN, no
/// answer), with two endpoints: never sent again.
#[tokio::test]
async fn a_post_closed_after_it_was_read_is_sent_once() {
    let seen = heads_of_a_failed_post(true, |_| Act::Close, b"order".to_vec()).await;
    assert_eq!(
        seen,
        [1, 1],
        "times the POST reached servers (redirects followed, not followed)"
    );
}

/// Contract 2: a POST whose head was read, then the connection reset while its 32 KiB body
/// was still on its way: bytes left, so it is not sent again (two endpoints).
#[tokio::test]
async fn a_post_reset_after_its_head_is_sent_once() {
    let seen = heads_of_a_failed_post(false, |_| Act::Reset, vec![b'x'; 32 * 1024]).await;
    assert_eq!(
        seen,
        [1, 1],
        "times the POST head reached servers (redirects followed, not followed)"
    );
}

/// Contract 6: `503` with `Retry-After: 1` on the only endpoint: the GET's retry is not sent
/// sooner than a second later (and within the 5 s deadline it is sent, and answered).
#[tokio::test]
async fn retry_after_is_waited_on_the_only_endpoint() {
    let s = server(true, |n| {
        if n == 0 {
            Act::Answer(
                b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n",
            )
        } else {
            Act::Answer(OK)
        }
    })
    .await;
    let http = reqwest_client();
    let client = client(&http, &[s.addr])
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let res = tokio::time::timeout(
        Duration::from_secs(8),
        client.send(http.get("http://svc/x")),
    )
    .await
    .expect("ended");
    let at = s.at.lock().unwrap().clone();
    if at.len() >= 2 {
        let gap = at[1] - at[0];
        assert!(
            gap >= Duration::from_millis(950),
            "the retry came {gap:?} after a Retry-After: 1"
        );
    }
    let res = res.expect("answered after the pushback");
    assert_eq!(res.status(), 200);
}

/// Contract 5: an `https` endpoint, with a reqwest built without TLS: an error, and no clear
/// text on the socket.
#[tokio::test]
async fn an_https_endpoint_without_reqwest_tls_gets_no_clear_text() {
    let s = server(true, |_| Act::Answer(OK)).await;
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("https://{}", s.addr)])
        .max_retries(0)
        .metrics(false)
        .build()
        .unwrap();
    let r = tokio::time::timeout(BOUND, client.send(http.get("http://svc/secret")))
        .await
        .expect("ended");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bytes = s.bytes.lock().unwrap().clone();
    assert!(
        bytes.is_empty() || bytes[0] == 0x16,
        "clear text to an https endpoint: {:?} ({r:?})",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        r.is_err(),
        "answered over an https endpoint without TLS: {r:?}"
    );
}

/// Contract 5: a redirect to an `https` URL is followed with TLS or not at all.
#[tokio::test]
async fn a_redirect_to_https_sends_no_clear_text() {
    let target = server(true, |_| Act::Answer(OK)).await;
    static TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TARGET.set(format!("{}", target.addr)).ok();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let from = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 302 Found\r\nlocation: https://{}/secret\r\ncontent-length: 0\r\n\r\n",
                    TARGET.get().unwrap()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    let http = reqwest_client();
    let client = client(&http, &[from]).max_retries(0).build().unwrap();
    let r = tokio::time::timeout(BOUND, client.send(http.get("http://svc/x")))
        .await
        .expect("ended");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bytes = target.bytes.lock().unwrap().clone();
    assert!(
        bytes.is_empty() || bytes[0] == 0x16,
        "clear text after a redirect to https: {:?} ({r:?})",
        String::from_utf8_lossy(&bytes)
    );
}

/// Contract 6 and the books through reqwest: the only endpoint answers `503` with
/// `Retry-After: 5`; the client has a 3 s deadline and default settings (2 retries, so a 1 s
/// attempt timeout, also when a quiet endpoint's first probe is due). Whatever the client
/// does while the endpoint is quiet, the caller must get the server's 503 (or, at the
/// deadline, DeadlineExceeded), and the endpoint must be charged no failure for an attempt
/// that never reached it: failures == requests the server saw.
#[tokio::test]
async fn a_retry_after_past_a_3s_deadline_charges_no_phantom_failures() {
    let s = server(true, |_| {
        Act::Answer(
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\ncontent-length: 0\r\n\r\n",
        )
    })
    .await;
    let http = reqwest_client();
    let client = client(&http, &[s.addr])
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(8),
        client.send(http.get("http://svc/x")),
    )
    .await
    .expect("ended");
    let took = started.elapsed();
    settle(&client).await;
    let e = &client.endpoints()[0];
    let seen = s.heads.load(Ordering::SeqCst);
    let outcome = match &r {
        Ok(res) => format!("answer {}", res.status()),
        Err(e) => format!("error {:?}: {e}", e.kind()),
    };
    let fair_end = match &r {
        Ok(res) => res.status() == 503,
        Err(e) => e.kind() == Kind::DeadlineExceeded && took >= Duration::from_millis(2900),
    };
    assert!(
        fair_end && e.failures as usize == seen,
        "GET: {outcome} after {took:?}; server saw {seen} request(s); endpoint requests={} failures={}",
        e.requests,
        e.failures
    );
}
