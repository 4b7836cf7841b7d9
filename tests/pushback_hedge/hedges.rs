//! Hedges: an answer that forbids retries stops them and ends the race; a refusal of an attempt
//! never sent does not hide one that was; every token comes back when nothing could be sent.

use super::*;

/// gRPC A6: a negative `grpc-retry-pushback-ms` means "do not retry"; for hedging, no further
/// hedged attempt is sent once one answered so. With `max_hedges = 2`: the first attempt
/// stalls, the first hedge answers UNAVAILABLE with pushback -1 — the second hedge must not go.
#[tokio::test]
async fn grpc_do_not_retry_pushback_on_a_hedge_stops_further_hedges() {
    let servers = Servers::start(3, |i, _, _| {
        if i == 0 {
            Act::After(ms(600), grpc_unavailable(Some("-1")))
        } else {
            Act::Reply(grpc_unavailable(Some("-1")))
        }
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(2000))
        .attempt_timeout(ms(2000))
        .hedge(hedging(2, ms(100)))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client.request(grpc_request("/svc.S/M")).await;
    let took = started.elapsed();
    let sends = servers.count();
    eprintln!(
        "outcome: {:?}, took {took:?}, sends {sends}, hedges {}",
        res.as_ref().map(|r| r.headers().clone()),
        client.hedge_stats().hedges()
    );
    if let Ok(res) = res {
        let _ = res.into_body().collect().await;
    }
    books_balance(&client);
    assert_eq!(
        sends,
        2,
        "the server answered 'do not retry' (grpc-retry-pushback-ms: -1) to the first hedge, \
         yet {sends} sends were made: {:?}",
        servers
            .seen()
            .iter()
            .map(|s| (s.port, s.at))
            .collect::<Vec<_>>()
    );
}

/// gRPC A6 again, with one hedge: the hedge is answered UNAVAILABLE with pushback -1 ("do not
/// retry"); the stalled first attempt then answers UNAVAILABLE without pushback. The server
/// told this request not to be retried, yet the race returns the last failure and the retry
/// layer above retries it.
#[tokio::test]
async fn a_do_not_retry_answer_inside_a_hedge_race_is_not_forgotten_by_the_retry_layer() {
    let servers = Servers::start(3, |i, _, _| match i {
        0 => Act::After(ms(300), grpc_unavailable(None)),
        1 => Act::Reply(grpc_unavailable(Some("-1"))),
        _ => Act::Reply(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 0\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        ),
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(2000))
        .attempt_timeout(ms(2000))
        .hedge(hedging(1, ms(100)))
        .build()
        .unwrap();
    let res = client.request(grpc_request("/svc.S/M")).await;
    let seen: Vec<_> = servers.seen().iter().map(|s| (s.port, s.at)).collect();
    eprintln!(
        "outcome: {:?}; sends {seen:?}; retries {}",
        res.as_ref().map(|r| r.headers().clone()),
        client.retry_stats().retries()
    );
    if let Ok(r) = res {
        let _ = r.into_body().collect().await;
    }
    books_balance(&client);
    assert_eq!(
        servers.count(),
        2,
        "after a 'do not retry' pushback the request was sent again: {seen:?}"
    );
}

/// With hedging on and every endpoint quiet past the deadline, the request fails at once and
/// every token goes back.
#[tokio::test]
async fn hedged_request_with_all_endpoints_pushing_back_refunds_every_token() {
    let servers = Servers::start(2, |_, _, _| {
        Act::Reply(status_with("429 Too Many Requests", "retry-after: 100\r\n"))
    })
    .await;
    let budget = Budget::builder()
        .min_per_second(0.5)
        .ratio(0.0)
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    let start_balance = budget.balance();
    // Shorter than the second before a quiet endpoint takes its first probe.
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(900))
        .budget(budget.clone())
        .hedge(hedging(1, ms(50)))
        .build()
        .unwrap();
    let mut errors = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        match client.get("/q").await {
            Ok(r) => {
                errors.push(format!("status {} in {:?}", r.status(), started.elapsed()));
                let _ = r.into_body().collect().await;
            }
            Err(e) => errors.push(format!("{e} ({:?}) in {:?}", e.kind(), started.elapsed())),
        }
    }
    eprintln!(
        "{errors:?}; sends {}; balance {} -> {}",
        servers.count(),
        start_balance,
        budget.balance()
    );
    assert_eq!(servers.count(), 2, "each endpoint once, then quiet");
    let s = client.retry_stats();
    eprintln!("retries {} attempts {}", s.retries(), s.attempts());
    books_balance(&client);
    // One retry was sent (to the second endpoint): the balance dropped by at most one token.
    assert!(
        budget.balance() >= start_balance - 1.0 - 1e-9,
        "{} -> {}",
        start_balance,
        budget.balance()
    );
}

/// Hedging on: the first attempt stalls, the hedge wins with a head whose body then stalls.
/// The body must end at the request's deadline, not later.
#[tokio::test]
async fn a_hedge_winners_stalled_body_ends_at_the_deadline() {
    let servers = Servers::start(2, |i, _, _| {
        if i == 0 {
            Act::After(ms(5000), ok())
        } else {
            Act::Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab".to_vec())
        }
    })
    .await;
    // The stalled body: the server writes 2 of 10 bytes and keeps the connection open.
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(500))
        .attempt_timeout(ms(500))
        .hedge(hedging(1, ms(50)))
        .build()
        .unwrap();
    let started = Instant::now();
    let res = client.get("/q").await.expect("the hedge's head");
    let head_at = started.elapsed();
    let body = res.into_body().collect().await;
    let took = started.elapsed();
    eprintln!(
        "head at {head_at:?}, body {:?} at {took:?}",
        body.as_ref().err()
    );
    assert!(body.is_err());
    assert!(took < ms(500) + ms(250), "body ended at {took:?}");
    books_balance(&client);
    let s = client.retry_stats();
    assert_eq!(s.failures(), 1);
}

