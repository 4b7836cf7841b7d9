//! TLS in `meshless::http::Client`: odd certificates, plain HTTP behind `https`, ALPN,
//! `tls_server_name` with IP endpoints.
#![cfg(feature = "tls")]

#[path = "tls/pki.rs"]
#[allow(dead_code)]
mod pki;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshless::http::Client;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("edges CA {}", rand_id()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        params,
        key,
    }
}

fn rand_id() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed) as u64 + std::process::id() as u64 * 1000
}

fn leaf(ca: &Ca, mut params: CertificateParams) -> (Vec<u8>, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    params.distinguished_name.push(DnType::CommonName, "leaf");
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
        .unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

#[derive(Default)]
struct Seen {
    handshakes: AtomicUsize,
    failed_handshakes: AtomicUsize,
    requests: AtomicUsize,
}

async fn serve_tls(cert: Vec<u8>, key: Vec<u8>, alpn: Vec<Vec<u8>>) -> (SocketAddr, Arc<Seen>) {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![CertificateDer::from(cert)], key)
    .unwrap();
    config.alpn_protocols = alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let s = s.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(_) => {
                        s.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
                s.handshakes.fetch_add(1, Ordering::SeqCst);
                let s2 = s.clone();
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    s2.requests.fetch_add(1, Ordering::SeqCst);
                    let v = format!("{:?}", req.version());
                    async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(v)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn rustls_error(err: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        next = e.source();
    }
    None
}

fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(" <- ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

fn client(addr: SocketAddr, ca_pem: Option<&str>) -> meshless::http::ClientBuilder {
    let b = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_secs(5));
    match ca_pem {
        Some(pem) => b.tls_root_pem(pem),
        None => b,
    }
}

#[tokio::test]
async fn an_expired_certificate_is_refused_with_a_tls_error() {
    let ca = ca();
    let mut params = CertificateParams::new(vec!["svc.example".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let (cert, key) = leaf(&ca, params);
    let (addr, seen) = serve_tls(cert, key, vec![b"http/1.1".to_vec()]).await;
    let client = client(addr, Some(&ca.pem)).build().unwrap();
    let err = client
        .post("https://svc.example/pay", "money")
        .await
        .expect_err("expired certificate");
    eprintln!("kind={:?} chain={}", err.kind(), chain(&err));
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(_))
        ),
        "{}",
        chain(&err)
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 0);
    eprintln!(
        "failed handshakes at the server: {}",
        seen.failed_handshakes.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_self_signed_certificate_is_refused_without_its_ca() {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["svc.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (addr, seen) = serve_tls(
        cert.der().to_vec(),
        key.serialize_der(),
        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    )
    .await;
    // Default roots (webpki) only.
    let client = client(addr, None).build().unwrap();
    let err = client
        .get("https://svc.example/")
        .await
        .expect_err("self-signed");
    eprintln!("kind={:?} chain={}", err.kind(), chain(&err));
    assert!(rustls_error(&err).is_some(), "{}", chain(&err));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    // Same certificate added as a root: accepted.
    let client = client_with(addr, &cert.pem());
    let res = client
        .get("https://svc.example/")
        .await
        .expect("trusted now");
    assert_eq!(res.status(), 200);
}

fn client_with(addr: SocketAddr, pem: &str) -> Client {
    Client::builder()
        .endpoints([addr.to_string()])
        .tls_root_pem(pem)
        .build()
        .unwrap()
}

/// A plain HTTP/1.1 server (hyper) behind an `https` endpoint: it answers the ClientHello with
/// a 400 in clear text. The client must fail with a TLS error, nothing in clear.
#[tokio::test]
async fn a_plain_http_server_behind_https_is_an_error_and_sees_no_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bytes_seen = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let b = bytes_seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let b = b.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = tcp.read(&mut buf).await.unwrap_or(0);
                b.lock().unwrap().push(buf[..n].to_vec());
                let _ = tcp
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let mut rest = Vec::new();
                let _ = tcp.read_to_end(&mut rest).await;
                b.lock().unwrap().push(rest);
            });
        }
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .post("https://svc.example/secret?token=1", "password=hunter2")
        .await
        .expect_err("plain HTTP is no TLS");
    eprintln!(
        "kind={:?} after {:?} chain={}",
        err.kind(),
        started.elapsed(),
        chain(&err)
    );
    assert!(
        rustls_error(&err).is_some(),
        "typed TLS error: {}",
        chain(&err)
    );
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = bytes_seen.lock().unwrap().clone();
    eprintln!("connections seen: {}", seen.len() / 2);
    for chunk in &seen {
        for secret in [&b"secret"[..], b"token", b"POST", b"hunter2"] {
            assert!(
                !chunk.windows(secret.len()).any(|w| w == secret),
                "{:?} left in clear",
                String::from_utf8_lossy(secret)
            );
        }
    }
}

