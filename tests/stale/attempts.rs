//! A stale connection's resend is a new attempt, numbered and counted as one (no retry), and
//! not made for a caller that retries (one retry layer per call chain).

use super::common;
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Empty;
use meshless::http::Client;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn attempts_are_counted_and_numbered_across_a_stale_resend() {
    // Connection 1 answers /warm, then reads the next request whole and closes (reused:
    // stale); every later (fresh) connection reads its request and closes (a reset).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = heads.clone();
    tokio::spawn(async move {
        let mut conn = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            conn += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut n = 0;
                while let Some(head) = common::read_request(&mut socket, &mut pending).await {
                    n += 1;
                    log.lock().unwrap().push(head);
                    if !(conn == 1 && n == 1) || socket.write_all(OK).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .max_retries(1)
        .build()
        .unwrap();
    client
        .get("/warm")
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    let e = client.get("/x").await.unwrap_err();
    let numbers: Vec<String> = heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("GET /x "))
        .map(|h| {
            h.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("x-meshless-attempt:"))
                .unwrap_or("-")
                .to_string()
        })
        .collect();
    let s = client.stats();
    eprintln!("error attempts={} sent={numbers:?} {s:?}", e.attempts());
    assert_eq!(
        numbers.len() as u64,
        1 + s.retries + s.stale_resends,
        "books hold"
    );
    assert_eq!(
        e.attempts() as usize,
        numbers.len(),
        "Error::attempts: how many were made"
    );
    let mut unique = numbers.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        numbers.len(),
        "each attempt numbered once: {numbers:?}"
    );
}

#[tokio::test]
async fn a_request_whose_caller_retries_is_not_resent_after_a_stale_connection() {
    // Connection 1 answers its first request, reads the second whole and closes; any later
    // connection answers everything.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let x_seen = Arc::new(AtomicUsize::new(0));
    let seen = x_seen.clone();
    tokio::spawn(async move {
        let mut conn = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            conn += 1;
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut n = 0;
                while let Some(head) = common::read_request(&mut socket, &mut pending).await {
                    n += 1;
                    if head.starts_with("GET /x ") {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    if conn == 1 && n == 2 {
                        return;
                    }
                    if socket.write_all(OK).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .build()
        .unwrap();
    let warm = client.get("/warm").await.unwrap();
    warm.into_body().collect().await.unwrap();
    let mut req = http::Request::get("/x")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(meshless::retry::CallerRetries(true));
    let out = client.request(req).await;
    let s = client.stats();
    eprintln!("{:?} {s:?}", out.as_ref().map(|r| r.status()));
    assert_eq!(
        x_seen.load(Ordering::SeqCst),
        1,
        "the server read /x twice although the caller retries (stale_resends={})",
        s.stale_resends
    );
}
