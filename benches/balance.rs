//! The balancer and the client: what a pick costs, what applying changes costs, the memory an
//! endpoint takes, and the loopback throughput of `meshless::http::Client` against a bare
//! hyper-util client.
//!
//! - `balance/pick/*`: one request through a ready balancer of 10, 1,000 or 10,000 in-memory
//!   endpoints (`tower::service_fn` answering `200` with an empty body at once): building the
//!   request, `call`, and awaiting the response future, which chooses the endpoint, calls it and
//!   records the outcome. On a current-thread tokio runtime. Next to it, the same through
//!   tower's `p2c::Balance` over `PeakEwma` endpoints (`ready` then `call`), and the bare
//!   endpoint alone.
//! - `balance/apply/*`: one batch of 1,000 inserts into an empty balancer; 500 removals and 500
//!   inserts in one batch on a balancer of 10,000; and 1,000 inserts as 1,000 separate
//!   `insert` calls. The balancer is built outside the timed region, and dropped outside it.
//! - Memory per endpoint: the growth of the bytes allocated and not yet freed (counted by the
//!   global allocator below) when 10,000 endpoints are inserted, for `Balance` with a
//!   zero-sized endpoint service, and for `meshless::http::Client` (its real endpoint service).
//!   Printed before the criterion groups run.
//! - `client/throughput/*`: GET `/` against one healthy `meshless::testing::Fleet` backend on
//!   127.0.0.1, 64 requests in flight, each read to the end of its body, on a two-worker tokio
//!   runtime that also runs the backend. `bare` is a hyper-util legacy client, `meshless` is
//!   `meshless::http::Client` with its defaults, sent the same request built the same way (one
//!   parsed absolute URI, cloned); `meshless_path` is `client.get("/")`, a path parsed on every
//!   call and completed by the client. Criterion reports time per request and
//!   requests/s. Then the two run again, interleaved, five rounds of 2 s each, and the medians
//!   and their ratio are printed: interleaving cancels most of the drift of a shared machine.
//!
//! With `MESHLESS_BENCH_LOOP=<case>:<iterations>` set, the binary runs just that pick case in a
//! plain loop (no criterion, no memory report) and exits, for `valgrind --tool=callgrind`: the
//! cases are listed in [`PICK_CASES`]. Counting at N and 2N iterations and subtracting removes
//! the setup (building 10,000 endpoints is most of a short run):
//!
//! ```text
//! cargo bench --bench balance --no-run
//! MESHLESS_BENCH_LOOP=pick/meshless/10000:40000 valgrind --tool=callgrind \
//!     --callgrind-out-file=/tmp/cg.pick.40000 target/release/deps/balance-<hash>
//!
//! With `MESHLESS_BENCH_LOOP=client/<bare|meshless|meshless_path>:<requests>` set, the binary
//! sends that many GETs one after the other on a current-thread runtime that also runs the
//! backend (no criterion, no other benchmark) and exits, for `valgrind --tool=callgrind`. Counting at N and
//! 2N requests and subtracting removes the setup; meshless minus bare is what the client adds:
//!
//! ```text
//! cargo bench --bench balance --no-run
//! MESHLESS_BENCH_LOOP=client/meshless:20000 valgrind --tool=callgrind \
//!     --callgrind-out-file=/tmp/cg.client-meshless.20000 target/release/deps/balance-<hash>
//! ```

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use meshless::balance::{Balance, Change};
use meshless::testing::{Behavior, Fleet};
use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt, service_fn};

// ---------------------------------------------------------------------------------------------
// A counting allocator, for the memory per endpoint.
// ---------------------------------------------------------------------------------------------

/// The system allocator, counting the bytes it has handed out and not taken back, while
/// `COUNTING` is on (a relaxed load otherwise, so the timed benchmarks barely notice it).
///
/// `GlobalAlloc` can only be implemented with `unsafe impl`. The library forbids unsafe code;
/// this bench is a separate crate, and the impl only forwards to `System` unchanged.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE_BYTES.fetch_add(delta, Ordering::Relaxed);
        if delta > 0 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments, so `System`'s
