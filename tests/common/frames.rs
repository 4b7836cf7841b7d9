//! HTTP/2 frames by hand, for servers that play the protocol frame by frame (`GOAWAY` with a
//! chosen last stream, resets at chosen moments), where the `h2` crate would not let a test.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;

/// One frame: its 9-byte head and `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Writes one frame; a peer that has gone is no error here (the test checks what it saw).
pub async fn write_frame(tcp: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let _ = tcp.write_all(&frame(kind, flags, stream, payload)).await;
}

/// The next frame: its type, flags, stream and payload; `None` once the peer closed.
pub async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.ok()?;
    let len = ((head[0] as usize) << 16) | ((head[1] as usize) << 8) | head[2] as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// `SETTINGS_MAX_CONCURRENT_STREAMS` (0x3) = 1: one stream at a time.
pub const ONE_STREAM: &[u8] = &[0, 3, 0, 0, 0, 1];

/// Reads the client's connection preface and answers with the server's `SETTINGS` (its
/// `settings` payload); false when the client went away first.
pub async fn accept_preface(tcp: &mut TcpStream, settings: &[u8]) -> bool {
    let mut preface = [0u8; 24];
    if tcp.read_exact(&mut preface).await.is_err() {
        return false;
    }
    write_frame(tcp, SETTINGS, 0, 0, settings).await;
    true
}
