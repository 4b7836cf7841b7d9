//! Deadlines to the last byte, through `meshless::http::Client` against raw TCP servers: the
//! total deadline and the body idle timeout cover reading the response body, streams opt out of
//! the total deadline but not of the idle timeout, and a stream's length never enters the RTT.
//!
//! These run on the real clock (paused time would race the sockets); every bound is generous
//! and no assertion depends on a sleep winning against the scheduler.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use meshless::deadline::Streaming;
use meshless::error::Kind;
use meshless::http::{Client, ResponseBody};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// How long a test waits for something that should end far sooner: the hang detector.
const BOUND: Duration = Duration::from_secs(5);

/// The raw-socket server every test here answers from (see `common::serve_sockets`).
use common::serve_sockets as serve;

/// Writes a chunked response head, then `chunks` one-byte chunks `every` apart, then either
/// ends the body or goes silent with the connection open.
async fn drip(
    mut socket: TcpStream,
    content_type: &str,
    chunks: usize,
    every: Duration,
    end: bool,
) {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for _ in 0..chunks {
        sleep(every).await;
        if socket.write_all(b"1\r\nx\r\n").await.is_err() {
            return;
        }
    }
    if end {
        let _ = socket.write_all(b"0\r\n\r\n").await;
        sleep(BOUND).await; // keep the connection for the client's pool
    } else {
        sleep(BOUND * 4).await;
    }
}

/// The kind of the meshless error somewhere in `err`'s source chain.
fn meshless_kind(err: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(ours) = e.downcast_ref::<meshless::Error>() {
            return Some(ours.kind());
        }
        next = e.source();
    }
    None
}

/// Reads `body` to its end: the data bytes received, and the error it ended with, if any.
async fn read(mut body: ResponseBody) -> (usize, Option<Kind>) {
    let mut bytes = 0;
    let read = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => bytes += frame.data_ref().map_or(0, |d| d.len()),
                Err(e) => return Some(meshless_kind(&*e).expect("a meshless error")),
            }
        }
        None
    };
    let end = timeout(BOUND * 2, read)
        .await
        .expect("the body never hangs");
    (bytes, end)
}

fn client(addr: SocketAddr, deadline: Duration) -> meshless::http::ClientBuilder {
    Client::builder()
        .endpoints([addr.to_string()])
        .deadline(deadline)
        .metrics(false)
}

