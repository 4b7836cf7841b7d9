//! Bad bytes on a TLS connection: clear text after the handshake, raw alerts, oversized
//! records, closes before the answer; and how often each request is sent.

use crate::support::*;
use http_body_util::BodyExt;
use meshless::error::Kind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::AsyncWriteExt;

/// Writes `bytes` straight to TCP, under the TLS layer (after flushing what TLS holds).
async fn raw(tls: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>, bytes: &[u8]) {
    let _ = tls.flush().await;
    let _ = tls.get_mut().0.write_all(bytes).await;
    let _ = tls.get_mut().0.flush().await;
}

/// A TLS server that answers each connection's first request with `200 ok`, then writes `reply`
/// for the second and closes without `close_notify`.
async fn answer_once_then(pki: &Pki, reply: &'static [u8]) -> (SocketAddr, Arc<Seen>) {
    serve_tls(
        server_config(pki, &[b"http/1.1"]),
        move |mut tls, seen, _| async move {
            if read_request(&mut tls, &seen).await.is_none() {
                return;
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            let _ = tls.flush().await;
            if read_request(&mut tls, &seen).await.is_none() {
                return;
            }
            raw(&mut tls, reply).await;
            close_without_notify(tls).await;
        },
    )
    .await
}

const CLEAR_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
/// A TLS 1.2-style plaintext fatal alert (internal_error).
const RAW_ALERT: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50];
/// An application-data record header announcing 65535 bytes (above 2^14 + 256).
const HUGE_RECORD: &[u8] = &[0x17, 0x03, 0x03, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];

/// On a fresh connection, after the request arrived, the server sends `reply` under TLS.
/// The client must fail with a typed error, the POST must be seen once, the endpoint charged.
async fn fresh_connection_fault(reply: &'static [u8]) -> (usize, u64, String) {
    let pki = pki(&["svc.example"]);
    let (addr, seen) = serve_tls(
        server_config(&pki, &[b"http/1.1"]),
        move |mut tls, seen, _| async move {
            if read_request(&mut tls, &seen).await.is_none() {
                return;
            }
            raw(&mut tls, reply).await;
            close_without_notify(tls).await;
        },
    )
    .await;
    let client = client(addr, &pki).max_retries(2).build().unwrap();
    let result = client.post("https://svc.example/pay", "money").await;
    let text = match result {
        Ok(res) => format!("OK {}", res.status()),
        Err(e) => format!("ERR kind={:?} {}", e.kind(), chain(&e)),
    };
    eventually(|| endpoint_requests(&client) >= 1).await;
    (seen.requests(), endpoint_failures(&client), text)
}

#[tokio::test]
async fn a_clear_text_answer_on_a_tls_connection_is_refused_and_the_post_sent_once() {
    let (requests, failures, text) = fresh_connection_fault(CLEAR_ANSWER).await;
    assert!(
        text.starts_with("ERR"),
        "clear text accepted over https: {text}"
    );
    assert_eq!(requests, 1, "{text}");
    assert_eq!(failures, 1, "{text}");
}

#[tokio::test]
async fn a_raw_alert_mid_exchange_is_a_typed_error_and_the_post_sent_once() {
    let (requests, failures, text) = fresh_connection_fault(RAW_ALERT).await;
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!(requests, 1, "{text}");
    assert_eq!(failures, 1, "{text}");
}

#[tokio::test]
async fn an_oversized_record_is_a_typed_error_and_the_post_sent_once() {
    let (requests, failures, text) = fresh_connection_fault(HUGE_RECORD).await;
    assert!(text.starts_with("ERR"), "{text}");
    assert_eq!(requests, 1, "{text}");
    assert_eq!(failures, 1, "{text}");
}

/// The server reads the request, then closes (with or without close_notify) with no answer.
/// A POST may have been acted on: sent once. A GET may be sent again (at most 1 + retries).
#[tokio::test]
async fn a_close_after_the_request_sends_a_post_once_and_a_get_at_most_one_plus_retries() {
    for notify in [true, false] {
        for post in [true, false] {
            let pki = pki(&["svc.example"]);
            let (addr, seen) = serve_tls(
                server_config(&pki, &[b"http/1.1"]),
                move |mut tls, seen, _| async move {
                    if read_request(&mut tls, &seen).await.is_none() {
                        return;
                    }
                    if notify {
                        close_with_notify(tls).await
                    } else {
                        close_without_notify(tls).await
                    }
                },
            )
            .await;
            let client = client(addr, &pki).max_retries(2).build().unwrap();
            let result = match post {
                true => client.post("https://svc.example/pay", "money").await,
                false => client.get("https://svc.example/get").await,
            };
            let err = result.expect_err("no answer");
            eventually(|| endpoint_requests(&client) >= 1).await;
            let label = format!(
                "notify={notify} post={post}: seen={} kind={:?} failures={} {}",
                seen.requests(),
                err.kind(),
                endpoint_failures(&client),
                chain(&err)
            );
            eprintln!("{label}");
            if post {
                assert_eq!(seen.requests(), 1, "{label}");
            } else {
                assert!((1..=3).contains(&seen.requests()), "{label}");
            }
            assert!(endpoint_failures(&client) >= 1, "charged: {label}");
        }
    }
}

