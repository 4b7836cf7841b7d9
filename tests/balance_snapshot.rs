//! A balancer handle caches the endpoint set it last saw: changes applied through any other
//! handle must reach its very next request.

use meshless::balance::Balance;
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

type Res = http::Response<http_body_util::Empty<bytes::Bytes>>;

/// An endpoint that names itself in the `x-endpoint` header.
fn endpoint(
    name: &'static str,
) -> impl Service<http::Request<()>, Response = Res, Error = std::io::Error> + Clone {
    service_fn(move |_req: http::Request<()>| async move {
        let mut res = Res::new(http_body_util::Empty::new());
        res.headers_mut()
            .insert("x-endpoint", http::HeaderValue::from_static(name));
        Ok(res)
    })
}

/// Which endpoint answered. Asserts that the request was picked at once: under paused time, a
/// request that found no endpoint in a stale set would wait for its recheck and still succeed.
fn served_by<B>(res: Result<http::Response<B>, meshless::Error>, sent: Instant) -> String {
    assert_eq!(Instant::now(), sent, "the request waited for an endpoint");
    let res = res.expect("an endpoint answers");
    res.headers()["x-endpoint"].to_str().unwrap().to_string()
}

#[tokio::test(start_paused = true)]
async fn a_handle_sees_changes_made_through_another_on_its_next_request() {
    let writer = Balance::builder().build();
    writer.insert("a", endpoint("a"));
    let mut reader = writer.clone();
    // The reader caches the set holding only "a".
    let sent = Instant::now();
    let res = reader
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await;
    assert_eq!(served_by(res, sent), "a");

    // Swapped through the other handle: the reader's next request must go to "b".
    writer.insert("b", endpoint("b"));
    writer.remove(&"a");
    for _ in 0..20 {
        let sent = Instant::now();
        let res = reader
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await;
        assert_eq!(served_by(res, sent), "b");
    }

    // And back, through a handle cloned before any change.
    let mut old = reader.clone();
    writer.insert("c", endpoint("c"));
    writer.remove(&"b");
    let sent = Instant::now();
    let res = old
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await;
    assert_eq!(served_by(res, sent), "c");
    // Emptied: the cached set must not keep serving a removed endpoint.
    writer.remove(&"c");
    let res = reader
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await;
    let err = res.expect_err("no endpoint is left");
    assert_eq!(err.kind(), meshless::error::Kind::NoReadyEndpoint);
}

#[tokio::test(start_paused = true)]
async fn an_idle_handle_keeps_no_removed_endpoint_alive() {
    let alive = std::sync::Arc::new(());
    let held = alive.clone();
    let service = service_fn(move |_req: http::Request<()>| {
        let _held = &held;
        async move { Ok::<_, std::io::Error>(Res::new(http_body_util::Empty::new())) }
    });
    let mut balance = Balance::builder().build();
    balance.insert("a", service);
    // The handle has read (and cached) the set holding "a".
    let res = balance
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await;
    drop(res.expect("an answer"));
    assert_eq!(std::sync::Arc::strong_count(&alive), 2);
    balance.remove(&"a");
    // No request is in flight and the handle is idle: the service must be gone.
    assert_eq!(std::sync::Arc::strong_count(&alive), 1);
}
