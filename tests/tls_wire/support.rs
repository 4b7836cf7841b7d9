//! Certificates made per test, and raw TLS servers whose every byte the test writes.

use meshless::http::Client;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

pub struct Pki {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

pub fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meshless test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("leaf params")
        .signed_by(&key, &issuer)
        .expect("leaf cert");
    Pki {
        ca_pem: ca.pem(),
        chain_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

pub fn server_config(pki: &Pki, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("key");
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What a raw server saw.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    pub handshakes: AtomicUsize,
    /// Complete request heads read (see `read_request`).
    pub requests: AtomicUsize,
    pub heads: Mutex<Vec<String>>,
}

impl Seen {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A TLS server on 127.0.0.1:0: every accepted connection is handshaken, then handed to
/// `handler` with its index (0 for the first connection).
pub async fn serve_tls<F, Fut>(config: Arc<ServerConfig>, handler: F) -> (SocketAddr, Arc<Seen>)
where
    F: Fn(TlsStream<TcpStream>, Arc<Seen>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handler = Arc::new(handler);
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let index = s.connections.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            let s = s.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                s.handshakes.fetch_add(1, Ordering::SeqCst);
                handler(tls, s, index).await;
            });
        }
    });
    (addr, seen)
}

/// Reads one request: its head, and its body when it has a `content-length`. `None` on EOF.
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    io: &mut S,
    seen: &Seen,
) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match io.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if io.read_exact(&mut body).await.is_err() {
        return None;
    }
    seen.requests.fetch_add(1, Ordering::SeqCst);
    seen.heads.lock().unwrap().push(head.clone());
    Some(head)
}

/// Ends the connection *without* close_notify: the TLS data written so far is flushed, then
/// TCP alone is closed (FIN).
pub async fn close_without_notify(mut tls: TlsStream<TcpStream>) {
    let _ = tls.flush().await;
    let (mut tcp, _) = tls.into_inner();
    let _ = tcp.shutdown().await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
}

/// Ends the connection with close_notify, then FIN.
pub async fn close_with_notify(mut tls: TlsStream<TcpStream>) {
    let _ = tls.flush().await;
    let _ = tls.shutdown().await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
}

pub fn client(addr: SocketAddr, pki: &Pki) -> meshless::http::ClientBuilder {
    Client::builder()
        .endpoints([addr.to_string()])
        .tls_root_pem(&pki.ca_pem)
        .deadline(Duration::from_secs(5))
}

pub fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(" <- ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// The kind of a `meshless::Error` in a body error's chain, if any.
pub fn kind_in(err: &(dyn StdError + 'static)) -> Option<meshless::error::Kind> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(m) = e.downcast_ref::<meshless::Error>() {
            return Some(m.kind());
        }
        next = e.source();
    }
    None
}

pub fn endpoint_failures(client: &Client) -> u64 {
    client.endpoints().iter().map(|e| e.failures).sum()
}

pub fn endpoint_requests(client: &Client) -> u64 {
    client.endpoints().iter().map(|e| e.requests).sum()
}

/// Waits (bounded) until `f` holds: the body's end is counted as the body future resolves, but
/// give the stack a few turns.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f()
}