/// A keep-alive TLS connection carried one good answer; the next request's answer is corrupt
/// (clear text, or a raw alert, or an oversized record). That is the server's fault, not the
/// keep-alive race (which over TLS looks like close_notify, a FIN or a reset): it must be
/// charged to the endpoint, and a POST is never sent twice.
#[tokio::test]
async fn a_corrupt_answer_on_a_reused_tls_connection_is_charged_to_the_endpoint() {
    let mut report = Vec::new();
    for (name, reply) in [
        ("clear text", CLEAR_ANSWER),
        ("raw alert", RAW_ALERT),
        ("huge record", HUGE_RECORD),
    ] {
        let pki = pki(&["svc.example"]);
        let (addr, seen) = answer_once_then(&pki, reply).await;
        let client = client(addr, &pki).max_retries(2).build().unwrap();
        let first = client.get("https://svc.example/1").await.expect("first");
        first.into_body().collect().await.expect("first body");
        let second = client.post("https://svc.example/2", "money").await;
        let text = match &second {
            Ok(r) => format!("OK {}", r.status()),
            Err(e) => format!("ERR kind={:?} {}", e.kind(), chain(e)),
        };
        eventually(|| endpoint_requests(&client) >= 2).await;
        let failures = endpoint_failures(&client);
        let stats = client.stats();
        eprintln!(
            "{name}: {text}; server saw {} requests on {} connections; endpoint failures {failures}; stale_resends {}",
            seen.requests(),
            seen.connections.load(Ordering::SeqCst),
            stats.stale_resends
        );
        assert_eq!(seen.requests(), 2, "{name}: POST sent once");
        if !(second.is_err() && failures == 1) {
            report.push(format!("{name}: {text}; endpoint failures {failures}"));
        }
    }
    assert!(
        report.is_empty(),
        "not charged to the endpoint: {report:#?}"
    );
}

/// A host that `http::Uri` accepts but that is no DNS name or IP to check a certificate
/// against: the caller's mistake, refused with a typed error and never charged to (nor eject)
/// an endpoint.
#[tokio::test]
async fn a_host_no_certificate_can_name_is_the_callers_error_not_the_endpoints() {
    let pki = pki(&["svc.example"]);
    let (addr, seen) = serve_tls(
        server_config(&pki, &[b"http/1.1"]),
        |mut tls, seen, _| async move {
            while read_request(&mut tls, &seen).await.is_some() {
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = tls.flush().await;
            }
        },
    )
    .await;
    let client = client(addr, &pki).max_retries(2).build().unwrap();
    let mut kinds = Vec::new();
    for _ in 0..6 {
        let err = client
            .get("https://bad!host/")
            .await
            .expect_err("no certificate names that");
        kinds.push((err.kind(), err.attempts(), chain(&err)));
    }
    eventually(|| endpoint_requests(&client) >= 1).await;
    let stats = client.stats();
    eprintln!(
        "kinds {:?}\nendpoints {:?} retries {} connections {}",
        kinds[0],
        client.endpoints(),
        stats.retries,
        seen.connections()
    );
    let good = client.get("https://svc.example/").await;
    eprintln!(
        "a good request after: {:?}",
        good.as_ref().map(|r| r.status()).map_err(|e| e.kind())
    );
    assert_eq!(
        (endpoint_failures(&client), stats.retries),
        (0, 0),
        "a caller's bad host charged to the endpoint and retried: {:?}",
        kinds[0]
    );
    assert_eq!(kinds[0].0, Kind::InvalidRequest, "{:?}", kinds[0]);
    assert!(good.is_ok(), "a healthy endpoint must still serve");
}

