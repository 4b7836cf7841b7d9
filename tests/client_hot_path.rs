//! The request path of `meshless::http::Client` without its per-request boxes: `get`, `request`,
//! the `tower::Service` impl and clones of the client all reach the same endpoint handle, so
//! they share one connection pool per endpoint and send the same logical authority; the `Host`
//! header written once per endpoint is byte for byte the one hyper-util writes; and the named
//! `ResponseFuture` never panics, not even when polled after it reported.

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

/// Reads one request head (these requests have no body) from `tcp`.
async fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A raw HTTP/1.1 server answering `200` with an empty body, recording every request head as
/// it arrived on the wire.
async fn h1_server() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let record = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut tcp).await {
                    record.lock().unwrap().push(head);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if tcp.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

fn hosts(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|l| l.strip_prefix("host: "))
        .collect()
}

#[tokio::test]
async fn the_host_header_is_the_one_hyper_util_writes_and_never_overrides_the_callers() {
    let (addr, heads) = h1_server().await;

    // The endpoint's own address: the head is byte for byte the one of a bare hyper-util
    // client sent the same URI.
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .build()
        .expect("client");
    read_to_end(client.get(format!("http://{addr}/same"))).await;
    read_to_end(client.get("/same")).await;
    // No path at all: `/`, as hyper-util sends it.
    read_to_end(client.get(format!("http://{addr}"))).await;
    let bare = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let res = bare
        .get(format!("http://{addr}/same").parse().unwrap())
        .await
        .expect("a response");
    res.into_body().collect().await.expect("a body");

    // A configured authority: its default port is left out, another port is kept, another host in the URI is hyper-util's to write, and the caller's `Host` stays.
    let default_port = Client::builder()
        .endpoints([addr.to_string()])
        .authority("svc.example:80")
        .build()
        .expect("client");
    read_to_end(default_port.get("/a")).await;
    read_to_end(default_port.get("http://svc.example:80/b")).await;
    read_to_end(default_port.get("http://other.example:8080/c")).await;
    let req = http::Request::get("/d")
        .header("host", "custom.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    read_to_end(default_port.request(req)).await;
    let written = Client::builder()
        .endpoints([addr.to_string()])
        .authority("svc.example:08080")
        .build()
        .expect("client");
    read_to_end(written.get("/e")).await;
    // hyper-util's own, for comparison: a port written with a leading zero goes out as its
    // number.
    read_to_end(written.get("http://other.example:08080/f")).await;

    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 10);
    // Apart from the attempt number the retry layer announces (one retry layer per call
    // chain), which bare hyper-util (heads[3]) does not send.
    assert!(!heads[3].contains("x-meshless-attempt"));
    let heads: Vec<String> = heads
        .iter()
        .enumerate()
        .map(|(i, h)| {
            assert!(i == 3 || h.contains("x-meshless-attempt: 1\r\n"), "{h}");
            h.replace("x-meshless-attempt: 1\r\n", "")
        })
        .collect();
    let no_path = heads[2].replacen("GET / ", "GET /same ", 1);
    let heads = [&heads[..2], &heads[3..]].concat();
    assert_eq!(heads[0], heads[2], "meshless and bare hyper-util, same URI");
    assert_eq!(
        heads[1], heads[2],
        "a path, completed with the endpoint's address"
    );
    assert_eq!(no_path, heads[2], "no path: `/`, the rest the same");
    let endpoint = addr.to_string();
    let expected: [&[&str]; 9] = [
        &[&endpoint],
        &[&endpoint],
        &[&endpoint],
        &["svc.example"],
        &["svc.example"],
        &["other.example:8080"],
        &["custom.example"],
        &["svc.example:8080"],
        &["other.example:8080"],
    ];
    for (head, expected) in heads.iter().zip(expected) {
        assert_eq!(hosts(head), expected, "{head}");
    }
}
