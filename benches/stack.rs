//! The per-request overhead of each meshless layer, and of the full default stack, over a ready
//! in-memory service, each beside tower's closest equivalent.
//!
//! The service answers `200 OK` with an `Empty<Bytes>` body at once (`tower::service_fn`). Each
//! iteration builds a `GET` request with an `Empty<Bytes>` body, waits for the service to be
//! ready (`ServiceExt::ready`) and awaits `call`, on a current-thread tokio runtime, one request
//! at a time. Every sample runs on freshly built services (so that no retry budget sees more
//! than one sample's requests), after one untimed request (so that one-time setup, such as
//! tower's discovery of its endpoints or the start of a `Buffer` worker, is not timed).
//!
//! Groups, each measured next to its own `bare` (the service alone, the floor every layer adds
//! to, request building included):
//!
//! - `stack/deadline`: meshless `DeadlineLayer::new(1 s)` against
//!   `tower::timeout::TimeoutLayer::new(1 s)`;
//! - `stack/attempt_timeout`: meshless `AttemptTimeoutLayer::new(333 ms)` against
//!   `TimeoutLayer::new(333 ms)`;
//! - `stack/retry`: meshless `RetryLayer::new(Budget::default())` against `tower::retry::Retry`
//!   with a policy of the same semantics (as in `benches/retry.rs`): a shared `TpsBudget` (ttl
//!   10 s, 10 retries/s, 20%) that each request deposits into and each retry withdraws from,
//!   retrying 5xx responses and errors at most twice, cloning the request for a possible retry;
//! - `stack/balance`: meshless `Balance` over 3 endpoints against `tower::balance::p2c::Balance`
//!   over `tower::load::PeakEwmaDiscover` (30 ms default RTT, 10 s decay, as meshless) of a
//!   `ServiceList` of the same 3 endpoints;
//! - `stack/limit`: meshless `LimitLayer::fixed(1000)` and `LimitLayer::adaptive()` (the
//!   gradient limit) against `tower::limit::ConcurrencyLimitLayer::new(1000)`;
//! - `stack/breaker`, `stack/throttle`: the closed circuit breaker and enabled throttling
//!   (tower has neither), beside the bare call; `limit/off` and `throttle/off` are the layers
//!   as `http::Client` builds them unless configured (no limit, throttling off);
//! - `stack/hedge`: meshless `HedgeLayer::new(Budget::default())` (p95 after 100 answers)
//!   behind a `MapRequest` that wraps the body in a `ReplayBody` as the retry layer does, beside
//!   that `MapRequest` alone (`map`), and `RetryLayer` over `HedgeLayer` on one budget (`retry`,
//!   to compare with `retry/meshless`). tower's `hedge::Hedge` is not measured: it needs the
//!   request to be `Clone`, which `http::Request` is not;
//! - `stack/floor`: what carrying something down the stack on the request itself costs, with
//!   nothing else: `extension` inserts one `Copy` value into the request's extensions (as the
//!   deadline layer does with its `RequestDeadline`, the one way a `tower::Service` below can
//!   learn it), `header` inserts one header (as the retry layer announces an attempt it may
//!   retry, `x-meshless-attempt: 1`). Each is a lower bound of the layer that must do it;
//! - `stack/full`: the default stack of `meshless::http::Client` — `DeadlineLayer` (1 s) →
//!   `LimitLayer` (unlimited) → `BreakerLayer` (default) → `ThrottleLayer` (off) →
//!   `RetryLayer` (default) → `AttemptTimeoutLayer` (333 ms) → `Balance` of 3 — against tower's
//!   equivalent: `Timeout` (1 s) → `Retry` (the `TpsBudget` policy) → `Timeout` (333 ms) → p2c
//!   `Balance` over `PeakEwmaDiscover` of 3. tower's `Retry` needs a `Clone` inner service and
//!   tower's p2c `Balance` is not `Clone`, so it is measured two ways:
//!   - `tower`: behind [`Local`], an `Rc<RefCell<_>>` handle, the cheapest way to share it
//!     within one task (what a single-task loop can do; no real client could);
//!   - `tower_buffer`: behind `tower::buffer::Buffer` (bound 64), tower's own way to make a
//!     service `Clone` and shareable between tasks, which a multi-task client needs.
//!
//! # Instruction counts
//!
//! With `MESHLESS_BENCH_LOOP=<case>:<iterations>` set, the binary runs just that case in a plain
//! loop (no criterion) and exits, for `valgrind --tool=callgrind`. The cases are listed in
//! [`CASES`]. Counting at N and 2N iterations and subtracting removes the setup:
//!
//! ```text
//! cargo bench --bench stack --no-run
//! MESHLESS_BENCH_LOOP=full/meshless:100000 valgrind --tool=callgrind \
//!     --callgrind-out-file=/tmp/cg.full-meshless.100000 target/release/deps/stack-<hash>
//! ```

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group};
use http::{Request, Response, Uri};
use http_body_util::Empty;
use meshless::balance::{Balance, Change};
use meshless::breaker::BreakerLayer;
use meshless::budget::Budget;
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use meshless::hedge::HedgeLayer;
use meshless::limit::{LimitConfig, LimitLayer};
use meshless::retry::{ReplayBody, RetryLayer};
use meshless::throttle::{ThrottleConfig, ThrottleLayer};
use std::cell::RefCell;
use std::convert::Infallible;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tower::retry::Retry;
use tower::timeout::TimeoutLayer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

