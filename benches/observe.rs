//! The cost of observability on the success path of the full stack: metrics and tracing on
//! against off.
//!
//! The stack is the one `meshless::http::Client` builds — `Deadline → Retry → AttemptTimeout →
//! Balance` — over three in-memory endpoints (`tower::service_fn`s that answer `200 OK` at
//! once), with the client's defaults (2 s deadline, attempt timeout a third of it). Each
//! iteration builds a `GET` with an empty body, then runs `ready().await` and `call(req).await`
//! on a current-thread tokio runtime. Every sample runs on freshly built services. Variants:
//!
//! - `bare`: one endpoint alone, the floor;
//! - `off`: the stack with `.metrics(false)` on the retry layer and the balancer, and no tracing
//!   subscriber;
//! - `noop_recorder`: the defaults (metrics on) with no recorder installed, as in a program
//!   that never installs an exporter: every handle is a no-op;
//! - `metrics`: metrics on, recorded by metrics-exporter-prometheus's recorder (installed
//!   globally, no HTTP listener; histograms drained between samples, as its upkeep would);
//! - `tracing`: metrics off, and a subscriber that enables every span and event but keeps
//!   nothing (so what is measured is meshless's side of tracing): the worst case, with the
//!   DEBUG attempt spans on;
//! - `metrics_tracing`: both;
//! - `metrics_tracing_info`: both, with the subscriber enabling INFO and above, as production
//!   filters usually do: request spans on, attempt spans off.
//!
//! The subscriber is installed for the bench's thread (`tracing::subscriber::with_default`),
//! which makes every tracing call look its dispatcher up in a thread-local: a little dearer
//! than the global default most programs set.
//!
//! The figure that matters is the cost of observability relative to the stack's own overhead:
//! `(variant − off) / (off − bare)`, to be compared with the goal of 10%.
//!
//! The machine is shared and noisy, so after criterion's group the bench measures the variants
//! again, interleaved: 11 rounds, each running every variant for about 0.25 s in turn, and
//! prints each variant's median time per request and the ratios. (Skipped when the command
//! line names benchmarks and none of them is `interleaved`.) In the interleaved rounds the
//! variants without tracing run after a subscriber has been used in the process, which leaves
//! tracing's callsite cache primed: `off` there pays a few nanoseconds more for its disabled
//! spans than in criterion's run, where it goes first.
//!
//! `MESHLESS_OBSERVE_LOOP=variant:requests` runs one variant and exits, for profilers
//! (`valgrind --tool=callgrind` counts instructions per request exactly).

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group};
use http::{Request, Response, Uri};
use http_body_util::Empty;
use meshless::balance::Balance;
use meshless::budget::Budget;
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use meshless::retry::RetryLayer;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::convert::Infallible;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, service_fn};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[path = "common/drive.rs"]
mod drive;
use drive::{drive, runtime};

/// An endpoint: answers `200 OK` at once, without reading the request.
async fn ok<B>(_req: Request<B>) -> Result<Response<Empty<Bytes>>, Infallible> {
    Ok(Response::new(Empty::new()))
}

/// Builds the stack, with metrics on or off.
fn stack(
    metrics: bool,
) -> impl Service<Request<Empty<Bytes>>, Response = Response<impl Sized>, Error = meshless::Error> {
    let balance = Balance::builder().metrics(metrics).build();
    for key in 0..3u32 {
        balance.insert(key, service_fn(ok));
    }
    let deadline = Duration::from_secs(2);
    ServiceBuilder::new()
        .layer(DeadlineLayer::new(deadline))
        .layer(RetryLayer::new(Budget::default()).metrics(metrics))
        .layer(AttemptTimeoutLayer::new(deadline / 3))
        .service(balance)
}

/// A subscriber that enables everything up to `level` and keeps nothing: each span gets a
/// fresh id, and every other call returns at once.
struct Enabled {
    next_id: AtomicU64,
    level: Level,
}

impl Subscriber for Enabled {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.level
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.level))
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn subscriber(level: Level) -> Enabled {
    Enabled {
        next_id: AtomicU64::new(0),
        level,
    }
}

fn request() -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = Uri::from_static("http://svc.local/resource");
    req
}

/// Installs metrics-exporter-prometheus's recorder (once), with buckets for the `_seconds`
/// families as a real deployment would configure them.
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".to_string()),
                meshless::observe::LATENCY_BUCKETS,
            )
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder");
        handle
    })
}

