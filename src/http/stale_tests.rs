//! The stale shape, over an in-memory pipe whose far end plays the server.

use super::*;
use crate::classify::{Reason, classify_error, stale_connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

pub(super) fn pipe(watch: bool) -> (Watched<DuplexStream>, DuplexStream) {
    let (client, server) = duplex(1024);
    (Watched::new(client, watch), server)
}

pub(super) const REQUEST: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

/// One exchange: the client writes `request`, the server reads it and answers `answer`.
pub(super) async fn ask(
    client: &mut Watched<DuplexStream>,
    server: &mut DuplexStream,
    request: &[u8],
    answer: &[u8],
) {
    client.write_all(request).await.unwrap();
    let mut read = vec![0u8; request.len()];
    server.read_exact(&mut read).await.unwrap();
    server.write_all(answer).await.unwrap();
    let mut read = vec![0u8; answer.len()];
    client.read_exact(&mut read).await.unwrap();
}

pub(super) async fn exchange(client: &mut Watched<DuplexStream>, server: &mut DuplexStream) {
    ask(client, server, REQUEST, ANSWER).await;
}

pub(super) fn is_stale(error: &io::Error) -> bool {
    stale_connection(error) && classify_error(error).reason() == Reason::StaleConnection
}

#[tokio::test]
async fn a_reused_connection_closed_before_any_answer_byte_is_stale() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    client.write_all(REQUEST).await.unwrap();
    drop(server);
    let error = client.read(&mut [0u8; 16]).await.unwrap_err();
    assert!(is_stale(&error), "{error:?}");
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn a_write_that_fails_on_a_reused_connection_is_stale() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    drop(server);
    let error = client.write_all(REQUEST).await.unwrap_err();
    assert!(is_stale(&error), "{error:?}");
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn the_first_request_of_a_connection_is_never_stale() {
    let (mut client, server) = pipe(true);
    client.write_all(REQUEST).await.unwrap();
    drop(server);
    // A clean close, as the stream reported it: the server failed a fresh connection.
    assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
    let (mut client, server) = pipe(true);
    drop(server);
    let error = client.write_all(REQUEST).await.unwrap_err();
    assert!(!stale_connection(&error), "{error:?}");
}

#[tokio::test]
async fn a_close_after_part_of_the_answer_is_not_stale() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    client.write_all(REQUEST).await.unwrap();
    server.write_all(&ANSWER[..12]).await.unwrap();
    drop(server);
    let mut part = [0u8; 12];
    client.read_exact(&mut part).await.unwrap();
    assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
}

#[tokio::test]
async fn an_idle_connection_closed_between_requests_ends_cleanly() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    drop(server);
    // No request was on its way: the pool's own read sees the close, as it always did.
    assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
}

#[tokio::test]
async fn an_unwatched_connection_reports_what_the_stream_reports() {
    let (mut client, mut server) = pipe(false);
    exchange(&mut client, &mut server).await;
    client.write_all(REQUEST).await.unwrap();
    drop(server);
    assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
}

#[tokio::test]
async fn a_read_into_a_full_buffer_is_no_close() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    client.write_all(REQUEST).await.unwrap();
    let mut none = [0u8; 0];
    let mut buf = ReadBuf::new(&mut none);
    let read =
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut client).poll_read(cx, &mut buf))).await;
    // No room, nothing read, and nothing closed: pending, or an empty read that is no error.
    assert!(
        matches!(read, Poll::Pending | Poll::Ready(Ok(()))),
        "{read:?}"
    );
    drop(server);
}

/// What the client reads once the server closes after answering `request` with `answer` and
/// the client wrote `then`, on a fresh connection or one `reused`.
async fn close_after(
    reused: bool,
    request: &[u8],
    answer: &[u8],
    then: &[u8],
) -> io::Result<usize> {
    let (mut client, mut server) = pipe(true);
    if reused {
        exchange(&mut client, &mut server).await;
    }
    ask(&mut client, &mut server, request, answer).await;
    client.write_all(then).await.unwrap();
    drop(server);
    client.read(&mut [0u8; 16]).await
}

#[tokio::test]
async fn a_close_after_an_interim_answer_is_not_stale() {
    // `100 Continue`, then the body, then the close: the server read the request; nothing
    // about it is stale, on a fresh connection or a reused one.
    for reused in [false, true] {
        let interim: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
        let read = close_after(reused, REQUEST, interim, b"body").await;
        assert_eq!(read.unwrap(), 0, "reused: {reused}");
    }
}

