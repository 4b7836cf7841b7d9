//! Traffic through `Client::builder().kubernetes(..)` to real backends the slices point at.

use crate::common::*;
use crate::support::{PATIENCE, eventually, watching};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshless::error::Kind;
use meshless::http::Client;
use meshless::kube::{KubeService, MockApiServer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A backend answering 200 with its own name and the Host header it saw.
async fn backend(bind: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let h = h.clone();
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                h.fetch_add(1, Ordering::SeqCst);
                let host = req
                    .headers()
                    .get(http::header::HOST)
                    .map(|v| v.to_str().unwrap_or("?").to_string())
                    .unwrap_or_default();
                async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        format!("{addr} host={host}"),
                    ))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
    (addr, hits)
}

async fn client(api: &MockApiServer) -> Client {
    let client = Client::builder()
        .kubernetes(KubeService::new(api.client().expect("kube"), "shop", "web").port("http"))
        .balance(
            meshless::balance::Balance::builder()
                .default_rtt(Duration::from_micros(1))
                .fail_fast(Duration::from_millis(100)),
        )
        .max_retries(0)
        .deadline(Duration::from_secs(10))
        .build()
        .expect("client");
    watching(api, 1).await;
    client
}

async fn body_of(client: &Client) -> Result<String, String> {
    let res = client
        .get("/")
        .await
        .map_err(|e| format!("{:?}: {e}", e.kind()))?;
    let status = res.status();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).to_string();
    match status.as_u16() {
        200 => Ok(body),
        s => Err(format!("{s}: {body}")),
    }
}

/// An IPv6-only Service: requests reach the pod at its IPv6 address, with a valid Host.
#[tokio::test]
async fn an_ipv6_endpoint_gets_traffic() {
    let (addr, hits) = backend("[::1]:0").await;
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(list(
        10,
        &[slice("web-a", 9, "IPv6", addr.port(), &[ready("::1")])],
    ));
    let client = client(&api).await;
    eventually("the v6 endpoint", || client.endpoints().len() == 1).await;
    assert_eq!(client.endpoints()[0].key, addr);
    for _ in 0..5 {
        let body = body_of(&client).await.expect("a v6 answer");
        assert_eq!(body, format!("{addr} host=[::1]:{}", addr.port()));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 5);
}

