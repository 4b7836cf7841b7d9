//! Certificates made for each test run, and a real rustls server that reports what it saw.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;

/// A CA, a server certificate it signed, and a client certificate it signed.
pub struct Pki {
    pub ca_pem: String,
    pub server_chain_pem: String,
    pub server_key_pem: String,
    pub client_chain_pem: String,
    pub client_key_pem: String,
}

static NEXT_CA: AtomicUsize = AtomicUsize::new(0);

pub fn pki(server_names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    // Each CA its own name, so that a certificate from another CA has an unknown issuer.
    let serial = NEXT_CA.fetch_add(1, Ordering::Relaxed);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("meshless test CA {serial}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let names: Vec<String> = server_names.iter().map(|n| n.to_string()).collect();
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("server certificate");

    let client_key = KeyPair::generate().expect("client key");
    let client = CertificateParams::new(vec!["client.example".to_string()])
        .expect("client params")
        .signed_by(&client_key, &issuer)
        .expect("client certificate");

    Pki {
        ca_pem: ca.pem(),
        server_chain_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_chain_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// How the test server is set up.
pub struct ServerOptions {
    pub alpn: Vec<Vec<u8>>,
    /// Require a client certificate signed by this CA.
    pub client_ca_pem: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            alpn: vec![b"http/1.1".to_vec()],
            client_ca_pem: None,
        }
    }
}

/// A rustls server on `127.0.0.1:0` answering every request with what it saw:
/// `version sni=… host=… authority=… path=…`.
pub async fn serve(pki: &Pki, options: ServerOptions) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match &options.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.expect("CA PEM")).expect("CA");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("server chain");
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).expect("server key");
    let mut config = builder.with_single_cert(chain, key).expect("server config");
    config.alpn_protocols = options.alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A failed handshake is what some tests want: the client sees it.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let seen = format!(
                        "{:?} sni={} host={} authority={} path={}",
                        req.version(),
                        sni,
                        req.headers()
                            .get(http::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("-"),
                        req.uri().authority().map_or("-", |a| a.as_str()),
                        req.uri().path_and_query().map_or("-", |p| p.as_str()),
                    );
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(seen))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}