/// The stack with metrics on and no-op handles, as when no recorder is installed (built under
/// the facade's no-op recorder, so that it stays so after the real one is installed).
fn stack_noop_handles()
-> impl Service<Request<Empty<Bytes>>, Response = Response<impl Sized>, Error = meshless::Error> {
    metrics::with_local_recorder(&metrics::NoopRecorder, || stack(true))
}

fn observe(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("observe/stack_get_empty");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);

    // In this order, the variants with no recorder and no subscriber run before either is
    // installed anywhere in the process.
    for variant in VARIANTS {
        group.bench_function(BenchmarkId::from_parameter(variant), |b| {
            b.iter_custom(|iters| run_variant(&rt, variant, iters))
        });
    }
    group.finish();
}

/// The variants, in the order of the interleaved rounds.
const VARIANTS: [&str; 7] = [
    "bare",
    "off",
    "noop_recorder",
    "metrics",
    "tracing",
    "metrics_tracing",
    "metrics_tracing_info",
];

/// Runs `n` requests through variant `variant`; the time taken.
fn run_variant(rt: &Runtime, variant: &str, n: u64) -> Duration {
    let (metrics, level) = match variant {
        "bare" => return rt.block_on(drive(service_fn(ok), n, request)),
        "off" => return rt.block_on(drive(stack(false), n, request)),
        "noop_recorder" => return rt.block_on(drive(stack_noop_handles(), n, request)),
        "metrics" => (true, None),
        "tracing" => (false, Some(Level::TRACE)),
        "metrics_tracing" => (true, Some(Level::TRACE)),
        _ => (true, Some(Level::INFO)),
    };
    // Installed on first use, so that the variants before it ran with no recorder at all.
    let handle = prometheus();
    let svc = stack(metrics);
    let took = match level {
        None => rt.block_on(drive(svc, n, request)),
        Some(level) => tracing::subscriber::with_default(subscriber(level), || {
            rt.block_on(drive(svc, n, request))
        }),
    };
    // Outside the timed region: what the exporter's upkeep does every few seconds.
    handle.run_upkeep();
    took
}

/// The benchmark names given on the command line (arguments that are not options).
fn named_benchmarks() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect()
}

/// The variants again, interleaved round by round; prints the medians and the ratios.
fn interleaved() {
    let names = named_benchmarks();
    if !names.is_empty() && !names.iter().any(|n| "interleaved".contains(n.as_str())) {
        return;
    }
    let rt = runtime();
    // As many requests as the stack serves in about 0.25 s, from a short calibration.
    let probe = 20_000;
    let per = run_variant(&rt, "off", probe).as_secs_f64() / probe as f64;
    let n = ((0.25 / per) as u64).max(1_000);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..11 {
        for (i, variant) in VARIANTS.iter().enumerate() {
            let took = run_variant(&rt, variant, n);
            times[i].push(took.as_secs_f64() * 1e9 / n as f64);
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    println!("observe/interleaved: 11 rounds of {n} requests per variant, median ns per request");
    for (variant, median) in VARIANTS.iter().zip(&medians) {
        println!("  {variant:>16}: {median:8.1} ns");
    }
    let (bare, off) = (medians[0], medians[1]);
    let overhead = off - bare;
    println!("  the stack's own overhead (off − bare): {overhead:.1} ns");
    for (variant, median) in VARIANTS.iter().zip(&medians).skip(2) {
        let cost = median - off;
        println!(
            "  {variant:>16}: {cost:+7.1} ns over off = {:+5.1}% of the stack's overhead, {:.3}× off",
            100.0 * cost / overhead,
            median / off
        );
    }
}

criterion_group!(benches, observe);

fn main() {
    // `MESHLESS_OBSERVE_LOOP=variant:requests` runs one variant and exits: for `perf`.
    if let Ok(spec) = std::env::var("MESHLESS_OBSERVE_LOOP") {
        let (variant, n) = spec.split_once(':').unwrap_or((spec.as_str(), "1000000"));
        let n: u64 = n.parse().expect("a number of requests");
        let took = run_variant(&runtime(), variant, n);
        println!(
            "{variant}: {:.1} ns per request",
            took.as_secs_f64() * 1e9 / n as f64
        );
        return;
    }
    benches();
    interleaved();
    Criterion::default().configure_from_args().final_summary();
}
