//! RST_STREAM codes and GOAWAY for POSTs: which are sent again, and where.

use super::*;
use std::time::Instant;

/// A connection that resets every stream with `code` once complete.
fn resetting(code: u32) -> RawHandler {
    raw(move |conn, mut tcp, log| async move {
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        let mut bodies = Default::default();
        while let Some((s, _)) = next_request(&mut tcp, conn, &log, true, &mut bodies).await {
            write_frame(&mut tcp, RST, 0, s, &code.to_be_bytes()).await;
        }
    })
}

/// Two endpoints, one refusing every stream (REFUSED_STREAM), the other answering: every POST
/// is answered, each processed exactly once by the answering endpoint.
#[tokio::test]
async fn refused_posts_are_served_by_the_other_endpoint() {
    let (refuser, rlog) = serve_raw(resetting(7)).await;
    let (good, glog) = serve_raw(raw(echo_connection)).await;
    let client = client_to(&[refuser, good], Duration::from_secs(3));
    for i in 0..20 {
        let body = format!("order-{i}");
        let r = client.post("http://svc/pay", body.clone()).await;
        assert_eq!(
            r.as_ref().map(|r| r.status().as_u16()).map_err(err),
            Ok(200),
            "POST {i}"
        );
    }
    let served = glog.lock().unwrap().bodies();
    for i in 0..20 {
        let body = format!("order-{i}");
        let n = served.iter().filter(|b| b.2 == body.as_bytes()).count();
        assert_eq!(n, 1, "order-{i} processed once: {served:?}");
    }
    eprintln!(
        "refuser saw {} heads; stats {:?}",
        rlog.lock().unwrap().heads().len(),
        client.stats().endpoints
    );
    books(&client);
}

/// Two endpoints that both reset every stream with CANCEL before any answer: a POST may have
/// been processed, so it is sent once, and the caller gets a typed error.
#[tokio::test]
async fn a_post_reset_with_cancel_is_sent_once() {
    let (a, alog) = serve_raw(resetting(8)).await;
    let (b, blog) = serve_raw(resetting(8)).await;
    let client = client_to(&[a, b], Duration::from_secs(2));
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        client.post("http://svc/pay", "money"),
    )
    .await
    .expect("not hung");
    let heads = alog.lock().unwrap().heads().len() + blog.lock().unwrap().heads().len();
    eprintln!(
        "{:?}, heads {heads}",
        r.as_ref().map(|r| r.status()).map_err(err)
    );
    assert!(r.is_err());
    assert_eq!(heads, 1, "a POST reset with CANCEL is not sent again");
    books(&client);
}

/// A connection that resets every stream with `code` as soon as its HEADERS arrive, without
/// reading the body (no WINDOW_UPDATE is ever sent).
fn resetting_at_head(code: u32) -> RawHandler {
    raw(move |conn, mut tcp, log| async move {
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        while let Some((kind, flags, stream, payload)) = read_frame(&mut tcp).await {
            log.lock()
                .unwrap()
                .frames
                .push((conn, kind, flags, stream, payload.clone()));
            match kind {
                SETTINGS if flags & 1 == 0 => write_frame(&mut tcp, SETTINGS, 1, 0, &[]).await,
                PING if flags & 1 == 0 => write_frame(&mut tcp, PING, 1, 0, &payload).await,
                HEADERS => write_frame(&mut tcp, RST, 0, stream, &code.to_be_bytes()).await,
                _ => {}
            }
        }
    })
}

