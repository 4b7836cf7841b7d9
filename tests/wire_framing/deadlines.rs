//! The deadline covers the body: of a first attempt, of a retry, of a resend after a stale
//! connection; the attempt timeout runs to the head; a retryable answer whose body stalls does not
//! hold the retry.

use super::*;

/// A body cut by the deadline: the connection, with the rest of that body still to come,
/// never carries the next request.
#[tokio::test]
async fn a_body_cut_by_the_deadline_never_leaves_its_connection_to_the_next_request() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234"),
            Step::Sleep(600),
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstolen"),
        ],
        _ => vec![w(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")],
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_millis(200))
        .build()
        .unwrap();
    let start = Instant::now();
    let a = finish(c.get("/slow")).await;
    let took = start.elapsed();
    assert!(
        matches!(a, End::Body(200, _, Some(Kind::DeadlineExceeded), _)),
        "{a:?}"
    );
    assert!(took < Duration::from_millis(700), "ended after {took:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let c2 = c.clone();
    let b = finish(c2.get("/next")).await;
    println!("after a deadline cut: {b:?}; {}", stats_line(&c));
    match b {
        End::Ok(200, body) => assert_eq!(&body[..], b"fresh"),
        other => panic!("{other:?}"),
    }
    books(&c);
}

/// The attempt timeout bounds an attempt until its answer's head: a body that comes slowly
/// after it is the caller's answer, bounded by the deadline (a committed answer cannot be
/// retried, so cutting it at the attempt's limit could only turn it into a failure).
#[tokio::test]
async fn the_attempt_timeout_ends_at_the_head_and_the_deadline_bounds_the_body() {
    let s = serve(Arc::new(|_, _, _| {
        vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"),
            Step::Drip(vec![b'a'; 10], 50),
        ]
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_secs(5))
        .attempt_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let end = finish(c.get("/drip")).await;
    assert!(
        matches!(&end, End::Ok(200, body) if body.len() == 10),
        "{end:?}"
    );
    assert_eq!(s.hits(), 1, "{}", stats_line(&c));
    books(&c);

    let c = builder(s.addr)
        .deadline(Duration::from_millis(250))
        .build()
        .unwrap();
    let start = Instant::now();
    let end = finish(c.get("/drip")).await;
    let took = start.elapsed();
    assert!(
        matches!(end, End::Body(200, _, Some(Kind::DeadlineExceeded), _)),
        "{end:?}"
    );
    assert!(
        took < Duration::from_millis(750),
        "deadline extended: {took:?}"
    );
    books(&c);
}

/// A retryable answer (500 to a GET) whose body stalls: the retry does not wait on that body.
#[tokio::test]
async fn a_retryable_answer_with_a_stalled_body_does_not_hold_the_retry() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![
            w(b"HTTP/1.1 500 Oops\r\ncontent-length: 100\r\n\r\nabc"),
            Step::Hold,
        ],
        _ => vec![w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let start = Instant::now();
    let end = finish(c.get("/r")).await;
    let took = start.elapsed();
    println!(
        "500 stalled then 200: {end:?} after {took:?}; {}",
        stats_line(&c)
    );
    assert!(matches!(end, End::Ok(200, _)), "{end:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    books(&c);
}

/// A 503 with Retry-After to a POST, its body stalled: the POST is sent again (the server
/// said it did not act), once, and the stalled body does not hold it.
#[tokio::test]
async fn a_503_retry_after_with_a_stalled_body_to_a_post() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![
            Step::ReadBody,
            w(b"HTTP/1.1 503 Busy\r\nretry-after: 0\r\ncontent-length: 100\r\n\r\nabc"),
            Step::Hold,
        ],
        _ => vec![Step::ReadBody, w(OK)],
    }))
    .await;
    let c = builder(s.addr).build().unwrap();
    let start = Instant::now();
    let end = finish(c.post("/p", "order")).await;
    let took = start.elapsed();
    println!(
        "503 RA stalled then 200: {end:?} after {took:?}; {}",
        stats_line(&c)
    );
    assert!(matches!(end, End::Ok(200, _)), "{end:?}");
    assert_eq!(s.hits(), 2);
    books(&c);
}

