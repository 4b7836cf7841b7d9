//! A client built from a configuration file (`examples/config/client.toml`, or the path
//! given), run against a local fleet of three backends: one healthy with a long tail (median
//! 5 ms, p99 150 ms), one that fails 40% of requests with 503, one that answers in 300 ms. Prints the policy as loaded (every default
//! filled in) and what it did; then sends to the file's routes, reloads the client with new
//! retries and routes while it runs, and shows the change.
//!
//! ```text
//! cargo run --example config --features serde [-- path/to/client.toml|.yaml|.json]
//! ```

use meshless::http::ClientBuilder;
use meshless::policy::ClientConfig;
use meshless::testing::{Behavior, Fleet, Latency};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const REQUESTS: usize = 200;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config/client.toml").to_string()
    });
    let fleet = Fleet::builder()
        .backend(Behavior::healthy().latency(Latency::lognormal(
            Duration::from_millis(5),
            Duration::from_millis(150),
        )))
        .backend(Behavior::healthy().errors(0.4, http::StatusCode::SERVICE_UNAVAILABLE))
        .backend(Behavior::healthy().latency(Latency::fixed(Duration::from_millis(300))))
        .start()
        .await?;

    let mut config = ClientConfig::from_file(&path)?;
    config.endpoints = fleet.addrs().iter().map(|a| a.to_string()).collect();
    println!("# the policy loaded from {path}, defaults filled in\n");
    println!("{}", config.to_toml_string());

    let client = ClientBuilder::from_config(&config)?.build()?;
    let started = Instant::now();
    let mut ok = 0;
    let mut failed = BTreeMap::<String, usize>::new();
    for _ in 0..REQUESTS {
        match client.get("/").await {
            Ok(res) if res.status() == 200 => ok += 1,
            Ok(res) => *failed.entry(format!("HTTP {}", res.status())).or_default() += 1,
            Err(e) => *failed.entry(format!("{:?}", e.kind())).or_default() += 1,
        }
    }
    let elapsed = started.elapsed();

    let stats = client.stats();
    let hedges = client.hedge_stats();
    println!("# what it did: {REQUESTS} GETs one after the other in {elapsed:.2?}");
    println!("answered 200: {ok}, failed: {failed:?}");
    println!(
        "retries: {} (budget refused {}), attempts cut at the attempt timeout: {}",
        stats.retries, stats.budget_exhausted, stats.attempt_timeouts
    );
    println!(
        "hedges sent: {}, of which answered first: {}",
        hedges.hedges(),
        hedges.won()
    );
    for (i, backend) in fleet.backends().iter().enumerate() {
        let what = ["tail", "40% 503", "300 ms"][i];
        println!(
            "backend {i} ({what:>7}): {:>3} requests, {:>3} answered 503",
            backend.counters().requests(),
            backend.counters().responses_5xx()
        );
    }

    // The routes: a POST to the orders route is marked idempotent, so a 503 is retried; a
    // POST elsewhere is not (the server may have acted on it).
    let before = client.stats().retries;
    let (orders, other) = (
        post_all(&client, "/v1/orders").await,
        post_all(&client, "/v1/other").await,
    );
    println!(
        "\n# routes: 50 POSTs to /v1/orders answered 200: {orders}; 50 POSTs to /v1/other: {other}; retries {}",
        client.stats().retries - before
    );

    // A reload: no retries but on the orders route, the other routes gone. Requests
    // in flight finish under the policy they started with; endpoints keep their state.
    config.retry.max_retries = 0;
    config
        .routes
        .retain(|r| r.name.as_deref() == Some("orders"));
    config.routes[0].max_retries = Some(2);
    client.reload(&config)?;
    let before = client.stats().retries;
    let (orders, other) = (
        post_all(&client, "/v1/orders").await,
        post_all(&client, "/v1/other").await,
    );
    println!(
        "# after a reload ({} routes): /v1/orders answered 200: {orders}; /v1/other: {other}; retries {}",
        client.routes().len(),
        client.stats().retries - before
    );
    config.endpoints.push("127.0.0.1:1".into());
    match client.reload(&config) {
        Ok(()) => println!("# a reload that adds an endpoint applied"),
        Err(e) => println!("# a reload that adds an endpoint is refused: {e}"),
    }
    fleet.shutdown().await;
    Ok(())
}

/// Sends 50 POSTs to `path`, counting the 200s.
async fn post_all(client: &meshless::http::Client, path: &str) -> usize {
    let mut ok = 0;
    for _ in 0..50 {
        if let Ok(res) = client.post(path, "{}").await {
            ok += usize::from(res.status() == 200);
        }
    }
    ok
}
