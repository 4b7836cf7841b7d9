//! A client built from a configuration file (`examples/config/client.toml`, or the path
//! given), run against a local fleet of three backends: one healthy with a long tail (median
//! 5 ms, p99 150 ms), one that fails 40% of requests with 503, one that answers in 300 ms. Prints the policy as loaded (every default
//! filled in) and what it did.
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
    fleet.shutdown().await;
    Ok(())
}