/// The head trickled one byte per 50 ms: ends at the deadline with DeadlineExceeded.
#[tokio::test]
async fn a_trickled_head_ends_at_the_deadline() {
    let s = serve(Arc::new(|_, _, _| {
        vec![Step::Drip(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            50,
        )]
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let start = Instant::now();
    let end = finish(c.post("/p", "x")).await;
    let took = start.elapsed();
    println!("trickled head: {end:?} after {took:?}; {}", stats_line(&c));
    assert!(
        matches!(end, End::Head(Kind::DeadlineExceeded, _)),
        "{end:?}"
    );
    assert!(took < Duration::from_millis(800), "{took:?}");
    assert_eq!(s.hits(), 1);
    books(&c);
}

/// The body of a retry's answer is bounded by the request's deadline, counted from the
/// request's start, not from the retry.
#[tokio::test]
async fn a_retrys_body_ends_at_the_requests_deadline() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![
            Step::Sleep(150),
            w(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n"),
        ],
        _ => vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n"),
            Step::Drip(vec![b'a'; 40], 50),
        ],
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_millis(500))
        .attempt_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let start = Instant::now();
    let end = finish(c.get("/r")).await;
    let took = start.elapsed();
    println!("retry's body: {end:?} after {took:?}; {}", stats_line(&c));
    assert!(
        matches!(end, End::Body(200, _, Some(Kind::DeadlineExceeded), _)),
        "{end:?}"
    );
    assert!(
        took < Duration::from_millis(800),
        "deadline extended: {took:?}"
    );
    assert_eq!(s.hits(), 2);
    books(&c);
}

/// A stale keep-alive connection met by a GET whose retry's body is slow: still the request's
/// deadline.
#[tokio::test]
async fn after_a_stale_resend_the_body_keeps_the_requests_deadline() {
    let s = serve(Arc::new(|n, _, _| match n {
        0 => vec![w(OK)],
        // The reused connection closes before any byte of the answer.
        1 => vec![Step::Sleep(150), Step::Fin],
        _ => vec![
            w(b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n"),
            Step::Drip(vec![b'a'; 40], 50),
        ],
    }))
    .await;
    let c = builder(s.addr)
        .deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let _ = finish(c.get("/warm")).await;
    let start = Instant::now();
    let end = finish(c.get("/r")).await;
    let took = start.elapsed();
    println!(
        "stale then slow body: {end:?} after {took:?}; {}",
        stats_line(&c)
    );
    assert!(
        matches!(end, End::Body(200, _, Some(Kind::DeadlineExceeded), _)),
        "{end:?}"
    );
    assert!(
        took < Duration::from_millis(800),
        "deadline extended: {took:?}"
    );
    books(&c);
}

/// Contract: deadlines cover the response body and are never extended. A chunked body
/// whose chunks keep coming (one every 50 ms, each well inside any idle limit) and whose
/// last chunk never comes ends with `DeadlineExceeded` near the 400 ms deadline, charged to
/// the endpoint (tests/body_deadline.rs drips content until a stop; this trickle never stops
/// and is chunk-framed).
#[tokio::test]
async fn an_endless_chunked_trickle_ends_at_the_deadline() {
    let mut steps = vec![w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")];
    for _ in 0..200 {
        steps.push(w(b"1\r\nx\r\n"));
        steps.push(Step::Sleep(50));
    }
    let s = serve(Arc::new(move |_, _, _| steps.clone())).await;
    let c = builder(s.addr)
        .deadline(Duration::from_millis(400))
        .build()
        .unwrap();
    let t = Instant::now();
    let end = finish(c.get("/stream")).await;
    let took = t.elapsed();
    println!("{end:?} after {took:?}; {}", stats_line(&c));
    assert!(
        matches!(end, End::Body(200, _, Some(Kind::DeadlineExceeded), _)),
        "{end:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "deadline extended: {took:?}"
    );
    let failures: u64 = c.endpoints().iter().map(|e| e.failures).sum();
    assert_eq!(failures, 1, "{}", stats_line(&c));
    assert_eq!(s.hits(), 1);
}
