//! Your `reqwest::Client`, with meshless's layers: the same requests to a misbehaving fleet,
//! sent through reqwest alone (round robin over the base URLs) and through
//! `meshless::reqwest::Client` wrapping the same client.
//!
//! Four backends on 127.0.0.1 (ports the OS picks): one healthy, one that answers 503 to 30% of
//! requests, one that is down (connection refused), one that never answers.
//!
//! ```text
//! cargo run --example reqwest --features reqwest
//! ```

use http::StatusCode;
use meshless::outlier::Status;
use meshless::reqwest::Client;
use meshless::testing::{Backend, Behavior, Fleet};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REQUESTS: usize = 400;
const CONCURRENCY: usize = 16;
const DEADLINE: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy()))
        .backend(Backend::new(
            Behavior::healthy().errors(0.3, StatusCode::SERVICE_UNAVAILABLE),
        ))
        .backend(Backend::new(Behavior::down()))
        .backend(Backend::new(Behavior::healthy().hangs(1.0)))
        .start()
        .await?;
    let bases: Vec<String> = fleet
        .addrs()
        .iter()
        .map(|a| format!("http://{a}"))
        .collect();
    let names = ["healthy", "flaky (30% 503)", "down (refused)", "hangs"];

    // One reqwest client for both runs: its own retries off, the deadline as its timeout.
    let http = reqwest::Client::builder()
        .retry(reqwest::retry::never())
        .timeout(DEADLINE)
        .build()?;

    println!("{REQUESTS} GETs, {CONCURRENCY} at a time, {DEADLINE:?} each at most\n");
    let (plain_http, plain_bases) = (http.clone(), bases.clone());
    let plain = run(move |i| {
        let url = format!("{}/", plain_bases[i % plain_bases.len()]);
        let call = plain_http.get(url).send();
        async move { call.await.map_err(|e| kind_of_reqwest(&e)) }
    })
    .await;
    report("reqwest alone, round robin", &plain);

    let client = Client::builder(http.clone())
        .endpoints(bases.clone())
        .deadline(DEADLINE)
        .build()?;
    let (mesh, mesh_http) = (client.clone(), http.clone());
    let meshless = run(move |_| {
        let call = mesh.send(mesh_http.get("http://quotes/"));
        async move { call.await.map_err(|e| e.kind().as_str().to_string()) }
    })
    .await;
    report("meshless::reqwest::Client", &meshless);

    println!("\nwhat meshless saw of each endpoint:");
    for e in client.endpoints() {
        let name = bases
            .iter()
            .position(|b| **b == *e.key)
            .map_or("?", |i| names[i]);
        println!(
            "  {name:<16} requests {:>4}  failures {:>3}  ejections {}  {}",
            e.requests,
            e.failures,
            e.ejections,
            status(&e.status)
        );
    }
    let retry = client.retry_stats();
    println!(
        "retries {} (budget refused {}), attempt timeouts {}",
        retry.retries(),
        retry.budget_exhausted(),
        retry.attempt_timeouts()
    );
    fleet.shutdown().await;
    Ok(())
}

/// What a batch of calls came to: successes, failures by what the caller saw, the slowest.
struct Outcome {
    ok: usize,
    failures: BTreeMap<String, usize>,
    slowest: Duration,
    took: Duration,
}

async fn run<F, Fut>(call: F) -> Outcome
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<reqwest::Response, String>> + Send + 'static,
{
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let (call, next) = (call.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REQUESTS {
                    return seen;
                }
                let sent = Instant::now();
                let result = match call(i).await {
                    Ok(res) if res.status().is_success() => match res.bytes().await {
                        Ok(_) => Ok(()),
                        Err(e) => Err(kind_of_reqwest(&e)),
                    },
                    Ok(res) => Err(format!("HTTP {}", res.status().as_u16())),
                    Err(e) => Err(e),
                };
                seen.push((result, sent.elapsed()));
            }
        }));
    }
    let mut outcome = Outcome {
        ok: 0,
        failures: BTreeMap::new(),
        slowest: Duration::ZERO,
        took: Duration::ZERO,
    };
    for worker in workers {
        for (result, took) in worker.await.unwrap_or_default() {
            outcome.slowest = outcome.slowest.max(took);
            match result {
                Ok(()) => outcome.ok += 1,
                Err(why) => *outcome.failures.entry(why).or_default() += 1,
            }
        }
    }
    outcome.took = started.elapsed();
    outcome
}

fn status(status: &Status) -> &'static str {
    match status {
        Status::Active => "active",
        Status::Ejected { .. } => "ejected",
        Status::Probation => "on probation",
        _ => "retired",
    }
}

fn kind_of_reqwest(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "connect error"
    } else if e.is_timeout() {
        "timeout"
    } else {
        "other error"
    };
    what.to_string()
}

fn report(name: &str, o: &Outcome) {
    let share = 100.0 * o.ok as f64 / REQUESTS as f64;
    println!(
        "{name:<28} ok {:>5.1}%  slowest {:>7.1?}  in {:.1?}",
        share, o.slowest, o.took
    );
    for (why, n) in &o.failures {
        println!("{:<30}{n:>4} × {why}", "");
    }
}
