//! The request path of `meshless::http::Client` without its per-request boxes: `get`, `request`,
//! the `tower::Service` impl and clones of the client all reach the same endpoint handle, so
//! they share one connection pool per endpoint and send the same logical authority; and the
//! named `ResponseFuture` never panics, not even when polled after it reported.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshless::error::Kind;
use meshless::http::{Client, ResponseFuture};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

/// What an HTTP/2 server saw: each request's `:authority` and path, and the connections it
/// accepted.
struct Seen {
    requests: Mutex<Vec<(Option<String>, String)>>,
    connections: AtomicUsize,
}

/// An HTTP/2 server answering `200` with an empty body. HTTP/2 so that the pool's behaviour is
/// deterministic: one connection per endpoint carries every request, whatever the timing.
async fn h2_server() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen {
        requests: Mutex::new(Vec::new()),
        connections: AtomicUsize::new(0),
    });
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            record.connections.fetch_add(1, Ordering::SeqCst);
            let record = record.clone();
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let authority = req.uri().authority().map(|a| a.to_string());
                record
                    .requests
                    .lock()
                    .unwrap()
                    .push((authority, req.uri().path().to_string()));
                async { Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new()))) }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    (addr, seen)
}

async fn read_to_end(call: ResponseFuture) {
    let res = call.await.expect("a response");
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.expect("a body");
}

#[tokio::test]
async fn every_way_of_sending_shares_the_endpoints_pool_and_names_the_logical_authority() {
    let (addr, seen) = h2_server().await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .authority("svc.example")
        .http2_prior_knowledge(true)
        .build()
        .expect("client");

    read_to_end(client.get("/get")).await;
    let req = http::Request::get("/request")
        .body(Empty::<Bytes>::new())
        .unwrap();
    read_to_end(client.request(req)).await;
    // A clone reaches the same endpoint handle, hence the same pool.
    read_to_end(client.clone().get("http://svc.example/clone")).await;
    // The `tower::Service` impl: readiness first, then `call`.
    let mut service = client.clone();
    let req = http::Request::get("/service")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let call = ServiceExt::<http::Request<Empty<Bytes>>>::ready(&mut service)
        .await
        .expect("ready")
        .call(req);
    read_to_end(call).await;

    let requests = seen.requests.lock().unwrap().clone();
    let authority = Some("svc.example".to_string());
    assert_eq!(
        requests,
        [
            (authority.clone(), "/get".to_string()),
            (authority.clone(), "/request".to_string()),
            (authority.clone(), "/clone".to_string()),
            (authority, "/service".to_string()),
        ]
    );
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "one endpoint, one pool, one HTTP/2 connection"
    );
}

#[tokio::test]
async fn a_response_future_polled_after_it_reported_answers_an_error_instead_of_panicking() {
    let (addr, _seen) = h2_server().await;
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .build()
        .expect("client");

    let mut call = Box::pin(client.get("/"));
    let res = call.as_mut().await.expect("a response");
    assert_eq!(res.status(), 200);
    let again = call.as_mut().await.expect_err("nothing left to report");
    assert_eq!(again.kind(), Kind::InvalidRequest);

    // Refused before sending (a URI that does not parse), then polled again.
    let mut refused = Box::pin(client.get("http://bad host/"));
    let first = refused.as_mut().await.expect_err("an invalid URI");
    assert_eq!(first.kind(), Kind::InvalidRequest);
    let again = refused.as_mut().await.expect_err("still an error");
    assert_eq!(again.kind(), Kind::InvalidRequest);

    // The same through the `tower::Service` impl.
    let mut service = client.clone();
    let req = http::Request::get("/").body(Empty::<Bytes>::new()).unwrap();
    let mut call = Box::pin(
        ServiceExt::<http::Request<Empty<Bytes>>>::ready(&mut service)
            .await
            .expect("ready")
            .call(req),
    );
    assert_eq!(call.as_mut().await.expect("a response").status(), 200);
    let again = call.as_mut().await.expect_err("nothing left to report");
    assert_eq!(again.kind(), Kind::InvalidRequest);
    assert_eq!(
        client.stats().requests,
        2,
        "the refused request reached no layer"
    );
}

#[test]
fn the_response_future_is_send_and_static() {
    fn spawnable<T: Send + 'static>() {}
    spawnable::<ResponseFuture>();
    spawnable::<<Client as Service<http::Request<Empty<Bytes>>>>::Future>();
}
