//! The stale keep-alive shape (a reused HTTP/1.1 connection that ends before any byte of the
//! answer to the request on it) after answers that are not plain: interim answers before a
//! final one, an empty line before a status line, an early answer to an upload whose body
//! carries a request line.

use super::*;

/// Contract (README, Guarantees): "A keep-alive connection the server closed while a request
/// was on its way (HTTP/1.1: reused, and ended by a close, FIN or reset, before any byte of
/// the answer) is no endpoint's failure: an idempotent request is sent again at once on
/// another connection, at no retry cost (`ClientStats::stale_resends`)" — whatever the answer
/// before it on the connection looked like.
///
/// `first` answers the connection's first request (a GET, or `first_request`), then the
/// server closes the connection as the second GET arrives on it: that GET is sent again for
/// free and charges no one.
pub(super) async fn stale_after(first: Vec<Step>, first_request: Option<http::Request<Full>>) {
    let s = serve(Arc::new(move |n, _, _| match n {
        0 => first.clone(),
        1 => vec![Step::Fin],
        _ => vec![w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let answer = match first_request {
        Some(req) => finish(c.request(req)).await,
        None => finish(c.get("/a")).await,
    };
    assert!(matches!(answer, End::Ok(200, _)), "{answer:?}");
    let end = finish(c.get("/b")).await;
    let st = c.stats();
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!("{end:?}; heads {:?}; {}", s.heads(), stats_line(&c));
    assert!(matches!(end, End::Ok(200, _)), "{end:?}");
    assert_eq!(
        s.heads()[1].0,
        0,
        "the second GET went on the reused connection"
    );
    assert_eq!(
        (st.stale_resends, st.retries, failures),
        (1, 0, 0),
        "{}",
        stats_line(&c)
    );
    books(&c);
}

type Full = http_body_util::Full<Bytes>;

#[tokio::test]
async fn a_stale_connection_after_a_plain_answer_is_stale() {
    stale_after(vec![w(OK)], None).await;
}

/// `103 Early Hints` before the `200` (RFC 8297; common in front of CDNs).
#[tokio::test]
async fn a_stale_connection_after_an_earlier_103_is_still_stale() {
    let answer = b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    stale_after(vec![w(answer)], None).await;
}

/// `100 Continue` to a PUT that asked for it (`expect: 100-continue`, the default of curl and
/// many SDKs for uploads), then its `200`.
#[tokio::test]
async fn a_stale_connection_after_an_earlier_100_continue_is_still_stale() {
    let put = http::Request::put("/upload")
        .header("expect", "100-continue")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let answer = vec![w(b"HTTP/1.1 100 Continue\r\n\r\n"), Step::ReadBody, w(OK)];
    stale_after(answer, Some(put)).await;
}

/// An interim answer whose lines end in a bare LF (hyper accepts it).
#[tokio::test]
async fn a_stale_connection_after_a_bare_lf_interim_answer_is_still_stale() {
    let answer = b"HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    stale_after(vec![w(answer)], None).await;
}

/// An empty line before the status line (RFC 9112 §2.2 asks a client to ignore at least one;
/// hyper does): `\r\nHTTP/1.1 200 OK` puts the minor version's `1` where an interim status
/// would begin, and is a final answer all the same.
#[tokio::test]
async fn a_stale_connection_after_an_answer_led_by_an_empty_line_is_still_stale() {
    stale_after(
        vec![w(b"\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")],
        None,
    )
    .await;
}

/// Contract (README): "A connection whose answer began (an early answer to an upload
/// included) is the server's [failure]" — never the stale shape.
///
/// A PUT whose body (sent as it is produced, with its `content-length`) carries an HTTP
/// message — `message/http` payloads, batch APIs, a recorded request uploaded for replay —
/// so a later body write begins with a whole request line. The server answers early (its
/// status line) and then resets the connection. That body write is no new request (its head
/// declared more body): every PUT the server saw is the endpoint's failure, none a stale
/// resend.
#[tokio::test]
async fn a_put_carrying_a_request_line_after_an_early_answer_then_reset_is_charged() {
    early_answer_then_reset(http::Method::PUT).await;
}

/// The same with a GET carrying a body of known length (search APIs send them): a GET's head
/// is not read for its framing, but the body it wrote before its answer opens it.
#[tokio::test]
async fn a_get_with_a_body_carrying_a_request_line_after_an_early_answer_is_charged() {
    early_answer_then_reset(http::Method::GET).await;
}

/// Sends one `method` request whose body, `content-length` known, comes in two parts: the
/// second, a request line and head, after the server's early status line. The server resets
/// every connection 600 ms after that line. Each attempt is the endpoint's failure.
async fn early_answer_then_reset(method: http::Method) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let conns = Arc::new(AtomicUsize::new(0));
    let (h, cn) = (hits.clone(), conns.clone());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            cn.fetch_add(1, Ordering::SeqCst);
            let h = h.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                if common::read_head(&mut tcp, &mut pending).await.is_none() {
                    return;
                }
                h.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\n").await;
                tokio::time::sleep(Duration::from_millis(600)).await;
                let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            });
        }
    });
    let c = builder(addr).build().unwrap();
    let second: &'static [u8] = b"GET /inner HTTP/1.1\r\nhost: inner\r\n\r\n";
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"first part;")).unwrap();
    let len = (11 + second.len()) as u64;
    let req = http::Request::builder()
        .method(method.clone())
        .uri("/replay")
        .header("content-type", "message/http")
        .body(ChanBody(rx, Some(len)))
        .unwrap();
    let call = tokio::spawn(async move {
        let r = tokio::time::timeout(BOUND, c.request(req))
            .await
            .expect("no hang");
        (r.map(|r| r.status().as_u16()).map_err(|e| chain(&e)), c)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tx.send(Bytes::from_static(second));
    drop(tx);
    let (end, c) = call.await.unwrap();
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    let sent = hits.load(Ordering::SeqCst);
    println!(
        "{method} {end:?}\nsent {sent} conns {}; {}",
        conns.load(Ordering::SeqCst),
        stats_line(&c)
    );
    assert_eq!(c.stats().stale_resends, 0, "{method}: {}", stats_line(&c));
    assert!(
        !end.as_ref().err().is_some_and(|e| e.contains("stale")),
        "{method}: a connection that answered is taken for a stale keep-alive one: {end:?}"
    );
    assert_eq!(failures as usize, sent, "{method}: {}", stats_line(&c));
}

/// The same with a whole early answer head and part of its body, then a reset: the body's
/// failure is the endpoint's.
#[tokio::test]
async fn a_get_body_cut_after_its_answer_head_is_charged() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                if common::read_head(&mut tcp, &mut pending).await.is_none() {
                    return;
                }
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                    .await;
                tokio::time::sleep(Duration::from_millis(600)).await;
                let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            });
        }
    });
    let c = builder(addr).build().unwrap();
    let second: &'static [u8] = b"GET /inner HTTP/1.1\r\nhost: inner\r\n\r\n";
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"first part;")).unwrap();
    let len = (11 + second.len()) as u64;
    let req = http::Request::get("/_search")
        .body(ChanBody(rx, Some(len)))
        .unwrap();
    let call = tokio::spawn(finish(c.request(req)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tx.send(Bytes::from_static(second));
    drop(tx);
    let end = call.await.unwrap();
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!("{end:?}\n{}", stats_line(&c));
    assert!(!format!("{end:?}").contains("stale"), "{end:?}");
    assert_eq!(failures, 1, "{}", stats_line(&c));
}
