//! `https` through `meshless::http::Client`, offline: a local rustls server with certificates
//! made on the spot (a private CA and a certificate for `svc.example`), reached at
//! `127.0.0.1:<port>` while the client checks the certificate against `svc.example`.
//!
//! ```text
//! cargo run --example tls
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshless::http::Client;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // A private CA, and a server certificate it signs for the logical name.
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meshless example CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let server_cert = CertificateParams::new(vec!["svc.example".to_string()])?
        .signed_by(&server_key, &Issuer::from_params(&ca_params, &ca_key))?;

    // The server: rustls offering HTTP/2 and HTTP/1.1, answering with what it was asked.
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let chain = vec![CertificateDer::from(server_cert.der().to_vec())];
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|req: hyper::Request<Incoming>| async move {
                    let text = format!(
                        "hello over {:?}, you asked for {}\n",
                        req.version(),
                        req.uri()
                    );
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });

    // The client: the endpoint is an IP address; the name checked is the logical one.
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .tls_root_pem(ca.pem())
        .build()?;
    let res = client.get("https://svc.example/v1/quote?ccy=EUR").await?;
    println!("{} {:?}", res.status(), res.version());
    let body = res.into_body().collect().await?.to_bytes();
    print!("{}", String::from_utf8_lossy(&body));

    // A name the certificate does not carry is refused before any byte of the request leaves.
    match client.get("https://not-svc.example/").await {
        Ok(res) => println!("unexpected: {}", res.status()),
        Err(e) => {
            println!("refused as it should be: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                println!("  caused by: {c}");
                cause = c.source();
            }
        }
    }
    Ok(())
}