/// The server requires a client certificate and the client has none. With TLS 1.3 the client
/// finishes its side of the handshake and may write the request before the alert comes: the
/// error must be typed and quick, charged to the endpoint, and a POST sent on at most one
/// connection (it may have been written).
#[tokio::test]
async fn a_required_client_certificate_that_is_absent_is_a_quick_typed_error() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pki = pki(&["svc.example"]);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (addr, seen) = serve_tls(std::sync::Arc::new(config), |mut tls, seen, _| async move {
        let _ = read_request(&mut tls, &seen).await;
    })
    .await;
    for post in [true, false] {
        let before = seen.connections();
        let client = client(addr, &pki).max_retries(2).build().unwrap();
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            match post {
                true => client.post("https://svc.example/pay", "money").await,
                false => client.get("https://svc.example/").await,
            }
        })
        .await
        .expect("no hang");
        let err = result.expect_err("no client certificate");
        eventually(|| endpoint_requests(&client) >= 1).await;
        let connections = seen.connections() - before;
        eprintln!(
            "post={post}: {:?} after {:?}, {connections} connections, failures {}: {}",
            err.kind(),
            started.elapsed(),
            endpoint_failures(&client),
            chain(&err)
        );
        assert_eq!(seen.requests(), 0);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(endpoint_failures(&client) >= 1, "charged");
        if post {
            assert_eq!(
                connections, 1,
                "a POST whose bytes may have left is sent once"
            );
        }
    }
}

/// As above, with three healthy endpoints: a burst of requests naming a host no certificate
/// can carry must not eject healthy endpoints nor charge them.
#[tokio::test]
async fn a_bad_host_burst_leaves_healthy_endpoints_uncharged_and_active() {
    let pki = pki(&["svc.example"]);
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let (addr, _seen) = serve_tls(
            server_config(&pki, &[b"http/1.1"]),
            |mut tls, seen, _| async move {
                while read_request(&mut tls, &seen).await.is_some() {
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    let _ = tls.flush().await;
                }
            },
        )
        .await;
        addrs.push(addr.to_string());
    }
    let client = meshless::http::Client::builder()
        .endpoints(addrs)
        .tls_root_pem(&pki.ca_pem)
        .max_retries(0)
        .build()
        .unwrap();
    for _ in 0..15 {
        let _ = client.get("https://bad!host/").await;
    }
    let endpoints = client.endpoints();
    eprintln!("{endpoints:#?}");
    let ejections: u64 = endpoints.iter().map(|e| e.ejections).sum();
    let failures: u64 = endpoints.iter().map(|e| e.failures).sum();
    assert_eq!(
        (failures, ejections),
        (0, 0),
        "healthy endpoints charged/ejected for a caller's bad host"
    );
}

/// A complete `content-length` body followed by a FIN without close_notify (many servers do
/// this with `connection: close`) is complete: the length says so. No false failure.
#[tokio::test]
async fn a_whole_length_body_then_fin_without_close_notify_is_a_success() {
    let pki = pki(&["svc.example"]);
    let (addr, _seen) = serve_tls(
        server_config(&pki, &[b"http/1.1"]),
        |mut tls, seen, _| async move {
            if read_request(&mut tls, &seen).await.is_none() {
                return;
            }
            let _ = tls
                .write_all(
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
                )
                .await;
            close_without_notify(tls).await;
        },
    )
    .await;
    let client = client(addr, &pki).max_retries(0).build().unwrap();
    let res = client.get("https://svc.example/").await.expect("head");
    let body = res.into_body().collect().await.expect("whole body");
    assert_eq!(&body.to_bytes()[..], b"hello");
    eventually(|| endpoint_requests(&client) >= 1).await;
    assert_eq!(endpoint_failures(&client), 0);
}

/// The caller drops a TLS body half read: a cancellation, never the endpoint's failure.
#[tokio::test]
async fn dropping_a_tls_body_half_read_is_not_charged() {
    let pki = pki(&["svc.example"]);
    let (addr, _seen) = serve_tls(
        server_config(&pki, &[b"http/1.1"]),
        |mut tls, seen, _| async move {
            if read_request(&mut tls, &seen).await.is_none() {
                return;
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                .await;
            let _ = tls.flush().await;
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut rest),
            )
            .await;
        },
    )
    .await;
    let client = client(addr, &pki).max_retries(0).build().unwrap();
    let res = client.get("https://svc.example/").await.expect("head");
    let mut body = res.into_body();
    let frame = body.frame().await.expect("a frame").expect("data");
    assert!(frame.is_data());
    drop(body);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let e = &client.endpoints()[0];
    eprintln!("{e:?}");
    assert_eq!(
        e.failures, 0,
        "a caller's cancellation charged to the endpoint"
    );
}

