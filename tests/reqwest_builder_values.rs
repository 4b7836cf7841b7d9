//! The reqwest client's builder with values that cannot work: each must be a `ConfigError`
//! naming the setting, not a client that fails every request (or every body) later.

#![cfg(feature = "reqwest")]

use meshless::reqwest::Client;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `body_idle_timeout(0)`: `DeadlineConfig::validate` refuses it ("0ns would fail every body
/// that waits for a frame"), the builder takes it, and every body that waits 5 ms fails.
#[tokio::test]
async fn a_zero_body_idle_timeout_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = socket.write_all(b"ok").await;
            });
        }
    });
    let http = reqwest::Client::new();
    let built = Client::builder(http.clone())
        .endpoints([format!("http://{addr}")])
        .body_idle_timeout(Duration::ZERO)
        .metrics(false)
        .build();
    let client = match built {
        Err(e) => {
            assert_eq!(e.setting(), "body_idle_timeout");
            return;
        }
        Ok(client) => client,
    };
    let res = client.send(http.get("http://svc/x")).await.unwrap();
    let body = res.bytes().await;
    panic!("body_idle_timeout(0) was accepted; a body 5 ms late: {body:?}");
}

/// A port that does not fit in 16 bits: accepted, then every request fails as
/// `InvalidRequest` ("InvalidPort").
#[tokio::test]
async fn an_endpoint_port_out_of_range_is_refused() {
    let http = reqwest::Client::new();
    for bad in ["http://127.0.0.1:99999", "http://127.0.0.1:65536"] {
        match Client::builder(http.clone()).endpoints([bad]).build() {
            Err(e) => assert_eq!(e.setting(), "endpoints", "{bad}"),
            Ok(client) => {
                let out = client.send(http.get("http://svc/x")).await;
                panic!(
                    "{bad} was accepted; a request: {:?}",
                    out.map(|r| r.status())
                );
            }
        }
    }
}

/// `Endpoint::new` documents that a fragment is refused; `http::Uri` drops it silently.
#[test]
fn an_endpoint_with_a_fragment_is_refused_as_documented() {
    let out = meshless::reqwest::Endpoint::new(reqwest::Client::new(), "http://10.0.0.1:8080#x");
    assert!(
        out.as_ref().is_err_and(|e| e.setting() == "endpoints"),
        "accepted as {:?}",
        out.map(|e| e.base().to_string())
    );
}
