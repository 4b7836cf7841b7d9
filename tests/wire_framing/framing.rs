//! How answers are framed: chunked bodies cut or malformed, close-delimited bodies, `transfer-
//! encoding` with `content-length`, repeated lengths, bodiless answers followed by stray bytes,
//! interim answers, HTTP/1.0, and what the client itself puts on the wire.

use super::*;

/// Broken chunked bodies ended with a clean FIN (not RST): typed errors, never a truncated
/// success; a GET whose head came is never sent again.
#[tokio::test]
async fn chunked_bodies_cut_by_a_clean_close_are_typed_errors_and_never_resent() {
    let cases: Vec<(&str, &[u8])> = vec![
        (
            "no-last-chunk",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
        ),
        (
            "mid-chunk",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nabc",
        ),
        (
            "bad-size",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
        ),
        (
            "short-cl",
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc",
        ),
    ];
    for (name, answer) in cases {
        let s = serve(Arc::new(move |_, _, _| vec![w(answer), Step::Fin])).await;
        let c = builder(s.addr).build().unwrap();
        let end = finish(c.get("/x")).await;
        match &end {
            End::Body(200, _, Some(_), _) => {}
            other => panic!("{name}: expected a typed body error, got {other:?}"),
        }
        assert_eq!(
            s.hits(),
            1,
            "{name}: the GET whose head came was sent again"
        );
        let st = c.stats();
        assert_eq!(
            (st.successes, st.failures),
            (0, 1),
            "{name}: {}",
            stats_line(&c)
        );
        books(&c);
    }
}

/// The last chunk came but its terminating CRLF did not: all data is there, the message
/// is not complete.
#[tokio::test]
async fn a_last_chunk_without_its_final_crlf_then_close() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"),
            Step::Fin,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let end = finish(c.get("/x")).await;
    println!("last chunk without CRLF: {end:?}; {}", stats_line(&c));
    match end {
        End::Ok(200, b) => assert_eq!(&b[..], b"abc"),
        End::Body(200, _, Some(_), _) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.hits(), 1);
    books(&c);
}

