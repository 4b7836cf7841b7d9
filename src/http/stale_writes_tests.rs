//! Writes that are not whole (partial writes, as a TCP or TLS stream's full send buffer makes
//! them), bodies whose content looks like a request, and empty lines and bare line feeds in
//! answers: the stale shape is told only where it is certain.

use super::tests::{REQUEST, ask, exchange, is_stale, pipe};
use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

/// A stream that accepts at most the next scripted number of bytes per write (a partial
/// write, as a TCP or TLS stream does when its send buffer is full), then all it is offered.
struct Capped {
    inner: DuplexStream,
    caps: std::collections::VecDeque<usize>,
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let cap = self.caps.pop_front().unwrap_or(usize::MAX).min(buf.len());
        Pin::new(&mut self.inner).poll_write(cx, &buf[..cap])
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn capped(caps: &[usize]) -> (Watched<Capped>, DuplexStream) {
    let (client, server) = duplex(4096);
    let inner = Capped {
        inner: client,
        caps: caps.iter().copied().collect(),
    };
    (Watched::new(inner, true), server)
}

/// Writes `buf` as hyper does (the rest of the buffer after each partial write).
async fn write_as_hyper(client: &mut Watched<Capped>, mut buf: &[u8]) {
    while !buf.is_empty() {
        let n = client.write(buf).await.unwrap();
        buf = &buf[n..];
    }
}

/// A PUT whose head went out in two writes (the first partial: a head larger than the
/// socket's free send buffer, or a TLS stream's buffer), whose body ends with a request line
/// (a `message/http` body), answered early and then closed: the answer began, so the close is
/// the server's. The watch cannot count a body after a cut head, and steps aside.
#[tokio::test]
async fn a_body_after_a_head_cut_by_a_partial_write_is_no_new_request() {
    const INNER: &[u8] = b"GET /inner HTTP/1.1\r\n\r\n";
    let filler = b"0123456789";
    let body: Vec<u8> = [&filler[..], INNER].concat();
    let head = format!(
        "PUT /replay HTTP/1.1\r\ncontent-type: message/http\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    // Write 1 (head + body, flattened) accepts 5 bytes; write 2 accepts the rest of the head
    // and the filler; write 3 is the inner request line.
    let (mut client, mut server) = capped(&[5, head.len() - 5 + filler.len()]);
    let whole = [head.as_bytes(), &body].concat();
    let n1 = client.write(&whole).await.unwrap();
    assert_eq!(n1, 5);
    let n2 = client.write(&whole[n1..]).await.unwrap();
    assert_eq!(n2, head.len() - 5 + filler.len());
    // The server read head + filler and answers early (its status line).
    server.read_exact(&mut vec![0u8; n1 + n2]).await.unwrap();
    server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    client.read_exact(&mut [0u8; 17]).await.unwrap();
    // The rest of the PUT's own body.
    write_as_hyper(&mut client, &whole[n1 + n2..]).await;
    drop(server);
    let read = client.read(&mut [0u8; 16]).await;
    assert!(
        !read.as_ref().is_err_and(is_stale),
        "the answer began: {read:?}"
    );
}

/// A chunked upload (a streamed body of unknown size) answered early, on a stream that takes
/// the chunk's size line alone: the next write begins with the chunk's data, a request line
/// here. The answer began, so the connection's end is the server's, read or written.
#[tokio::test]
async fn a_chunk_split_from_its_size_line_is_no_new_request() {
    const CHUNK: &[u8] = b"17\r\nGET /inner HTTP/1.1\r\n\r\n\r\n0\r\n\r\n";
    let (mut client, server) = chunked_upload_answered_early().await;
    write_as_hyper(&mut client, CHUNK).await;
    drop(server);
    let read = client.read(&mut [0u8; 16]).await;
    assert!(
        !read.as_ref().is_err_and(is_stale),
        "the answer began: {read:?}"
    );

    let (mut client, server) = chunked_upload_answered_early().await;
    let n = client.write(CHUNK).await.unwrap();
    assert_eq!(n, 4, "the size line alone");
    drop(server);
    let error = client.write(&CHUNK[n..]).await.unwrap_err();
    assert!(!is_stale(&error), "the answer began: {error:?}");
}

/// A chunked upload's head written whole, and the server's early status line read, on a
/// stream whose next write takes 4 bytes only.
async fn chunked_upload_answered_early() -> (Watched<Capped>, DuplexStream) {
    const HEAD: &[u8] = b"PUT /replay HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
    let (mut client, mut server) = capped(&[usize::MAX, 4]);
    write_as_hyper(&mut client, HEAD).await;
    server.read_exact(&mut vec![0u8; HEAD.len()]).await.unwrap();
    server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    client.read_exact(&mut [0u8; 17]).await.unwrap();
    (client, server)
}

/// A GET with a body (search APIs: Elasticsearch, OpenSearch) answered early, whose body
/// carries a request line: body all the same, and the close after it the server's (a stale
/// verdict would resend the GET at once, charging no one). A `GET`'s head is not read (see
/// `declared_body`): the body it writes before its answer, with the head or after it, is what
/// tells. (A `GET` whose first body byte goes out only after an early answer, and begins with
/// a request line, would pass for a new request.)
#[tokio::test]
async fn a_get_body_after_an_early_answer_is_no_new_request() {
    const HEAD: &[u8] = b"GET /_search HTTP/1.1\r\ncontent-length: 30\r\n\r\n";
    const FIRST: &[u8] = b"{\"a\":1}";
    const REST: &[u8] = b"GET /inner HTTP/1.1\r\n\r\n";
    for reused in [false, true] {
        for with_head in [false, true] {
            let (mut client, mut server) = pipe(true);
            if reused {
                exchange(&mut client, &mut server).await;
            }
            if with_head {
                // One write, as a vectored write of the head and the first chunk.
                client.write_all(&[HEAD, FIRST].concat()).await.unwrap();
            } else {
                client.write_all(HEAD).await.unwrap();
                client.write_all(FIRST).await.unwrap();
            }
            server
                .read_exact(&mut vec![0u8; HEAD.len() + FIRST.len()])
                .await
                .unwrap();
            server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
            client.read_exact(&mut [0u8; 17]).await.unwrap();
            client.write_all(REST).await.unwrap();
            drop(server);
            let read = client.read(&mut [0u8; 16]).await;
            assert!(
                !read.as_ref().is_err_and(is_stale),
                "reused {reused}, with the head {with_head}: the answer began: {read:?}"
            );
        }
    }
}

/// A lone empty line (a stray CRLF after the last answer's body, which some servers send) read
/// after the next request was written, then the idle close: no byte of an answer came (RFC
/// 9112 §2.2: empty lines before a status line are ignored), so the close is stale.
#[tokio::test]
async fn a_lone_empty_line_then_a_close_is_stale() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    client.write_all(REQUEST).await.unwrap();
    server.write_all(b"\r\n").await.unwrap();
    client.read_exact(&mut [0u8; 2]).await.unwrap();
    drop(server);
    let read = client.read(&mut [0u8; 16]).await;
    assert!(
        read.as_ref().is_err_and(is_stale),
        "{read:?} ({:?})",
        client.exchange
    );
}

/// An interim answer whose lines end in a bare LF (httparse, hence hyper, accepts it) ends
/// like any other: a later stale close on the connection is stale.
#[tokio::test]
async fn a_bare_lf_interim_answer_keeps_the_watch() {
    let (mut client, mut server) = pipe(true);
    let answer: &[u8] = b"HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\ncontent-length: 0\n\n";
    ask(&mut client, &mut server, REQUEST, answer).await;
    client.write_all(REQUEST).await.unwrap();
    drop(server);
    let read = client.read(&mut [0u8; 16]).await;
    assert!(
        read.as_ref().is_err_and(is_stale),
        "{read:?} ({:?})",
        client.exchange
    );
}
