//! Fault injection for a resilience test: a healthy local backend, and a chaos layer that makes
//! it look flaky — 10% of attempts answered 503, 5% reset, 10% delayed by 10 ms.
//!
//! Below the retry layer, the faults are an upstream's and the retries mask them: every GET
//! succeeds. Around the whole stack, the same faults reach the caller. The seed makes every run
//! of the example inject the same faults into the same attempts.
//!
//! ```text
//! cargo run --example chaos
//! ```

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use meshless::backoff::Backoff;
use meshless::budget::Budget;
use meshless::chaos::{ChaosHandle, ChaosLayer, Faults};
use meshless::retry::{ReplayBody, RetryLayer};
use meshless::testing::{Backend, Behavior, Fleet};
use std::time::{Duration, Instant};
use tower::{Layer, Service, ServiceExt};

const REQUESTS: usize = 300;

fn chaos() -> ChaosLayer {
    ChaosLayer::new().seed(2024).metrics(false).faults(
        Faults::none()
            .error(0.10, 503)
            .reset(0.05)
            .delay(0.10, Duration::from_millis(10)),
    )
}

fn retry() -> RetryLayer {
    // Short backoff so that the example runs in well under a second.
    let backoff = Backoff::full_jitter(Duration::from_millis(1), Duration::from_millis(5))
        .expect("valid backoff");
    RetryLayer::new(Budget::default())
        .max_retries(3)
        .backoff(backoff)
        .metrics(false)
}

/// Sends `REQUESTS` GETs one after the other; returns how many the caller saw fail.
async fn run<S, RB>(mut svc: S, url: &str) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<RB>>,
{
    let mut failed = 0;
    for _ in 0..REQUESTS {
        let req = Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let ok = match svc.ready().await {
            Ok(svc) => matches!(svc.call(req).await, Ok(res) if res.status() == 200),
            Err(_) => false,
        };
        failed += usize::from(!ok);
    }
    failed
}

fn report(what: &str, handle: &ChaosHandle, failed: usize, started: Instant) {
    let c = handle.counts();
    println!(
        "{what:<28} injected: {:>3} errors, {:>3} resets, {:>3} delays | caller saw {failed:>3} \
         failures of {REQUESTS} ({:?})",
        c.errors,
        c.resets,
        c.delays,
        started.elapsed()
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy()))
        .start()
        .await?;
    let url = format!("http://{}/", fleet.addrs()[0]);
    let hyper = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();

    // Retry over chaos over the connection: the faults look like the upstream's.
    let started = Instant::now();
    let layer = chaos();
    let handle = layer.handle();
    let below = retry().layer(layer.layer(hyper.clone()));
    let failed_below = run(below, &url).await;
    report("chaos below retries:", &handle, failed_below, started);

    // Chaos over retry: the caller meets every fault.
    let started = Instant::now();
    let layer = chaos();
    let handle = layer.handle();
    let above = layer.layer(retry().layer(hyper));
    let failed_above = run(above, &url).await;
    report("chaos around the stack:", &handle, failed_above, started);

    assert_eq!(failed_below, 0, "retries mask the faults below them");
    assert_eq!(failed_above as u64, handle.counts().injected());
    println!(
        "backend served {} requests",
        fleet.backend(0).counters().requests()
    );
    fleet.shutdown().await;
    Ok(())
}