#[path = "common/tower_policy.rs"]
mod tower_policy;
use tower_policy::tower_policy;

type Req = Request<Empty<Bytes>>;
type Res = Response<Empty<Bytes>>;

/// The total deadline of the full stack.
const DEADLINE: Duration = Duration::from_secs(1);
/// The attempt timeout of the full stack: the deadline shared by the 3 attempts allowed, as
/// `meshless::http::Client` computes it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(333);
/// Endpoints behind each balancer.
const ENDPOINTS: usize = 3;

static URI: LazyLock<Uri> = LazyLock::new(|| Uri::from_static("http://svc.local/resource"));

/// A `GET` with an empty body; its cost is in every column, `bare` included.
fn request() -> Req {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = URI.clone();
    req
}

/// The in-memory service: answers `200 OK` with an empty body without reading the request.
async fn ok<B>(_req: Request<B>) -> Result<Res, Infallible> {
    Ok(Response::new(Empty::new()))
}

// ---------------------------------------------------------------------------------------------
// tower's side.
// ---------------------------------------------------------------------------------------------

/// tower's P2C over peak-EWMA endpoints, with meshless's defaults (30 ms, 10 s).
fn tower_balance()
-> impl Service<Req, Response = Res, Error = tower::BoxError, Future: Send> + Send + 'static {
    let endpoints = vec![service_fn(ok::<Empty<Bytes>>); ENDPOINTS];
    let discover = tower::load::PeakEwmaDiscover::new(
        tower::discover::ServiceList::new::<Req>(endpoints),
        Duration::from_millis(30),
        Duration::from_secs(10),
        tower::load::CompleteOnResponse::default(),
    );
    tower::balance::p2c::Balance::new(discover)
}

/// Shares a service within one task: a `Clone` handle for a service that is not, so that
/// tower's `Retry` can sit over tower's p2c `Balance` without a `Buffer`. `RefCell` borrows last
/// only for one `poll_ready` or `call`; not `Send`, so it serves a single-task loop only.
struct Local<S>(Rc<RefCell<S>>);

impl<S> Local<S> {
    fn new(service: S) -> Self {
        Local(Rc::new(RefCell::new(service)))
    }
}

impl<S> Clone for Local<S> {
    fn clone(&self) -> Self {
        Local(self.0.clone())
    }
}

impl<S: Service<R>, R> Service<R> for Local<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.borrow_mut().poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.0.borrow_mut().call(req)
    }
}

// ---------------------------------------------------------------------------------------------
// The services measured.
// ---------------------------------------------------------------------------------------------

fn bare() -> impl Service<Req, Response = Res, Error = Infallible> + Clone {
    service_fn(ok::<Empty<Bytes>>)
}

fn deadline_meshless() -> impl Service<Req, Error = meshless::Error> {
    DeadlineLayer::new(DEADLINE).layer(bare())
}