/// A close-delimited HTTP/1.1 body (no length, no chunked) is read whole to the close.
#[tokio::test]
async fn a_close_delimited_http11_body_is_read_whole() {
    let mut answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n".to_vec();
    answer.extend(std::iter::repeat_n(b'z', 200_000));
    let s = serve(Arc::new(move |n, _, _| match n {
        0 => vec![Step::W(answer.clone()), Step::Fin],
        _ => vec![w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    match finish(c.get("/x")).await {
        End::Ok(200, b) => assert_eq!(b.len(), 200_000),
        other => panic!("{other:?}"),
    }
    match finish(c.get("/y")).await {
        End::Ok(200, b) => assert_eq!(&b[..], b"ok"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.conns(), 2);
    let st = c.stats();
    assert_eq!(
        (st.successes, st.failures, st.retries),
        (2, 0, 0),
        "{}",
        stats_line(&c)
    );
    books(&c);
}

/// Transfer-Encoding and Content-Length together: chunked wins (RFC 9112 §6.3), and the next
/// request on the client gets its own answer, never the leftovers.
#[tokio::test]
async fn transfer_encoding_with_content_length_never_desyncs_the_next_answer() {
    let answers: Vec<&'static [u8]> = vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 50\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for first in answers {
        let s = serve(Arc::new(move |n, _, _| match n {
            0 => vec![w(first)],
            _ => vec![w(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond")],
        }))
        .await;
        let c = builder(s.addr).build().unwrap();
        let a = finish(c.get("/a")).await;
        let b = finish(c.get("/b")).await;
        println!("TE+CL: {a:?} then {b:?}; conns {}", s.conns());
        match a {
            End::Ok(200, body) => assert_eq!(&body[..], b"hello"),
            End::Head(..) | End::Body(..) => {}
            other => panic!("{other:?}"),
        }
        match b {
            End::Ok(200, body) => assert_eq!(&body[..], b"second"),
            other => panic!("second request: {other:?}"),
        }
        books(&c);
    }
}

/// Content-Length repeated with the same value (RFC 9110 §8.6 allows a recipient to accept
/// it): read, or a typed error; never a hang or a wrong body.
#[tokio::test]
async fn a_repeated_identical_content_length() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok"[..],
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok"[..],
    ] {
        let s = serve(Arc::new(move |_, _, _| vec![w(answer)])).await;
        let c = builder(s.addr).build().unwrap();
        let end = finish(c.get("/x")).await;
        println!("repeated CL: {end:?}");
        match end {
            End::Ok(200, b) => assert_eq!(&b[..], b"ok"),
            End::Head(..) => {}
            other => panic!("{other:?}"),
        }
        books(&c);
    }
}

/// HEAD and 304 answered with `transfer-encoding: chunked` and no body: no hang, and the
/// keep-alive connection carries the next GET's own answer.
#[tokio::test]
async fn head_and_304_with_chunked_framing_carry_no_body() {
    let s = serve(Arc::new(|_, _, head: &str| {
        if head.starts_with("HEAD") {
            vec![w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")]
        } else if head.contains("/304") {
            vec![w(
                b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
            )]
        } else {
            vec![w(OK)]
        }
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::head("/h")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    match finish(c.request(req)).await {
        End::Ok(200, b) => assert!(b.is_empty()),
        other => panic!("HEAD {other:?}"),
    }
    match finish(c.get("/304")).await {
        End::Ok(304, b) => assert!(b.is_empty()),
        other => panic!("304 {other:?}"),
    }
    match finish(c.get("/after")).await {
        End::Ok(200, b) => assert_eq!(&b[..], b"ok"),
        other => panic!("after {other:?}"),
    }
    assert_eq!(s.conns(), 1, "{:?}", s.heads());
    books(&c);
}

/// A HEAD answered with body bytes that form a complete answer, followed at once by a POST
/// on the same client: the POST never takes the stray bytes for its answer.
#[tokio::test]
async fn stray_bytes_after_a_head_answer_are_never_a_posts_answer() {
    let s = serve(Arc::new(|_, _, head: &str| {
        if head.starts_with("HEAD") {
            vec![w(
                b"HTTP/1.1 200 OK\r\ncontent-length: 44\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 6\r\n\r\nstolen",
            )]
        } else {
            vec![Step::ReadBody, w(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")]
        }
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::head("/h")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let _ = finish(c.request(req)).await;
    let end = finish(c.post("/p", "x")).await;
    println!(
        "POST after HEAD with stray bytes: {end:?}; heads {:?}",
        s.heads()
    );
    match end {
        End::Ok(200, b) => assert_eq!(&b[..], b"fresh"),
        End::Ok(s, b) => panic!("desync: the POST got {s} {b:?}"),
        _ => {}
    }
    let posts = s
        .heads()
        .iter()
        .filter(|(_, h)| h.starts_with("POST"))
        .count();
    assert!(posts <= 1, "POST sent {posts} times");
    books(&c);
}

/// An interim 103 then a clean close on a fresh connection: the GET is sent again (it is
/// idempotent) and answered; a POST is sent once and ends with a typed error.
#[tokio::test]
async fn an_interim_answer_then_a_close() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 | 2 => vec![
            w(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"),
            Step::Fin,
        ],
        _ => vec![Step::ReadBody, w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let get = finish(c.get("/g")).await;
    println!("GET: {get:?}; {}", stats_line(&c));
    assert!(matches!(get, End::Ok(200, _)), "{get:?}");
    // A fresh connection for the POST: hits 2 answers 103 and closes.
    let post = finish(c.post("/p", "order")).await;
    println!("POST: {post:?}; heads {:?}", s.heads());
    let posts = s
        .heads()
        .iter()
        .filter(|(_, h)| h.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "{post:?}");
    assert!(matches!(post, End::Head(..)), "{post:?}");
    books(&c);
}

/// HTTP/1.0 answers: without `keep-alive` the connection is not used again.
#[tokio::test]
async fn http10_answers_close_unless_kept_alive() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![w(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")],
        // Hit 1 on the same connection would be a client that reused an HTTP/1.0 connection.
        _ => vec![
            w(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nOK"),
            Step::Fin,
        ],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let a = finish(c.get("/a")).await;
    let b = finish(c.get("/b")).await;
    println!("HTTP/1.0: {a:?} {b:?} heads {:?}", s.heads());
    assert!(matches!(b, End::Ok(200, _)));
    let heads = s.heads();
    assert_ne!(heads[0].0, heads[1].0, "an HTTP/1.0 connection was reused");
    books(&c);
}

/// A chunk extension that never ends: bounded, a typed error.
#[tokio::test]
async fn an_endless_chunk_extension_is_a_typed_error() {
    let mut answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;".to_vec();
    answer.extend(std::iter::repeat_n(b'a', 4 << 20));
    let s = serve(Arc::new(move |_, _, _| {
        vec![Step::W(answer.clone()), Step::Hold]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let start = Instant::now();
    let end = finish(c.get("/x")).await;
    println!("endless chunk ext: {end:?} after {:?}", start.elapsed());
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "ran to the deadline"
    );
    assert!(matches!(end, End::Body(200, _, Some(_), _)), "{end:?}");
    books(&c);
}

/// `transfer-encoding: chunked` in an HTTP/1.0 answer.
#[tokio::test]
async fn chunked_in_an_http10_answer() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            Step::Fin,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let end = finish(c.get("/x")).await;
    println!("HTTP/1.0 chunked: {end:?}");
    books(&c);
}

/// A complete answer then a reset at once: the answer is the caller's, no failure charged.
#[tokio::test]
async fn a_complete_answer_then_a_reset() {
    let s = serve(Arc::new(|_, _, _| vec![w(OK), Step::Rst])).await;
    let c = builder(s.addr).build().unwrap();
    let end = finish(c.get("/x")).await;
    println!("answer then RST: {end:?}; {}", stats_line(&c));
    let end2 = finish(c.get("/y")).await;
    println!("next: {end2:?}; {}", stats_line(&c));
    assert!(matches!(end2, End::Ok(200, _)), "{end2:?}");
    books(&c);
}

/// The caller's own framing headers, conflicting, on a body of unknown length: what goes on
/// the wire never carries both `transfer-encoding` and `content-length`, nor two lengths.
#[tokio::test]
async fn a_callers_conflicting_content_lengths_never_reach_the_wire_with_chunked() {
    let s = serve(Arc::new(|_, _, _| vec![w(OK), Step::Fin])).await;
    let c = builder(s.addr).build().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"abc")).unwrap();
    drop(tx);
    let req = http::Request::post("/cl")
        .header("content-length", "3")
        .header("content-length", "10")
        .body(ChanBody(rx, None))
        .unwrap();
    let end = finish(c.request(req)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let heads = s.heads();
    println!("conflicting caller CLs: {end:?}; heads {heads:?}");
    for (_, h) in &heads {
        let l = h.to_ascii_lowercase();
        let cls = l.matches("content-length").count();
        assert!(
            !(cls > 0 && l.contains("transfer-encoding")) && cls <= 1,
            "ambiguous framing on the wire: {h:?}"
        );
    }
    books(&c);
}

/// A HEAD answered with chunked framing and (wrongly) the last chunk, then a POST at once on
/// the same client: the POST gets its own answer or a typed error, and is sent once.
#[tokio::test]
async fn a_head_answer_followed_by_a_last_chunk_then_a_post() {
    let s = serve(Arc::new(|_, _, head: &str| {
        if head.starts_with("HEAD") {
            vec![w(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            )]
        } else {
            vec![
                Step::ReadBody,
                w(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nfresh"),
            ]
        }
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::head("/h")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    assert!(matches!(finish(c.request(req)).await, End::Ok(200, _)));
    let end = finish(c.post("/p", "order")).await;
    let posts = s
        .heads()
        .iter()
        .filter(|(_, h)| h.starts_with("POST"))
        .count();
    println!(
        "HEAD + last chunk, then POST: {end:?}; posts {posts}; {}",
        stats_line(&c)
    );
    match end {
        End::Ok(201, b) => assert_eq!(&b[..], b"fresh"),
        End::Head(..) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(posts, 1);
    books(&c);
}
