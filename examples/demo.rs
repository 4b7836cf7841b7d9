//! The meshless demo: one workload, a misbehaving fleet, three clients side by side.
//!
//! It starts six backends on 127.0.0.1 (ports the OS picks): two healthy, one slow, one flaky,
//! one that dies and comes back, one that hangs. Then it sends the same requests through a plain
//! hyper-util client (round robin, no retries), through `meshless::http::Client` with its
//! defaults, and through the same client with hedging on (`.hedge(HedgeConfig::default())`),
//! and prints what each caller saw and what hedging cost in extra attempts.
//!
//! ```text
//! cargo run --release --example demo
//! ```

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use meshless::hedge::HedgeConfig;
use meshless::testing::{Backend, Behavior, Fleet, Latency, Phase};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REQUESTS: usize = 4_000;
const CONCURRENCY: usize = 64;
const DEADLINE: Duration = Duration::from_secs(1);

/// The fleet: what each backend does, and its name in the table.
fn fleet() -> Vec<(&'static str, Backend)> {
    let fast = || Behavior::healthy().latency(Latency::lognormal(ms(1), ms(5)));
    vec![
        ("healthy-1", Backend::new(fast())),
        ("healthy-2", Backend::new(fast())),
        (
            "slow (150 ms)",
            Backend::new(Behavior::healthy().latency(Latency::fixed(ms(150)))),
        ),
        (
            "flaky (30% 503)",
            Backend::new(fast().errors(0.3, StatusCode::SERVICE_UNAVAILABLE)),
        ),
        (
            "dies, comes back",
            Backend::phases([
                Phase::new(ms(1_500), fast()),
                Phase::new(ms(1_500), Behavior::down()),
            ])
            .looping(),
        ),
        ("hangs", Backend::new(Behavior::healthy().hangs(1.0))),
    ]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let (names, backends): (Vec<_>, Vec<_>) = fleet().into_iter().unzip();

    eprintln!("running the plain hyper-util client…");
    let fleet = Fleet::builder().backends(backends.clone()).start().await?;
    let plain = run_plain(&fleet.addrs()).await;
    fleet.shutdown().await;

    eprintln!("running meshless…");
    let fleet = Fleet::builder().backends(backends.clone()).start().await?;
    let mesh = run_meshless(&fleet.addrs(), false).await?;
    fleet.shutdown().await;

    eprintln!("running meshless with hedging…");
    let fleet = Fleet::builder().backends(backends).start().await?;
    let hedged = run_meshless(&fleet.addrs(), true).await?;
    fleet.shutdown().await;

    println!();
    println!("{REQUESTS} GETs, {CONCURRENCY} at a time, a {DEADLINE:?} deadline each, against:");
    println!("  {}", names.join(", "));
    println!();
    println!(
        "{:<24} {:>14} {:>14} {:>16}",
        "", "hyper-util", "meshless", "meshless+hedge"
    );
    let row = |name: &str, a: String, b: String, c: String| {
        println!("{name:<24} {a:>14} {b:>14} {c:>16}")
    };
    let all = |f: &dyn Fn(&Outcome) -> String| (f(&plain), f(&mesh), f(&hedged));
    let (a, b, c) = all(&|r| pct(r.ok, REQUESTS));
    row("success", a, b, c);
    for (label, q) in [("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999)] {
        let (a, b, c) = all(&|r| latency(r.quantile(q)));
        row(label, a, b, c);
    }
    let (a, b, c) = all(&|r| format!("{:.3}", r.attempts as f64 / REQUESTS as f64));
    row("attempts per request", a, b, c);
    let (a, b, c) = all(&|r| r.hedges.map_or("-".into(), |n| n.to_string()));
    row("hedges sent", a, b, c);
    println!();
    println!("each endpoint's share of attempts:");
    for (i, name) in names.iter().enumerate() {
        let (a, b, c) = all(&|r| pct(r.per_endpoint[i] as usize, r.attempts as usize));
        row(&format!("  {name}"), a, b, c);
    }
    println!();
    println!(
        "hedging cost {} extra attempts per 100 requests ({} hedges) and moved p99 from {} to {}",
        format_args!(
            "{:.1}",
            (hedged.attempts as f64 - mesh.attempts as f64) * 100.0 / REQUESTS as f64
        ),
        hedged.hedges.unwrap_or(0),
        latency(mesh.quantile(0.99)),
        latency(hedged.quantile(0.99)),
    );
    eprintln!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// What one client saw.
struct Outcome {
    ok: usize,
    /// Attempts the endpoints saw, answered or cancelled (a hedge's loser is cancelled).
    attempts: u64,
    /// Hedges sent, for a client that hedges.
    hedges: Option<u64>,
    per_endpoint: Vec<u64>,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

async fn run_meshless(addrs: &[SocketAddr], hedge: bool) -> Result<Outcome, meshless::ConfigError> {
    let mut builder = meshless::http::Client::builder()
        .endpoints(addrs.iter().map(|a| a.to_string()))
        .deadline(DEADLINE);
    if hedge {
        builder = builder.hedge(HedgeConfig::default());
    }
    let client = builder.build()?;
    let send = {
        let client = client.clone();
        move |_| {
            let client = client.clone();
            async move {
                match client.get("/").await {
                    Ok(res) => {
                        let ok = res.status().is_success();
                        ok && res.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                }
            }
        }
    };
    let (ok, latencies) = drive(send).await;
    let stats = client.endpoints();
    let per_endpoint = addrs
        .iter()
        .map(|a| {
            stats
                .iter()
                .find(|s| s.key == *a)
                .map_or(0, |s| s.requests + s.cancelled)
        })
        .collect::<Vec<_>>();
    let attempts = per_endpoint.iter().sum();
    Ok(Outcome {
        ok,
        attempts,
        hedges: hedge.then(|| {
            let h = client.hedge_stats();
            eprintln!(
                "hedging: {} requests, {} hedges, {} won, delay {:?}, refused budget {} extra-load {} deadline {} idempotency {} body {}",
                h.requests(),
                h.hedges(),
                h.won(),
                h.delay(),
                h.refused(meshless::hedge::Refusal::Budget),
                h.refused(meshless::hedge::Refusal::ExtraLoad),
                h.refused(meshless::hedge::Refusal::Deadline),
                h.refused(meshless::hedge::Refusal::NotIdempotent),
                h.refused(meshless::hedge::Refusal::Body),
            );
            h.hedges()
        }),
        per_endpoint,
        latencies,
    })
}

async fn run_plain(addrs: &[SocketAddr]) -> Outcome {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let counts: Arc<Vec<AtomicU64>> = Arc::new(addrs.iter().map(|_| AtomicU64::new(0)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let send = {
        let (addrs, counts) = (addrs.to_vec(), counts.clone());
        move |_| {
            // Round robin, as a plain client over a list of addresses would do.
            let i = next.fetch_add(1, Ordering::Relaxed) % addrs.len();
            counts[i].fetch_add(1, Ordering::Relaxed);
            let (client, addr) = (client.clone(), addrs[i]);
            async move {
                let Ok(uri) = format!("http://{addr}/").parse() else {
                    return false;
                };
                let call = async {
                    let res = client.get(uri).await.ok()?;
                    let ok = res.status().is_success();
                    Some(ok && res.into_body().collect().await.is_ok())
                };
                matches!(tokio::time::timeout(DEADLINE, call).await, Ok(Some(true)))
            }
        }
    };
    let (ok, latencies) = drive(send).await;
    let per_endpoint: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    Outcome {
        ok,
        attempts: per_endpoint.iter().sum(),
        hedges: None,
        per_endpoint,
        latencies,
    }
}

/// Sends REQUESTS requests, CONCURRENCY at a time; returns the successes and every latency.
async fn drive<F, Fut>(send: F) -> (usize, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (send, next) = (send.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut latencies) = (0, Vec::new());
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= REQUESTS {
                    break;
                }
                let start = Instant::now();
                if send(n).await {
                    ok += 1;
                }
                latencies.push(start.elapsed());
            }
            (ok, latencies)
        }));
    }
    let (mut ok, mut latencies) = (0, Vec::with_capacity(REQUESTS));
    for worker in workers {
        if let Ok((n, l)) = worker.await {
            ok += n;
            latencies.extend(l);
        }
    }
    latencies.sort();
    (ok, latencies)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pct(part: usize, whole: usize) -> String {
    format!("{:.2}%", 100.0 * part as f64 / whole.max(1) as f64)
}

fn latency(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