// guarantees hold; the counting touches only atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from `System`) with this layout.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with the allocator counting: the growth of live bytes, and the allocations made.
fn measure_allocations<T>(f: impl FnOnce() -> T) -> (T, isize, usize) {
    let (bytes, allocations) = (
        LIVE_BYTES.load(Ordering::SeqCst),
        ALLOCATIONS.load(Ordering::SeqCst),
    );
    COUNTING.store(true, Ordering::SeqCst);
    let out = f();
    COUNTING.store(false, Ordering::SeqCst);
    (
        out,
        LIVE_BYTES.load(Ordering::SeqCst) - bytes,
        ALLOCATIONS.load(Ordering::SeqCst) - allocations,
    )
}

// ---------------------------------------------------------------------------------------------
// In-memory endpoints.
// ---------------------------------------------------------------------------------------------

type Req = Request<Empty<Bytes>>;
type Res = Response<Empty<Bytes>>;

/// What the in-memory endpoints are.
trait Endpoint:
    Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone + Send + Sync + 'static
{
}

impl<T> Endpoint for T where
    T: Service<Req, Response = Res, Error = Infallible, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The endpoint: answers `200` with an empty body at once. Zero-sized, so that the memory
/// measured is the balancer's own.
fn endpoint() -> impl Endpoint {
    service_fn(|_req: Req| async { Ok::<_, Infallible>(Response::new(Empty::new())) })
}

fn req() -> Req {
    Request::new(Empty::new())
}

fn balance_of<S>(n: u32, service: S) -> Balance<u32, S>
where
    S: Clone,
{
    let balance = Balance::builder().build();
    balance.apply((0..n).map(|i| Change::Insert(i, service.clone())));
    balance
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

// ---------------------------------------------------------------------------------------------
// Pick cost.
// ---------------------------------------------------------------------------------------------

fn pick(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("balance/pick");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);

    group.bench_function("bare", |b| {
        let svc = endpoint();
        b.to_async(&rt).iter_custom(|iters| {
            let mut svc = svc.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let svc = svc.ready().await.unwrap();
                    black_box(svc.call(req()).await.unwrap());
                }
                start.elapsed()
            }
        })
    });

    for n in [10u32, 1_000, 10_000] {
        let balance = balance_of(n, endpoint());
        group.bench_with_input(BenchmarkId::new("meshless", n), &n, |b, _| {
            b.to_async(&rt).iter_custom(|iters| {
                let mut balance = balance.clone();
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let res = balance.call(req()).await.unwrap();
                        black_box(res);
                    }
                    start.elapsed()
                }
            })
        });

        // tower's balancer is not `Clone`: each routine call borrows it through a lock.
        let tower = tokio::sync::Mutex::new(tower_balance(n));
        group.bench_with_input(BenchmarkId::new("tower", n), &n, |b, _| {
            b.to_async(&rt).iter_custom(|iters| {
                let tower = &tower;
                async move {
                    // Never contended: one routine runs at a time.
                    let mut balance = tower.lock().await;
                    let start = Instant::now();
                    for _ in 0..iters {
                        let svc = balance.ready().await.unwrap();
                        black_box(svc.call(req()).await.unwrap());
                    }
                    start.elapsed()
                }
            })
        });
    }
    group.finish();

    // Allocations per request through the balancer (not timed).
    let balance = balance_of(1_000, endpoint());
    let (_, bytes, allocations) = measure_allocations(|| {
        rt.block_on(async {
            let mut balance = balance.clone();
            for _ in 0..10_000 {
                black_box(balance.call(req()).await.unwrap());
            }
        })
    });
    println!(
        "balance/pick: {:.2} allocations and {bytes} bytes left allocated per 10,000 requests \
         ({} allocations in all)",
        allocations as f64 / 10_000.0,
        allocations
    );
}

