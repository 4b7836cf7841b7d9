//! `meshless::reqwest::Client` at the edges of its contracts, over real sockets on 127.0.0.1
//! with a real `reqwest::Client` underneath: redirects, scheme spellings, pushback, dropped
//! bodies, reqwest's own timeout.

#![cfg(feature = "reqwest")]

mod common;

use common::read_request;
use meshless::backoff::Backoff;
use meshless::error::Kind;
use meshless::reqwest::Client;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::Instant;

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .build()
        .expect("reqwest client")
}

/// A raw HTTP/1.1 server on 127.0.0.1 answering every request with `reply(port, head)`,
/// counting the requests (read in full) whose head starts with `count_prefix`.
async fn server(
    count_prefix: &'static str,
    reply: fn(u16, &str) -> Option<Vec<u8>>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_request(&mut socket, &mut buf).await {
                    if head.starts_with(count_prefix) {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    match reply(addr.port(), &head) {
                        Some(bytes) => {
                            if socket.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Contract: nothing that may have reached the server is sent again unless it is safe.
///
/// Post/Redirect/Get: the server acts on the POST (creates the order) and answers `303 See
/// Other` to where the result lives. reqwest follows the redirect inside the attempt; the GET
/// of the redirect target is refused (nothing listens on 127.0.0.2). reqwest reports a
/// connect error, which alone would read as "reached no server" — but the POST did reach one.
/// It must be sent once.
#[tokio::test]
async fn a_post_answered_303_whose_redirect_target_refuses_is_sent_once() {
    let (addr, posts) = server("POST ", |port, _| {
        Some(
            format!(
                "HTTP/1.1 303 See Other\r\nlocation: http://127.0.0.2:{port}/orders/1\r\ncontent-length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
    })
    .await;
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let out = client
        .send(http.post("http://svc/orders").body("{\"qty\":1}"))
        .await;
    let n = posts.load(Ordering::SeqCst);
    assert_eq!(
        n,
        1,
        "the POST reached the server {n} times (retries: {}); outcome: {:?}",
        client.retry_stats().retries(),
        out.map(|r| r.status())
    );
}

/// Contract: `https` is TLS or an error, never clear text.
///
/// An `http::Request` whose URI was built from parts with the scheme spelled `HTTPS` (schemes
/// are case-insensitive, RFC 3986 §3.1). `meshless::http::Client` refuses it; the reqwest
/// client must not send it in clear text to an `http` endpoint.
#[tokio::test]
async fn an_uppercase_https_request_is_never_sent_in_clear_text() {
    let (addr, seen) = server("", |_, _| {
        Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec())
    })
    .await;
    let client = Client::builder(reqwest_client())
        .endpoints([format!("http://{addr}")])
        .metrics(false)
        .build()
        .unwrap();
    let uri = http::Uri::builder()
        .scheme("HTTPS")
        .authority("svc.example")
        .path_and_query("/secret?token=abc")
        .build()
        .unwrap();
    assert_eq!(
        uri.to_string().to_ascii_lowercase(),
        "https://svc.example/secret?token=abc"
    );
    let req = http::Request::get(uri.clone())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let out = client.request(req).await;
    let n = seen.load(Ordering::SeqCst);
    assert!(
        out.is_err() && n == 0,
        "{uri} went to http://{addr} in clear text ({n} request(s) arrived): {:?}",
        out.map(|r| r.status())
    );
}

/// The same request through `meshless::http::Client`: refused too.
#[tokio::test]
async fn the_http_client_refuses_the_uppercase_https_request() {
    let (addr, seen) = server("", |_, _| {
        Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec())
    })
    .await;
    let client = meshless::http::Client::builder()
        .endpoints([addr.to_string()])
        .metrics(false)
        .build()
        .unwrap();
    let uri = http::Uri::builder()
        .scheme("HTTPS")
        .authority("svc.example")
        .path_and_query("/secret")
        .build()
        .unwrap();
    let req = http::Request::get(uri)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let out = client.request(req).await;
    assert!(out.is_err());
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

/// Contract: a server's pushback (Retry-After) is kept per endpoint for its duration.
#[tokio::test]
async fn retry_after_keeps_its_endpoint_quiet_through_reqwest() {
    let (busy, busy_seen) = server("GET ", |_, _| {
        Some(
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 30\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let (ok, ok_seen) = server("GET ", |_, _| {
        Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec())
    })
    .await;
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{busy}"), format!("http://{ok}")])
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    for i in 0..40 {
        let res = client
            .send(http.get("http://svc/x"))
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        assert_eq!(res.status(), 200, "request {i}");
        let _ = res.bytes().await;
    }
    let busy_n = busy_seen.load(Ordering::SeqCst);
    assert!(
        busy_n <= 1,
        "the endpoint that asked for 30 s of quiet got {busy_n} requests (ok got {})",
        ok_seen.load(Ordering::SeqCst)
    );
}

/// Contract: a caller's cancellation (dropping the body) is never an endpoint's failure.
#[tokio::test]
async fn dropping_a_reqwest_body_midway_is_not_a_failure() {
    let (addr, _) = server("GET ", |_, _| {
        Some(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nfirst".to_vec())
    })
    .await;
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .metrics(false)
        .build()
        .unwrap();
    for _ in 0..6 {
        let mut res = client.send(http.get("http://svc/big")).await.unwrap();
        let first = res.chunk().await.unwrap();
        assert!(first.is_some());
        drop(res);
    }
    // Let the balancer's bookkeeping run.
    tokio::task::yield_now().await;
    let stats = &client.endpoints()[0];
    assert_eq!(stats.failures, 0, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    assert_eq!(stats.status, meshless::outlier::Status::Active, "{stats:?}");
    assert_eq!(client.retry_stats().failures(), 0);
}

/// Contract: deadlines are never extended. reqwest's own per-request `timeout` (longer than
/// the deadline) does not give a request more time than the deadline; a server that never
/// answers is cut at the deadline with DeadlineExceeded.
#[tokio::test]
async fn reqwests_longer_timeout_does_not_extend_the_deadline() {
    let (addr, seen) = server("GET ", |_, _| None).await;
    let http = reqwest_client();
    let deadline = Duration::from_millis(400);
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .deadline(deadline)
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        client.send(http.get("http://svc/").timeout(Duration::from_secs(3))),
    )
    .await
    .expect("ended within 5 s")
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), Kind::DeadlineExceeded, "{err:?}");
    assert!(
        took < deadline + Duration::from_millis(300),
        "took {took:?}"
    );
    assert!(seen.load(Ordering::SeqCst) >= 1);
}
