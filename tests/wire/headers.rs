//! Headers the caller sets: `Host`, duplicates, hop-by-hop, lengths, `Expect`.

use super::*;

#[tokio::test]
async fn a_callers_host_header_is_kept_alone_and_duplicates_keep_their_order() {
    let w = wire(always(OK)).await;
    let c = client(w.addr);
    let req = http::Request::get("/h")
        .header("host", "custom.example")
        .header("x-dup", "1")
        .header("x-dup", "2")
        .header("x-other", "o")
        .header("x-dup", "3")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = c.request(req).await.expect("response");
    body_of(res).await;
    let req = http::Request::get("http://svc.example/h2")
        .header("host", "custom.example")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = c.request(req).await.expect("response");
    body_of(res).await;
    let heads = w.heads();
    for h in &heads {
        let hosts: Vec<&str> = h
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
            .collect();
        assert_eq!(hosts, ["host: custom.example"], "{h}");
    }
    let dups: Vec<String> = heads[0]
        .lines()
        .filter_map(|l| l.strip_prefix("x-dup: ").map(str::to_string))
        .collect();
    assert_eq!(dups, ["1", "2", "3"]);
    books(&c);
}

#[tokio::test]
async fn a_callers_transfer_encoding_never_travels_with_a_content_length() {
    let w = wire(always(OK)).await;
    let c = client(w.addr);
    let req = http::Request::post("/te")
        .header("transfer-encoding", "chunked")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let res = c.request(req).await.expect("response");
    body_of(res).await;
    let reqs = w.requests();
    assert_eq!(reqs.len(), 1);
    let raw = String::from_utf8_lossy(&reqs[0].1).to_ascii_lowercase();
    assert!(
        !(raw.contains("content-length") && raw.contains("transfer-encoding")),
        "{raw}"
    );
    assert!(raw.ends_with("5\r\nhello\r\n0\r\n\r\n"), "{raw}");
    books(&c);
}

#[tokio::test]
async fn a_callers_connection_close_gets_a_new_connection_next_time() {
    let w = wire(always(OK)).await;
    let c = client(w.addr);
    for _ in 0..2 {
        let req = http::Request::get("/close")
            .header("connection", "close")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = c.request(req).await.expect("response");
        body_of(res).await;
    }
    assert_eq!(w.requests().len(), 2);
    assert_eq!(w.connections(), 2);
    books(&c);
}

// Found by an audit: a request whose `content-length` (10) promised more than its body held (3
// bytes, an exact size known before sending) was written anyway and ended at the deadline,
// charged to the endpoint. It is refused at once as the caller's fault.
#[tokio::test]
async fn a_content_length_longer_than_the_body_is_the_callers_fault_at_once() {
    let w = wire(always(OK)).await;
    let c = client(w.addr);
    let req = http::Request::post("/cl")
        .header("content-length", "10")
        .body(Full::new(Bytes::from_static(b"abc")))
        .unwrap();
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(8), c.request(req))
        .await
        .expect("no hang");
    let took = started.elapsed();
    // Let the server log what it got on connections the client dropped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heads = w.heads();
    assert!(heads.len() <= 1, "a POST sent once: {heads:?}");
    let err = outcome.expect_err("the server cannot have answered a body it never received");
    let endpoint_failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    assert_eq!(
        (endpoint_failures, err.kind()),
        (0, meshless::error::Kind::InvalidRequest),
        "the caller's fault, not the endpoint's; took {took:?}: {err}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    books(&c);
}

#[tokio::test]
async fn a_content_length_shorter_than_the_body_never_smuggles_the_rest() {
    let w = wire(always(OK)).await;
    let c = client(w.addr);
    let req = http::Request::post("/cl")
        .header("content-length", "2")
        .body(Full::new(Bytes::from_static(
            b"abGET /smuggled HTTP/1.1\r\n\r\n",
        )))
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(8), c.request(req))
        .await
        .expect("no hang");
    if let Ok(res) = outcome {
        body_of(res).await;
    }
    // Give any leftover bytes the time to land.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (_, raw) in w.requests() {
        assert!(
            !String::from_utf8_lossy(&raw).contains("smuggled"),
            "{:?}",
            w.heads()
        );
    }
    assert!(
        w.heads().iter().all(|h| !h.contains("smuggled")),
        "{:?}",
        w.heads()
    );
    books(&c);
}

#[tokio::test]
async fn expect_continue_answered_417_and_never_answered_100() {
    let w = wire(Arc::new(|n, _| match n {
        0 => Act::AnswerClose(
            b"HTTP/1.1 417 Expectation Failed\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ),
        _ => Act::AnswerClose(OK.to_vec()),
    }))
    .await;
    let c = client(w.addr);
    for expected in [417, 200] {
        let req = http::Request::post("/expect")
            .header("expect", "100-continue")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(8), c.request(req))
            .await
            .expect("no hang")
            .expect("response");
        assert_eq!(res.status(), expected);
        body_of(res).await;
    }
    assert_eq!(w.requests().len(), 2, "each POST once: {:?}", w.heads());
    books(&c);
}
