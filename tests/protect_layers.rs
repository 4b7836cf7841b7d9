//! Contracts found by review: the protection layers on their own, with `tower::service_fn`
//! upstreams and paused time.

use http::{Request, Response};
use meshless::breaker::{BreakerConfig, BreakerLayer, BreakerState};
use meshless::deadline::RequestDeadline;
use meshless::error::Kind;
use meshless::limit::{Algorithm, GradientConfig, LimitConfig, LimitLayer};
use meshless::throttle::ThrottleLayer;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);

fn ok_after(
    latency: Duration,
    received: Arc<AtomicU64>,
) -> impl Service<
    Request<()>,
    Response = Response<http_body_util::Empty<bytes::Bytes>>,
    Error = Infallible,
    Future = impl std::future::Future<
        Output = Result<Response<http_body_util::Empty<bytes::Bytes>>, Infallible>,
    > + Send,
> + Clone
+ Send {
    service_fn(move |_req: Request<()>| {
        received.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(latency).await;
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::new()))
        }
    })
}

/// Throttling, default settings (K = 2, 2 min window, cap 0.8), freshly started: a burst of
/// 100 concurrent requests to an upstream that accepts everything. Nothing was ever refused by
/// the upstream, so nothing should be throttled (the SRE formula's premise: requests the
/// upstream rejected). Counting at send with no accepts yet makes p = n/(n+1) for the n-th.
#[tokio::test(start_paused = true)]
async fn throttle_a_burst_at_start_to_an_accepting_upstream_is_not_throttled() {
    let received = Arc::new(AtomicU64::new(0));
    let layer = ThrottleLayer::new().seed(7).metrics(false);
    let handle = layer.handle();
    let svc = layer.layer(ok_after(10 * MS, received.clone()));
    let mut futures = Vec::new();
    for _ in 0..100 {
        let mut svc = svc.clone();
        futures.push(tokio::spawn(async move {
            svc.ready().await.unwrap();
            svc.call(Request::new(())).await
        }));
    }
    let mut throttled = 0;
    for f in futures {
        match f.await.unwrap() {
            Ok(_) => {}
            Err(e) if e.kind() == Kind::Throttled => throttled += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        throttled,
        0,
        "{throttled} of 100 requests throttled locally though the upstream accepted every one \
         it saw ({} received)",
        received.load(Ordering::SeqCst)
    );
    let _ = handle;
}

/// `GradientConfig::initial` is documented as the initial limit (Netflix's initialLimit); a
/// client configured with `initial = 100, min = 20` should start at 100.
#[tokio::test(start_paused = true)]
async fn gradient_initial_is_the_starting_limit() {
    let mut g = GradientConfig::default();
    g.initial = 100;
    let mut config = LimitConfig::default();
    config.algorithm = Algorithm::Gradient(g);
    let layer = LimitLayer::from_config(&config).unwrap();
    assert_eq!(
        layer.handle().limit(),
        100,
        "the configured initial limit is not used at start"
    );
}

/// A fixed limit of 1 with a long `max_wait`: a waiter whose deadline is 100 ms away is
/// refused by then (never waits past the deadline), and when the holder ends, the permit goes
/// to the next live waiter in arrival order; every permit comes back.
#[tokio::test(start_paused = true)]
async fn limit_waits_fifo_never_past_the_deadline_and_releases_on_drop() {
    let order = Arc::new(Mutex::new(Vec::<u64>::new()));
    let o = order.clone();
    let mut config = LimitConfig::default();
    config.algorithm = Algorithm::Fixed { max: 1 };
    config.max_wait = Duration::from_secs(10);
    let layer = LimitLayer::from_config(&config).unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(move |req: Request<()>| {
        let id = *req.extensions().get::<u64>().unwrap();
        o.lock().unwrap().push(id);
        async move {
            tokio::time::sleep(200 * MS).await;
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        }
    }));
    let req = |id: u64, deadline: Option<Duration>| {
        let mut r = Request::new(());
        r.extensions_mut().insert(id);
        if let Some(d) = deadline {
            r.extensions_mut().insert(RequestDeadline::after(d));
        }
        r
    };
    let start = Instant::now();
    let holder = svc.clone().oneshot(req(0, None));
    let holder = tokio::spawn(holder);
    tokio::task::yield_now().await;
    let short = tokio::spawn(svc.clone().oneshot(req(1, Some(100 * MS))));
    tokio::task::yield_now().await;
    let dropped = tokio::spawn(svc.clone().oneshot(req(2, None)));
    tokio::task::yield_now().await;
    let third = tokio::spawn(svc.clone().oneshot(req(3, None)));
    tokio::task::yield_now().await;
    let fourth = tokio::spawn(svc.clone().oneshot(req(4, None)));
    tokio::task::yield_now().await;
    assert_eq!(handle.waiting(), 4);
    let err = short.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), Kind::ConcurrencyLimited);
    assert!(
        start.elapsed() <= 100 * MS,
        "waited {:?} past the deadline",
        start.elapsed()
    );
    dropped.abort();
    let _ = dropped.await;
    holder.await.unwrap().unwrap();
    third.await.unwrap().unwrap();
    fourth.await.unwrap().unwrap();
    assert_eq!(*order.lock().unwrap(), [0, 3, 4]);
    assert_eq!(handle.in_flight(), 0);
    assert_eq!(handle.waiting(), 0);
}

