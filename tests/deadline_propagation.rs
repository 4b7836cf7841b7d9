//! Deadlines are never extended downstream: the `grpc-timeout` a server receives is at most
//! the caller's own, the time left before the request's deadline and the attempt timeout.
//! Through `meshless::http::Client`, against a raw TCP server that records the header.

mod common;

use bytes::Bytes;
use http_body_util::Empty;
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use meshless::http::Client;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tower::{ServiceBuilder, ServiceExt};

/// Answers every request with `200`, sending the `grpc-timeout` it carried (or `None`).
async fn server() -> (SocketAddr, mpsc::UnboundedReceiver<Option<String>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = common::serve_heads(move |head| {
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let timeout = head
            .lines()
            .find_map(|l| l.strip_prefix("grpc-timeout:"))
            .map(|v| v.trim().to_string());
        let _ = tx.send(timeout);
        async { b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec() }
    })
    .await;
    (addr, rx)
}

fn grpc_request(timeout: Option<&str>) -> http::Request<Empty<Bytes>> {
    let mut req = http::Request::post("/greeter.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .body(Empty::new())
        .unwrap();
    if let Some(t) = timeout {
        req.headers_mut().insert("grpc-timeout", t.parse().unwrap());
    }
    req
}

/// What the server saw, as a duration.
async fn seen(rx: &mut mpsc::UnboundedReceiver<Option<String>>) -> Duration {
    let value = rx.recv().await.unwrap().expect("a grpc-timeout was sent");
    common::grpc_timeout(&value).expect("a valid grpc-timeout")
}

#[tokio::test]
async fn the_callers_grpc_timeout_is_never_raised() {
    let (addr, mut rx) = server().await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(5))
        .metrics(false)
        .build()
        .unwrap();

    // The caller's 100 ms is the smallest: it leaves as is (never 5 s).
    client.request(grpc_request(Some("100m"))).await.unwrap();
    assert!(seen(&mut rx).await <= Duration::from_millis(100));

    // The caller's 60 s is more than the attempt may take: lowered to at most 5 s.
    client.request(grpc_request(Some("60S"))).await.unwrap();
    let limit = seen(&mut rx).await;
    assert!(limit <= Duration::from_secs(5), "{limit:?}");
    assert!(limit > Duration::from_secs(4), "{limit:?}");

    // A malformed value is replaced by ours.
    client.request(grpc_request(Some("soon"))).await.unwrap();
    let limit = seen(&mut rx).await;
    assert!(limit <= Duration::from_secs(5) && limit > Duration::from_secs(4));
}

#[tokio::test]
async fn a_callers_value_above_the_remaining_deadline_is_lowered() {
    let (addr, mut rx) = server().await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_secs(2))
        .attempt_timeout(Duration::from_secs(5))
        .metrics(false)
        .build()
        .unwrap();
    client.request(grpc_request(Some("60S"))).await.unwrap();
    let limit = seen(&mut rx).await;
    assert!(limit <= Duration::from_secs(2), "{limit:?}");
    assert!(limit > Duration::from_secs(1), "{limit:?}");
}

#[tokio::test]
async fn layers_with_no_limit_do_not_panic() {
    let (addr, mut rx) = server().await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::MAX)
        .attempt_timeout(Duration::MAX)
        .body_idle_timeout(Duration::MAX)
        .metrics(false)
        .build()
        .unwrap();
    let res = client.request(grpc_request(Some("100m"))).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(seen(&mut rx).await <= Duration::from_millis(100));

    // The layers on their own, over any service.
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::MAX).body_idle_timeout(Duration::MAX))
        .layer(AttemptTimeoutLayer::new(Duration::MAX).deadline_header(true))
        .service(tower::service_fn(|req: http::Request<()>| async move {
            let mut res = http::Response::new(Empty::<Bytes>::new());
            *res.headers_mut() = req.headers().clone();
            Ok::<_, std::convert::Infallible>(res)
        }));
    let res = svc.oneshot(http::Request::new(())).await.unwrap();
    assert!(
        res.headers()
            .contains_key(meshless::deadline::DEADLINE_HEADER)
    );
}