#[tokio::test]
async fn a_stalled_body_ends_at_the_deadline_and_charges_the_endpoint() {
    let addr = serve(|mut socket, _| async move {
        let _ = socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
            .await;
        sleep(BOUND * 4).await; // then silence, the connection open
    })
    .await;
    let client = client(addr, Duration::from_millis(300)).build().unwrap();
    let started = Instant::now();
    let res = client.get("/").await.unwrap();
    assert_eq!(res.status(), 200);

    let err = timeout(BOUND, res.into_body().collect())
        .await
        .expect("the body ends by its deadline, not never")
        .unwrap_err();
    assert_eq!(meshless_kind(&*err), Some(Kind::DeadlineExceeded), "{err}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(290), "{took:?}");

    let endpoint = &client.endpoints()[0];
    assert_eq!(endpoint.failures, 1, "{endpoint:?}");
    assert_eq!(endpoint.requests, 1, "{endpoint:?}");
    assert_eq!(endpoint.cancelled, 0, "{endpoint:?}");
    assert_eq!(endpoint.in_flight, 0, "{endpoint:?}");
}

#[tokio::test]
async fn the_idle_timeout_ends_a_body_that_stops_dripping() {
    // Eight chunks 150 ms apart (1.2 s in all, longer than the 1 s idle limit, so the limit
    // must restart with each chunk), then silence.
    let addr =
        serve(|socket, _| drip(socket, "text/plain", 8, Duration::from_millis(150), false)).await;
    let client = client(addr, Duration::from_secs(30))
        .body_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let res = client.get("/").await.unwrap();
    let (bytes, end) = read(res.into_body()).await;
    assert_eq!(bytes, 8, "every chunk within the idle limit arrives");
    assert_eq!(end, Some(Kind::BodyIdleTimeout));
    assert_eq!(client.endpoints()[0].failures, 1);
}

/// Six chunks 150 ms apart outlive a 300 ms deadline: a stream (marked, or `text/event-stream`)
/// gets them all and then ends by the idle timeout; the same body, not a stream, ends by the
/// deadline.
#[tokio::test]
async fn a_stream_outlives_the_deadline_but_not_the_idle_timeout() {
    let addr = serve(|socket, head| async move {
        let content_type = if head.starts_with("GET /sse") {
            "text/event-stream; charset=utf-8"
        } else {
            "application/octet-stream"
        };
        drip(socket, content_type, 6, Duration::from_millis(150), false).await;
    })
    .await;
    let client = client(addr, Duration::from_millis(300))
        .body_idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();

    let mut marked = http::Request::get("/download")
        .body(Empty::<Bytes>::new())
        .unwrap();
    marked.extensions_mut().insert(Streaming);
    let res = client.request(marked).await.unwrap();
    assert_eq!(
        read(res.into_body()).await,
        (6, Some(Kind::BodyIdleTimeout))
    );

    let res = client.get("/sse").await.unwrap();
    assert_eq!(
        read(res.into_body()).await,
        (6, Some(Kind::BodyIdleTimeout))
    );

    let res = client.get("/download").await.unwrap();
    let (bytes, end) = read(res.into_body()).await;
    assert_eq!(end, Some(Kind::DeadlineExceeded));
    assert!(bytes < 6, "cut by the deadline after {bytes} chunks");
}

/// A stream that lasts 900 ms is recorded at its head: its length does not become the
/// endpoint's RTT. Its outcome is still recorded when it ends.
#[tokio::test]
async fn a_stream_s_rtt_is_taken_at_its_head() {
    let addr = serve(|socket, _| {
        drip(
            socket,
            "text/event-stream",
            6,
            Duration::from_millis(150),
            true,
        )
    })
    .await;
    let client = client(addr, Duration::from_secs(10)).build().unwrap();
    let res = client.get("/events").await.unwrap();
    assert_eq!(read(res.into_body()).await, (6, None));
    let endpoint = &client.endpoints()[0];
    assert_eq!(
        (endpoint.requests, endpoint.failures),
        (1, 0),
        "{endpoint:?}"
    );
    assert!(
        endpoint.rtt < Duration::from_millis(400),
        "a 900 ms stream reads as a slow endpoint: {endpoint:?}"
    );
}

/// How late past its deadline a body may end here: the reader's own pace (100 ms a frame at
/// most) and a busy machine's scheduling, far below what any of these bodies would take to end
/// on their own (5 s and more).
const LATE: Duration = Duration::from_secs(1);

/// Reads `body` one frame per `pace`, as a caller that handles each frame before asking for
/// the next: the data bytes received, the error it ended with, and when, from `started`.
async fn read_slowly(
    mut body: ResponseBody,
    pace: Duration,
    started: Instant,
) -> (usize, Option<Kind>, Duration) {
    let mut bytes = 0;
    let read = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => bytes += frame.data_ref().map_or(0, |d| d.len()),
                Err(e) => return Some(meshless_kind(&*e).expect("a meshless error")),
            }
            sleep(pace).await;
        }
        None
    };
    let end = timeout(BOUND * 2, read)
        .await
        .expect("the body never hangs");
    (bytes, end, started.elapsed())
}

/// A chunk every 50 ms for 5 s, read at a frame per 100 ms: a frame is always waiting when the
/// caller asks, so the body never waits for the network. It still ends at the deadline.
#[tokio::test]
async fn a_body_read_slower_than_it_arrives_ends_at_the_deadline() {
    let addr =
        serve(|socket, _| drip(socket, "text/plain", 100, Duration::from_millis(50), true)).await;
    let deadline = Duration::from_millis(500);
    let client = client(addr, deadline).build().unwrap();
    let started = Instant::now();
    let res = client.get("/").await.unwrap();
    let (bytes, end, took) =
        read_slowly(res.into_body(), Duration::from_millis(100), started).await;
    assert_eq!(end, Some(Kind::DeadlineExceeded), "after {bytes} chunks");
    assert!(took >= deadline && took < deadline + LATE, "{took:?}");
    assert!(bytes <= 5, "no chunk handed out past the deadline: {bytes}");
}