fn breaker_config() -> BreakerConfig {
    let mut c = BreakerConfig::default();
    c.break_jitter = 0.0;
    c
}

/// Trips a breaker over an upstream answering 503 (`fail` set), then lets the break pass.
async fn tripped<S>(svc: &mut S, fail: &Arc<AtomicU64>)
where
    S: Service<Request<()>, Error = meshless::Error>,
{
    fail.store(1, Ordering::SeqCst);
    for _ in 0..20 {
        let _ = svc.ready().await.unwrap().call(Request::new(())).await;
    }
    fail.store(0, Ordering::SeqCst);
}

/// Half-open under a stampede: 200 requests arrive at once when the break ends; exactly
/// `half_open_probes` (3) reach the upstream. Then one probe's caller cancels it: its slot is
/// given to another request (exactly one more), and with the probes answered the breaker
/// ramps and closes; a hung probe never wedges the circuit past the probe timeout.
#[tokio::test(start_paused = true)]
async fn breaker_half_open_admits_exactly_n_and_cancelled_probes_are_replaced() {
    let received = Arc::new(AtomicU64::new(0));
    let fail = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (r, f, g) = (received.clone(), fail.clone(), gate.clone());
    let layer = BreakerLayer::from_config(&breaker_config())
        .unwrap()
        .metrics(false);
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(move |_req: Request<()>| {
        let (r, f, g) = (r.clone(), f.clone(), g.clone());
        async move {
            if f.load(Ordering::SeqCst) == 1 {
                return Ok::<_, Infallible>(Response::builder().status(503).body(()).unwrap());
            }
            r.fetch_add(1, Ordering::SeqCst);
            g.notified().await;
            Ok(Response::new(()))
        }
    }));
    tripped(&mut svc, &fail).await;
    assert_eq!(handle.state(), BreakerState::Open);
    tokio::time::advance(1100 * MS).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(svc.oneshot(Request::new(()))));
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(received.load(Ordering::SeqCst), 3, "probes admitted");
    // Abort every task: the three probes' callers cancel. Their slots come back.
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    assert_eq!(handle.state(), BreakerState::HalfOpen);
    // Three new probes, answered at once.
    let mut probes = Vec::new();
    for _ in 0..10 {
        probes.push(tokio::spawn(svc.clone().oneshot(Request::new(()))));
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        received.load(Ordering::SeqCst),
        6,
        "cancelled probes replaced exactly"
    );
    gate.notify_waiters();
    let mut ok = 0;
    for p in probes {
        if p.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 3);
    tokio::time::advance(1100 * MS).await;
    assert_eq!(handle.state(), BreakerState::Closed);
}

/// A probe that hangs forever (no deadline) holds the half-open state at most the probe
/// timeout (30 s by default); then the circuit reopens and later recovers once the upstream
/// answers.
#[tokio::test(start_paused = true)]
async fn breaker_hung_probes_do_not_wedge_the_circuit() {
    let fail = Arc::new(AtomicU64::new(0));
    let hang = Arc::new(AtomicU64::new(1));
    let (f, h) = (fail.clone(), hang.clone());
    let layer = BreakerLayer::from_config(&breaker_config())
        .unwrap()
        .metrics(false);
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(move |_req: Request<()>| {
        let (f, h) = (f.clone(), h.clone());
        async move {
            if f.load(Ordering::SeqCst) == 1 {
                return Ok::<_, Infallible>(Response::builder().status(503).body(()).unwrap());
            }
            if h.load(Ordering::SeqCst) == 1 {
                std::future::pending::<()>().await;
            }
            Ok(Response::new(()))
        }
    }));
    tripped(&mut svc, &fail).await;
    tokio::time::advance(1100 * MS).await;
    let hung: Vec<_> = (0..3)
        .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(()))))
        .collect();
    tokio::task::yield_now().await;
    hang.store(0, Ordering::SeqCst);
    // Poll the breaker once a second for 60 s: it must come back to closed.
    let mut closed_at = None;
    for s in 0..60 {
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = svc.clone().oneshot(Request::new(())).await;
        if handle.state() == BreakerState::Closed {
            closed_at = Some(s);
            break;
        }
    }
    assert!(closed_at.is_some(), "still {:?} after 60 s", handle.state());
    drop(hung);
}
