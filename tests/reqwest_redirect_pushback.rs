//! Contract: nothing that may have reached the server is sent again unless it is safe.
//!
//! reqwest follows a 301/302/303 answer to a POST by sending a GET to the `Location` (the
//! Post/Redirect/Get pattern: the server acted on the POST and says where the result is). If
//! that GET is answered 429, or 503 with `Retry-After`, the answer proves only that the GET
//! was not processed — the POST was. meshless must not send the POST again.

#![cfg(feature = "reqwest")]

mod common;

use common::read_request;
use meshless::backoff::Backoff;
use meshless::reqwest::Client;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .build()
        .expect("reqwest client")
}

/// The meshless client over `http` with one endpoint, no backoff and no metrics.
fn client_of(http: &reqwest::Client, addr: SocketAddr) -> meshless::reqwest::ClientBuilder {
    Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .backoff(Backoff::none())
        .metrics(false)
}

/// A keep-alive HTTP/1.1 server answering each request with `reply(head)`; counts POSTs.
async fn server(
    reply: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let posts = Arc::new(AtomicUsize::new(0));
    let (count, reply) = (posts.clone(), Arc::new(reply));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (count, reply) = (count.clone(), reply.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(head) = read_request(&mut socket, &mut buf).await {
                    if head.starts_with("POST ") {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    if socket.write_all(reply(&head).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, posts)
}

/// Same host: POST /orders → 303 /orders/1 → GET /orders/1 answered 429.
#[tokio::test]
async fn a_post_answered_303_whose_result_is_rate_limited_is_sent_once() {
    let (addr, posts) = server(|head| {
        if head.starts_with("POST ") {
            "HTTP/1.1 303 See Other\r\nlocation: /orders/1\r\ncontent-length: 0\r\n\r\n".into()
        } else {
            "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n".into()
        }
    })
    .await;
    let http = reqwest_client();
    let client = client_of(&http, addr).build().unwrap();
    let out = client
        .send(http.post("http://svc/orders").body("{\"qty\":1}"))
        .await;
    let n = posts.load(Ordering::SeqCst);
    assert_eq!(
        n,
        1,
        "the POST (acted on: the server answered 303) reached the server {n} times \
         (retries {}); outcome {:?}",
        client.retry_stats().retries(),
        out.map(|r| r.status())
    );
}

/// Another host: POST → 302 to a second server, which answers 503 with a `Retry-After`
/// HTTP-date.
#[tokio::test]
async fn a_post_answered_302_whose_target_says_503_retry_after_is_sent_once() {
    let (target, _) = server(|_| {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: {date}\r\ncontent-length: 0\r\n\r\n"
        )
    })
    .await;
    let (origin, posts) = server(move |_| {
        format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{target}/result\r\ncontent-length: 0\r\n\r\n"
        )
    })
    .await;
    let http = reqwest_client();
    let client = client_of(&http, origin).build().unwrap();
    let out = client
        .send(http.post("http://svc/orders").body("{\"qty\":1}"))
        .await;
    let n = posts.load(Ordering::SeqCst);
    assert_eq!(
        n,
        1,
        "the POST reached the origin {n} times (retries {}); outcome {:?}",
        client.retry_stats().retries(),
        out.map(|r| r.status())
    );
}

/// The pushback of a redirect's target is not the endpoint's: an endpoint that answered 302
/// to a host that said `429 Retry-After: 60` did not ask for quiet.
#[tokio::test]
async fn a_redirect_targets_pushback_does_not_silence_the_endpoint() {
    let (busy, _) = server(|_| {
        "HTTP/1.1 429 Too Many Requests\r\nretry-after: 60\r\ncontent-length: 0\r\n\r\n".into()
    })
    .await;
    let seen_a = Arc::new(AtomicUsize::new(0));
    let count = seen_a.clone();
    let (a, _) = server(move |head| {
        if head.starts_with("GET /elsewhere ") {
            format!("HTTP/1.1 302 Found\r\nlocation: http://{busy}/x\r\ncontent-length: 0\r\n\r\n")
        } else {
            count.fetch_add(1, Ordering::SeqCst);
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into()
        }
    })
    .await;
    let http = reqwest_client();
    let client = Client::builder(http.clone())
        .endpoints([format!("http://{a}")])
        .backoff(Backoff::none())
        .max_retries(0)
        .metrics(false)
        .build()
        .unwrap();
    let res = client.send(http.get("http://svc/elsewhere")).await.unwrap();
    assert_eq!(res.status(), 429);
    let _ = res.bytes().await;
    // Endpoint `a` never pushed back: its next request goes to it.
    let out = client.send(http.get("http://svc/ok")).await;
    assert!(
        out.as_ref().is_ok_and(|r| r.status() == 200) && seen_a.load(Ordering::SeqCst) == 1,
        "endpoint a was kept quiet by another host's Retry-After: {:?}",
        out.map(|r| r.status()).map_err(|e| e.kind())
    );
}

/// Post/Redirect/Get to the same URL: the answer's URL is the one asked, and still the 429 is
/// the redirect's GET's, not the POST's. A client that follows redirects cannot tell: an
/// unsafe method's answer proves nothing unprocessed.
#[tokio::test]
async fn a_post_redirected_to_its_own_url_then_rate_limited_is_sent_once() {
    let (addr, posts) = server(|head| {
        if head.starts_with("POST ") {
            "HTTP/1.1 303 See Other\r\nlocation: /orders\r\ncontent-length: 0\r\n\r\n".into()
        } else {
            "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n".into()
        }
    })
    .await;
    let http = reqwest_client();
    let client = client_of(&http, addr).build().unwrap();
    let out = client.send(http.post("http://svc/orders").body("x")).await;
    let n = posts.load(Ordering::SeqCst);
    assert_eq!(
        n,
        1,
        "the POST (acted on: answered 303) reached the server {n} times (retries {}); {:?}",
        client.retry_stats().retries(),
        out.map(|r| r.status())
    );
}
