//! HTTP/2 keepalive: a connection whose server stops answering PINGs (but keeps the socket
//! open) is declared dead at the keepalive timeout; a GET on it is sent again on a new
//! connection, a POST is not, and neither waits for its deadline.

use super::*;
use std::time::Instant;

/// Connection 0 ACKs SETTINGS, then answers nothing (no PING ACK, no response); later
/// connections echo.
async fn deaf_first_connection() -> (SocketAddr, Arc<Mutex<RawLog>>) {
    serve_raw(raw(|conn, mut tcp, log| async move {
        if conn != 0 {
            return echo_connection(conn, tcp, log).await;
        }
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        while let Some((kind, flags, stream, payload)) = read_frame(&mut tcp).await {
            log.lock()
                .unwrap()
                .frames
                .push((conn, kind, flags, stream, payload));
            if kind == SETTINGS && flags & 1 == 0 {
                write_frame(&mut tcp, SETTINGS, 1, 0, &[]).await;
            }
        }
    }))
    .await
}

fn keepalive_client(addr: SocketAddr) -> Client {
    Client::builder()
        .endpoints([addr.to_string()])
        .http2_prior_knowledge(true)
        .http2_keepalive(Some(Duration::from_millis(100)))
        .http2_keepalive_timeout(Duration::from_millis(200))
        .deadline(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(5))
        .backoff(Backoff::none())
        .metrics(false)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_get_on_a_connection_dead_to_pings_is_sent_again() {
    let (addr, log) = deaf_first_connection().await;
    let client = keepalive_client(addr);
    let started = Instant::now();
    let r = client.get("http://svc/x").await;
    let took = started.elapsed();
    eprintln!(
        "{:?} after {took:?}; heads {:?}",
        r.as_ref().map(|r| r.status()).map_err(err),
        log.lock().unwrap().heads()
    );
    assert_eq!(r.map(|r| r.status().as_u16()).map_err(|e| err(&e)), Ok(200));
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_post_on_a_connection_dead_to_pings_fails_typed_and_is_sent_once() {
    let (addr, log) = deaf_first_connection().await;
    let client = keepalive_client(addr);
    let started = Instant::now();
    let r = client.post("http://svc/x", "pay").await;
    let took = started.elapsed();
    let heads = log.lock().unwrap().heads();
    eprintln!(
        "{:?} after {took:?}; heads {heads:?}",
        r.as_ref().map(|r| r.status()).map_err(err)
    );
    assert!(r.is_err());
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    books(&client);
}
