//! Hostile configuration: files (TOML, YAML, JSON and random bytes), the gRPC service config
//! import, builders in code and reloads. No input panics; a bad value is refused with an error
//! naming its path (`endpoints[2]`, `retryThrottling.tokenRatio`, `methodConfig[1].name[0]`);
//! nothing that could never apply (a route no request fits, a name given twice) is accepted
//! silently; what is accepted builds a client that sends.
#![cfg(feature = "serde")]

mod builders;
mod files;
mod grpc;
mod random;
mod reload;

use meshless::http::{Client, ClientBuilder};
use meshless::policy::{ClientConfig, Format, GrpcServiceConfig, parse_duration};
use meshless::retry::RetryConfig;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Builds a client from settings made in code.
type Build = Box<dyn Fn() -> Result<Client, meshless::ConfigError>>;

const EP: &str = "endpoints = [\"127.0.0.1:8080\"]\n";

/// A tiny HTTP/1.1 server answering 200 to everything, closing each connection.
async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut seen = Vec::new();
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            seen.extend_from_slice(&buf[..n]);
                            if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

fn cfg(text: &str) -> Result<ClientConfig, meshless::ConfigError> {
    ClientConfig::from_toml_str(text)
}
