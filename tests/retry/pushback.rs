//! Pushback: `Retry-After` and gRPC retry pushback.

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn pushback_retry_after_delays_the_retry() {
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "2"), reply(200)]);
    let layer = RetryLayer::new(Budget::default()); // jittered backoff of at most 25 ms
    let start = Instant::now();
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    // Never earlier than the server asked; the backoff (≤ 25 ms) is not added on top.
    assert_eq!(log.arrivals(), vec![Duration::ZERO, ms(2_000)]);
    assert_eq!(Instant::now() - start, ms(2_000));

    // 429 carries Retry-After too.
    let (inner, log) = mock::<String>(vec![reply(429).header("retry-after", "1"), reply(200)]);
    let res = send(&mut quick().layer(inner), post("/orders", "x"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(log.arrivals(), vec![Duration::ZERO, ms(1_000)]);
}

/// Behind a balancer, the endpoint that pushed back is kept away by the balancer; the retry
/// goes out after the ordinary backoff, and a pushback that forbids retries still forbids them.
#[tokio::test(start_paused = true)]
async fn pushback_per_endpoint_does_not_delay_the_retry() {
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "30"), reply(200)]);
    let layer = RetryLayer::new(Budget::default()).pushback_per_endpoint(true);
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 200);
    let arrivals = log.arrivals();
    assert_eq!(arrivals.len(), 2);
    assert!(arrivals[1] <= ms(25), "only the backoff: {arrivals:?}");

    let (inner, log) = mock::<String>(vec![grpc("14").header("grpc-retry-pushback-ms", "-1")]);
    let layer = RetryLayer::new(Budget::default()).pushback_per_endpoint(true);
    let stats = layer.stats();
    send(&mut layer.layer(inner), idempotent_grpc_post())
        .await
        .unwrap();
    assert_eq!(log.count(), 1);
    assert_eq!(stats.pushback_refused(), 1);
}

#[tokio::test(start_paused = true)]
async fn pushback_longer_than_max_pushback_returns_the_response() {
    let (inner, log) = mock::<String>(vec![reply(503).header("retry-after", "2"), reply(200)]);
    let layer = quick().max_pushback(ms(1_000));
    let stats = layer.stats();
    let start = Instant::now();
    let res = send(&mut layer.layer(inner), get("/items")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "2");
    assert_eq!(log.count(), 1);
    assert_eq!(stats.pushback_refused(), 1);
    assert_eq!(stats.retries(), 0);
    assert_eq!(Instant::now() - start, Duration::ZERO, "no waiting either");
}

#[tokio::test(start_paused = true)]
async fn pushback_grpc_trailers_only_unavailable_retried_after_pushback() {
    let (inner, log) = mock::<String>(vec![
        grpc("14").header("grpc-retry-pushback-ms", "300"),
        grpc("0"),
    ]);
    let layer = RetryLayer::new(Budget::default());
    let stats = layer.stats();
    let res = send(&mut layer.layer(inner), grpc_post()).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    // UNAVAILABLE with pushback is retried even though every gRPC call is a POST: the server
    // said it did not act.
    assert_eq!(log.arrivals(), vec![Duration::ZERO, ms(300)]);
    assert_eq!(stats.retries(), 1);
}

#[tokio::test(start_paused = true)]
async fn pushback_grpc_negative_means_do_not_retry() {
    let (inner, log) = mock::<String>(vec![
        grpc("14").header("grpc-retry-pushback-ms", "-1"),
        grpc("0"),
    ]);
    let layer = quick();
    let stats = layer.stats();
    let res = send(&mut layer.layer(inner), idempotent_grpc_post())
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(log.count(), 1);
    assert_eq!(stats.pushback_refused(), 1);
    assert_eq!(stats.retries(), 0);
}

/// A retry the layer below refuses without sending it (the balancer with no ready endpoint, or
/// every endpoint pushing back) is no retry sent: `retries` counts none.
#[tokio::test(start_paused = true)]
async fn a_retry_refused_unsent_below_is_not_counted() {
    for refusal in [Kind::NoReadyEndpoint, Kind::EndpointsPushingBack] {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let inner = tower::service_fn(move |_req: Request<ReplayBody<String>>| {
            let first = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            async move {
                if first {
                    Ok(Response::builder().status(503).body(String::new()).unwrap())
                } else {
                    Err(Error::new(refusal))
                }
            }
        });
        let layer = quick().max_retries(1);
        let stats = layer.stats();
        let outcome = send(&mut layer.layer(inner), get("/items")).await;
        assert!(
            calls.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "{refusal:?}"
        );
        assert!(
            outcome.as_ref().map_or(true, |res| res.status() != 200),
            "{refusal:?}"
        );
        assert_eq!(
            stats.retries(),
            0,
            "{refusal:?}: nothing was sent again; calls {} outcome {:?}",
            calls.load(std::sync::atomic::Ordering::SeqCst),
            outcome.as_ref().map(|r| r.status()).map_err(|e| e.kind())
        );
    }
}