#[tokio::test]
async fn an_upgraded_connection_or_a_tunnel_ends_as_its_stream_does() {
    let upgrade: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\n\r\n";
    let read = close_after(true, REQUEST, upgrade, b"tunnelled bytes").await;
    assert_eq!(read.unwrap(), 0);
    let connect: &[u8] = b"CONNECT example.com:443 HTTP/1.1\r\n\r\n";
    let read = close_after(
        true,
        connect,
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"tunnelled bytes",
    )
    .await;
    assert_eq!(read.unwrap(), 0);
}

#[tokio::test]
async fn an_answer_dribbled_byte_by_byte_keeps_the_watch() {
    let (mut client, mut server) = pipe(true);
    client.write_all(REQUEST).await.unwrap();
    server.read_exact(&mut [0u8; REQUEST.len()]).await.unwrap();
    for byte in ANSWER {
        server.write_all(&[*byte]).await.unwrap();
        client.read_exact(&mut [0u8; 1]).await.unwrap();
    }
    client.write_all(REQUEST).await.unwrap();
    drop(server);
    let error = client.read(&mut [0u8; 16]).await.unwrap_err();
    assert!(is_stale(&error), "{error:?}");
}

#[tokio::test]
async fn a_switching_answer_split_across_reads_still_ends_the_watch() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    client.write_all(REQUEST).await.unwrap();
    server.read_exact(&mut [0u8; REQUEST.len()]).await.unwrap();
    for part in [&b"HTTP/1.1 1"[..], b"0", b"1 Switching Protocols\r\n\r\n"] {
        server.write_all(part).await.unwrap();
        client.read_exact(&mut vec![0u8; part.len()]).await.unwrap();
    }
    // The other protocol's bytes, shaped like a request: still not watched.
    client.write_all(REQUEST).await.unwrap();
    drop(server);
    assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
}

/// A request whose answer began while its body was still going out (an early answer to an
/// upload), on a fresh connection or a reused one: the rest of the body is no new request,
/// and the connection's end after it is the server's, read or written.
#[tokio::test]
async fn the_rest_of_a_body_after_an_early_answer_is_no_new_request() {
    const HEAD: &[u8] = b"PUT /upload HTTP/1.1\r\ncontent-length: 38\r\n\r\n";
    for reused in [false, true] {
        for end_on_write in [false, true] {
            let (mut client, mut server) = pipe(true);
            if reused {
                exchange(&mut client, &mut server).await;
            }
            client.write_all(HEAD).await.unwrap();
            client.write_all(b"half").await.unwrap();
            server
                .read_exact(&mut vec![0u8; HEAD.len() + 4])
                .await
                .unwrap();
            server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
            client.read_exact(&mut [0u8; 17]).await.unwrap();
            // Body bytes that begin like a method and a space are still body.
            client.write_all(b"SELECT 1;").await.unwrap();
            drop(server);
            let error = if end_on_write {
                client
                    .write_all(b"INSERT INTO t VALUES (1);")
                    .await
                    .unwrap_err()
            } else {
                match client.read(&mut [0u8; 16]).await {
                    Ok(n) => {
                        assert_eq!(n, 0, "reused: {reused}");
                        continue;
                    }
                    Err(error) => error,
                }
            };
            assert!(
                !stale_connection(&error),
                "reused: {reused}, on write: {end_on_write}: {error:?}"
            );
        }
    }
}

#[test]
fn a_request_starts_with_a_whole_request_line() {
    let requests: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
        b"BASELINE-CONTROL /x HTTP/1.1\r\n",
        b"get /a?b=c HTTP/1.0\r\n",
        b"CONNECT a:1 HTTP/1.1\r\n",
    ];
    for request in requests {
        assert!(
            starts_request(request),
            "{}",
            String::from_utf8_lossy(request)
        );
    }
    let others: [&[u8]; 10] = [
        b"",
        b"GET",
        b"GET /",
        b"GET / HTTP/1.1",
        b"GET  / HTTP/1.1\r\n",
        b"SELECT 1;",
        b"INSERT INTO t VALUES (1);",
        b"0\r\n",
        b"\x81\x05",
        b"A B",
    ];
    for other in others {
        assert!(!starts_request(other), "{}", String::from_utf8_lossy(other));
    }
}