fn deadline_tower() -> impl Service<Req, Response = Res, Error = tower::BoxError> {
    TimeoutLayer::new(DEADLINE).layer(bare())
}

fn attempt_meshless() -> impl Service<Req, Response = Res, Error = meshless::Error> {
    AttemptTimeoutLayer::new(ATTEMPT_TIMEOUT).layer(bare())
}

fn attempt_tower() -> impl Service<Req, Response = Res, Error = tower::BoxError> {
    TimeoutLayer::new(ATTEMPT_TIMEOUT).layer(bare())
}

fn retry_meshless() -> impl Service<Req, Error = meshless::Error> {
    RetryLayer::new(Budget::default()).layer(service_fn(ok))
}

fn retry_tower() -> impl Service<Req, Response = Res, Error = Infallible> {
    Retry::new(tower_policy(), bare())
}

/// The fixed limit of the `stack/limit` group: far above the one request in flight.
const LIMIT: u32 = 1000;

fn limit_meshless() -> impl Service<Req, Error = meshless::Error> {
    LimitLayer::fixed(LIMIT).layer(bare())
}

fn limit_adaptive() -> impl Service<Req, Error = meshless::Error> {
    LimitLayer::adaptive().layer(bare())
}

fn limit_tower() -> impl Service<Req, Response = Res, Error = Infallible> {
    tower::limit::ConcurrencyLimitLayer::new(LIMIT as usize).layer(bare())
}

/// meshless's balancer over [`ENDPOINTS`] in-memory endpoints, for requests with body `B`.
fn meshless_balance<B>()
-> Balance<usize, impl Service<Request<B>, Response = Res, Error = Infallible> + Clone> {
    let balance = Balance::builder().build();
    balance.apply((0..ENDPOINTS).map(|i| Change::Insert(i, service_fn(ok::<B>))));
    balance
}

fn balance_meshless() -> impl Service<Req, Error = meshless::Error> {
    meshless_balance::<Empty<Bytes>>()
}

fn limit_off() -> impl Service<Req, Error = meshless::Error> {
    LimitLayer::from_config(&LimitConfig::default())
        .expect("default limit")
        .layer(bare())
}

fn throttle_off() -> impl Service<Req, Error = meshless::Error> {
    ThrottleLayer::from_config(&ThrottleConfig::default())
        .expect("default throttle")
        .layer(bare())
}

fn breaker_meshless() -> impl Service<Req, Error = meshless::Error> {
    BreakerLayer::new().layer(bare())
}

fn throttle_meshless() -> impl Service<Req, Error = meshless::Error> {
    ThrottleLayer::new().layer(bare())
}

/// Wraps the body for replay, as the retry layer above the hedge layer does (an empty body:
/// no allocation). The `hedge/map` case measures this alone.
fn replay_map<S>(inner: S) -> impl Service<Req, Response = Res, Error = S::Error> + Clone
where
    S: Service<Request<ReplayBody<Empty<Bytes>>>, Response = Res> + Clone,
{
    tower::util::MapRequestLayer::new(|req: Req| {
        req.map(|body| ReplayBody::new(body, meshless::retry::DEFAULT_REPLAY_CAP))
    })
    .layer(inner)
}

fn hedge_map() -> impl Service<Req, Response = Res, Error = Infallible> {
    replay_map(service_fn(ok))
}

/// The hedge layer with its defaults (p95 once 100 answers are in): past the first 100
/// requests every `GET` may be hedged, and none is, as each answers at once.
fn hedge_meshless() -> impl Service<Req, Response = Res, Error = meshless::Error> {
    replay_map(HedgeLayer::new(Budget::default()).layer(service_fn(ok)))
}

/// The retry layer over the hedge layer, sharing one budget, as the client would stack them:
/// compare with `retry/meshless`.
fn hedge_retry() -> impl Service<Req, Error = meshless::Error> {
    let budget = Budget::default();
    RetryLayer::new(budget.clone()).layer(HedgeLayer::new(budget).layer(service_fn(ok)))
}

