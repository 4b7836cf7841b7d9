//! What the raw-socket tests share: reading request heads byte by byte, as a server would.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

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
