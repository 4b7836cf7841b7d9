//! What a hostile HTTP/1.1 server can make the client hold through response headers
//! and trailer blocks. Raw TCP servers write the bytes.

use http_body_util::BodyExt;
use meshless::error::Kind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers every request with `response`, counting connections.
async fn raw(response: Arc<Vec<u8>>, conns: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            conns.fetch_add(1, Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn client(addr: SocketAddr) -> meshless::http::Client {
    meshless::http::Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_secs(5))
        .max_retries(0)
        .build()
        .expect("client")
}

/// 200,000 trailer fields (~3 MB) after a chunked body: the client does not hand them all
/// over (the trailer block is bounded), and the request ends.
#[tokio::test]
async fn a_huge_trailer_block_is_bounded() {
    let mut response =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n5\r\nhello\r\n0\r\n"
            .to_vec();
    for i in 0..200_000 {
        response.extend_from_slice(format!("x-t{i}: v\r\n").as_bytes());
    }
    response.extend_from_slice(b"\r\n");
    let addr = raw(Arc::new(response), Arc::default()).await;
    let res = client(addr).get("/").await.expect("head answered");
    assert_eq!(res.status(), 200);
    match res.into_body().collect().await {
        Ok(collected) => {
            let fields = collected.trailers().map_or(0, |t| t.len());
            assert!(fields <= 1_024, "{fields} trailer fields handed over");
        }
        Err(e) => eprintln!("body error (bounded): {e}"),
    }
}

/// 1 MB of response header fields: refused with a typed error, not held.
#[tokio::test]
async fn a_huge_response_head_is_refused() {
    let mut response = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..40_000 {
        response.extend_from_slice(format!("x-h{i}: vvvvvvvvvvvvvvv\r\n").as_bytes());
    }
    response.extend_from_slice(b"content-length: 0\r\n\r\n");
    let conns = Arc::new(AtomicUsize::new(0));
    let addr = raw(Arc::new(response), conns.clone()).await;
    let err = client(addr).get("/").await.expect_err("head too large");
    // A GET: retryable, so with no retry allowed it ends as RetriesExhausted.
    assert!(
        matches!(err.kind(), Kind::RetriesExhausted | Kind::Service),
        "{err}"
    );
    assert_eq!(conns.load(Ordering::SeqCst), 1, "sent once (max_retries 0)");
}