/// RST_STREAM(REFUSED_STREAM) at the head of a POST whose streamed body is larger than the
/// replay buffer: the request ends promptly (typed, or sent again and refused again, bounded),
/// long before its deadline.
#[tokio::test]
async fn a_refused_post_too_large_to_replay_ends_typed() {
    let (addr, log) = serve_raw(resetting_at_head(7)).await;
    let client = client(addr, Duration::from_secs(2));
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = (0..16)
        .map(|_| Ok(http_body::Frame::data(Bytes::from(vec![b'y'; 8 * 1024]))))
        .collect();
    let body = http_body_util::StreamBody::new(VecStream(chunks.into()));
    let req = http::Request::post("http://svc/upload").body(body).unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .expect("not hung");
    eprintln!(
        "{:?} after {:?}, heads {:?}",
        r.as_ref().map(|r| r.status()).map_err(err),
        started.elapsed(),
        log.lock().unwrap().heads()
    );
    assert!(r.is_err());
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// GOAWAY(last = 3, NO_ERROR) with three POSTs on streams 1, 3 and 5, the connection kept
/// open, 1 and 3 answered: only the POST on stream 5 is sent again; each POST is processed
/// once (on a stream at or below the last, or on a new connection).
#[tokio::test]
async fn goaway_mid_flight_resends_only_the_post_above_last() {
    let (addr, log) = serve_raw(raw(|conn, mut tcp, log| async move {
        if conn != 0 {
            return echo_connection(conn, tcp, log).await;
        }
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        let mut bodies = Default::default();
        let mut complete = Vec::new();
        while let Some((s, b)) = next_request(&mut tcp, conn, &log, true, &mut bodies).await {
            complete.push((s, b));
            if complete.len() == 3 {
                let mut p = 3u32.to_be_bytes().to_vec();
                p.extend_from_slice(&0u32.to_be_bytes());
                write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                for (s, b) in &complete {
                    if *s <= 3 {
                        respond(&mut tcp, *s, b).await;
                    }
                }
            }
        }
    }))
    .await;
    three_posts_each_processed_once(addr, &log, 3).await;
}

pub struct VecStream<T>(pub std::collections::VecDeque<T>);
impl<T: Unpin> futures_core::Stream for VecStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        std::task::Poll::Ready(self.0.pop_front())
    }
}

/// The graceful double GOAWAY (RFC 9113 §6.8): GOAWAY(2^31-1) then GOAWAY(last = 1), three
/// POSTs on streams 1, 3, 5; 1 answered, then close. 3 and 5 are sent again on a new
/// connection; each POST processed once; every one answered.
#[tokio::test]
async fn double_goaway_resends_only_the_posts_above_the_final_last() {
    let (addr, log) = serve_raw(raw(|conn, mut tcp, log| async move {
        if conn != 0 {
            return echo_connection(conn, tcp, log).await;
        }
        if !accept_preface(&mut tcp, &[]).await {
            return;
        }
        let mut bodies = Default::default();
        let mut complete = Vec::new();
        while let Some((s, b)) = next_request(&mut tcp, conn, &log, true, &mut bodies).await {
            complete.push((s, b));
            if complete.len() == 3 {
                let mut p = 0x7fff_ffffu32.to_be_bytes().to_vec();
                p.extend_from_slice(&0u32.to_be_bytes());
                write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                let mut p = 1u32.to_be_bytes().to_vec();
                p.extend_from_slice(&0u32.to_be_bytes());
                write_frame(&mut tcp, GOAWAY, 0, 0, &p).await;
                let (s, b) = complete.iter().find(|c| c.0 == 1).unwrap().clone();
                respond(&mut tcp, s, &b).await;
                let _ = tokio::io::AsyncWriteExt::flush(&mut tcp).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        }
    }))
    .await;
    three_posts_each_processed_once(addr, &log, 1).await;
}

/// Three POSTs at once (`a`, `b`, `c`) through the server at `addr`, whose first connection
/// processes the streams up to `last` (the GOAWAY's last-stream-id): every one is answered,
/// and processed once (on the first connection at a stream up to `last`, or on a later one).
async fn three_posts_each_processed_once(addr: SocketAddr, log: &Arc<Mutex<RawLog>>, last: u32) {
    let client = client(addr, Duration::from_secs(3));
    let (a, b, c) = tokio::join!(
        client.post("http://svc/a", "a"),
        client.post("http://svc/b", "b"),
        client.post("http://svc/c", "c"),
    );
    let results: Vec<_> = [a, b, c]
        .into_iter()
        .map(|r| r.map(|r| r.status().as_u16()).map_err(|e| err(&e)))
        .collect();
    let bodies = log.lock().unwrap().bodies();
    assert!(
        results.iter().all(|r| r == &Ok(200)),
        "{results:?}\n{bodies:?}"
    );
    for name in [b"a", b"b", b"c"] {
        let processed = bodies
            .iter()
            .filter(|(c, s, body)| body == name && (*c != 0 || *s <= last))
            .count();
        assert_eq!(processed, 1, "{:?} processed once: {bodies:?}", name);
    }
    books(&client);
}
