//! `meshless::reqwest::Client` over real sockets: a real `reqwest::Client` underneath, the
//! `meshless::testing` fleet, and raw TCP servers where the exact bytes matter (a reset after
//! the request arrived, a body that stalls).

#![cfg(feature = "reqwest")]

use meshless::backoff::Backoff;
use meshless::error::Kind;
use meshless::outlier::Status;
use meshless::reqwest::Client;
use meshless::testing::{Backend, Behavior, Fleet, Latency};
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The reqwest client every test wraps: reqwest's own retries off, as the docs say.
fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .build()
        .expect("reqwest client")
}

/// What a raw server does with one request.
enum Reply {
    /// Writes these bytes and reads the next request.
    Bytes(&'static [u8]),
    /// Resets the connection (TCP RST) once the whole request, body included, has arrived.
    Reset,
    /// Writes these bytes, then neither writes nor closes again.
    Stall(&'static [u8]),
}

/// A raw HTTP/1.1 server on 127.0.0.1. `reply(n)` answers the n-th request (from 0), read to
/// the end of its `content-length` body. Counts the requests it read in full.
async fn raw_server(reply: fn(usize) -> Reply) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, reply, count.clone()));
        }
    });
    (addr, seen)
}

async fn serve(mut socket: TcpStream, reply: fn(usize) -> Reply, seen: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        let n = seen.fetch_add(1, Ordering::SeqCst);
        match reply(n) {
            Reply::Bytes(bytes) => {
                if socket.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Reply::Reset => {
                let _ = socket.set_zero_linger();
                return;
            }
            Reply::Stall(bytes) => {
                let _ = socket.write_all(bytes).await;
                std::future::pending::<()>().await;
            }
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";

#[tokio::test]
async fn an_idempotent_get_is_retried_on_503_through_reqwest() {
    let (addr, seen) = raw_server(|n| {
        if n == 0 {
            Reply::Bytes(UNAVAILABLE)
        } else {
            Reply::Bytes(OK)
        }
    })
    .await;
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let res = client
        .send(http.get("http://svc.example/quote"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.url().as_str(),
        "http://svc.example/quote",
        "the URL asked for"
    );
    assert_eq!(res.text().await.unwrap(), "ok");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "the 503, then the retry");
    assert_eq!(client.retry_stats().retries(), 1);
}

#[tokio::test]
async fn a_post_that_may_have_reached_the_server_is_not_retried() {
    // Every request is read in full, then its connection is reset: the server may have acted.
    let (addr, seen) = raw_server(|_| Reply::Reset).await;
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let err = client
        .send(http.post("http://svc/orders").body("{\"qty\":1}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Service, "{err:?}");
    assert!(
        err.source().is_some_and(|s| s.is::<reqwest::Error>()),
        "reqwest's error underneath: {err:?}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1, "sent once, never again");
    assert_eq!(client.retry_stats().retries(), 0);

    // The same failure for an idempotent request: tried again, up to the limit (2 retries).
    let err = client
        .send(http.get("http://svc/orders/7"))
        .await
        .unwrap_err();
    assert_eq!(seen.load(Ordering::SeqCst), 4, "{err:?}");
    assert_eq!(client.retry_stats().retries(), 2);
}

/// Resolves every name to 127.0.0.2 the first time (where nothing listens: refused), then to
/// 127.0.0.1. reqwest keeps the URL's port.
struct RefusedFirst(AtomicUsize);

impl reqwest::dns::Resolve for RefusedFirst {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let first = self.0.fetch_add(1, Ordering::SeqCst) == 0;
        let ip = if first {
            [127, 0, 0, 2]
        } else {
            [127, 0, 0, 1]
        };
        let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(SocketAddr::from((ip, 0))));
        Box::pin(async move { Ok(addrs) })
    }
}

/// With redirects off in the reqwest client, a refused connection is one no server saw: even
/// a POST goes to another try. (With reqwest's default redirects, the refused connection may
/// have been a redirect's, after a server had the POST: see `tests/reqwest_edges.rs`.)
#[tokio::test]
async fn a_post_is_retried_when_the_connection_was_refused() {
    let (addr, seen) = raw_server(|_| Reply::Bytes(OK)).await;
    let resolver = Arc::new(RefusedFirst(AtomicUsize::new(0)));
    let http = reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(resolver.clone())
        .build()
        .unwrap();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://svc.test:{}", addr.port())])
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let res = client
        .send(http.post("http://svc/orders").body("{\"qty\":1}"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        resolver.0.load(Ordering::SeqCst),
        2,
        "refused, then connected"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the POST arrived once");
    assert_eq!(client.retry_stats().retries(), 1);
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

#[tokio::test]
async fn the_deadline_covers_a_stalled_body() {
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst ten.";
    let (addr, _) = raw_server(|_| Reply::Stall(HEAD)).await;
    let http = reqwest_client();
    let deadline = Duration::from_millis(600);
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .deadline(deadline)
        .metrics(false)
        .build()
        .unwrap();

    // As a reqwest response: its body fails with reqwest's error over the deadline's.
    let started = Instant::now();
    let res = client.send(http.get("http://svc/big")).await.unwrap();
    assert_eq!(res.status(), 200);
    // Bounded, so that a body the deadline failed to cover fails the test instead of hanging it.
    let err = tokio::time::timeout(deadline * 5, res.bytes())
        .await
        .expect("the deadline ended the body")
        .unwrap_err();
    assert!(started.elapsed() >= deadline, "not before the deadline");
    assert_eq!(meshless_kind(&err), Some(Kind::DeadlineExceeded), "{err:?}");

    // As an http response: the body's error is meshless's own.
    use http_body_util::BodyExt;
    let req = http::Request::get("/big")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let err = tokio::time::timeout(deadline * 5, res.into_body().collect())
        .await
        .expect("the deadline ended the body")
        .unwrap_err();
    let ours = err
        .downcast_ref::<meshless::Error>()
        .expect("a meshless error");
    assert_eq!(ours.kind(), Kind::DeadlineExceeded);
}

#[tokio::test]
async fn requests_are_balanced_across_two_endpoints() {
    let slow = Behavior::healthy().latency(Latency::fixed(Duration::from_millis(20)));
    let fleet = Fleet::builder()
        .backends(vec![Backend::new(slow); 2])
        .start()
        .await
        .unwrap();
    let http = reqwest_client();
    let bases: Vec<String> = fleet
        .addrs()
        .iter()
        .map(|a| format!("http://{a}"))
        .collect();
    let client = Client::builder(http.clone())
        .endpoints(bases.clone())
        .metrics(false)
        .build()
        .unwrap();
    // Concurrent, so that requests in flight spread them whatever the measured latencies.
    let calls = (0..32).map(|_| client.send(http.get("http://svc/")));
    for res in join_all(calls).await {
        assert_eq!(res.unwrap().status(), 200);
    }
    for i in 0..2 {
        let served = fleet.backend(i).counters().requests();
        assert!(served >= 4, "backend {i} served {served} of 32");
    }
    let stats = client.endpoints();
    let mut keys: Vec<&str> = stats.iter().map(|e| &*e.key).collect();
    keys.sort_unstable();
    let mut expected: Vec<&str> = bases.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(stats.iter().map(|e| e.requests).sum::<u64>(), 32);
    fleet.shutdown().await;
}

/// Awaits every future, concurrently, in order.
async fn join_all<F>(calls: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn cancellation_is_not_charged_as_failure() {
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy().hangs(1.0)))
        .start()
        .await
        .unwrap();
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{}", fleet.addrs()[0])])
        .metrics(false)
        .build()
        .unwrap();
    for _ in 0..3 {
        let call = client.send(http.get("http://svc/"));
        let gave_up = tokio::time::timeout(Duration::from_millis(50), call).await;
        assert!(gave_up.is_err(), "the caller gave up first");
    }
    let stats = &client.endpoints()[0];
    assert_eq!(stats.cancelled, 3, "{stats:?}");
    assert_eq!(stats.failures, 0, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(stats.status, Status::Active, "{stats:?}");
    assert_eq!(client.retry_stats().failures(), 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_https_request_is_never_sent_to_an_http_endpoint() {
    let (addr, seen) = raw_server(|_| Reply::Bytes(OK)).await;
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .metrics(false)
        .build()
        .unwrap();
    let err = client
        .send(http.get("https://svc/secret"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidRequest);
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    assert_eq!(client.retry_stats().requests(), 0, "no layer saw it");
}

#[tokio::test]
async fn reqwests_own_timeout_ends_one_attempt() {
    // The first request gets no answer; every later one is answered at once.
    let (addr, seen) = raw_server(|n| {
        if n == 0 {
            Reply::Stall(b"")
        } else {
            Reply::Bytes(OK)
        }
    })
    .await;
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    // A per-request timeout, set the reqwest way, travels with the request and caps each
    // attempt: the GET is tried again and answered.
    let get = http.get("http://svc/").timeout(Duration::from_millis(200));
    let res = client.send(get).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(client.retry_stats().attempt_timeouts(), 1);

    // A POST that timed out may have been acted on: not sent again.
    let (addr, seen) = raw_server(|_| Reply::Stall(b"")).await;
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .metrics(false)
        .build()
        .unwrap();
    let post = http
        .post("http://svc/orders")
        .body("x")
        .timeout(Duration::from_millis(200));
    let err = client.send(post).await.unwrap_err();
    assert_eq!(err.kind(), Kind::AttemptTimedOut, "{err:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(client.retry_stats().retries(), 0);
}