#[tokio::test]
async fn upper_case_body_bytes_after_an_interim_answer_are_no_new_request() {
    for reused in [false, true] {
        let interim: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
        let read = close_after(reused, REQUEST, interim, b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(read.unwrap(), 0, "reused: {reused}");
    }
}

#[tokio::test]
async fn interim_answers_are_followed_to_the_final_one() {
    // Interim heads split anywhere across reads, then the final answer: the connection is an
    // ordinary keep-alive one after it, and its close on the next request is stale.
    let answers: [&[&[u8]]; 3] = [
        &[b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n", ANSWER],
        &[
            b"HTTP/1.1 100 Continue\r",
            b"\n\r",
            b"\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 20",
            b"0 OK\r\ncontent-length: 0\r\n\r\n",
        ],
        &[b"\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"],
    ];
    for parts in answers {
        let (mut client, mut server) = pipe(true);
        client.write_all(REQUEST).await.unwrap();
        server.read_exact(&mut [0u8; REQUEST.len()]).await.unwrap();
        for part in parts {
            server.write_all(part).await.unwrap();
            client.read_exact(&mut vec![0u8; part.len()]).await.unwrap();
        }
        client.write_all(REQUEST).await.unwrap();
        drop(server);
        let error = client.read(&mut [0u8; 16]).await.unwrap_err();
        assert!(is_stale(&error), "{parts:?}: {error:?}");
    }
}

#[tokio::test]
async fn a_close_between_an_interim_answer_and_the_final_one_is_not_stale() {
    for reused in [false, true] {
        let (mut client, mut server) = pipe(true);
        if reused {
            exchange(&mut client, &mut server).await;
        }
        ask(
            &mut client,
            &mut server,
            REQUEST,
            b"HTTP/1.1 103 Early Hints\r\n\r\n",
        )
        .await;
        // A request line written now is no new request: the answer has not come.
        client.write_all(REQUEST).await.unwrap();
        drop(server);
        assert_eq!(
            client.read(&mut [0u8; 16]).await.unwrap(),
            0,
            "reused: {reused}"
        );
    }
}

#[tokio::test]
async fn a_declared_body_is_body_however_it_begins() {
    // After an early final answer, the rest of a body its head declared is written; a request
    // line inside it is no new request, and the close after it is the server's.
    const HEAD: &[u8] = b"PUT /x HTTP/1.1\r\ncontent-length: 40\r\n\r\n";
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    client.write_all(HEAD).await.unwrap();
    server.read_exact(&mut vec![0u8; HEAD.len()]).await.unwrap();
    server.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    client.read_exact(&mut [0u8; 17]).await.unwrap();
    client
        .write_all(b"GET /inner HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    drop(server);
    assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
}

#[test]
fn a_heads_declared_body_is_its_content_length_less_what_went_with_it() {
    use super::super::framing::Body::{Done, Left, Open};
    let cases: [(&[u8], usize, Body); 13] = [
        (b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", 27, Done),
        (b"GET / HTTP/1.1\r\ncontent-length: 5\r\n\r\n", 37, Done),
        (b"GET / HTTP/1.1\r\n\r\nbody", 22, Open),
        (
            b"PUT / HTTP/1.1\r\nhost: a\r\nContent-Length: 5\r\n\r\n",
            46,
            Left(5),
        ),
        (
            b"POST / HTTP/1.1\r\ncontent-length:7\r\n\r\nabc",
            40,
            Left(4),
        ),
        (b"POST / HTTP/1.1\r\ncontent-length: 7\r\n\r\n", 60, Done),
        (
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            47,
            Open,
        ),
        (b"POST / HTTP/1.1\r\ncontent-length: +7\r\n\r\n", 39, Open),
        (
            b"POST / HTTP/1.1\r\ncontent-length: 7\r\ncontent-length: 7\r\n\r\n",
            57,
            Open,
        ),
        (b"POST / HTTP/1.1\r\ncontent-length: 7\r\n", 36, Open),
        (b"POST / HTTP/1.1\r\ncontent-length: 7\r\n\r", 37, Open),
        // Only part of the head went out: the rest comes with the next write.
        (b"PUT / HTTP/1.1\r\ncontent-length: 7\r\n\r\n", 5, Open),
        (b"DELETE / HTTP/1.1\nx: y\n\n", 24, Done),
    ];
    for (head, written, body) in cases {
        assert_eq!(
            declared_body(head, written),
            body,
            "{}",
            String::from_utf8_lossy(head)
        );
    }
}
