//! Answers that begin before the request has been written whole (an early answer to an upload), and
//! which connection ends are stale keep-alive ones: a reused connection that ends before any byte
//! of its answer, and nothing else.

use super::*;

/// An early complete 200 to a large POST, before its body was read, then the server closes
/// (the unread body makes it a reset): answered or a typed error, and sent once; on a fresh
/// and on a reused connection.
#[tokio::test]
async fn an_early_200_to_a_large_post_then_close_is_sent_once() {
    for reused in [false, true] {
        for end in [Step::Drop, Step::Fin] {
            let end2 = end.clone();
            let s = serve(Arc::new(move |_, _, head: &str| {
                if head.starts_with("GET") {
                    vec![w(OK)]
                } else {
                    vec![w(OK), end2.clone()]
                }
            }))
            .await;
            let c = builder(s.addr).build().unwrap();
            if reused {
                let _ = finish(c.get("/warm")).await;
            }
            let big = Bytes::from(vec![b'x'; 8 << 20]);
            let outcome = finish(c.post("/upload", big)).await;
            let posts = s
                .heads()
                .iter()
                .filter(|(_, h)| h.starts_with("POST"))
                .count();
            println!(
                "early 200 reused={reused} end={end:?}: {outcome:?}; posts {posts}; {}",
                stats_line(&c)
            );
            assert_eq!(posts, 1, "reused={reused} {end:?}: {outcome:?}");
            books(&c);
        }
    }
}

/// Same for a PUT (idempotent): it may be sent again, but only as counted.
#[tokio::test]
async fn an_early_200_to_a_large_put_then_reset() {
    let s = serve(Arc::new(|_, _, head: &str| {
        if head.starts_with("GET") {
            vec![w(OK)]
        } else {
            vec![w(OK), Step::Rst]
        }
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let _ = finish(c.get("/warm")).await;
    let req = http::Request::put("/upload")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 8 << 20])))
        .unwrap();
    let outcome = finish(c.request(req)).await;
    let puts = s
        .heads()
        .iter()
        .filter(|(_, h)| h.starts_with("PUT"))
        .count();
    println!(
        "early 200 PUT: {outcome:?}; puts {puts}; {}",
        stats_line(&c)
    );
    let st = c.stats();
    assert_eq!(
        puts as u64,
        1 + st.retries + st.stale_resends,
        "attempts must be requests + retries + stale_resends"
    );
    books(&c);
}

/// A fresh connection on which the server began its answer (the status line came) while the
/// client was still writing a large request body, then reset: bytes of the answer came and
/// the connection was never reused, so this is not the stale keep-alive shape. The README:
/// a stale connection is "reused, and ended before any byte of the answer"; "a fresh
/// connection that fails is the endpoint's failure".
#[tokio::test]
async fn a_fresh_connection_reset_after_the_answer_began_is_not_stale() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\n"),
            Step::Sleep(150),
            Step::ReadBody,
            Step::Rst,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::put("/upload")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 8 << 20])))
        .unwrap();
    let end = finish(c.request(req)).await;
    let st = c.stats();
    let puts = s.hits();
    let conns = s.conns();
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!(
        "fresh conn, answer begun, reset: {end:?}; puts {puts} conns {conns}; {}",
        stats_line(&c)
    );
    assert_eq!(conns, puts, "every attempt on its own fresh connection");
    assert_eq!(
        st.stale_resends,
        0,
        "fresh connections whose answer had begun taken for stale keep-alive ones: {}",
        stats_line(&c)
    );
    assert_eq!(
        failures as usize, puts,
        "each attempt is the endpoint's failure"
    );
    books(&c);
}

/// Held: a replayable 60 KB PUT, status line sent at once, then a reset. The body is written
/// whole before the status line is read, so the stale watch does not misfire: every attempt is
/// charged and retried as a retry. (The misfire needs writes after answer bytes: see
/// `a_streamed_put_whose_answer_began_on_a_fresh_connection_is_not_stale`.)
#[tokio::test]
async fn a_replayable_put_reset_after_its_answer_began_is_charged_when_written_at_once() {
    let s = serve_small_window(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\n"),
            Step::Sleep(100),
            Step::ReadBody,
            Step::Rst,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::put("/upload")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 60_000])))
        .unwrap();
    let end = finish(c.request(req)).await;
    let st = c.stats();
    let (puts, conns) = (s.hits(), s.conns());
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!(
        "small window: {end:?}; puts {puts} conns {conns}; {}",
        stats_line(&c)
    );
    assert_eq!(conns, puts, "every attempt on its own fresh connection");
    assert_eq!(st.stale_resends, 0, "{}", stats_line(&c));
    assert_eq!(failures as usize, puts, "{}", stats_line(&c));
    books(&c);
}