/// A value carried on the request, as the deadline layer carries its `RequestDeadline`.
#[derive(Clone, Copy)]
struct Carried(#[allow(dead_code)] Instant);

/// Inserts one extension, then calls the bare service: the floor of any layer that tells the
/// layers below something through the request.
fn floor_extension() -> impl Service<Req, Response = Res, Error = Infallible> {
    tower::util::MapRequestLayer::new(|mut req: Req| {
        req.extensions_mut().insert(Carried(Instant::now()));
        req
    })
    .layer(bare())
}

/// Inserts one header, then calls the bare service: the floor of a layer that tells the server
/// something on every request.
fn floor_header() -> impl Service<Req, Response = Res, Error = Infallible> {
    tower::util::MapRequestLayer::new(|mut req: Req| {
        req.headers_mut().insert(
            meshless::retry::ATTEMPT_HEADER,
            http::HeaderValue::from_static("1"),
        );
        req
    })
    .layer(bare())
}

fn full_meshless() -> impl Service<Req, Error = meshless::Error> {
    // As `http::Client` builds it: no limit and no throttling unless configured, the breaker on.
    ServiceBuilder::new()
        .layer(DeadlineLayer::new(DEADLINE))
        .layer(LimitLayer::from_config(&LimitConfig::default()).expect("default limit"))
        .layer(BreakerLayer::new())
        .layer(ThrottleLayer::from_config(&ThrottleConfig::default()).expect("default throttle"))
        .layer(RetryLayer::new(Budget::default()))
        .layer(AttemptTimeoutLayer::new(ATTEMPT_TIMEOUT))
        .service(meshless_balance())
}

fn full_tower() -> impl Service<Req, Response = Res, Error = tower::BoxError> {
    ServiceBuilder::new()
        .layer(TimeoutLayer::new(DEADLINE))
        .layer(tower::retry::RetryLayer::new(tower_policy()))
        .layer(TimeoutLayer::new(ATTEMPT_TIMEOUT))
        .service(Local::new(tower_balance()))
}

/// Needs a tokio runtime: the `Buffer` worker is spawned on it.
fn full_tower_buffer() -> impl Service<Req, Response = Res, Error = tower::BoxError> {
    ServiceBuilder::new()
        .layer(TimeoutLayer::new(DEADLINE))
        .layer(tower::retry::RetryLayer::new(tower_policy()))
        .layer(TimeoutLayer::new(ATTEMPT_TIMEOUT))
        .service(tower::buffer::Buffer::new(tower_balance(), 64))
}

// ---------------------------------------------------------------------------------------------
// Driving them.
// ---------------------------------------------------------------------------------------------

/// One request: `ready().await`, then `call(req).await`.
async fn once<S>(svc: &mut S)
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    let res = svc
        .ready()
        .await
        .expect("the service is always ready")
        .call(request())
        .await
        .expect("the service always answers");
    black_box(res);
}

/// One untimed request, then `iters` timed ones; returns the time they took, and the size of
/// the service's response future (moved at least once per request).
async fn drive<S>(mut svc: S, iters: u64) -> (Duration, usize)
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    once(&mut svc).await;
    let start = Instant::now();
    for _ in 0..iters {
        once(&mut svc).await;
    }
    (start.elapsed(), std::mem::size_of::<S::Future>())
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Every case, as `group/name`, for `MESHLESS_BENCH_LOOP`.
const CASES: &[&str] = &[
    "bare",
    "deadline/meshless",
    "deadline/tower",
    "attempt_timeout/meshless",
    "attempt_timeout/tower",
    "retry/meshless",
    "retry/tower",
    "balance/meshless",
    "balance/tower",
    "limit/meshless",
    "limit/adaptive",
    "limit/tower",
    "limit/off",
    "breaker/meshless",
    "throttle/meshless",
    "throttle/off",
    "hedge/meshless",
    "hedge/map",
    "hedge/retry",
    "floor/extension",
    "floor/header",
    "full/meshless",
    "full/tower",
    "full/tower_buffer",
];