/// A server that answers the first request of every TLS connection and sends corrupt TLS
/// (clear text) for the next: each GET still succeeds (retried), and the endpoint, which broke
/// TLS on every reused connection, is charged for it, not excused as closing idle connections.
#[tokio::test]
async fn a_server_corrupting_every_reused_connection_is_charged() {
    let pki = pki(&["svc.example"]);
    let (addr, seen) = answer_once_then(&pki, CLEAR_ANSWER).await;
    let client = client(addr, &pki).max_retries(2).build().unwrap();
    for _ in 0..5 {
        let res = client.get("https://svc.example/").await.expect("served");
        res.into_body().collect().await.expect("body");
    }
    let stats = client.stats();
    eprintln!(
        "server: {} requests on {} connections; client: retries {} stale_resends {} endpoint {:?}",
        seen.requests(),
        seen.connections(),
        stats.retries,
        stats.stale_resends,
        client.endpoints()[0]
    );
    assert_eq!(
        seen.connections(),
        5,
        "one corrupt answer per reused connection"
    );
    assert!(
        endpoint_failures(&client) >= 1,
        "4 corrupt TLS answers, endpoint failures {}, stale_resends {}",
        endpoint_failures(&client),
        stats.stale_resends
    );
}

/// ALPN says h2, the server speaks HTTP/1.1 in the TLS stream: a typed error, the POST on one
/// connection only.
#[tokio::test]
async fn alpn_h2_but_http1_bytes_is_a_typed_error_and_the_post_sent_once() {
    let pki = pki(&["svc.example"]);
    let (addr, seen) = serve_tls(
        server_config(&pki, &[b"h2"]),
        |mut tls, _seen, _| async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await;
            let _ = tls.write_all(CLEAR_ANSWER).await;
            close_with_notify(tls).await;
        },
    )
    .await;
    let client = client(addr, &pki).max_retries(2).build().unwrap();
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.post("https://svc.example/pay", "money"),
    )
    .await
    .expect("no hang")
    .expect_err("not HTTP/2");
    eprintln!(
        "{:?} on {} connections: {}",
        err.kind(),
        seen.connections(),
        chain(&err)
    );
    assert_eq!(seen.connections(), 1, "POST sent on one connection");
}

/// Odd hosts in https URIs: never a panic, always one typed error.
#[tokio::test]
async fn odd_https_hosts_never_panic() {
    let pki = pki(&["svc.example"]);
    let (addr, _seen) = serve_tls(
        server_config(&pki, &[b"http/1.1"]),
        |mut tls, seen, _| async move {
            while read_request(&mut tls, &seen).await.is_some() {
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = tls.flush().await;
            }
        },
    )
    .await;
    let client = client(addr, &pki).max_retries(0).build().unwrap();
    for uri in [
        "https://[::1]/",
        "https://1.2.3.4.5/",
        "https://256.0.0.1/",
        "https://a_b.example/",
        "https://-a.example/",
        "https://xn--/",
        "https://svc.example./",
        "https://SVC.EXAMPLE/",
        "https://svc.example:65535/",
        "https://%73vc.example/",
        "https://[::ffff:127.0.0.1]/",
    ] {
        let c = client.clone();
        let out = tokio::spawn(async move { c.get(uri).await.map(|r| r.status()) }).await;
        let out = out.unwrap_or_else(|e| panic!("{uri}: panicked {e}"));
        eprintln!(
            "{uri}: {:?}",
            out.as_ref().map_err(|e| (e.kind(), chain(e)))
        );
    }
}

/// The caller gives up while the TLS handshake is under way (the server never answers the
/// ClientHello): a cancellation, not the endpoint's failure.
#[tokio::test]
async fn a_caller_cancelling_during_the_handshake_is_not_charged() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let pki = pki(&["svc.example"]);
    let client = client(addr, &pki).max_retries(2).build().unwrap();
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        client.get("https://svc.example/"),
    )
    .await;
    assert!(cut.is_err(), "still in the handshake");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let e = &client.endpoints()[0];
    let stats = client.stats();
    eprintln!(
        "{e:?} client failures {} cancelled {}",
        stats.failures, stats.cancelled
    );
    assert_eq!(e.failures, 0, "the caller's cancellation charged");
    assert_eq!(stats.failures, 0);
}