/// A streamed PUT (small, replayable) on a fresh connection: the server sends its status line
/// at once, the client sends the rest of its body after it read it, and the server resets.
/// Answer bytes came on a fresh connection: not the stale keep-alive shape, the endpoint's
/// failure, and a retry costs a retry.
#[tokio::test]
async fn a_streamed_put_whose_answer_began_on_a_fresh_connection_is_not_stale() {
    let s = serve(Arc::new(|_, _, _| {
        vec![w(b"HTTP/1.1 200 OK\r\n"), Step::Sleep(600), Step::Rst]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"first part;")).unwrap();
    // An exact length: hyper sends `content-length` and the body's bytes as they are.
    let req = http::Request::put("/upload")
        .body(ChanBody(rx, Some(22)))
        .unwrap();
    let call = tokio::spawn(finish(c.request(req)));
    // The server answers the head's arrival with its status line; give the client the time
    // to read it while its body waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Bytes::from_static(b"second part")).unwrap();
    drop(tx);
    let end = call.await.unwrap();
    let st = c.stats();
    let (puts, conns) = (s.hits(), s.conns());
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!(
        "streamed PUT: {end:?}; puts {puts} conns {conns}; {}",
        stats_line(&c)
    );
    assert_eq!(conns, puts, "every attempt on its own fresh connection");
    assert_eq!(
        st.stale_resends,
        0,
        "a fresh connection with answer bytes taken for a stale one: {}",
        stats_line(&c)
    );
    assert_eq!(failures as usize, puts, "{}", stats_line(&c));
    books(&c);
}

/// An early answer head and part of its body to a large PUT, the client still writing, then
/// a reset: a body cut short on a fresh connection is the endpoint's failure.
#[tokio::test]
async fn a_body_cut_after_an_early_answer_to_an_upload_is_the_endpoints_failure() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789"),
            Step::Sleep(150),
            Step::ReadBody,
            Step::Rst,
        ]
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let req = http::Request::put("/upload")
        .body(http_body_util::Full::new(Bytes::from(vec![b'x'; 8 << 20])))
        .unwrap();
    let end = finish(c.request(req)).await;
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!("early head, body cut: {end:?}; {}", stats_line(&c));
    assert!(matches!(end, End::Body(200, _, Some(_), _)), "{end:?}");
    assert_eq!(failures, 1, "{}", stats_line(&c));
    books(&c);
}

/// A keep-alive connection whose first answer came in small pieces, then closed by the
/// server while the next GET was on its way (before any byte of its answer): the README's
/// stale shape ("reused, and ended before any byte of the answer": no endpoint's failure,
/// sent again at no retry cost).
#[tokio::test]
async fn a_stale_connection_whose_first_answer_was_dribbled_is_still_stale() {
    super::stale_shapes::stale_after(vec![Step::Drip(OK.to_vec(), 5)], None).await;
}

/// A caller that gives up while its large upload is stuck (the server reads nothing): a
/// cancellation, never the endpoint's failure; and the next request is served.
#[tokio::test]
async fn a_caller_giving_up_during_a_stuck_upload_is_not_charged() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![Step::Hold],
        _ => vec![Step::ReadBody, w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let big = Bytes::from(vec![b'x'; 8 << 20]);
    let gave_up = tokio::time::timeout(Duration::from_millis(200), c.post("/up", big)).await;
    assert!(gave_up.is_err(), "the upload cannot have finished");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let end = finish(c.post("/small", "x")).await;
    let st = c.stats();
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    println!("gave up during upload: next {end:?}; {}", stats_line(&c));
    assert!(matches!(end, End::Ok(200, _)), "{end:?}");
    assert_eq!(
        (failures, st.cancelled, st.failures),
        (0, 1, 0),
        "{}",
        stats_line(&c)
    );
    books(&c);
}
