//! Faults injected below meshless's retry layer, as an upstream's: retries mask what they may
//! mask (503s and resets for idempotent requests, refusals for any), and nothing else.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use meshless::backoff::Backoff;
use meshless::budget::Budget;
use meshless::chaos::{ChaosLayer, Faults};
use meshless::retry::{ReplayBody, RetryLayer};
use meshless::testing::{Backend, Behavior, Fleet};
use meshless::{BoxError, Error};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tower::{Layer, Service, ServiceExt, service_fn};

type Attempt = Request<ReplayBody<Empty<Bytes>>>;

/// A healthy upstream counting the attempts that reach it.
fn upstream(
    reached: Arc<AtomicU64>,
) -> impl Service<Attempt, Response = http::Response<String>, Error = BoxError> + Clone {
    service_fn(move |_req: Attempt| {
        reached.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, BoxError>(http::Response::new("ok".to_string())) }
    })
}

fn req(method: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(method)
        .uri("/")
        .body(Empty::new())
        .unwrap()
}

/// Sends `n` requests one after the other; returns how many failed (an error or a non-200).
async fn failures<S, RB>(svc: &mut S, method: &str, n: u64) -> u64
where
    S: Service<Request<Empty<Bytes>>, Response = http::Response<RB>, Error = Error>,
{
    let mut failed = 0;
    for _ in 0..n {
        match svc.ready().await.unwrap().call(req(method)).await {
            Ok(res) if res.status() == 200 => {}
            _ => failed += 1,
        }
    }
    failed
}

#[tokio::test(start_paused = true)]
async fn retries_mask_injected_503s_for_idempotent_requests_only() {
    let reached = Arc::new(AtomicU64::new(0));
    let chaos = ChaosLayer::new()
        .seed(11)
        .metrics(false)
        .faults(Faults::none().error(0.1, 503));
    let handle = chaos.handle();
    let retry = RetryLayer::new(Budget::default())
        .max_retries(3)
        .metrics(false);
    let stats = retry.stats();
    let mut svc = retry.layer(chaos.layer(upstream(reached.clone())));

    assert_eq!(
        failures(&mut svc, "GET", 1_000).await,
        0,
        "every GET masked"
    );
    let errors = handle.counts().errors;
    assert!(errors > 50, "{errors} injected");
    assert_eq!(stats.retries(), errors, "each injected 503 retried once");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        1_000,
        "each GET reached it once"
    );

    // A plain 503 may come from an upstream that acted: a POST is not sent again.
    let failed = failures(&mut svc, "POST", 1_000).await;
    assert!(failed > 50);
    assert_eq!(failed, handle.counts().errors - errors, "each 503 surfaced");
    assert_eq!(stats.retries(), errors, "no POST retried");
}

#[tokio::test(start_paused = true)]
async fn retries_mask_resets_for_idempotent_requests_and_refusals_for_any() {
    let reached = Arc::new(AtomicU64::new(0));
    let chaos = ChaosLayer::new()
        .seed(5)
        .metrics(false)
        .faults(Faults::none().reset(0.1).refuse(0.1));
    let handle = chaos.handle();
    let retry = RetryLayer::new(Budget::default())
        .max_retries(3)
        .metrics(false);
    let stats = retry.stats();
    let mut svc = retry.layer(chaos.layer(upstream(reached.clone())));

    assert_eq!(failures(&mut svc, "GET", 500).await, 0);
    let before = handle.counts();
    assert!(before.resets > 20 && before.refusals > 20, "{before:?}");

    let failed = failures(&mut svc, "POST", 500).await;
    let after = handle.counts();
    assert_eq!(
        failed,
        after.resets - before.resets,
        "a reset POST is not sent again"
    );
    assert!(after.refusals - before.refusals > 20);
    assert_eq!(
        stats.retries_exhausted(),
        0,
        "every refused POST retried to success"
    );
    assert_eq!(reached.load(Ordering::SeqCst), 1_000 - failed);
}

#[tokio::test]
async fn on_hyper_incoming_below_the_retry_layer_against_a_real_backend() {
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy()))
        .start()
        .await
        .unwrap();
    let addr = fleet.addrs()[0];
    let hyper = HyperClient::builder(TokioExecutor::new())
        .build_http::<ReplayBody<http_body_util::Full<Bytes>>>();
    let chaos = ChaosLayer::new()
        .seed(9)
        .metrics(false)
        .faults(Faults::none().error(0.1, 503).reset(0.05));
    let handle = chaos.handle();
    let backoff = Backoff::full_jitter(
        std::time::Duration::from_millis(1),
        std::time::Duration::from_millis(5),
    )
    .unwrap();
    let retry = RetryLayer::new(Budget::default())
        .max_retries(3)
        .backoff(backoff)
        .metrics(false);
    let svc = retry.layer(chaos.layer(hyper));
    for _ in 0..100 {
        let req = Request::get(format!("http://{addr}/"))
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    let counts = handle.counts();
    assert!(counts.errors > 3 && counts.resets > 1, "{counts:?}");
    assert_eq!(
        fleet.backend(0).counters().requests(),
        100,
        "faults never reached it"
    );
    fleet.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn one_flaky_endpoint_below_the_balancer_is_masked_and_avoided() {
    use meshless::balance::Balance;
    let reached = Arc::new(AtomicU64::new(0));
    // Each endpoint gets its own layer: the first resets every request, the second is left as
    // it is (a layer with no fault costs a branch).
    let flaky = ChaosLayer::new()
        .seed(1)
        .metrics(false)
        .faults(Faults::none().reset(1.0));
    let resets = flaky.handle();
    let calm = ChaosLayer::new().metrics(false);
    let balance = Balance::builder().metrics(false).build();
    balance.insert(0usize, flaky.layer(upstream(reached.clone())));
    balance.insert(1usize, calm.layer(upstream(reached.clone())));
    let retry = RetryLayer::new(Budget::default())
        .max_retries(3)
        .metrics(false);
    let stats = retry.stats();
    let mut svc = retry.layer(balance);

    assert_eq!(failures(&mut svc, "GET", 200).await, 0, "every GET masked");
    let resets = resets.counts().resets;
    assert!(resets >= 1, "the flaky endpoint was tried");
    assert!(
        resets <= 20,
        "{resets} resets: the balancer should avoid it"
    );
    assert_eq!(stats.retries(), resets);
    assert_eq!(reached.load(Ordering::SeqCst), 200);
}