/// An 8 MiB body sent at once, read at a frame per 50 ms: it is all there, but the caller
/// would take seconds to read it, and the deadline ends it.
#[tokio::test]
async fn a_large_body_read_slowly_ends_at_the_deadline() {
    const SIZE: usize = 8 << 20;
    let addr = serve(|mut socket, _| async move {
        let mut answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n").into_bytes();
        answer.resize(answer.len() + SIZE, b'x');
        let _ = socket.write_all(&answer).await;
        sleep(BOUND * 4).await;
    })
    .await;
    let deadline = Duration::from_millis(500);
    let client = client(addr, deadline).build().unwrap();
    let started = Instant::now();
    let res = client.get("/").await.unwrap();
    let (bytes, end, took) = read_slowly(res.into_body(), Duration::from_millis(50), started).await;
    assert_eq!(end, Some(Kind::DeadlineExceeded), "after {bytes} bytes");
    assert!(took >= deadline && took < deadline + LATE, "{took:?}");
    assert!(bytes < SIZE);
    assert_eq!(client.endpoints()[0].in_flight, 0);
}

/// The server, not the caller, calls its answer a stream (`text/event-stream` on a request for
/// JSON), sends 5 of 100 bytes and goes silent. With no idle timeout configured the body still
/// ends, one deadline's length into the silence. That limit is a default the caller never
/// chose, and a healthy stream may be silent that long: the endpoint is not charged.
#[tokio::test]
async fn a_server_chosen_stream_that_goes_silent_ends_after_the_deadline_s_length() {
    let addr = serve(|mut socket, _| async move {
        let _ = socket
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                  content-length: 100\r\n\r\nhello",
            )
            .await;
        sleep(BOUND * 4).await;
    })
    .await;
    let deadline = Duration::from_millis(500);
    let client = client(addr, deadline).build().unwrap();
    let started = Instant::now();
    let res = client.get("/report.json").await.unwrap();
    let (bytes, end, took) = read_slowly(res.into_body(), Duration::ZERO, started).await;
    assert_eq!((bytes, end), (5, Some(Kind::BodyIdleTimeout)));
    assert!(took >= deadline && took < deadline + LATE, "{took:?}");
    let endpoint = &client.endpoints()[0];
    assert_eq!(
        (endpoint.requests, endpoint.failures, endpoint.in_flight),
        (1, 0, 0),
        "{endpoint:?}"
    );
    // Ended with an error, but by a limit that blames no one: a cancellation.
    let stats = client.stats();
    assert_eq!(
        (stats.successes, stats.failures, stats.cancelled),
        (0, 0, 1),
        "{stats:?}"
    );
}

/// The exemption holds by default: a stream that keeps producing (a chunk every 100 ms) is not
/// cut at its 500 ms deadline; only a silence as long as the deadline ends it.
#[tokio::test]
async fn a_stream_that_keeps_producing_outlives_the_deadline_by_default() {
    let addr = serve(|socket, _| {
        drip(
            socket,
            "text/event-stream",
            10,
            Duration::from_millis(100),
            false,
        )
    })
    .await;
    let deadline = Duration::from_millis(500);
    let client = client(addr, deadline).build().unwrap();
    let started = Instant::now();
    let res = client.get("/events").await.unwrap();
    let (bytes, end, took) = read_slowly(res.into_body(), Duration::ZERO, started).await;
    assert_eq!((bytes, end), (10, Some(Kind::BodyIdleTimeout)));
    let silent_from = Duration::from_millis(1000);
    assert!(
        took >= silent_from + deadline && took < silent_from + deadline + LATE,
        "{took:?}"
    );
}
