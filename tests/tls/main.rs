//! `https` through `meshless::http::Client` against a real rustls server with certificates made
//! in the test: the name checked is the logical host even though endpoints are IP addresses,
//! trust and client certificates are enforced, ALPN picks HTTP/2, and nothing leaves in clear.
#![cfg(feature = "tls")]

mod pki;

use http_body_util::BodyExt;
use meshless::http::Client;
use pki::{ServerOptions, pki, serve};
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn client(addr: SocketAddr, ca_pem: &str) -> meshless::http::ClientBuilder {
    Client::builder()
        .endpoints([addr.to_string()])
        .tls_root_pem(ca_pem)
        .max_retries(0)
        .deadline(Duration::from_secs(5))
}

async fn body(res: http::Response<meshless::http::ResponseBody>) -> String {
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The `rustls::Error` somewhere in an error's chain, if any.
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

#[tokio::test]
async fn https_checks_the_logical_name_and_sends_it_as_host_and_sni() {
    let pki = pki(&["svc.example"]);
    let addr = serve(&pki, ServerOptions::default()).await;
    let client = client(addr, &pki.ca_pem).build().expect("client");

    let res = client
        .get("https://svc.example/secret?token=1")
        .await
        .expect("https GET");
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_11);
    assert_eq!(
        body(res).await,
        "HTTP/1.1 sni=svc.example host=svc.example authority=- path=/secret?token=1"
    );
}

#[tokio::test]
async fn a_path_goes_over_https_to_the_configured_authority() {
    let pki = pki(&["svc.example"]);
    let addr = serve(&pki, ServerOptions::default()).await;
    let client = client(addr, &pki.ca_pem)
        .https(true)
        .authority("svc.example")
        .build()
        .expect("client");

    let res = client.get("/v1/quote").await.expect("https GET");
    assert_eq!(
        body(res).await,
        "HTTP/1.1 sni=svc.example host=svc.example authority=- path=/v1/quote"
    );
}

#[tokio::test]
async fn an_explicit_server_name_is_checked_whatever_the_uri_names() {
    let pki = pki(&["svc.example"]);
    let addr = serve(&pki, ServerOptions::default()).await;
    let client = client(addr, &pki.ca_pem)
        .tls_server_name("svc.example")
        .build()
        .expect("client");

    // The URI names the endpoint's IP, which the certificate does not carry.
    let res = client
        .get(format!("https://{addr}/x"))
        .await
        .expect("https GET by IP with an explicit server name");
    assert!(
        body(res)
            .await
            .starts_with("HTTP/1.1 sni=svc.example host=127.0.0.1:")
    );
}

#[tokio::test]
async fn http2_is_used_when_the_server_picks_it_in_alpn() {
    let pki = pki(&["svc.example"]);
    let options = ServerOptions {
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..ServerOptions::default()
    };
    let addr = serve(&pki, options).await;
    let client = client(addr, &pki.ca_pem).build().expect("client");

    let res = client
        .get("https://user:pass@svc.example/h2")
        .await
        .expect("https GET");
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(
        body(res).await,
        "HTTP/2.0 sni=svc.example host=- authority=svc.example path=/h2"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_with_a_tls_error() {
    let pki = pki(&["svc.example"]);
    let addr = serve(&pki, ServerOptions::default()).await;
    let client = client(addr, &pki.ca_pem).build().expect("client");

    let err = tokio::time::timeout(Duration::from_secs(5), client.get("https://other.example/"))
        .await
        .expect("a refusal, not a hang")
        .expect_err("the certificate names svc.example only");
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(_))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let trusted = pki(&["svc.example"]);
    let other = pki(&["svc.example"]);
    let addr = serve(&other, ServerOptions::default()).await;
    let client = client(addr, &trusted.ca_pem)
        .tls_webpki_roots(false)
        .build()
        .expect("client");

    let err = tokio::time::timeout(Duration::from_secs(5), client.get("https://svc.example/"))
        .await
        .expect("a refusal, not a hang")
        .expect_err("signed by a CA the client does not trust");
    assert_eq!(
        rustls_error(&err),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        )),
        "{err:?}"
    );
}

#[tokio::test]
async fn mutual_tls_is_accepted_with_a_client_certificate_and_refused_without() {
    let pki = pki(&["svc.example"]);
    let options = ServerOptions {
        client_ca_pem: Some(pki.ca_pem.clone()),
        ..ServerOptions::default()
    };
    let addr = serve(&pki, options).await;

    let with_identity = client(addr, &pki.ca_pem)
        .tls_identity_pem(&pki.client_chain_pem, &pki.client_key_pem)
        .build()
        .expect("client");
    let res = with_identity
        .get("https://svc.example/mtls")
        .await
        .expect("accepted with a client certificate");
    assert_eq!(res.status(), 200);

    let without = client(addr, &pki.ca_pem).build().expect("client");
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        let res = without.get("https://svc.example/mtls").await?;
        // TLS 1.3 ends the client's handshake first; the server's refusal may come on reading.
        res.into_body()
            .collect()
            .await
            .map_err(meshless::Error::from_service)?;
        Ok::<_, meshless::Error>(())
    })
    .await
    .expect("a refusal, not a hang");
    assert!(refused.is_err(), "no client certificate, no answer");
}

#[tokio::test]
async fn no_byte_of_an_https_request_leaves_in_clear() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // A plain TCP server that never answers: it only records what reaches it.
    let seen = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut bytes = Vec::new();
        let _ = tcp.read_to_end(&mut bytes).await;
        bytes
    });
    let client = Client::builder()
        .endpoints([addr.to_string()])
        .connect_timeout(Duration::from_millis(300))
        .max_retries(0)
        .build()
        .expect("client");

    let result = client.get("https://svc.example/secret?token=1").await;
    assert!(result.is_err(), "no TLS server there");
    drop(client);
    let bytes = seen.await.expect("server");
    assert_eq!(bytes.first(), Some(&0x16), "a TLS ClientHello first");
    for secret in [&b"secret"[..], b"token", b"GET"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{:?} left in clear",
            String::from_utf8_lossy(secret)
        );
    }
}
