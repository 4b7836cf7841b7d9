//! HTTP/1.1 answers: HEAD, 1xx, 204/304, `Connection: close`, HTTP/1.0 bodies, statuses.

use super::*;

#[tokio::test]
async fn head_204_and_304_with_lengths_do_not_hang_and_the_connection_stays_usable() {
    let w = wire(Arc::new(|_, head: &str| {
        let answer: &[u8] = match request_line(head) {
            l if l.starts_with("HEAD") => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
            l if l.contains("/304") => b"HTTP/1.1 304 Not Modified\r\ncontent-length: 100\r\n\r\n",
            l if l.contains("/204") => b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            _ => OK,
        };
        Act::Answer(answer.to_vec())
    }))
    .await;
    let c = client(w.addr);
    let (s, b) = one(&c, http::Method::HEAD, "/h").await;
    assert_eq!((s.as_u16(), b.len()), (200, 0));
    let (s, b) = one(&c, http::Method::GET, "/304").await;
    assert_eq!((s.as_u16(), b.len()), (304, 0));
    let (s, b) = one(&c, http::Method::GET, "/204").await;
    assert_eq!((s.as_u16(), b.len()), (204, 0));
    let (s, b) = one(&c, http::Method::GET, "/after").await;
    assert_eq!((s.as_u16(), &b[..]), (200, &b"ok"[..]));
    assert_eq!(w.requests().len(), 4);
    assert_eq!(w.connections(), 1, "one keep-alive connection");
    let stats = c.stats();
    assert_eq!((stats.requests, stats.successes), (4, 4));
    books(&c);
}

#[tokio::test]
async fn a_204_with_a_body_does_not_poison_the_next_get() {
    let w = wire(Arc::new(|n, _| match n {
        0 => Act::Answer(b"HTTP/1.1 204 No Content\r\n\r\nhello".to_vec()),
        _ => Act::Answer(OK.to_vec()),
    }))
    .await;
    let c = client(w.addr);
    let (s, b) = one(&c, http::Method::GET, "/a").await;
    assert_eq!((s.as_u16(), b.len()), (204, 0));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (s, b) = one(&c, http::Method::GET, "/b").await;
    assert_eq!((s.as_u16(), &b[..]), (200, &b"ok"[..]));
    books(&c);
}

#[tokio::test]
async fn informational_answers_then_the_final_one() {
    let w = wire(always(
        b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ))
    .await;
    let c = client(w.addr);
    let (s, b) = one(&c, http::Method::GET, "/early").await;
    assert_eq!((s.as_u16(), &b[..]), (200, &b"ok"[..]));
    assert_eq!(w.requests().len(), 1);
    books(&c);
}

#[tokio::test]
async fn connection_close_answers_then_a_new_connection() {
    let w = wire(Arc::new(|_, _| {
        Act::AnswerClose(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok".to_vec(),
        )
    }))
    .await;
    let c = client(w.addr);
    for _ in 0..3 {
        let (s, _) = one(&c, http::Method::GET, "/c").await;
        assert_eq!(s, 200);
        let (s, _) = one(&c, http::Method::POST, "/p").await;
        assert_eq!(s, 200);
    }
    assert_eq!(w.requests().len(), 6, "each once: {:?}", w.heads());
    assert_eq!(w.connections(), 6);
    books(&c);
}

#[tokio::test]
async fn http10_answer_without_length_reads_to_eof() {
    let w = wire(Arc::new(|_, _| {
        Act::AnswerClose(
            b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nhello to the end".to_vec(),
        )
    }))
    .await;
    let c = client(w.addr);
    let (s, b) = one(&c, http::Method::GET, "/old").await;
    assert_eq!((s.as_u16(), &b[..]), (200, &b"hello to the end"[..]));
    let (s, _) = one(&c, http::Method::GET, "/old2").await;
    assert_eq!(s, 200);
    assert_eq!(w.connections(), 2);
    books(&c);
}

#[tokio::test]
async fn reason_phrases_in_utf8_and_garbage_are_read() {
    let w = wire(Arc::new(|n, _| {
        let mut a = match n {
            0 => "HTTP/1.1 200 Ünïcødé ✓\r\n".as_bytes().to_vec(),
            _ => b"HTTP/1.1 200 \xff\xfe\x80garbage\t x\r\n".to_vec(),
        };
        a.extend_from_slice(b"content-length: 2\r\n\r\nok");
        Act::Answer(a)
    }))
    .await;
    let c = client(w.addr);
    for _ in 0..2 {
        let (s, b) = one(&c, http::Method::GET, "/r").await;
        assert_eq!((s.as_u16(), &b[..]), (200, &b"ok"[..]));
    }
    books(&c);
}

#[tokio::test]
async fn statuses_outside_100_to_599_are_typed_and_never_panic() {
    for status in ["600", "999", "099", "000", "20x"] {
        let answer = format!("HTTP/1.1 {status} Odd\r\ncontent-length: 2\r\n\r\nok");
        let w = wire(Arc::new(move |_, _| {
            Act::Answer(answer.clone().into_bytes())
        }))
        .await;
        let c = Client::builder()
            .endpoints([w.addr.to_string()])
            .backoff(meshless::backoff::Backoff::none())
            .deadline(Duration::from_secs(5))
            .build()
            .expect("client");
        let outcome = tokio::time::timeout(Duration::from_secs(8), c.get("/s"))
            .await
            .unwrap_or_else(|_| panic!("{status}: hang"));
        match outcome {
            Ok(res) => {
                assert_eq!(res.status().as_str(), status);
                body_of(res).await;
            }
            Err(e) => {
                assert!(
                    status
                        .parse::<u16>()
                        .map_or(true, |s| !(100..=999).contains(&s)),
                    "{status}: {e}"
                );
            }
        }
        books(&c);
        let stats = c.stats();
        assert_eq!(
            stats.requests,
            stats.successes + stats.failures + stats.cancelled,
            "{status}"
        );
    }
}

#[tokio::test]
async fn chunked_answers_with_extensions_and_trailers() {
    let w = wire(always(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n5;ext=1;q=\"a b\"\r\nhello\r\n6 ; e\r\n world\r\n0;last\r\nx-sum: 42\r\n\r\n",
    ))
    .await;
    let c = client(w.addr);
    for _ in 0..2 {
        let res = c.get("/chunks").await.expect("response");
        let collected = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
            .await
            .expect("no hang")
            .expect("body");
        let trailers = collected.trailers().cloned();
        assert_eq!(&collected.to_bytes()[..], b"hello world");
        assert_eq!(
            trailers.and_then(|t| t.get("x-sum").cloned()),
            Some(http::HeaderValue::from_static("42"))
        );
    }
    assert_eq!(w.connections(), 1);
    books(&c);
}
