//! What the raw-socket tests share: reading request heads byte by byte, as a server would.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

pub mod frames;

use std::sync::Mutex;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The sockets that hold the ports of [`refusing_port`] for the life of the test process.
static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());

/// An address on 127.0.0.1 where nothing listens, and nothing will while the tests run: a
/// socket bound to the port and never listening holds it, so a connection is refused, and no
/// other test's listener can be given the port (as it could one bound and then dropped, which
/// makes the "refused" endpoint some other test's server).
pub fn refusing_port() -> std::net::SocketAddr {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    socket.bind(&any.into()).expect("bind");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("an IP address");
    HELD.lock().unwrap().push(socket);
    addr
}

/// Reads one request head, through its blank line, from `socket`. Bytes that arrived after it
/// stay in `pending` for the next call. `None` once the peer closed or the read failed.
pub async fn read_head(socket: &mut TcpStream, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(pending.drain(..end + 4).collect());
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads one request, its head and the body its `content-length` gives, from `socket`; the
/// head as text. Bytes after it stay in `pending`. `None` once the peer closed mid-way.
pub async fn read_request(socket: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let head = String::from_utf8_lossy(&read_head(socket, pending).await?).into_owned();
    let length: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut chunk = [0u8; 4096];
    while pending.len() < length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
    pending.drain(..length);
    Some(head)
}

/// A server on 127.0.0.1:0 that answers every request head on every connection with the bytes
/// `respond` gives for it (bodies of requests are not read: these tests send none).
pub async fn serve_heads<F, Fut>(respond: F) -> std::net::SocketAddr
where
    F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Vec<u8>> + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = std::sync::Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = read_head(&mut socket, &mut pending).await {
                    let response = respond(head).await;
                    if socket.write_all(&response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A server on 127.0.0.1:0 that reads one request head per connection, then hands the socket
/// and the head (as text) to `script`, which answers byte by byte as it likes. The listener
/// lives as long as the test's runtime.
pub async fn serve_sockets<F, Fut>(script: F) -> std::net::SocketAddr
where
    F: Fn(TcpStream, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = std::sync::Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut socket, &mut Vec::new()).await else {
                    return;
                };
                script(socket, String::from_utf8_lossy(&head).into_owned()).await;
            });
        }
    });
    addr
}

/// A `grpc-timeout` value as the spec writes it (1 to 8 digits, then `H`, `M`, `S`, `m`, `u`
/// or `n`) read as a duration; `None` when malformed. The tests' own reading, independent of
/// the crate's parser, of what a server received.
pub fn grpc_timeout(value: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let unit = value.chars().last()?;
    let digits = value.get(..value.len() - unit.len_utf8())?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3_600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Asserts that a client's books balance: every request ended once (a success, a failure or
/// a cancellation), and nothing is left in flight at any endpoint.
pub fn books_balance<K: std::fmt::Debug>(
    retry: &meshless::retry::RetryStats,
    endpoints: &[meshless::balance::EndpointStats<K>],
) {
    assert_eq!(
        retry.requests(),
        retry.successes() + retry.failures() + retry.cancelled(),
        "requests {} = successes {} + failures {} + cancelled {}",
        retry.requests(),
        retry.successes(),
        retry.failures(),
        retry.cancelled()
    );
    for e in endpoints {
        assert_eq!(e.in_flight, 0, "{e:?}");
    }
}

/// The status a [`serve_statuses`] server answers a request with, from its hit number (from 0)
/// and its head.
pub type Respond = std::sync::Arc<
    dyn Fn(usize, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = u16> + Send>>
        + Send
        + Sync,
>;

/// A server on 127.0.0.1:0 answering every request head, on every connection, with an empty
/// response of the status `respond` gives; the count of requests it saw.
pub async fn serve_statuses(
    respond: Respond,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (respond, hits) = (respond.clone(), counted.clone());
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = read_head(&mut socket, &mut pending).await {
                    let n = hits.fetch_add(1, Ordering::SeqCst);
                    let status = respond(n, String::from_utf8_lossy(&head).into_owned()).await;
                    let text = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                    if socket.write_all(text.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, hits)
}
