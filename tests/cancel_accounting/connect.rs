//! Cancelled before the connection was made: the TLS handshake in progress.

use crate::support::*;

/// A TCP server that reads (a ClientHello) and never answers; reports each close.
async fn silent_tls() -> (SocketAddr, Events, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let conns = Arc::new(AtomicUsize::new(0));
    let c2 = conns.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c2.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut first = true;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) if first => {
                            first = false;
                            let _ = tx.send(Ev::Head("hello".into()));
                        }
                        Ok(_) => {}
                    }
                }
                let _ = tx.send(Ev::Closed("tls".into()));
            });
        }
    });
    (addr, rx, conns)
}

/// The caller gives up mid-handshake: the handshake is abandoned (the server sees the close),
/// nothing is charged, the request counts once as cancelled; nothing reconnects later.
pub async fn cancelled_mid_handshake(h2: bool) {
    let (addr, mut rx, conns) = silent_tls().await;
    let client = builder(&[addr], h2)
        .https(true)
        .tls_server_name("svc.test")
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut seen = Vec::new();
    let task = tokio::spawn(client.get("/"));
    assert!(
        expect(&mut rx, &mut seen, BOUND, |e| *e
            == Ev::Head("hello".into()))
        .await,
        "no ClientHello"
    );
    task.abort();
    let _ = task.await;
    assert!(
        expect(&mut rx, &mut seen, BOUND, |e| matches!(e, Ev::Closed(_))).await,
        "the handshake went on after its request was cancelled: {seen:?}"
    );
    drain(&mut rx, &mut seen, ms(300)).await;
    assert_eq!(conns.load(Ordering::SeqCst), 1, "reconnected: {seen:?}");
    settle(&client).await;
    assert_books(&client);
    assert_eq!(failures(&client), 0, "{:?}", client.endpoints());
    assert_eq!(ejections(&client), 0);
    let s = client.stats();
    assert_eq!((s.requests, s.cancelled, s.failures), (1, 1, 0), "{s:?}");
}

#[tokio::test]
async fn tls_cancel_h1() {
    cancelled_mid_handshake(false).await
}

#[tokio::test]
async fn tls_cancel_h2() {
    cancelled_mid_handshake(true).await
}
