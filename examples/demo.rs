//! The meshless demo: the same workload against a flaky local server, through a plain
//! hyper-util client and through the same client wrapped by meshless.
//!
//! The server (on 127.0.0.1, a port the OS picks) answers each request at random: mostly 200,
//! but 8% 503, 3% a dropped connection, 2% an answer delayed by 2 s. The table shows what the
//! caller sees.
//!
//! ```text
//! cargo run --release --example demo
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshless::budget::Budget;
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use meshless::retry::RetryLayer;
use rand::RngExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};

const REQUESTS: usize = 4_000;
const CONCURRENCY: usize = 32;
const DEADLINE: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let received = Arc::new(AtomicU64::new(0));
    let addr = flaky_server(received.clone()).await?;
    println!("flaky server on {addr}: 8% 503, 3% dropped connections, 2% answers delayed 2 s");
    println!("{REQUESTS} GET requests, {CONCURRENCY} at a time, {DEADLINE:?} deadline each\n");

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let plain = ServiceBuilder::new()
        .layer(DeadlineLayer::new(DEADLINE)) // the same deadline, without retries
        .service(client);
    let before = received.load(Ordering::Relaxed);
    let plain = run(plain, addr).await;
    let plain_attempts = received.load(Ordering::Relaxed) - before;

    let client = Client::builder(TokioExecutor::new()).build_http();
    let meshless = ServiceBuilder::new()
        .layer(DeadlineLayer::new(DEADLINE))
        .layer(RetryLayer::new(Budget::default()))
        .layer(AttemptTimeoutLayer::new(Duration::from_millis(250)))
        .service(client);
    let before = received.load(Ordering::Relaxed);
    let mesh = run(meshless, addr).await;
    let mesh_attempts = received.load(Ordering::Relaxed) - before;

    println!("{:<22} {:>12} {:>12}", "", "hyper-util", "meshless");
    let row = |name: &str, a: String, b: String| println!("{name:<22} {a:>12} {b:>12}");
    row("success", pct(plain.ok), pct(mesh.ok));
    row(
        "p50 latency",
        ms(plain.quantile(0.50)),
        ms(mesh.quantile(0.50)),
    );
    row(
        "p99 latency",
        ms(plain.quantile(0.99)),
        ms(mesh.quantile(0.99)),
    );
    row(
        "p99.9 latency",
        ms(plain.quantile(0.999)),
        ms(mesh.quantile(0.999)),
    );
    let per = |n: u64| format!("{:.2}", n as f64 / REQUESTS as f64);
    row(
        "attempts per request",
        per(plain_attempts),
        per(mesh_attempts),
    );
    Ok(())
}

struct Outcome {
    ok: usize,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

fn pct(ok: usize) -> String {
    format!("{:.2}%", 100.0 * ok as f64 / REQUESTS as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Sends REQUESTS GETs, CONCURRENCY at a time, and records what came back.
async fn run<S, B>(svc: S, addr: SocketAddr) -> Outcome
where
    S: Service<http::Request<Empty<Bytes>>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Error: std::fmt::Debug + Send,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (mut svc, next) = (svc.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut latencies) = (0, Vec::new());
            while next.fetch_add(1, Ordering::Relaxed) < REQUESTS as u64 {
                let req = http::Request::get(format!("http://{addr}/"))
                    .body(Empty::new())
                    .expect("a valid request");
                let start = Instant::now();
                let result = match svc.ready().await {
                    Ok(svc) => svc.call(req).await,
                    Err(e) => Err(e),
                };
                if let Ok(res) = result {
                    let success = res.status().is_success();
                    if res.into_body().collect().await.is_ok() && success {
                        ok += 1;
                    }
                }
                latencies.push(start.elapsed());
            }
            (ok, latencies)
        }));
    }
    let mut outcome = Outcome {
        ok: 0,
        latencies: Vec::with_capacity(REQUESTS),
    };
    for w in workers {
        if let Ok((ok, latencies)) = w.await {
            outcome.ok += ok;
            outcome.latencies.extend(latencies);
        }
    }
    outcome.latencies.sort();
    outcome
}

/// A server that misbehaves at random, counting every request it receives.
async fn flaky_server(received: Arc<AtomicU64>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let received = received.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    received.fetch_add(1, Ordering::Relaxed);
                    let roll: f64 = rand::rng().random();
                    async move {
                        if roll < 0.03 {
                            // An error from the service makes hyper drop the connection unanswered.
                            return Err("dropped");
                        }
                        if roll < 0.05 {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let status = if roll > 0.92 { 503 } else { 200 };
                        let mut res = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                        *res.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                        Ok::<_, &str>(res)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
