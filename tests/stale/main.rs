//! A keep-alive connection the server closes while a request is on its way, through
//! `meshless::http::Client` against raw TCP servers: an idempotent request is sent again at
//! once on another connection, at no retry cost and charged to no endpoint; a POST is not sent
//! again; a fresh connection that fails is an endpoint's failure as before; and the resends of
//! one request are bounded.
//!
//! Each server reads the second request of a connection whole before closing it, so the client
//! has written it: the race a pool of idle connections has with a closing server, made certain.
//! What is no stale connection (an interim answer, an upgrade, a tunnel) is in `upgrades.rs`;
//! a caller that retries, and how attempts are numbered, in `attempts.rs`.

#[path = "../common/mod.rs"]
mod common;

mod attempts;
mod upgrades;

use bytes::Bytes;
use common::read_request;
use http::Method;
use http_body_util::{BodyExt, Full};
use meshless::http::Client;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// How a connection ends the request it will not answer.
#[derive(Clone, Copy)]
enum End {
    /// `close()` after reading it: a FIN.
    Close,
    /// A reset (linger zero): an RST.
    Reset,
}

/// What the server saw: requests read per connection, in order of acceptance.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

/// A server that answers the first `answered` requests of each connection with `200 ok`, then
/// reads the next one and ends the connection as `end` says without answering it.
async fn serve(answered: usize, end: End) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counts.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(connection(socket, answered, end, counts.clone()));
        }
    });
    (addr, seen)
}

async fn connection(mut socket: TcpStream, answered: usize, end: End, seen: Arc<Seen>) {
    let mut pending = Vec::new();
    for _ in 0..answered {
        if read_request(&mut socket, &mut pending).await.is_none() {
            return;
        }
        seen.requests.fetch_add(1, Ordering::SeqCst);
        if socket.write_all(OK).await.is_err() {
            return;
        }
    }
    if read_request(&mut socket, &mut pending).await.is_some() {
        seen.requests.fetch_add(1, Ordering::SeqCst);
    }
    if let End::Reset = end {
        socket.set_zero_linger().unwrap();
    }
    drop(socket);
}

fn client(addr: SocketAddr) -> Client {
    Client::builder()
        .endpoints([addr.to_string()])
        .build()
        .expect("a client")
}

async fn get(client: &Client) -> Result<Bytes, meshless::Error> {
    let res = client.get("/").await?;
    Ok(res.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn a_get_that_meets_a_closed_keep_alive_connection_is_sent_again_for_free() {
    for end in [End::Close, End::Reset] {
        let (addr, seen) = serve(1, end).await;
        let client = client(addr);
        assert_eq!(get(&client).await.unwrap(), "ok");
        // On the pooled connection, which the server ends after reading this request.
        assert_eq!(get(&client).await.unwrap(), "ok");
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
        assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
        let stats = client.stats();
        assert_eq!((stats.requests, stats.successes), (2, 2));
        assert_eq!(stats.retries, 0, "a resend is no retry");
        assert_eq!(stats.stale_resends, 1);
        let endpoint = &stats.endpoints[0];
        assert_eq!(endpoint.failures, 0, "the endpoint is charged nothing");
        assert_eq!(client.retry_stats().budget_exhausted(), 0);
    }
}

#[tokio::test]
async fn a_post_that_meets_a_closed_keep_alive_connection_is_not_sent_again() {
    let (addr, seen) = serve(1, End::Close).await;
    let client = client(addr);
    assert_eq!(get(&client).await.unwrap(), "ok");
    let post = http::Request::builder()
        .method(Method::POST)
        .uri("/")
        .body(Full::new(Bytes::from_static(b"pay")))
        .unwrap();
    let error = client.request(post).await.unwrap_err();
    // The server read it: a POST that may have been acted on is never sent again.
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    let class = meshless::classify::classify_error(&error);
    assert_eq!(
        class.reason(),
        meshless::classify::Reason::StaleConnection,
        "{error:?}"
    );
    let stats = client.stats();
    assert_eq!((stats.retries, stats.stale_resends), (0, 0));
    assert_eq!(stats.endpoints[0].failures, 0);
}

#[tokio::test]
async fn a_fresh_connection_that_fails_is_the_endpoints_failure() {
    // Every connection ends its first request unanswered: nothing is stale about that.
    let (addr, seen) = serve(0, End::Close).await;
    let client = client(addr);
    let error = get(&client).await.unwrap_err();
    let stats = client.stats();
    assert_eq!(stats.stale_resends, 0, "{error:?}");
    assert!(
        stats.retries >= 1,
        "a failure retried as any other: {stats:?}"
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst) as u64,
        1 + stats.retries
    );
    assert!(stats.endpoints[0].failures >= 1, "{stats:?}");
}

#[tokio::test]
async fn resends_after_stale_connections_are_bounded() {
    // Four pooled connections, each answered once; the server then ends every one of them on
    // the next request, and answers the first request of any new connection.
    let (addr, seen) = serve(1, End::Close).await;
    let client = client(addr);
    let gate = Arc::new(Semaphore::new(0));
    let mut first = Vec::new();
    for _ in 0..4 {
        let (client, gate) = (client.clone(), gate.clone());
        first.push(tokio::spawn(async move {
            // Bodies held until all four answered: four connections busy at once.
            let res = client.get("/").await.unwrap();
            let _pass = gate.acquire().await.unwrap();
            res.into_body().collect().await.unwrap();
        }));
    }
    while seen.requests.load(Ordering::SeqCst) < 4 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(4);
    for task in first {
        task.await.unwrap();
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 4);
    // Meets a closed connection four times: three resends, then a retry (from the budget)
    // that opens a connection of its own.
    assert_eq!(get(&client).await.unwrap(), "ok");
    let stats = client.stats();
    assert_eq!(stats.stale_resends, 3, "{stats:?}");
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 4 + 5);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 5);
}
