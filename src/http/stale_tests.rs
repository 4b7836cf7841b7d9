//! The stale shape, over an in-memory pipe whose far end plays the server.

use super::*;
use crate::classify::{Reason, classify_error, stale_connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

fn pipe(watch: bool) -> (Watched<DuplexStream>, DuplexStream) {
    let (client, server) = duplex(1024);
    (Watched::new(client, watch), server)
}

/// One exchange: the client writes a request, the server reads it and answers.
async fn exchange(client: &mut Watched<DuplexStream>, server: &mut DuplexStream) {
    client.write_all(b"request").await.unwrap();
    let mut request = [0u8; 7];
    server.read_exact(&mut request).await.unwrap();
    server.write_all(b"answer").await.unwrap();
    let mut answer = [0u8; 6];
    client.read_exact(&mut answer).await.unwrap();
}

fn is_stale(error: &io::Error) -> bool {
    stale_connection(error) && classify_error(error).reason() == Reason::StaleConnection
}

#[tokio::test]
async fn a_reused_connection_closed_before_any_answer_byte_is_stale() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    client.write_all(b"request").await.unwrap();
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
    let error = client.write_all(b"request").await.unwrap_err();
    assert!(is_stale(&error), "{error:?}");
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn the_first_request_of_a_connection_is_never_stale() {
    let (mut client, server) = pipe(true);
    client.write_all(b"request").await.unwrap();
    drop(server);
    // A clean close, as the stream reported it: the server failed a fresh connection.
    assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
    let (mut client, server) = pipe(true);
    drop(server);
    let error = client.write_all(b"request").await.unwrap_err();
    assert!(!stale_connection(&error), "{error:?}");
}

#[tokio::test]
async fn a_close_after_part_of_the_answer_is_not_stale() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    client.write_all(b"request").await.unwrap();
    server.write_all(b"ans").await.unwrap();
    drop(server);
    let mut part = [0u8; 3];
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
    client.write_all(b"request").await.unwrap();
    drop(server);
    assert_eq!(client.read(&mut [0u8; 16]).await.unwrap(), 0);
}

#[tokio::test]
async fn a_read_into_a_full_buffer_is_no_close() {
    let (mut client, mut server) = pipe(true);
    exchange(&mut client, &mut server).await;
    client.write_all(b"request").await.unwrap();
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
