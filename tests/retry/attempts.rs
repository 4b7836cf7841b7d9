//! Attempt counts, and which errors are retried.

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn attempts_get_503_twice_then_200_succeeds_on_the_third_attempt() {
    let (inner, log) = mock::<String>(vec![reply(503), reply(503), reply(200)]);
    let layer = RetryLayer::new(Budget::default()); // default: 2 retries, default backoff
    let stats = layer.stats();
    let mut svc = layer.layer(inner);

    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(text(res).await, "attempt 3");
    assert_eq!(log.count(), 3);
    assert!(log.all().iter().all(|s| s.method == Method::GET));
    assert_eq!(stats.requests(), 1);
    assert_eq!(stats.retries(), 2);
    assert_eq!(stats.retries_exhausted(), 0);
    assert_eq!(stats.budget_exhausted(), 0);
}

#[tokio::test(start_paused = true)]
async fn attempts_max_retries_1_returns_the_503_after_two_attempts() {
    let (inner, log) = mock::<String>(vec![reply(503), reply(503), reply(200)]);
    let layer = RetryLayer::new(Budget::default()).max_retries(1);
    let stats = layer.stats();
    let mut svc = layer.layer(inner);

    let res = send(&mut svc, get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(text(res).await, "attempt 2", "the last attempt's response");
    assert_eq!(log.count(), 2);
    assert_eq!(stats.requests(), 1);
    assert_eq!(stats.retries(), 1);
    assert_eq!(stats.retries_exhausted(), 1);

    // max_retries(0) turns retries off altogether.
    let (inner, log) = mock::<String>(vec![reply(503), reply(200)]);
    let layer = RetryLayer::new(Budget::default()).max_retries(0);
    let stats = layer.stats();
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(log.count(), 1);
    assert_eq!((stats.retries(), stats.retries_exhausted()), (0, 1));
}

// ---------------------------------------------------------------------------------------------
// 2. Errors.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn errors_connection_refused_post_is_retried() {
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionRefused), reply(201)]);
    let layer = quick();
    let stats = layer.stats();
    let mut svc = layer.layer(inner);

    let res = send(&mut svc, post("/orders", "order-1")).await.unwrap();
    assert_eq!(res.status(), 201);
    let seen = log.all();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.method == Method::POST && s.path == "/orders")
    );
    assert!(
        seen[0].chunks.is_empty(),
        "the refused attempt read nothing"
    );
    assert_eq!(seen[1].body(), b"order-1");
    assert_eq!(stats.retries(), 1);
}

#[tokio::test(start_paused = true)]
async fn errors_connection_reset_retried_for_get_but_not_for_post() {
    // GET: a reset is retried.
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset), reply(200)]);
    let res = send(&mut quick().layer(inner), get("/items"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.count(), 2);

    // POST: the server may have acted on it, so the error comes back as it is.
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset), reply(200)]);
    let layer = quick();
    let stats = layer.stats();
    let err = send(&mut layer.layer(inner), post("/orders", "order-1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Service);
    let source = err.source().expect("the io error is the source");
    let io = source.downcast_ref::<io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(log.count(), 1);
    assert_eq!(stats.retries(), 0);
}

#[tokio::test(start_paused = true)]
async fn errors_retries_exhausted_on_an_error_carries_the_io_error() {
    let (inner, log) = mock::<String>(vec![fail(io::ErrorKind::ConnectionReset)]);
    let layer = quick();
    let stats = layer.stats();
    let err = send(&mut layer.layer(inner), get("/items"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::RetriesExhausted);
    assert_eq!(err.attempts(), 3);
    assert_eq!(
        io_kind_in_chain(err.source().expect("a source")),
        Some(io::ErrorKind::ConnectionReset)
    );
    assert_eq!(log.count(), 3);
    assert_eq!(stats.retries(), 2);
    assert_eq!(stats.retries_exhausted(), 1);
}