/// The server offers only http/1.1 in ALPN; the client speaks HTTP/2 with prior knowledge and
/// offers only h2: the handshake must fail (no common protocol) or the client must speak h2
/// correctly; never hang, never send in clear.
#[tokio::test]
async fn alpn_mismatch_with_prior_knowledge_fails_typed_and_fast() {
    let ca = ca();
    let (cert, key) = leaf(
        &ca,
        CertificateParams::new(vec!["svc.example".to_string()]).unwrap(),
    );
    let (addr, seen) = serve_tls(cert, key, vec![b"http/1.1".to_vec()]).await;
    let client = client(addr, Some(&ca.pem))
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    let started = Instant::now();
    let result = client.post("https://svc.example/pay", "money").await;
    eprintln!(
        "after {:?}: {:?}",
        started.elapsed(),
        result
            .as_ref()
            .map(|r| r.status())
            .map_err(|e| (e.kind(), chain(e)))
    );
    let err = result.expect_err("no common ALPN protocol");
    assert!(rustls_error(&err).is_some(), "{}", chain(&err));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
}

/// The server has no ALPN at all; prior knowledge then means HTTP/2 anyway, which the auto
/// server understands.
#[tokio::test]
async fn no_alpn_at_the_server_with_prior_knowledge_speaks_h2() {
    let ca = ca();
    let (cert, key) = leaf(
        &ca,
        CertificateParams::new(vec!["svc.example".to_string()]).unwrap(),
    );
    let (addr, _seen) = serve_tls(cert, key, vec![]).await;
    let client = client(addr, Some(&ca.pem))
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    let res = client.get("https://svc.example/").await.expect("served");
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"HTTP/2.0");
    // And without prior knowledge: no ALPN means HTTP/1.1.
    let client = client_with(addr, &ca.pem);
    let res = client.get("https://svc.example/").await.expect("served");
    assert_eq!(res.version(), http::Version::HTTP_11);
}

/// The server offers only h2: the client (h2 + http/1.1) must speak HTTP/2.
#[tokio::test]
async fn an_h2_only_server_gets_http2() {
    let ca = ca();
    let (cert, key) = leaf(
        &ca,
        CertificateParams::new(vec!["svc.example".to_string()]).unwrap(),
    );
    let (addr, _seen) = serve_tls(cert, key, vec![b"h2".to_vec()]).await;
    let client = client_with(addr, &ca.pem);
    for _ in 0..3 {
        let res = client.get("https://svc.example/").await.expect("served");
        assert_eq!(res.version(), http::Version::HTTP_2);
    }
}

