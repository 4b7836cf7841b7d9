//! The caller's doing after the response head is never the endpoint's failure either: a body
//! read after its deadline (the endpoint had delivered), a request body that fails while the
//! response streams (an upload, a bidirectional stream over HTTP/2), a body error that carries
//! an h2 reason of its own. And what is not the caller's doing is not taken for it: a
//! connection whose task died.
//!
//! Real sockets and real servers; each wait only makes sure that something happened after
//! something else.
//!
//! Over HTTP/1.1, a request body failing after the head cannot be told apart yet: hyper ends the
//! response body with a bare "connection error", as for a write that failed on the socket.

mod common;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use meshless::error::Kind;
use meshless::http::Client;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{err}");
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(&format!(" <- {e} [{e:?}]"));
        next = e.source();
    }
    out
}

/// HTTP/1.1 server answering every request at once with a 2-byte body.
async fn fast_h1() -> SocketAddr {
    common::serve_heads(|_head| async {
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
    })
    .await
}

/// The endpoint answered head and body at once; the caller reads the body only after the
/// deadline. The read fails with DeadlineExceeded (the deadline covers the body), and the
/// endpoint is not charged: it delivered in time.
#[tokio::test]
async fn a_slow_reader_is_not_charged_to_a_fast_endpoint() {
    let addr = fast_h1().await;
    let deadline = Duration::from_millis(200);
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(deadline)
        .metrics(false)
        .build()
        .unwrap();
    for _ in 0..5 {
        let res = client.get("/").await.unwrap();
        assert_eq!(res.status(), 200);
        // The whole answer is already here; the caller is busy past the deadline.
        tokio::time::sleep(deadline + Duration::from_millis(100)).await;
        let err = res.into_body().collect().await.unwrap_err();
        let kind = err.downcast_ref::<meshless::Error>().map(|e| e.kind());
        assert_eq!(kind, Some(Kind::DeadlineExceeded), "{}", chain(&*err));
    }
    let e = &client.endpoints()[0];
    assert_eq!(
        (e.requests, e.failures, e.ejections),
        (5, 0, 0),
        "the caller's slow reading was charged to a fast endpoint: {e:?}"
    );
    assert!(e.rtt < deadline, "the reader's wait became the RTT: {e:?}");
    // The caller got an error, so no success; the service did nothing wrong, so no failure.
    let stats = client.stats();
    assert_eq!(
        (stats.successes, stats.failures, stats.cancelled),
        (0, 0, 5),
        "{stats:?}"
    );
}

/// A request body fed by a channel: `Ok` frames are data, an `Err` fails the body.
struct ChanBody(mpsc::UnboundedReceiver<Result<Bytes, BoxError>>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|m| m.map(|r| r.map(Frame::data)))
    }
}

/// A response body: one chunk, then (if `open`) pending forever; it holds the request body so
/// that the server never drops its side of the stream.
struct Reply {
    chunk: Option<Bytes>,
    open: bool,
    _req: Option<hyper::body::Incoming>,
}

impl http_body::Body for Reply {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.chunk.take() {
            Some(c) => Poll::Ready(Some(Ok(Frame::data(c)))),
            None if self.open => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

/// An HTTP/2 server. `answer_first`: the head and a first chunk go out at once, before the
/// request body is read (as a gRPC bidi/streaming server does); else the whole request body
/// is read first, then `ok`.
async fn h2_server(answer_first: bool) -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let reply = if answer_first {
                            Reply {
                                chunk: Some(Bytes::from_static(b"hello")),
                                open: true,
                                _req: Some(req.into_body()),
                            }
                        } else {
                            let _ = req.into_body().collect().await;
                            Reply {
                                chunk: Some(Bytes::from_static(b"ok")),
                                open: false,
                                _req: None,
                            }
                        };
                        Ok::<_, std::convert::Infallible>(Response::new(reply))
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    addr
}

fn h2_client(addr: SocketAddr) -> Client {
    Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .deadline(Duration::from_secs(10))
        .metrics(false)
        .build()
        .unwrap()
}

/// HTTP/2, the server answers before the request body ends (streaming upload / gRPC bidi).
/// The caller's request body then fails: hyper resets the stream and the *response body*
/// yields that reset: the caller's fault, a cancellation for the endpoint.
#[tokio::test]
async fn a_request_body_failing_after_the_head_over_h2_is_the_callers_fault() {
    let addr = h2_server(true).await;
    let client = h2_client(addr);
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(Ok(Bytes::from_static(b"start"))).unwrap();
    let req = Request::post("/upload").body(ChanBody(rx)).unwrap();
    let res = client
        .request(req)
        .await
        .expect("the server answered at once");
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "hello");
    // Now the caller's own body fails.
    tx.send(Err("the caller's body failed".into())).unwrap();
    let err = loop {
        match body.frame().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the body ended cleanly"),
        }
    };
    let kind = err.downcast_ref::<meshless::Error>().map(|e| e.kind());
    assert_eq!(kind, Some(Kind::InvalidRequest), "{}", chain(&*err));
    let e = &client.endpoints()[0];
    assert_eq!(
        (e.failures, e.cancelled),
        (0, 1),
        "the caller's failing body was charged to the endpoint: {e:?}"
    );
    // The logical request is a cancellation too, as when the body fails before the head.
    let stats = client.stats();
    assert_eq!(
        (stats.successes, stats.failures, stats.cancelled),
        (0, 0, 1),
        "{stats:?}"
    );
}

