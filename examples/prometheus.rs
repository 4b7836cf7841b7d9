//! A meshless client under faults, its metrics served for Prometheus at `/metrics`.
//!
//! It installs metrics-exporter-prometheus's recorder, starts five misbehaving backends on
//! 127.0.0.1 (two healthy, one that answers 30% of requests with 503, one that hangs on 20% of
//! them, one that dies and comes back every second), serves the exposition text on
//! `http://ADDR/metrics`, sends requests through `meshless::http::Client`, then keeps serving
//! so that you can scrape it.
//!
//! ```text
//! cargo run --example prometheus                        # a port the OS picks; serves 30 s more
//! cargo run --example prometheus -- --addr 127.0.0.1:9464 --requests 5000 --linger 120
//! MESHLESS_METRICS_ADDR=127.0.0.1:9464 cargo run --example prometheus
//! curl -s http://127.0.0.1:9464/metrics | grep meshless_
//! ```
//!
//! `tests/prometheus.rs` builds the same setup from the functions below and scrapes it.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshless::http::Client;
use meshless::testing::{Backend, Behavior, Fleet, Latency, Phase};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The `service` label of the client's metrics.
pub const SERVICE: &str = "catalog";

/// How a run is configured: from the command line, then the environment.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `/metrics` is served: 127.0.0.1:0 (a port the OS picks) unless given.
    pub addr: SocketAddr,
    /// Requests to send.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long to keep serving `/metrics` after the requests.
    pub linger: Duration,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            requests: 2_000,
            concurrency: 32,
            linger: Duration::from_secs(30),
        };
        if let Ok(addr) = std::env::var("MESHLESS_METRICS_ADDR") {
            options.addr = addr
                .parse()
                .map_err(|e| format!("MESHLESS_METRICS_ADDR: {e}"))?;
        }
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--addr" => options.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
                "--requests" => {
                    options.requests = value()?.parse().map_err(|e| format!("--requests: {e}"))?
                }
                "--concurrency" => {
                    let n: usize = value()?
                        .parse()
                        .map_err(|e| format!("--concurrency: {e}"))?;
                    options.concurrency = n.max(1);
                }
                "--linger" => {
                    let secs: u64 = value()?.parse().map_err(|e| format!("--linger: {e}"))?;
                    options.linger = Duration::from_secs(secs);
                }
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; use --addr, --requests, --concurrency, --linger"
                    ));
                }
            }
        }
        Ok(options)
    }
}

/// Installs the Prometheus recorder as the process's global recorder, with histogram buckets
/// for every `_seconds` family, and returns the handle that renders the exposition text.
///
/// Install it before building clients: they register their metric handles when built.
pub fn install_recorder() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    let recorder = PrometheusBuilder::new()
        // Series of endpoints that left (DNS churn) are dropped once idle for five minutes.
        .idle_timeout(MetricKindMask::ALL, Some(Duration::from_secs(300)))
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_string()),
            meshless::observe::LATENCY_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    meshless::observe::describe();
    // Histograms are drained on every render; the upkeep bounds them between scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Five backends: two healthy, one flaky, one that hangs now and then, one that flaps.
pub async fn start_fleet() -> std::io::Result<Fleet> {
    let fast = || Behavior::healthy().latency(Latency::lognormal(ms(1), ms(5)));
    Fleet::builder()
        .backend(Backend::new(fast()))
        .backend(Backend::new(fast()))
        .backend(Backend::new(
            fast().errors(0.3, StatusCode::SERVICE_UNAVAILABLE),
        ))
        .backend(Backend::new(fast().hangs(0.2)))
        .backend(
            Backend::phases([
                Phase::new(ms(1_000), fast()),
                Phase::new(ms(1_000), Behavior::down()),
            ])
            .looping(),
        )
        .start()
        .await
}

/// The client under test: defaults, but for a 1 s deadline and a 200 ms attempt timeout.
pub fn client(fleet: &Fleet) -> Result<Client, meshless::ConfigError> {
    Client::builder()
        .endpoints(fleet.addrs().iter().map(|a| a.to_string()))
        .service_name(SERVICE)
        .deadline(Duration::from_secs(1))
        .attempt_timeout(ms(200))
        .build()
}

/// Serves `/metrics` on `addr` (HTTP/1.1) until the task is aborted; returns the address it
/// listens on.
pub async fn serve_metrics(
    handle: PrometheusHandle,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(answer(&handle, &req)) }
                });
                // A scraper that hangs up early is no concern of ours.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn answer(handle: &PrometheusHandle, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    if req.uri().path() != "/metrics" {
        *res.status_mut() = StatusCode::NOT_FOUND;
        return res;
    }
    *res.body_mut() = Full::new(Bytes::from(handle.render()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}

/// Sends `requests` GETs, `concurrency` at a time, reading every body; returns how many
/// succeeded (a 2xx with its whole body).
pub async fn run_load(client: &Client, requests: usize, concurrency: usize) -> usize {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let client = client.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    if let Ok(res) = client.get("/v1/items").await {
                        let success = res.status().is_success();
                        if res.into_body().collect().await.is_ok() && success {
                            ok += 1;
                        }
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for worker in workers {
        ok += worker.await.unwrap_or(0);
    }
    ok
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse()?;
    let handle = install_recorder()?;
    let fleet = start_fleet().await?;
    let client = client(&fleet)?;
    let (addr, server) = serve_metrics(handle.clone(), options.addr).await?;
    println!("metrics: http://{addr}/metrics");

    let ok = run_load(&client, options.requests, options.concurrency).await;
    let stats = client.stats();
    println!(
        "{} requests: {ok} ok, {} failed; {} retries; success rate (last minute) {:.1}%; p50 {:?}, p99 {:?}",
        stats.requests,
        stats.failures,
        stats.retries,
        stats.success_rate().unwrap_or(0.0) * 100.0,
        stats.recent.p50.unwrap_or_default(),
        stats.recent.p99.unwrap_or_default(),
    );
    for endpoint in &stats.endpoints {
        println!(
            "  {}: {:>5} requests, {:>4} failures, {} ejections, EWMA {:>9.3?}, {:?}",
            endpoint.key,
            endpoint.requests,
            endpoint.failures,
            endpoint.ejections,
            endpoint.rtt,
            endpoint.status,
        );
    }

    if !options.linger.is_zero() {
        println!(
            "serving http://{addr}/metrics for {:?} more (Ctrl-C to stop)",
            options.linger
        );
        tokio::select! {
            _ = tokio::time::sleep(options.linger) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    server.abort();
    fleet.shutdown().await;
    Ok(())
}
