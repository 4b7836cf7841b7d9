//! An https request whose host no certificate can name is refused before dialling. With
//! `tls_server_name` configured the request's host is never checked against a certificate
//! ("whatever the request's URI names"), so no host may be refused for it; without it, hosts
//! that are valid DNS names must not be refused either.

use crate::support::*;

/// A listener that counts the connections it accepts (holding them silent).
async fn counting() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, n)
}

/// Sends `GET uri` and reports whether it was refused as `InvalidRequest` before connecting.
async fn refused_before_connecting(server_name: Option<&str>, uri: &str) -> Option<(bool, Kind)> {
    let uri: http::Uri = match uri.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("{uri}: http::Uri refuses it ({e}); skipped");
            return None;
        }
    };
    let (addr, accepted) = counting().await;
    let mut b = builder(&[addr], false).deadline(ms(300)).max_retries(0);
    if let Some(name) = server_name {
        b = b.tls_server_name(name);
    }
    let client = b.build().unwrap();
    let req = Request::get(uri.clone())
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let e = timeout(BOUND, client.request(req))
        .await
        .expect("ends")
        .expect_err("no TLS server there");
    tokio::time::sleep(ms(20)).await;
    let connected = accepted.load(Ordering::SeqCst) > 0;
    eprintln!(
        "{uri} (server name {server_name:?}): {:?} {e}; connected={connected}",
        e.kind()
    );
    Some((e.kind() == Kind::InvalidRequest && !connected, e.kind()))
}

/// Valid DNS names and IP literals a URI may carry: none may be refused.
#[tokio::test]
async fn valid_hosts_are_not_refused() {
    let mut wrong = Vec::new();
    for uri in [
        "https://svc.example./x",
        "https://SVC.Example.COM/x",
        "https://my_svc.internal/x",
        "https://xn--bcher-kva.example/x",
        "https://localhost/x",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://127.0.0.1/x",
        "https://a-b.c-d.example:8443/x",
    ] {
        if let Some((true, _)) = refused_before_connecting(None, uri).await {
            wrong.push(uri);
        }
    }
    assert!(
        wrong.is_empty(),
        "valid hosts refused before connecting: {wrong:?}"
    );
}

/// With `tls_server_name`, the certificate is checked against the configured name, never the
/// URI's host (documented: "whatever the request's URI names"). Before this commit these
/// requests connected and did the handshake with the configured name; now they are refused.
#[tokio::test]
async fn with_tls_server_name_the_uri_host_is_not_refused() {
    let mut wrong = Vec::new();
    for uri in [
        // An IPv6 link-local address with its zone (RFC 6874), the only way to reach it.
        "https://[fe80::1%25eth0]:8443/x",
        // A name whose last label is numeric (a node or shard number): valid for DNS, not for
        // rustls' DnsName.
        "https://shard.0/x",
        "https://db-7.1/x",
        // A label that ends in a hyphen (seen in generated names).
        "https://pod-.svc/x",
    ] {
        if let Some((true, kind)) = refused_before_connecting(Some("localhost"), uri).await {
            wrong.push((uri, kind));
        }
    }
    assert!(
        wrong.is_empty(),
        "with tls_server_name set, requests refused for their URI host, though the handshake \
         never uses it: {wrong:?}"
    );
}
