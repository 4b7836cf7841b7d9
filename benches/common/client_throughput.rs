//! `http::Client` loopback throughput against bare hyper-util, interleaved, and its plain-loop
//! mode for callgrind (`MESHLESS_BENCH_LOOP=client/<bare|meshless|meshless_path>:N`).

use super::*;

// ---------------------------------------------------------------------------------------------
// Loopback throughput.
// ---------------------------------------------------------------------------------------------

const CONCURRENCY: u64 = 64;

/// Sends `total` GETs through `send`, `CONCURRENCY` at a time; the time they took.
async fn run<F, Fut>(total: u64, send: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = StatusCode> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY.min(total.max(1)))
        .map(|_| {
            let (next, send) = (next.clone(), send.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    assert_eq!(send().await, StatusCode::OK);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    start.elapsed()
}

/// One request in flight, read to the end: its status.
type Call = std::pin::Pin<Box<dyn Future<Output = StatusCode> + Send>>;

struct Clients {
    bare: HyperClient<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    uri: http::Uri,
    meshless: meshless::http::Client,
}

impl Clients {
    fn bare(&self) -> impl Fn() -> Call + Clone + Send + 'static {
        let (client, uri) = (self.bare.clone(), self.uri.clone());
        move || {
            let (client, uri) = (client.clone(), uri.clone());
            Box::pin(async move {
                let res = client.get(uri).await.expect("a response");
                let status = res.status();
                res.into_body().collect().await.expect("a body");
                status
            })
        }
    }

    /// The same request as `bare`, built the same way (hyper-util's `get` is `Request::new`
    /// and a URI swap), so that only what the clients do with it differs.
    fn meshless(&self) -> impl Fn() -> Call + Clone + Send + 'static {
        let (client, uri) = (self.meshless.clone(), self.uri.clone());
        move || {
            let mut req = Request::new(Empty::<Bytes>::new());
            *req.uri_mut() = uri.clone();
            let call = client.request(req);
            Box::pin(async move {
                let res = call.await.expect("a response");
                let status = res.status();
                res.into_body().collect().await.expect("a body");
                status
            })
        }
    }

    /// `client.get("/")`: a path, parsed on every call and completed with the endpoint's
    /// address, as most callers write it.
    fn meshless_path(&self) -> impl Fn() -> Call + Clone + Send + 'static {
        let client = self.meshless.clone();
        move || {
            let call = client.get("/");
            Box::pin(async move {
                let res = call.await.expect("a response");
                let status = res.status();
                res.into_body().collect().await.expect("a body");
                status
            })
        }
    }
}

pub(crate) fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let fleet = rt
        .block_on(Fleet::builder().backend(Behavior::healthy()).start())
        .expect("the backend starts");
    let addr = fleet.backend(0).addr();
    let clients = Clients {
        bare: HyperClient::builder(TokioExecutor::new()).build_http(),
        uri: format!("http://{addr}/").parse().unwrap(),
        meshless: meshless::http::Client::builder()
            .endpoints([addr.to_string()])
            .build()
            .expect("a valid client"),
    };

    let mut group = c.benchmark_group("client/throughput");
    group
        .throughput(Throughput::Elements(1))
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    group.bench_function("bare", |b| {
        b.iter_custom(|iters| rt.block_on(run(iters, clients.bare())))
    });
    group.bench_function("meshless", |b| {
        b.iter_custom(|iters| rt.block_on(run(iters, clients.meshless())))
    });
    group.bench_function("meshless_path", |b| {
        b.iter_custom(|iters| rt.block_on(run(iters, clients.meshless_path())))
    });
    group.finish();

    // Interleaved rounds: bare, meshless, bare, meshless, ... Skipped when the command line
    // filters the benchmarks and the filter does not select this group.
    let filters = filters();
    if !filters.is_empty()
        && !filters
            .iter()
            .any(|f| "client/throughput".contains(f.as_str()))
    {
        return;
    }
    let rate = |send: &dyn Fn(u64) -> Duration| {
        // As many requests as fit in about 2 s, from a short calibration.
        let probe = 2_000;
        let per = send(probe).as_secs_f64() / probe as f64;
        let n = (2.0 / per) as u64;
        n as f64 / send(n).as_secs_f64()
    };
    let (mut bare, mut mesh) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        bare.push(rate(&|n| rt.block_on(run(n, clients.bare()))));
        mesh.push(rate(&|n| rt.block_on(run(n, clients.meshless()))));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, m) = (median(&mut bare), median(&mut mesh));
    println!(
        "client/throughput interleaved (5 rounds of ~2 s, medians): bare {b:.0} req/s, meshless \
         {m:.0} req/s, meshless / bare = {:.3}",
        m / b
    );
    println!("  rounds: bare {bare:.0?}, meshless {mesh:.0?}");
    drop(clients);
    rt.block_on(fleet.shutdown());
}

/// `MESHLESS_BENCH_LOOP=client/<bare|meshless|meshless_path>:<requests>`: that many requests in a plain loop,
/// one at a time, on one thread, so that callgrind counts the same work on every run.
pub(crate) fn client_loop(spec: &str) {
    let (case, n) = spec
        .rsplit_once(':')
        .and_then(|(case, n)| Some((case, n.parse::<u64>().ok()?)))
        .expect("MESHLESS_BENCH_LOOP=client/<bare|meshless|meshless_path>:<requests>");
    let rt = current_thread();
    let fleet = rt
        .block_on(Fleet::builder().backend(Behavior::healthy()).start())
        .expect("the backend starts");
    let addr = fleet.backend(0).addr();
    let clients = Clients {
        bare: HyperClient::builder(TokioExecutor::new()).build_http(),
        uri: format!("http://{addr}/").parse().unwrap(),
        meshless: meshless::http::Client::builder()
            .endpoints([addr.to_string()])
            .build()
            .expect("a valid client"),
    };
    let send = match case {
        "client/bare" => Box::new(clients.bare()) as Box<dyn Fn() -> Call>,
        "client/meshless" => Box::new(clients.meshless()),
        "client/meshless_path" => Box::new(clients.meshless_path()),
        other => {
            panic!("unknown case {other:?}: client/bare, client/meshless or client/meshless_path")
        }
    };
    let elapsed = rt.block_on(async {
        // The first request opens the connection; the loop reuses it.
        assert_eq!(send().await, StatusCode::OK);
        let start = Instant::now();
        for _ in 0..n {
            assert_eq!(send().await, StatusCode::OK);
        }
        start.elapsed()
    });
    println!(
        "{case}: {n} requests in {elapsed:?}, {:?} each",
        elapsed / n.max(1) as u32
    );
    drop(send);
    drop(clients);
    rt.block_on(fleet.shutdown());
}