/// Runs `case` on fresh services: one untimed request, then `iters` timed ones.
async fn run(case: &str, iters: u64) -> (Duration, usize) {
    match case {
        "bare" => drive(bare(), iters).await,
        "deadline/meshless" => drive(deadline_meshless(), iters).await,
        "deadline/tower" => drive(deadline_tower(), iters).await,
        "attempt_timeout/meshless" => drive(attempt_meshless(), iters).await,
        "attempt_timeout/tower" => drive(attempt_tower(), iters).await,
        "retry/meshless" => drive(retry_meshless(), iters).await,
        "retry/tower" => drive(retry_tower(), iters).await,
        "balance/meshless" => drive(balance_meshless(), iters).await,
        "balance/tower" => drive(tower_balance(), iters).await,
        "limit/meshless" => drive(limit_meshless(), iters).await,
        "limit/adaptive" => drive(limit_adaptive(), iters).await,
        "limit/tower" => drive(limit_tower(), iters).await,
        "limit/off" => drive(limit_off(), iters).await,
        "throttle/off" => drive(throttle_off(), iters).await,
        "breaker/meshless" => drive(breaker_meshless(), iters).await,
        "throttle/meshless" => drive(throttle_meshless(), iters).await,
        "hedge/meshless" => drive(hedge_meshless(), iters).await,
        "hedge/map" => drive(hedge_map(), iters).await,
        "hedge/retry" => drive(hedge_retry(), iters).await,
        "floor/extension" => drive(floor_extension(), iters).await,
        "floor/header" => drive(floor_header(), iters).await,
        "full/meshless" => drive(full_meshless(), iters).await,
        "full/tower" => drive(full_tower(), iters).await,
        "full/tower_buffer" => drive(full_tower_buffer(), iters).await,
        other => panic!("unknown case {other:?}; the cases are {CASES:?}"),
    }
}

/// `MESHLESS_BENCH_LOOP=<case>:<iterations>`: runs one case in a plain loop.
fn run_loop(spec: &str) {
    let (case, iters) = spec
        .rsplit_once(':')
        .and_then(|(case, n)| Some((case, n.parse::<u64>().ok()?)))
        .unwrap_or_else(|| panic!("MESHLESS_BENCH_LOOP={spec:?}: expected <case>:<iterations>"));
    let (took, future_bytes) = runtime().block_on(run(case, iters));
    eprintln!(
        "{case}: {iters} requests in {took:?} ({:.1} ns each); response future: {future_bytes} bytes",
        took.as_nanos() as f64 / iters.max(1) as f64
    );
}

// ---------------------------------------------------------------------------------------------
// Criterion.
// ---------------------------------------------------------------------------------------------

/// Benchmarks every case of `group` (and `bare`) next to one another.
fn compare(c: &mut Criterion, rt: &Runtime, group: &str, names: &[&str]) {
    let mut g = c.benchmark_group(format!("stack/{group}"));
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);
    for name in std::iter::once(&"bare").chain(names) {
        let case = if *name == "bare" {
            "bare".to_string()
        } else {
            format!("{group}/{name}")
        };
        let case = case.as_str();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(rt)
                .iter_custom(move |iters| async move { run(case, iters).await.0 })
        });
    }
    g.finish();
}

fn stack(c: &mut Criterion) {
    let rt = runtime();
    compare(c, &rt, "deadline", &["meshless", "tower"]);
    compare(c, &rt, "attempt_timeout", &["meshless", "tower"]);
    compare(c, &rt, "retry", &["meshless", "tower"]);
    compare(c, &rt, "balance", &["meshless", "tower"]);
    compare(c, &rt, "limit", &["meshless", "adaptive", "off", "tower"]);
    // No tower counterpart: tower has neither a breaker nor adaptive throttling.
    compare(c, &rt, "breaker", &["meshless"]);
    compare(c, &rt, "throttle", &["meshless", "off"]);
    // tower's `hedge::Hedge` needs `Request: Clone`, which `http::Request` is not.
    compare(c, &rt, "hedge", &["meshless", "map", "retry"]);
    compare(c, &rt, "floor", &["extension", "header"]);
    compare(c, &rt, "full", &["meshless", "tower", "tower_buffer"]);
}

criterion_group!(benches, stack);

fn main() {
    if let Ok(spec) = std::env::var("MESHLESS_BENCH_LOOP") {
        run_loop(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