/// Every pick case, as `pick/<what>[/<endpoints>]`, for `MESHLESS_BENCH_LOOP`.
const PICK_CASES: &[&str] = &[
    "pick/bare",
    "pick/meshless/10",
    "pick/meshless/1000",
    "pick/meshless/10000",
    "pick/tower/10",
    "pick/tower/1000",
    "pick/tower/10000",
];

/// `MESHLESS_BENCH_LOOP=<case>:<iterations>`: one untimed request, then `iters` timed ones,
/// each exactly as the criterion routine above sends it.
fn run_loop(spec: &str) {
    let parsed = spec
        .rsplit_once(':')
        .and_then(|(case, n)| Some((case, n.parse::<u64>().ok()?)));
    let Some((case, iters)) = parsed else {
        panic!("MESHLESS_BENCH_LOOP={spec:?}: expected <case>:<iterations>");
    };
    let endpoint_count = |prefix: &str| {
        case.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
    };
    let rt = current_thread();
    let took = if case == "pick/bare" {
        let mut svc = endpoint();
        rt.block_on(async move {
            let mut once = async || {
                let svc = svc.ready().await.unwrap();
                black_box(svc.call(req()).await.unwrap());
            };
            once().await;
            let start = Instant::now();
            for _ in 0..iters {
                once().await;
            }
            start.elapsed()
        })
    } else if let Some(n) = endpoint_count("pick/meshless/") {
        let mut balance = balance_of(n, endpoint());
        eprintln!("{case}: response future: {} bytes", future_size(&balance));
        rt.block_on(async move {
            black_box(balance.call(req()).await.unwrap());
            let start = Instant::now();
            for _ in 0..iters {
                black_box(balance.call(req()).await.unwrap());
            }
            start.elapsed()
        })
    } else if let Some(n) = endpoint_count("pick/tower/") {
        let mut balance = tower_balance(n);
        eprintln!("{case}: response future: {} bytes", future_size(&balance));
        rt.block_on(async move {
            let mut once = async || {
                let svc = balance.ready().await.unwrap();
                black_box(svc.call(req()).await.unwrap());
            };
            once().await;
            let start = Instant::now();
            for _ in 0..iters {
                once().await;
            }
            start.elapsed()
        })
    } else {
        panic!("unknown case {case:?}; the cases are {PICK_CASES:?}");
    };
    eprintln!(
        "{case}: {iters} requests in {took:?} ({:.1} ns each)",
        took.as_nanos() as f64 / iters.max(1) as f64
    );
}

/// The size of `S`'s response future, moved at least once per request.
fn future_size<S: Service<Req>>(_: &S) -> usize {
    std::mem::size_of::<S::Future>()
}

type TowerBalance = tower::balance::p2c::Balance<
    tower::load::PeakEwmaDiscover<
        tower::discover::ServiceList<Vec<ServiceFnEndpoint>>,
        tower::load::CompleteOnResponse,
    >,
    Req,
>;

type ServiceFnEndpoint = tower::util::BoxCloneSyncService<Req, Res, Infallible>;

/// tower's P2C over peak-EWMA endpoints with linkerd's defaults, as meshless's (30 ms, 10 s).
fn tower_balance(n: u32) -> TowerBalance {
    let services: Vec<ServiceFnEndpoint> = (0..n)
        .map(|_| tower::util::BoxCloneSyncService::new(endpoint()))
        .collect();
    let discover = tower::load::PeakEwmaDiscover::new(
        tower::discover::ServiceList::new::<Req>(services),
        Duration::from_millis(30),
        Duration::from_secs(10),
        tower::load::CompleteOnResponse::default(),
    );
    tower::balance::p2c::Balance::new(discover)
}