/// Scaled to zero by the controller (the slice stays, with `endpoints: null` as the API
/// server serializes an empty list): a typed error, fast; scaled back: traffic again.
#[tokio::test]
async fn scaled_to_zero_with_an_empty_slice_and_back() {
    let (a, a_hits) = backend("127.0.0.1:0").await;
    let (b, b_hits) = backend("127.0.0.1:0").await;
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(list(
        10,
        &[
            slice("web-a", 8, "IPv4", a.port(), &[ready("127.0.0.1")]),
            slice("web-b", 9, "IPv4", b.port(), &[ready("127.0.0.1")]),
        ],
    ));
    let client = client(&api).await;
    eventually("two", || client.endpoints().len() == 2).await;
    for _ in 0..10 {
        body_of(&client).await.expect("an answer");
    }
    let empty_a = slice("web-a", 20, "IPv4", a.port(), &[])
        .replace(r#""endpoints":[]"#, r#""endpoints":null"#);
    let empty_b = slice("web-b", 21, "IPv4", b.port(), &[])
        .replace(r#""endpoints":[]"#, r#""endpoints":null"#);
    api.send(&event("MODIFIED", &empty_a));
    api.send(&event("MODIFIED", &empty_b));
    eventually("none", || client.endpoints().is_empty()).await;
    let started = std::time::Instant::now();
    let err = client.get("/").await.expect_err("no endpoint");
    assert_eq!(err.kind(), Kind::NoReadyEndpoint, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let before = a_hits.load(Ordering::SeqCst);
    api.send(&event(
        "MODIFIED",
        &slice("web-a", 22, "IPv4", a.port(), &[ready("127.0.0.1")]),
    ));
    eventually("A back", || client.endpoints().len() == 1).await;
    for _ in 0..5 {
        body_of(&client).await.expect("an answer after scale-up");
    }
    assert_eq!(a_hits.load(Ordering::SeqCst) - before, 5);
    let _ = b_hits;
}

/// Only a pod that is ready gets traffic: a terminating-but-serving endpoint, a not-ready
/// one and one of another port get nothing while a ready one exists.
#[tokio::test]
async fn only_the_ready_endpoint_gets_traffic() {
    let (good, good_hits) = backend("127.0.0.1:0").await;
    let (term, term_hits) = backend("127.0.0.1:0").await;
    let (unready, unready_hits) = backend("127.0.0.1:0").await;
    let (metrics, metrics_hits) = backend("127.0.0.1:0").await;
    let api = MockApiServer::start().await.expect("mock");
    let two_ports = format!(
        r#"[{{"name":"metrics","port":{}}},{{"name":"http","port":{}}}]"#,
        metrics.port(),
        good.port()
    );
    let terminating = Ep {
        ip: "127.0.0.1",
        ready: Some(false),
        serving: Some(true),
        terminating: Some(true),
    };
    api.set_list(list(
        10,
        &[
            slice_ports("web-a", 7, "IPv4", &two_ports, &[ready("127.0.0.1")]),
            slice("web-b", 8, "IPv4", term.port(), &[terminating]),
            slice(
                "web-c",
                9,
                "IPv4",
                unready.port(),
                &[not_ready("127.0.0.1")],
            ),
        ],
    ));
    let client = client(&api).await;
    eventually("the ready one", || client.endpoints().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    for _ in 0..30 {
        body_of(&client).await.expect("an answer");
    }
    let got = [
        good_hits.load(Ordering::SeqCst),
        term_hits.load(Ordering::SeqCst),
        unready_hits.load(Ordering::SeqCst),
        metrics_hits.load(Ordering::SeqCst),
    ];
    assert_eq!(got, [30, 0, 0, 0]);
}

/// Dropping every clone of the client stops its watch: no watch left open on the API server.
#[tokio::test]
async fn dropping_the_client_closes_its_watch() {
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(list(
        10,
        &[slice("web-a", 9, "IPv4", 80, &[ready("10.0.0.1")])],
    ));
    let client = client(&api).await;
    eventually("one", || client.endpoints().len() == 1).await;
    let clone = client.clone();
    drop(client);
    drop(clone);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let open = api.send(r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"11"}}}"#);
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} watch(es) still open after the client was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The docs (`ClientBuilder::kubernetes`): "Until the first list arrives there is no
/// endpoint, and requests wait for one up to the fail-fast timeout." The API server is down
/// for its first three lists (about 5 s of kube-runtime backoff): a request made meanwhile
/// must fail after the fail-fast timeout (200 ms here) with `NoReadyEndpoint`, not wait for
/// the list.
async fn before_the_first_list(retries: Option<u32>) -> Result<String, String> {
    let (addr, _hits) = backend("127.0.0.1:0").await;
    let api = MockApiServer::start().await.expect("mock");
    api.set_list(list(
        10,
        &[slice(
            "web-a",
            9,
            "IPv4",
            addr.port(),
            &[ready("127.0.0.1")],
        )],
    ));
    api.fail_next(http::StatusCode::INTERNAL_SERVER_ERROR, 3);
    let mut builder = Client::builder()
        .kubernetes(KubeService::new(api.client().expect("kube"), "shop", "web").port("http"))
        .balance(meshless::balance::Balance::builder().fail_fast(Duration::from_millis(200)));
    if let Some(n) = retries {
        builder = builder.max_retries(n);
    }
    let client = builder.build().expect("client");
    let (seen, held) = api.wait(PATIENCE, |s| s.failures >= 1).await;
    assert!(held, "{seen:?}");
    assert!(client.endpoints().is_empty());
    let started = std::time::Instant::now();
    let outcome = client.get("/").await;
    let took = started.elapsed();
    let seen = api.seen();
    match outcome {
        Ok(res) => Err(format!(
            "answered {} after {took:?} (API requests then {seen:?}): the request waited for the first list instead of failing fast",
            res.status()
        )),
        Err(e) if e.kind() == Kind::NoReadyEndpoint && took < Duration::from_secs(2) => {
            Ok(format!("{took:?}"))
        }
        Err(e) => Err(format!(
            "{:?} after {took:?}: {e:?} (API requests then {seen:?})",
            e.kind()
        )),
    }
}

#[tokio::test]
async fn before_the_first_list_requests_fail_fast_default_retries() {
    let r = before_the_first_list(None).await;
    assert!(r.is_ok(), "{}", r.unwrap_err());
}

#[tokio::test]
async fn before_the_first_list_requests_fail_fast_no_retries() {
    let r = before_the_first_list(Some(0)).await;
    assert!(r.is_ok(), "{}", r.unwrap_err());
}

/// A relist after `410 Gone` in which the controller has meanwhile renamed / re-split the
/// slices (same addresses, other slice names): nothing is removed or inserted.
#[tokio::test]
async fn a_relist_with_resliced_endpoints_changes_nothing() {
    let (api, tracker) = tracked(
        Some("http"),
        list(
            10,
            &[
                slice(
                    "web-a",
                    8,
                    "IPv4",
                    80,
                    &[ready("10.0.0.1"), ready("10.0.0.2")],
                ),
                slice("web-b", 9, "IPv4", 80, &[ready("10.0.0.3")]),
            ],
        ),
    )
    .await;
    let all = addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    tracker.wait_for("initial", &all).await;
    let before = tracker.changes.lock().unwrap().len();
    api.set_list(list(
        50,
        &[
            slice(
                "web-x",
                40,
                "IPv4",
                80,
                &[ready("10.0.0.3"), ready("10.0.0.1")],
            ),
            slice("web-y", 41, "IPv4", 80, &[ready("10.0.0.2")]),
        ],
    ));
    api.send(r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old","reason":"Expired","code":410}}"#);
    watching(&api, 2).await;
    assert_eq!(api.seen().lists, 2);
    // web-a (an old name) is deleted: the relist already replaced it; nothing changes.
    api.send(&event("DELETED", &slice("web-a", 51, "IPv4", 80, &[])));
    barrier(&api, &tracker, 60, &all).await;
    let changes = tracker.changes.lock().unwrap().clone();
    let real: Vec<&String> = changes[before..]
        .iter()
        .filter(|c| !c.contains("10.255.255.254"))
        .collect();
    assert!(
        real.is_empty(),
        "churn from a relist that changed nothing: {real:?}"
    );
}
