//! What is no stale connection although it looks like one at first: after an interim
//! `100 Continue` the server is reading the request, and after a `101` or a `CONNECT` the
//! connection is the caller's stream, whose clean close is an end of file.

use super::common;
use bytes::Bytes;
use http_body::Body;
use http_body::Frame;
use http_body_util::Empty;
use meshless::http::Client;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Answers the head with `answer`, reads 4 bytes, then closes cleanly (FIN).
async fn server(answer: &'static [u8]) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                if common::read_head(&mut socket, &mut pending).await.is_none() {
                    return;
                }
                socket.write_all(answer).await.unwrap();
                let mut buf = [0u8; 4];
                let _ = socket.read_exact(&mut buf).await;
                let _ = socket.shutdown().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    addr
}

async fn tunnel_reads_eof(client: &Client, req: http::Request<Empty<Bytes>>) {
    let mut res = client.request(req).await.unwrap();
    assert!(
        res.status() == 101 || res.status() == 200,
        "{}",
        res.status()
    );
    let upgraded = hyper::upgrade::on(&mut res).await.unwrap();
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    io.write_all(b"quit").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut rest))
        .await
        .expect("no hang");
    assert!(
        read.is_ok(),
        "a clean close of the tunnel is EOF, got {read:?}"
    );
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_clean_close_on_an_upgraded_connection_is_eof() {
    let addr =
        server(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
            .await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .build()
        .unwrap();
    let req = http::Request::get("/tunnel")
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(Empty::<Bytes>::new())
        .unwrap();
    tunnel_reads_eof(&client, req).await;
}

#[tokio::test]
async fn a_clean_close_of_a_connect_tunnel_is_eof() {
    let addr = server(b"HTTP/1.1 200 Connection Established\r\n\r\n").await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .build()
        .unwrap();
    let req = http::Request::connect("target.example:443")
        .body(Empty::<Bytes>::new())
        .unwrap();
    tunnel_reads_eof(&client, req).await;
}

/// A request body whose chunks arrive later (an upload streamed from elsewhere).
struct Later(mpsc::UnboundedReceiver<Bytes>);

impl Body for Later {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test]
async fn interim_100_continue_then_close_on_a_fresh_connection_is_not_stale() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(AtomicUsize::new(0));
    let (c, b) = (connections.clone(), bodies.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let b = b.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                if common::read_head(&mut socket, &mut pending).await.is_none() {
                    return;
                }
                socket
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .unwrap();
                // The whole body (5 bytes): the server has the request, acts, and crashes.
                let mut chunk = [0u8; 64];
                while pending.len() < 5 {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&chunk[..n]),
                    }
                }
                b.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            });
        }
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .build()
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let req = http::Request::put("/thing")
        .header("content-length", "5")
        .header("expect", "100-continue")
        .body(Later(rx))
        .unwrap();
    let sender = tokio::spawn(async move {
        // After the 100 Continue has come back.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tx.send(Bytes::from_static(b"hello"));
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(tx);
    });
    let error = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("no hang")
        .unwrap_err();
    sender.abort();
    let stats = client.stats();
    eprintln!(
        "{error:?}\nconnections={} bodies read={} {stats:?}",
        connections.load(Ordering::SeqCst),
        bodies.load(Ordering::SeqCst)
    );
    // Books hold either way.
    assert_eq!(
        bodies.load(Ordering::SeqCst) as u64,
        stats.requests + stats.retries + stats.stale_resends
    );
    // Every connection was fresh: nothing was ever reused, and each was read whole.
    assert_eq!(stats.stale_resends, 0, "a fresh connection is never stale");
    assert_eq!(
        stats.endpoints[0].failures as usize,
        bodies.load(Ordering::SeqCst),
        "every attempt the server read and hung up on is the endpoint's failure"
    );
}