/// A certificate carrying only the IP SAN 127.0.0.1: `tls_server_name("127.0.0.1")` with a URI
/// naming svc.example must check the IP; a URI naming the IP without a server name too.
#[tokio::test]
async fn ip_server_names_are_checked_against_ip_sans() {
    let ca = ca();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let (cert, key) = leaf(&ca, params);
    let (addr, _seen) = serve_tls(cert, key, vec![b"http/1.1".to_vec()]).await;

    let by_name = client(addr, Some(&ca.pem))
        .tls_server_name("127.0.0.1")
        .build()
        .unwrap();
    let res = by_name.get("https://svc.example/").await;
    assert!(res.is_ok(), "{:?}", res.err().map(|e| chain(&e)));

    let plain = client(addr, Some(&ca.pem)).build().unwrap();
    let res = plain
        .get(format!("https://127.0.0.1:{}/", addr.port()))
        .await;
    assert!(res.is_ok(), "{:?}", res.err().map(|e| chain(&e)));

    // A relative URI with https on: the authority is the endpoint's address.
    let rel = client(addr, Some(&ca.pem)).https(true).build().unwrap();
    let res = rel.get("/x").await;
    assert!(res.is_ok(), "{:?}", res.err().map(|e| chain(&e)));

    // A DNS name the certificate lacks: refused.
    let err = plain
        .get("https://svc.example/")
        .await
        .expect_err("no DNS SAN");
    assert!(rustls_error(&err).is_some(), "{}", chain(&err));

    // tls_server_name of another IP: refused.
    let other = client(addr, Some(&ca.pem))
        .tls_server_name("127.0.0.2")
        .build()
        .unwrap();
    let err = other
        .get(format!("https://127.0.0.1:{}/", addr.port()))
        .await
        .expect_err("other IP");
    assert!(rustls_error(&err).is_some(), "{}", chain(&err));

    // Bracketed IPv6 server name.
    let v6 = client(addr, Some(&ca.pem)).tls_server_name("[::1]").build();
    eprintln!("tls_server_name([::1]) build: {:?}", v6.as_ref().err());
}

/// A certificate failure, for a POST with the default retries: how many handshakes does the
/// server see, and is the error returned quickly (a misconfiguration cannot heal in a retry)?
#[tokio::test]
async fn a_certificate_failure_is_not_hammered() {
    let ca = ca();
    let (cert, key) = leaf(
        &ca,
        CertificateParams::new(vec!["other.example".to_string()]).unwrap(),
    );
    let (addr, seen) = serve_tls(cert, key, vec![b"http/1.1".to_vec()]).await;
    let client = client(addr, Some(&ca.pem)).build().unwrap();
    for _ in 0..5 {
        let err = client
            .post("https://svc.example/pay", "money")
            .await
            .expect_err("wrong name");
        assert!(rustls_error(&err).is_some(), "{}", chain(&err));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = client.stats();
    eprintln!(
        "server failed handshakes {} retries {} failures {} endpoints {:?}",
        seen.failed_handshakes.load(Ordering::SeqCst),
        stats.retries,
        stats.failures,
        client.endpoints()
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
}

/// A server that accepts TCP and never answers the ClientHello: the deadline (and the connect
/// timeout, which covers the handshake) cut it; nothing in clear.
#[tokio::test]
async fn a_silent_tls_server_is_cut_by_the_deadline_and_the_connect_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        client.post("https://svc.example/", "x"),
    )
    .await
    .expect("cut")
    .expect_err("no handshake");
    eprintln!(
        "deadline 300ms: {:?} after {:?}: {}",
        err.kind(),
        started.elapsed(),
        chain(&err)
    );
    assert!(started.elapsed() < Duration::from_millis(800));

    let client = Client::builder()
        .endpoints([addr.to_string()])
        .connect_timeout(Duration::from_millis(200))
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(12),
        client.post("https://svc.example/", "x"),
    )
    .await
    .expect("cut")
    .expect_err("no handshake");
    eprintln!(
        "connect timeout 200ms: {:?} after {:?} ({} connections): {}",
        err.kind(),
        started.elapsed(),
        accepted.load(Ordering::SeqCst),
        chain(&err)
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}
