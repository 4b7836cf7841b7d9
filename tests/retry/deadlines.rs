//! Deadlines bound every attempt and every wait between them.

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn deadline_bounds_a_hanging_service_and_cuts_each_attempt() {
    let (inner, log) = mock::<String>(vec![hang()]);
    let retry = quick().max_retries(10);
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .layer(AttemptTimeoutLayer::new(ms(300)).deadline_header(true))
        .service(inner);
    let start = Instant::now();
    let err = send(&mut svc, get("/slow")).await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(Instant::now() - start, ms(1_000));

    let seen = log.all();
    assert_eq!(seen.len(), 4, "attempts at 0, 300, 600 and 900 ms");
    let starts: Vec<_> = seen.iter().map(|s| s.at).collect();
    let ends: Vec<_> = seen.iter().map(|s| s.ended).collect();
    assert_eq!(starts, vec![ms(0), ms(300), ms(600), ms(900)]);
    // Each attempt is cut at 300 ms, the last one by the deadline.
    assert_eq!(
        ends,
        vec![Some(ms(300)), Some(ms(600)), Some(ms(900)), Some(ms(1_000))]
    );
    // Each retry tells the server its own limit: the per-attempt timeout, then what is left.
    let limits: Vec<_> = seen
        .iter()
        .map(|s| s.headers[DEADLINE_HEADER].clone())
        .collect();
    assert_eq!(limits, ["300", "300", "300", "100"]);
    assert_eq!(stats.retries(), 3);
    assert_eq!(stats.retries_exhausted(), 0);
}

#[tokio::test(start_paused = true)]
async fn deadline_bounds_a_hanging_service_with_jittered_backoff() {
    for _ in 0..20 {
        let (inner, log) = mock::<String>(vec![hang()]);
        let mut svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(ms(1_000)))
            .layer(RetryLayer::new(Budget::default()).max_retries(10))
            .layer(AttemptTimeoutLayer::new(ms(300)))
            .service(inner);
        let start = Instant::now();
        let err = send(&mut svc, get("/slow")).await.unwrap_err();
        assert_eq!(err.kind(), Kind::DeadlineExceeded);
        let elapsed = Instant::now() - start;
        assert!(elapsed <= ms(1_000), "{elapsed:?}");
        // Backoffs of at most 25 + 50 + 100 ms leave room for 3 or 4 attempts.
        let seen = log.all();
        assert!((3..=4).contains(&seen.len()), "{} attempts", seen.len());
        for (i, s) in seen.iter().enumerate() {
            let lived = s.ended.expect("every attempt ended") - s.at;
            if i + 1 < seen.len() {
                assert_eq!(lived, ms(300), "attempt {} cut by its timeout", s.attempt);
            } else {
                assert!(lived <= ms(300));
                assert!(s.ended.unwrap() <= ms(1_000));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn deadline_pushback_longer_than_the_time_left_is_not_waited_for() {
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "2"), reply(200)]);
    let retry = quick();
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .service(inner);
    let start = Instant::now();
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503, "the response is returned, not a timeout");
    assert_eq!(Instant::now() - start, Duration::ZERO);
    assert_eq!(log.count(), 1);
    assert_eq!(stats.deadline_refused(), 1);
    assert_eq!(stats.pushback_refused(), 0);
}

#[tokio::test(start_paused = true)]
async fn deadline_no_time_left_means_no_attempt() {
    // The request arrives with its deadline already reached: nothing is sent.
    let (inner, log) = mock::<String>(vec![reply(200)]);
    let retry = quick();
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .layer(AttemptTimeoutLayer::new(ms(300)))
        .service(inner);
    let mut req = get("/items");
    req.extensions_mut().insert(RequestDeadline(Instant::now()));
    let err = send(&mut svc, req).await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(log.count(), 0);
    assert_eq!(stats.retries(), 0);

    // An attempt that fails exactly at the deadline is not followed by another, even with no
    // backoff at all.
    let (inner, log) = mock::<String>(vec![reply(503).after(ms(1_000)), reply(200)]);
    let retry = quick();
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .service(inner);
    let start = Instant::now();
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(Instant::now() - start, ms(1_000));
    assert_eq!(log.count(), 1);
    assert_eq!(stats.deadline_refused(), 1);

    // With 1 ms left, a retry is still made (the control for the case above).
    let (inner, log) = mock::<String>(vec![reply(503).after(ms(999)), reply(200)]);
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(quick())
        .service(inner);
    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.arrivals(), vec![ms(0), ms(999)]);
}

#[tokio::test(start_paused = true)]
async fn deadline_retry_that_cannot_finish_in_time_is_not_started() {
    // A first request succeeds in 200 ms: the layer learns that attempts take about 200 ms.
    let (inner, log) = mock::<String>(vec![
        reply(200).after(ms(200)),
        reply(503).after(ms(850)),
        reply(503).after(ms(700)),
        reply(200),
    ]);
    let retry = quick();
    let stats = retry.stats();
    let mut svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(ms(1_000)))
        .layer(retry)
        .service(inner);
    assert_eq!(send(&mut svc, get("/a")).await.unwrap().status(), 200);

    // Failing at 850 ms, a 200 ms attempt would end past the deadline: no retry.
    let res = send(&mut svc, get("/b")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 2);
    assert_eq!(stats.deadline_refused(), 1);

    // Failing at 700 ms, it would end at 900 ms: retried.
    let res = send(&mut svc, get("/c")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 4);
    assert_eq!(stats.deadline_refused(), 1);
    assert_eq!(stats.retries(), 1);
}
