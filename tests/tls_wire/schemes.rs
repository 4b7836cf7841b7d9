//! Every spelling and route of `https` is TLS or a typed error: a plain TCP server records the
//! first bytes of every connection; a ClientHello starts 0x16 0x03.

use crate::support::chain;
use bytes::Bytes;
use http_body_util::Empty;
use meshless::http::Client;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tower::ServiceExt;

type Record = Arc<Mutex<Vec<Vec<u8>>>>;

/// A plain TCP server that never answers and records what each connection sent in its first
/// 500 ms.
async fn recorder() -> (SocketAddr, Record) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record: Record = Arc::default();
    let r = record.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    loop {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => bytes.extend_from_slice(&buf[..n]),
                        }
                    }
                })
                .await;
                r.lock().unwrap().push(bytes);
            });
        }
    });
    (addr, record)
}

/// Every recorded connection began with a TLS record and carried no secret in clear.
async fn assert_no_clear_text(record: &Record, what: &str) -> usize {
    tokio::time::sleep(Duration::from_millis(700)).await;
    let seen = record.lock().unwrap().clone();
    for bytes in &seen {
        if bytes.is_empty() {
            continue;
        }
        assert_eq!(
            &bytes[..2.min(bytes.len())],
            &[0x16, 0x03][..2.min(bytes.len())],
            "{what}: not a TLS ClientHello: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        );
        for secret in [&b"secret"[..], b"token", b"PRI * HTTP/2.0", b"hunter2"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{what}: {:?} left in clear",
                String::from_utf8_lossy(secret)
            );
        }
    }
    seen.len()
}

fn base(addr: SocketAddr) -> meshless::http::ClientBuilder {
    Client::builder()
        .endpoints([addr.to_string()])
        .connect_timeout(Duration::from_millis(300))
        .deadline(Duration::from_secs(2))
        .max_retries(0)
}

#[tokio::test]
async fn uppercase_https_in_a_string_is_tls_or_a_typed_error() {
    let (addr, record) = recorder().await;
    let client = base(addr).build().unwrap();
    let r = client.get("HTTPS://svc.example/secret?token=1").await;
    eprintln!(
        "HTTPS string: {:?}",
        r.as_ref()
            .map(|r| r.status())
            .map_err(|e| (e.kind(), chain(e)))
    );
    assert!(r.is_err());
    assert_no_clear_text(&record, "HTTPS://").await;
}

#[tokio::test]
async fn uppercase_https_from_uri_builder_is_tls_or_a_typed_error() {
    let (addr, record) = recorder().await;
    let client = base(addr).build().unwrap();
    let uri = http::Uri::builder()
        .scheme("HTTPS")
        .authority("svc.example")
        .path_and_query("/secret?token=1")
        .build()
        .unwrap();
    let req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let r = client.request(req).await;
    eprintln!(
        "HTTPS builder: {:?}",
        r.as_ref()
            .map(|r| r.status())
            .map_err(|e| (e.kind(), chain(e)))
    );
    assert!(r.is_err());
    // And through the tower Service entry.
    let uri = http::Uri::builder()
        .scheme("HtTpS")
        .authority("svc.example")
        .path_and_query("/secret?token=1")
        .build()
        .unwrap();
    let req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let r = client.clone().oneshot(req).await;
    assert!(r.is_err());
    assert_no_clear_text(&record, "HTTPS builder").await;
}

#[tokio::test]
async fn https_with_port_80_prior_knowledge_and_relative_paths_are_tls() {
    let (addr, record) = recorder().await;
    let client = base(addr).build().unwrap();
    assert!(
        client
            .get("https://svc.example:80/secret?token=1")
            .await
            .is_err()
    );
    let h2 = base(addr).http2_prior_knowledge(true).build().unwrap();
    assert!(h2.get("https://svc.example/secret?token=1").await.is_err());
    let rel = base(addr)
        .https(true)
        .authority("svc.example:80")
        .build()
        .unwrap();
    assert!(rel.get("/secret?token=1").await.is_err());
    let rel_h2 = base(addr)
        .https(true)
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    assert!(rel_h2.get("/secret?token=1").await.is_err());
    // Userinfo in an https URI: stripped, still TLS.
    assert!(
        client
            .get("https://user:hunter2@svc.example/secret")
            .await
            .is_err()
    );
    let n = assert_no_clear_text(&record, "https variants").await;
    assert!(n >= 5, "each variant connected: {n}");
}

/// tonic: an `https` endpoint with no TLS config is TLS or an error, never clear text.
#[tokio::test]
async fn tonic_https_endpoint_without_tls_config_is_never_clear_text() {
    let (addr, record) = recorder().await;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(300));
    let channel = meshless::tonic::Channel::builder()
        .endpoint(endpoint)
        .max_retries(0)
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    let req = http::Request::post("https://svc.example/secret.S/token")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::empty())
        .unwrap();
    let r = channel.oneshot(req).await;
    eprintln!("tonic https without tls config: ok={}", r.is_ok());
    assert_no_clear_text(&record, "tonic https endpoint").await;
}

/// tonic: a call whose URI says `https` (a generated client given an `https` origin) through an
/// `http` endpoint. The reqwest integration refuses this ("an https request is never sent to an
/// http endpoint"); the tonic channel must be TLS or an error too.
#[tokio::test]
async fn tonic_https_call_through_an_http_endpoint_is_never_clear_text() {
    let (addr, record) = recorder().await;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(300));
    let channel = meshless::tonic::Channel::builder()
        .endpoint(endpoint)
        .max_retries(0)
        .deadline(Duration::from_millis(800))
        .build()
        .unwrap();
    let req = http::Request::post("https://svc.example/secret.S/token")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::empty())
        .unwrap();
    let r = channel.oneshot(req).await;
    eprintln!("tonic https call via http endpoint: ok={}", r.is_ok());
    assert_no_clear_text(&record, "tonic https call, http endpoint").await;
}

/// reqwest: an `https` request through an `http` endpoint is refused (documented); and an
/// `https` endpoint with a reqwest built without TLS is an error, never clear text.
#[tokio::test]
async fn reqwest_https_is_never_clear_text() {
    let (addr, record) = recorder().await;
    let http = reqwest::Client::builder().build().unwrap();
    let plain = meshless::reqwest::Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .max_retries(0)
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    let r = plain
        .send(http.get("HTTPS://svc.example/secret?token=1"))
        .await;
    eprintln!(
        "reqwest HTTPS via http endpoint: {:?}",
        r.as_ref().map(|r| r.status()).map_err(|e| e.to_string())
    );
    assert!(r.is_err());
    let tls = meshless::reqwest::Client::builder(http.clone())
        .endpoints([format!("https://{addr}")])
        .max_retries(0)
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    let r = tls
        .send(http.get("https://svc.example/secret?token=1"))
        .await;
    eprintln!(
        "reqwest https endpoint: {:?}",
        r.as_ref().map(|r| r.status()).map_err(|e| e.to_string())
    );
    assert!(r.is_err());
    assert_no_clear_text(&record, "reqwest").await;
}