// ---------------------------------------------------------------------------------------------
// Changes.
// ---------------------------------------------------------------------------------------------

fn apply(c: &mut Criterion) {
    type S = tower::util::BoxCloneSyncService<Req, Res, Infallible>;
    let svc: S = tower::util::BoxCloneSyncService::new(endpoint());
    let mut group = c.benchmark_group("balance/apply");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    group.bench_function("1000 inserts, one batch, into 0", |b| {
        b.iter_batched(
            || {
                let balance: Balance<u32, S> = Balance::builder().build();
                let changes: Vec<_> = (0..1_000).map(|i| Change::Insert(i, svc.clone())).collect();
                (balance, changes)
            },
            |(balance, changes)| {
                balance.apply(changes);
                balance
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("500 removes + 500 inserts, one batch, into 10000", |b| {
        b.iter_batched(
            || {
                let balance = balance_of(10_000, svc.clone());
                let changes: Vec<_> = (0..500)
                    .map(Change::Remove)
                    .chain((10_000..10_500).map(|i| Change::Insert(i, svc.clone())))
                    .collect();
                (balance, changes)
            },
            |(balance, changes)| {
                balance.apply(changes);
                balance
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("1000 inserts, one call each, into 0", |b| {
        b.iter_batched(
            || Balance::builder().build::<u32, S>(),
            |balance| {
                for i in 0..1_000 {
                    balance.insert(i, svc.clone());
                }
                balance
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// Memory per endpoint.
// ---------------------------------------------------------------------------------------------

fn memory_per_endpoint() {
    const N: u32 = 10_000;
    // Balance with a zero-sized service: the balancer's own cost.
    let (balance, bytes, allocations) = measure_allocations(|| balance_of(N, endpoint()));
    assert_eq!(balance.len(), N as usize);
    println!(
        "memory/balance: {} bytes per endpoint ({bytes} bytes, {allocations} allocations for \
         {N} endpoints in one batch)",
        bytes / N as isize
    );
    drop(balance);

    let (balance, bytes, _) = measure_allocations(|| {
        let balance = Balance::builder().build();
        for i in 0..N {
            balance.insert(i, endpoint());
        }
        balance
    });
    println!(
        "memory/balance: {} bytes per endpoint ({bytes} bytes for {N} endpoints inserted one by \
         one)",
        bytes / N as isize
    );
    drop(balance);

    // The whole client: its fixed cost is taken out by building it with 10 and 10 + N
    // endpoints.
    let addrs = |n: u32| -> Vec<String> {
        (0..n)
            .map(|i| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080)))
            .map(|a| a.to_string())
            .collect()
    };
    let client_bytes = |n: u32| {
        let list = addrs(n);
        let (client, bytes, _) = measure_allocations(|| {
            meshless::http::Client::builder()
                .endpoints(list)
                .build()
                .expect("a valid client")
        });
        assert_eq!(client.endpoints().len(), n as usize);
        drop(client);
        bytes
    };
    let small = client_bytes(10);
    let large = client_bytes(10 + N);
    println!(
        "memory/http::Client: {} bytes per endpoint ({} bytes for {N} more endpoints)",
        (large - small) / N as isize,
        large - small
    );
}

#[path = "common/client_throughput.rs"]
mod client_throughput;
use client_throughput::{client_loop, throughput};

/// The benchmark filters on the command line: the arguments that are neither options nor the
/// values of criterion's options that take one.
fn filters() -> Vec<String> {
    const WITH_VALUE: [&str; 10] = [
        "--profile-time",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--nresamples",
        "--color",
    ];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    filters
}

criterion_group!(benches, pick, apply, throughput);

fn main() {
    if let Ok(spec) = std::env::var("MESHLESS_BENCH_LOOP") {
        if spec.starts_with("client/") {
            client_loop(&spec);
        } else {
            run_loop(&spec);
        }
        return;
    }
    memory_per_endpoint();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