/// HTTP/2, the caller's body error carries an h2::Error in its chain (as a proxy's inbound
/// `hyper::body::Incoming` does when its own caller reset the stream). hyper resets the
/// outgoing stream with *that* reason, not INTERNAL_ERROR: still the caller's fault, as over
/// HTTP/1 (where hyper keeps the user's error).
#[tokio::test]
async fn a_callers_body_error_carrying_an_h2_reason_is_the_callers_fault() {
    let addr = h2_server(false).await;
    let client = h2_client(addr);
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(Ok(Bytes::from_static(b"start"))).unwrap();
    tx.send(Err(
        Box::new(h2::Error::from(h2::Reason::CANCEL)) as BoxError
    ))
    .unwrap();
    let req = Request::post("/upload").body(ChanBody(rx)).unwrap();
    let err = client.request(req).await.expect_err("the body failed");
    let e = &client.endpoints()[0];
    assert_eq!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
    assert_eq!(
        (e.failures, e.cancelled),
        (0, 1),
        "charged to the endpoint: {e:?}"
    );
    assert_eq!(client.breaker().stats().failures, 0);
}

/// hyper's "dispatch task is gone" (the connection's task dropped: here its runtime shut down
/// mid-request) is a "user" error with a source, as a caller's failing body is; but it is the
/// connection's end, not the caller's doing: not `InvalidRequest`, and not a cancellation.
#[test]
fn a_connection_task_gone_is_not_the_callers_fault() {
    let (arrived_tx, arrived) = std::sync::mpsc::channel::<()>();
    let arrived_tx = std::sync::Mutex::new(arrived_tx);
    let rt_a = tokio::runtime::Runtime::new().unwrap();
    let client = rt_a.block_on(async move {
        let addr = common::serve_heads(move |head| {
            if head.starts_with(b"GET /held ") {
                let _ = arrived_tx.lock().unwrap().send(());
            }
            async move {
                if head.starts_with(b"GET /held ") {
                    std::future::pending::<()>().await;
                }
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
            }
        })
        .await;
        let client = Client::builder()
            .endpoints([addr.to_string()])
            .deadline(Duration::from_secs(30))
            .max_retries(0)
            .metrics(false)
            .build()
            .unwrap();
        // A pooled connection whose task lives on runtime A.
        let res = client.get("/").await.unwrap();
        let _ = res.into_body().collect().await.unwrap();
        client
    });
    let rt_b = tokio::runtime::Runtime::new().unwrap();
    let err = rt_b.block_on(async move {
        let c = client.clone();
        let call = tokio::spawn(async move { c.get("/held").await.map(|r| r.status()) });
        // Once the server has the request, the connection's runtime shuts down.
        tokio::task::spawn_blocking(move || arrived.recv().unwrap())
            .await
            .unwrap();
        std::thread::spawn(move || drop(rt_a)).join().unwrap();
        let out = call.await.unwrap();
        assert_eq!(client.stats().cancelled, 0, "{:?}", client.stats());
        out
    });
    let err = err.expect_err("the connection's task is gone");
    assert_ne!(err.kind(), Kind::InvalidRequest, "{}", chain(&err));
}
