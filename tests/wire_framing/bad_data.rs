//! Malformed response heads that no other test sends: obs-fold header lines, NUL bytes in a
//! header value, more header lines than the parser takes, an HTTP/2 status line on an
//! HTTP/1.1 connection. Each must end the request with a typed `meshless::Error`, never a
//! panic or a hang, and a POST must reach the server once.

use super::*;

async fn post_and_get(answer: &'static [u8]) -> (End, End, Server, Client) {
    let s = serve(Arc::new(move |_, _, _| {
        vec![Step::ReadBody, w(answer), Step::Fin]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let post = http::Request::post("/pay")
        .body(http_body_util::Full::new(Bytes::from_static(b"amount=1")))
        .unwrap();
    let p = finish(c.request(post)).await;
    let g = finish(c.get("/read")).await;
    (p, g, s, c)
}

fn posts(s: &Server) -> usize {
    s.heads()
        .iter()
        .filter(|(_, h)| h.starts_with("POST "))
        .count()
}

async fn check(name: &str, answer: &'static [u8]) {
    let (p, g, s, c) = post_and_get(answer).await;
    println!("{name}: post {p:?}\n get {g:?}\n {}", stats_line(&c));
    assert!(
        matches!(p, End::Head(_, _)),
        "{name}: POST must fail typed: {p:?}"
    );
    assert!(
        matches!(g, End::Head(_, _)),
        "{name}: GET must fail typed: {g:?}"
    );
    assert_eq!(
        posts(&s),
        1,
        "{name}: the POST was sent again: {:?}",
        s.heads()
    );
    books(&c);
}

/// A header continued on the next line (obs-fold, RFC 9112 §5.2: a client must reject or
/// unfold it).
#[tokio::test]
async fn an_obs_folded_header_is_a_typed_error_and_the_post_is_sent_once() {
    check(
        "obs-fold",
        b"HTTP/1.1 200 OK\r\nx-long: first\r\n second\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
}

/// A NUL byte in a header value (RFC 9110 §5.5: must be rejected or replaced).
#[tokio::test]
async fn a_nul_in_a_header_value_is_a_typed_error_and_the_post_is_sent_once() {
    check(
        "nul",
        b"HTTP/1.1 200 OK\r\nx-bad: a\0b\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
}

/// 500 short header lines (about 4 KiB, far under any byte limit, above hyper's count).
#[tokio::test]
async fn too_many_header_lines_are_a_typed_error_and_the_post_is_sent_once() {
    static ANSWER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let a = ANSWER.get_or_init(|| {
        let mut a = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..500 {
            a.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        a.extend_from_slice(b"content-length: 2\r\n\r\nok");
        a
    });
    check("many headers", a).await;
}

/// An HTTP/2-style status line on an HTTP/1.1 connection.
#[tokio::test]
async fn an_http2_status_line_is_a_typed_error_and_the_post_is_sent_once() {
    check(
        "HTTP/2.0",
        b"HTTP/2.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
}

/// A `content-length` with a sign or in hex (RFC 9110 §8.6: 1*DIGIT).
#[tokio::test]
async fn a_signed_content_length_is_a_typed_error_and_the_post_is_sent_once() {
    check("+2", b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok").await;
}