/// One gRPC call through a client over `servers` that hedges up to `max_hedges` times,
/// `delay` apart: the client, and the answer's `grpc-status` and `grpc-retry-pushback-ms`
/// (or the error), its body read to the end.
async fn hedged_call(
    servers: &Servers,
    max_hedges: u32,
    delay: Duration,
) -> (
    Client,
    Result<(Option<HeaderValue>, Option<HeaderValue>), String>,
) {
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(3000))
        .attempt_timeout(ms(3000))
        .hedge(hedging(max_hedges, delay))
        .build()
        .unwrap();
    let res = client.request(grpc_request("/svc.S/M")).await;
    let answer = res
        .as_ref()
        .map(|r| {
            let header = |name: &str| r.headers().get(name).cloned();
            (header("grpc-status"), header("grpc-retry-pushback-ms"))
        })
        .map_err(chain);
    eprintln!("outcome {answer:?}; sends {}", servers.count());
    if let Ok(r) = res {
        let _ = r.into_body().collect().await;
    }
    (client, answer)
}

fn status(code: &'static str) -> Option<HeaderValue> {
    Some(HeaderValue::from_static(code))
}

/// The first attempt stalls and then succeeds; the hedge answers DoNotRetry at once. The
/// success must still be returned (the DoNotRetry answer stops further hedges only).
#[tokio::test]
async fn a_do_not_retry_hedge_then_the_first_attempt_succeeds() {
    let servers = Servers::start(3, |i, _, _| match i {
        0 => Act::After(ms(300), grpc_ok()),
        1 => Act::Reply(grpc_unavailable(Some("-1"))),
        _ => Act::Reply(grpc_ok()),
    })
    .await;
    let (client, answer) = hedged_call(&servers, 2, ms(50)).await;
    assert_eq!(answer.map(|(code, _)| code), Ok(status("0")));
    assert_eq!(servers.count(), 2, "no hedge after the DoNotRetry answer");
    books_balance(&client);
}

/// The first attempt answers DoNotRetry while a hedge is running; the hedge then succeeds.
#[tokio::test]
async fn a_do_not_retry_first_attempt_then_the_hedge_succeeds() {
    let servers = Servers::start(3, |i, _, _| match i {
        0 => Act::After(ms(150), grpc_unavailable(Some("-1"))),
        1 => Act::After(ms(250), grpc_ok()),
        _ => Act::Reply(grpc_ok()),
    })
    .await;
    let (client, answer) = hedged_call(&servers, 2, ms(100)).await;
    assert_eq!(answer.map(|(code, _)| code), Ok(status("0")));
    assert_eq!(servers.count(), 2);
    books_balance(&client);
}

/// DoNotRetry kept, then the other attempt fails retryably: the race ends with the DoNotRetry
/// answer and the retry layer does not retry.
#[tokio::test]
async fn a_do_not_retry_then_a_retryable_failure_ends_with_do_not_retry() {
    let servers = Servers::start(3, |i, _, _| match i {
        0 => Act::After(ms(200), grpc_unavailable(None)),
        1 => Act::Reply(grpc_unavailable(Some("-1"))),
        _ => Act::Reply(grpc_ok()),
    })
    .await;
    let (client, answer) = hedged_call(&servers, 2, ms(50)).await;
    assert_eq!(answer, Ok((status("14"), status("-1"))));
    assert_eq!(servers.count(), 2);
    books_balance(&client);
}

/// A hedge waits in the balancer for the only endpoint's short quiet; the first attempt, sent,
/// fails (the server closes the connection); then another request's answer makes the endpoint
/// quiet past the deadline, and the waiting hedge is refused unsent. The race ends with the
/// refusal (the last error), and the retry layer reads the whole request as never sent.
#[tokio::test]
async fn a_hedge_refused_last_after_a_sent_first_attempt() {
    let servers = Servers::start(1, |_, _, seen| match seen.path.as_str() {
        "/r1" => Act::Close(ms(300)),
        "/r4" => Act::After(
            ms(400),
            status_with("429 Too Many Requests", "retry-after: 100\r\n"),
        ),
        "/r2" => Act::Reply(status_with("429 Too Many Requests", "retry-after: 1\r\n")),
        _ => Act::Reply(ok()),
    })
    .await;
    let client = Client::builder()
        .endpoints(servers.endpoints())
        .deadline(ms(3000))
        .attempt_timeout(ms(3000))
        .hedge(hedging(1, ms(50)))
        .build()
        .unwrap();
    let c = client.clone();
    let r1 = tokio::spawn(async move {
        let started = Instant::now();
        let r = c.get("/r1").await;
        (
            r.map(|r| r.status()).map_err(|e| (e.attempts(), chain(&e))),
            started.elapsed(),
        )
    });
    tokio::time::sleep(ms(5)).await;
    let c = client.clone();
    let r4 = tokio::spawn(async move {
        c.get("/r4")
            .await
            .map(|r| r.status())
            .map_err(|e| chain(&e))
    });
    tokio::time::sleep(ms(5)).await;
    let r2 = client
        .get("/r2")
        .await
        .map(|r| r.status())
        .map_err(|e| chain(&e));
    let (r1, took) = r1.await.unwrap();
    let r4 = r4.await.unwrap();
    let sent_r1 = servers.count();
    eprintln!("r1 {r1:?} in {took:?}; r2 {r2:?}; r4 {r4:?}; sends {sent_r1}");
    if let Err((attempts, _)) = &r1 {
        assert!(*attempts >= 1, "the first attempt of /r1 was sent: {r1:?}");
    }
}
