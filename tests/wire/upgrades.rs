//! Upgrades and CONNECT through the client.

use super::*;

#[tokio::test]
async fn a_websocket_upgrade_works_through_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let record = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let Some(head) = common::read_head(&mut socket, &mut pending).await else {
                    return;
                };
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = socket
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
                    .await;
                // Echo what follows.
                let mut buf = [0u8; 64];
                if let Ok(n) = socket.read(&mut buf).await {
                    let _ = socket.write_all(&buf[..n]).await;
                }
            });
        }
    });
    let c = client(addr);
    let req = http::Request::get("http://svc.example/ws")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut res = tokio::time::timeout(Duration::from_secs(5), c.request(req))
        .await
        .expect("no hang")
        .expect("response");
    assert_eq!(res.status(), 101);
    let upgraded = tokio::time::timeout(Duration::from_secs(5), hyper::upgrade::on(&mut res))
        .await
        .expect("no hang")
        .expect("the upgrade is available to the caller");
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    io.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut buf))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(&buf, b"ping");
    drop(res);
    assert_eq!(heads.lock().unwrap().len(), 1);
    books(&c);
}

#[tokio::test]
async fn connect_is_sent_in_authority_form_once_and_tunnels() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let record = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let Some(head) = common::read_head(&mut socket, &mut pending).await else {
                    return;
                };
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = socket
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await;
                let mut buf = [0u8; 64];
                if let Ok(n) = socket.read(&mut buf).await {
                    let _ = socket.write_all(&buf[..n]).await;
                }
            });
        }
    });
    let c = client(addr);
    let req = http::Request::connect("target.example:443")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut res = tokio::time::timeout(Duration::from_secs(5), c.request(req))
        .await
        .expect("no hang")
        .expect("response");
    assert_eq!(res.status(), 200);
    let upgraded = tokio::time::timeout(Duration::from_secs(5), hyper::upgrade::on(&mut res))
        .await
        .expect("no hang")
        .expect("the tunnel is available to the caller");
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    io.write_all(b"tls?").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut buf))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(&buf, b"tls?");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert_eq!(
        request_line(&heads[0]),
        "CONNECT target.example:443 HTTP/1.1",
        "{heads:?}"
    );
    assert_eq!(
        header_value(&heads[0], "host").as_deref(),
        Some("target.example:443"),
        "{heads:?}"
    );
    drop(res);
    books(&c);
}

#[tokio::test]
async fn connect_reset_is_not_sent_again() {
    let w = wire(Arc::new(|_, _| Act::Reset)).await;
    let c = client(w.addr);
    let req = http::Request::connect("target.example:443")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(8), c.request(req))
        .await
        .expect("no hang");
    assert!(outcome.is_err());
    assert_eq!(w.requests().len(), 1, "{:?}", w.heads());
    books(&c);
}
