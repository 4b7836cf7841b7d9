//! DNS discovery (`ClientBuilder::dns`) against real local servers, with `localhost`
//! as the name that resolves to this machine.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshless::balance::Balance;
use meshless::error::Kind;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A server on 127.0.0.1 answering 200; `/hold` waits for a permit of `release` first.
async fn server(release: Arc<Semaphore>, held: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let release = release.clone();
            let held = held.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let release = release.clone();
                    let held = held.clone();
                    async move {
                        if req.uri().path() == "/hold" {
                            held.fetch_add(1, Ordering::SeqCst);
                            release.acquire().await.expect("open").forget();
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn quick_fail_fast() -> meshless::balance::BalanceBuilder {
    Balance::builder().fail_fast(Duration::from_millis(300))
}

/// A name that does not resolve: requests fail fast with a typed error, and nothing is listed.
#[tokio::test]
async fn an_unresolvable_name_fails_fast_with_no_ready_endpoint() {
    let client = meshless::http::Client::builder()
        .dns("no-such-host.invalid:80")
        .dns_refresh(Duration::from_millis(50))
        .balance(quick_fail_fast())
        .build()
        .expect("valid configuration");
    let started = tokio::time::Instant::now();
    let err = client.get("/").await.expect_err("nothing to send to");
    assert_eq!(err.kind(), Kind::NoReadyEndpoint, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(client.endpoints().is_empty());
}

/// Requests in flight survive many refreshes of the same answer, and the endpoint's state
/// (its request count) is kept across them.
#[tokio::test]
async fn in_flight_requests_and_endpoint_state_survive_refreshes() {
    let release = Arc::new(Semaphore::new(0));
    let held = Arc::new(AtomicUsize::new(0));
    let addr = server(release.clone(), held.clone()).await;
    let client = meshless::http::Client::builder()
        .dns(format!("localhost:{}", addr.port()))
        .dns_refresh(Duration::from_millis(5))
        .deadline(Duration::from_secs(10))
        .build()
        .expect("valid configuration");
    for _ in 0..10 {
        assert_eq!(client.get("/").await.expect("answered").status(), 200);
    }
    let calls: Vec<_> = (0..20).map(|_| tokio::spawn(client.get("/hold"))).collect();
    while held.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ~40 refreshes while the 20 requests are held at the server.
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.add_permits(20);
    for call in calls {
        let res = call.await.unwrap().expect("held request answered");
        assert_eq!(res.status(), 200);
    }
    let ours: Vec<_> = client
        .endpoints()
        .into_iter()
        .filter(|e| e.key == addr)
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", client.endpoints());
    assert_eq!(
        ours[0].requests, 30,
        "the endpoint kept its counts across refreshes"
    );
}

/// Dropping the last clone of the client stops its DNS task.
#[tokio::test]
async fn dropping_the_client_stops_discovery() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let client = meshless::http::Client::builder()
        .dns("localhost:1")
        .dns_refresh(Duration::from_millis(5))
        .build()
        .expect("valid configuration");
    let clone = client.clone();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(metrics.num_alive_tasks() > before);
    drop(client);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(metrics.num_alive_tasks() > before, "a clone still lives");
    drop(clone);
    for _ in 0..100 {
        if metrics.num_alive_tasks() == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(metrics.num_alive_tasks(), before);
}

// FINDING: `build` trims the DNS name when it checks it and takes it as the authority, but
// the discovery task resolves the untrimmed text. `.dns(" localhost:PORT ")` builds, and then
// every resolution fails ("invalid port value"): no endpoint ever appears and every request
// fails with NoReadyEndpoint. Either the name is refused at build, or it resolves.
#[tokio::test]
async fn a_name_accepted_at_build_is_the_name_resolved() {
    let release = Arc::new(Semaphore::new(0));
    let addr = server(release, Arc::default()).await;
    let built = meshless::http::Client::builder()
        .dns(format!(" localhost:{} ", addr.port()))
        .dns_refresh(Duration::from_millis(20))
        .balance(quick_fail_fast())
        .build();
    let client = match built {
        Err(e) => return assert_eq!(e.setting(), "dns", "{e}"),
        Ok(client) => client,
    };
    let res = client.get("/").await;
    assert!(
        matches!(&res, Ok(r) if r.status() == 200),
        "built from \" localhost:{} \" but: {:?}; endpoints {:?}",
        addr.port(),
        res.map(|r| r.status()),
        client.endpoints()
    );
}

// FINDING: a DNS name without a port builds, though discovery needs `host:port`: every
// resolution then fails ("invalid socket address") and the client can never send anything.
// Either `build` refuses it (`ConfigError` on `dns`), or the name resolves to endpoints.
#[tokio::test]
async fn a_name_without_a_port_is_refused_at_build_or_resolves() {
    let built = meshless::http::Client::builder()
        .dns("localhost")
        .dns_refresh(Duration::from_millis(20))
        .balance(quick_fail_fast())
        .build();
    let client = match built {
        Err(e) => return assert_eq!(e.setting(), "dns", "{e}"),
        Ok(client) => client,
    };
    let res = client.get("/").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !client.endpoints().is_empty(),
        "\"localhost\" built, resolved to no endpoint; the request got {:?}",
        res.map(|r| r.status()).map_err(|e| e.kind())
    );
}
