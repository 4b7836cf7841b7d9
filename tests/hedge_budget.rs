//! Hedging and the retry budget, at the layer level on paused time.

use http::{Request, Response};
use http_body_util::BodyExt;
use meshless::backoff::Backoff;
use meshless::budget::Budget;
use meshless::hedge::{HedgeConfig, HedgeDelay, HedgeLayer};
use meshless::retry::{Idempotent, ReplayBody, RetryLayer};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Layer, ServiceExt, service_fn};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn hedge(budget: Budget, delay: Duration, max_hedges: u32, extra: f64, reserve: f64) -> HedgeLayer {
    let mut config = HedgeConfig::default();
    config.enabled = true;
    config.delay = HedgeDelay::Fixed(delay);
    config.max_hedges = max_hedges;
    config.max_extra_load = extra;
    config.min_per_second = reserve;
    HedgeLayer::from_config(budget, &config)
        .unwrap()
        .metrics(false)
}

fn ratio_budget(ratio: f64, reserve_total: f64) -> Budget {
    Budget::builder()
        .ttl(Duration::from_secs(3600))
        .min_per_second(reserve_total / 3600.0)
        .ratio(ratio)
        .build()
        .unwrap()
}

/// Counts calls, and the calls in flight (a guard dropped with the future).
#[derive(Clone, Default)]
struct Counter {
    calls: Arc<AtomicU64>,
    in_flight: Arc<AtomicI64>,
}

struct Guard(Arc<AtomicI64>);
impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Counter {
    fn enter(&self) -> Guard {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Guard(self.in_flight.clone())
    }
}

/// Many concurrent requests, each wanting retries and hedges, two retry stacks ("two
/// clients") sharing one budget: the extra attempts never pass ratio × requests + reserve.
#[tokio::test(start_paused = true)]
async fn concurrent_retries_and_hedges_on_one_budget_never_overdraw() {
    let budget = ratio_budget(0.2, 5.0);
    let counter = Counter::default();
    let c = counter.clone();
    let upstream = service_fn(move |_req: Request<ReplayBody<String>>| {
        let g = c.enter();
        async move {
            tokio::time::sleep(ms(30)).await;
            drop(g);
            let mut res = Response::new(String::new());
            *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, BoxError>(res)
        }
    });
    let mut stacks = Vec::new();
    let mut stats = Vec::new();
    for _ in 0..2 {
        let h = hedge(budget.clone(), ms(10), 2, 1.0, 1000.0);
        let r = RetryLayer::new(budget.clone())
            .max_retries(3)
            .backoff(Backoff::none())
            .metrics(false);
        stats.push((r.stats(), h.stats()));
        stacks.push(r.layer(h.layer(upstream.clone())));
    }
    let n = 400u64;
    // Spawned as local tasks: all run concurrently on the paused runtime's one thread.
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut handles = Vec::new();
            for i in 0..n {
                let svc = stacks[(i % 2) as usize].clone();
                handles.push(tokio::task::spawn_local(async move {
                    let req = Request::get("http://svc/").body(String::new()).unwrap();
                    svc.oneshot(req).await.map(|r| r.status())
                }));
            }
            for h in handles {
                assert_eq!(h.await.unwrap().unwrap(), 503);
            }
        })
        .await;
    let calls = counter.calls.load(Ordering::SeqCst);
    let extra = calls - n;
    let (retries, hedges): (u64, u64) = stats.iter().fold((0, 0), |(r, h), (rs, hs)| {
        (r + rs.retries(), h + hs.hedges())
    });
    eprintln!("calls {calls}, extra {extra}, retries {retries}, hedges {hedges}");
    assert!(
        extra as f64 <= 0.2 * n as f64 + 5.0 + 1e-9,
        "{extra} extra attempts for {n} requests: bound {}",
        0.2 * n as f64 + 5.0
    );
    assert_eq!(retries + hedges, extra, "every extra attempt counted");
    assert_eq!(counter.in_flight.load(Ordering::SeqCst), 0);
}

/// `max_hedges` = 3 against a hanging upstream: exactly 3 hedges, one delay apart.
#[tokio::test(start_paused = true)]
async fn max_hedges_is_respected_one_delay_apart() {
    let t0 = Instant::now();
    let at = Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = at.clone();
    let upstream = service_fn(move |_req: Request<ReplayBody<String>>| {
        a.lock().unwrap().push(t0.elapsed());
        async move {
            tokio::time::sleep(ms(1000)).await;
            Ok::<_, BoxError>(Response::new(String::new()))
        }
    });
    let layer = hedge(Budget::default(), ms(10), 3, 1.0, 1000.0);
    let stats = layer.stats();
    let req = Request::get("http://svc/")
        .body(ReplayBody::new(String::new(), 1024))
        .unwrap();
    layer.layer(upstream).oneshot(req).await.unwrap();
    assert_eq!(stats.hedges(), 3);
    assert_eq!(*at.lock().unwrap(), vec![ms(0), ms(10), ms(20), ms(30)]);
}

/// A POST with an `Idempotency-Key` is hedged; a PUT marked `Idempotent(false)` never is.
#[tokio::test(start_paused = true)]
async fn idempotency_key_post_is_hedged_and_a_put_marked_unsafe_is_not() {
    let counter = Counter::default();
    let c = counter.clone();
    // Reads the body first, as a server does: a body not yet read whole is never hedged.
    let upstream = service_fn(move |req: Request<ReplayBody<String>>| {
        let g = c.enter();
        async move {
            req.into_body().collect().await?;
            tokio::time::sleep(ms(100)).await;
            drop(g);
            Ok::<_, BoxError>(Response::new(String::new()))
        }
    });
    let layer = hedge(Budget::default(), ms(10), 1, 1.0, 1000.0);
    let svc = layer.layer(upstream);
    let put = Request::put("http://svc/")
        .extension(Idempotent(false))
        .body(ReplayBody::new(String::from("x"), 1024))
        .unwrap();
    svc.clone().oneshot(put).await.unwrap();
    assert_eq!(
        counter.calls.load(Ordering::SeqCst),
        1,
        "PUT marked unsafe: once"
    );
    let post = Request::post("http://svc/")
        .header("idempotency-key", "k1")
        .body(ReplayBody::new(String::from("x"), 1024))
        .unwrap();
    svc.clone().oneshot(post).await.unwrap();
    assert_eq!(counter.calls.load(Ordering::SeqCst), 3, "keyed POST hedged");
    // Same key header, but marked unsafe explicitly: the marking wins.
    let post = Request::post("http://svc/")
        .header("idempotency-key", "k2")
        .extension(Idempotent(false))
        .body(ReplayBody::new(String::from("x"), 1024))
        .unwrap();
    svc.oneshot(post).await.unwrap();
    assert_eq!(
        counter.calls.load(Ordering::SeqCst),
        4,
        "marked unsafe: once"
    );
    assert_eq!(counter.in_flight.load(Ordering::SeqCst), 0);
}

/// The caller drops a hedged request mid-race: every attempt is dropped (nothing left in
/// flight), and the budget is charged only for the hedge actually sent.
#[tokio::test(start_paused = true)]
async fn a_caller_dropping_a_hedged_request_leaves_nothing_in_flight() {
    let counter = Counter::default();
    let c = counter.clone();
    let upstream = service_fn(move |_req: Request<ReplayBody<String>>| {
        let g = c.enter();
        async move {
            tokio::time::sleep(ms(1000)).await;
            drop(g);
            Ok::<_, BoxError>(Response::new(String::new()))
        }
    });
    let budget = ratio_budget(0.0, 10.0);
    let layer = hedge(budget.clone(), ms(10), 3, 1.0, 1000.0);
    let stats = layer.stats();
    let req = Request::get("http://svc/")
        .body(ReplayBody::new(String::new(), 1024))
        .unwrap();
    let fut = layer.layer(upstream).oneshot(req);
    let r = tokio::time::timeout(ms(25), fut).await;
    assert!(r.is_err(), "still racing at 25 ms");
    assert_eq!(stats.hedges(), 2);
    assert_eq!(counter.calls.load(Ordering::SeqCst), 3);
    assert_eq!(counter.in_flight.load(Ordering::SeqCst), 0);
    assert_eq!(budget.balance(), 8.0, "two hedges paid");
}

/// Budget reserve is exact under concurrent withdrawals from many tasks on many threads.
#[test]
fn concurrent_withdrawals_on_threads_never_overdraw() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let budget = ratio_budget(0.25, 7.0);
        // 1000 deposits, then 2000 concurrent withdrawals from clones.
        for _ in 0..1000 {
            budget.deposit();
        }
        let got = Arc::new(AtomicU64::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let b = budget.clone();
            let g = got.clone();
            set.spawn(async move {
                for _ in 0..40 {
                    if b.withdraw().is_some() {
                        g.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                }
            });
        }
        while set.join_next().await.is_some() {}
        assert_eq!(got.load(Ordering::SeqCst), 257, "0.25 × 1000 + 7");
    });
}

/// Full jitter: the n-th wait is uniform in [0, min(cap, base·2ⁿ)] — never above, and
/// spread over the whole interval (mean near half the ceiling, maximum near it).
#[test]
fn full_jitter_waits_are_uniform_under_the_capped_exponential_ceiling() {
    let base = ms(25);
    let cap = ms(250);
    let backoff = Backoff::full_jitter(base, cap).unwrap();
    for n in 0..8u32 {
        let ceiling = (base * 2u32.pow(n)).min(cap);
        let mut sum = Duration::ZERO;
        let mut max = Duration::ZERO;
        let samples = 4000u32;
        for _ in 0..samples {
            let mut s = backoff.start();
            for _ in 0..n {
                s.next_delay();
            }
            let d = s.next_delay();
            assert!(d <= ceiling, "retry {n}: {d:?} > {ceiling:?}");
            sum += d;
            max = max.max(d);
        }
        let mean = sum / samples;
        assert!(
            mean > ceiling.mul_f64(0.45) && mean < ceiling.mul_f64(0.55),
            "retry {n}: mean {mean:?} for ceiling {ceiling:?}"
        );
        assert!(max > ceiling.mul_f64(0.98), "retry {n}: max {max:?}");
    }
}

/// A hedge admitted (tokens taken) but waiting for the service to be ready when the race
/// ends — the caller gives up, or the first attempt answers — was never sent: both the retry
/// budget's token and the extra-load token go back.
#[tokio::test(start_paused = true)]
async fn a_hedge_never_sent_for_want_of_readiness_gives_its_tokens_back() {
    let upstream = service_fn(move |_req: Request<ReplayBody<String>>| async move {
        tokio::time::sleep(ms(100)).await;
        Ok::<_, BoxError>(Response::new(String::new()))
    });
    // One permit: the first attempt holds it, so the hedge's clone is never ready.
    let limited = tower::limit::ConcurrencyLimitLayer::new(1).layer(upstream);
    let budget = ratio_budget(0.0, 10.0);
    // Extra-load reserve of exactly 1 hedge (0.1/s × 10 s): a second admission needs it back.
    let layer = hedge(budget.clone(), ms(10), 1, 0.001, 0.1);
    let stats = layer.stats();
    let svc = layer.layer(limited);
    let get = || {
        Request::get("http://svc/")
            .body(ReplayBody::new(String::new(), 1024))
            .unwrap()
    };

    // The caller gives up at 50 ms, the hedge admitted at 10 ms still waiting.
    let r = tokio::time::timeout(ms(50), svc.clone().oneshot(get())).await;
    assert!(r.is_err());
    assert_eq!(stats.hedges(), 0, "never sent");
    assert_eq!(budget.balance(), 10.0, "the budget's token refunded");

    // The first attempt answers at 100 ms, the hedge still waiting.
    let res = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(stats.hedges(), 0);
    assert_eq!(budget.balance(), 10.0, "refunded again");
    assert_eq!(
        stats.refused(meshless::hedge::Refusal::ExtraLoad),
        0,
        "the extra-load token came back each time"
    );
}

/// The extra-load cap under retries: measured against logical requests and against the
/// attempts that pass through the hedge layer (retries do). Asserts the documented bound
/// (`max_extra_load` × requests through the layer) and prints both shares.
#[tokio::test(start_paused = true)]
async fn the_extra_load_cap_counts_retries_as_requests() {
    let counter = Counter::default();
    let c = counter.clone();
    let upstream = service_fn(move |_req: Request<ReplayBody<String>>| {
        let g = c.enter();
        async move {
            tokio::time::sleep(ms(30)).await;
            drop(g);
            let mut res = Response::new(String::new());
            *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, BoxError>(res)
        }
    });
    let budget = ratio_budget(10.0, 1000.0);
    let h = hedge(budget.clone(), ms(10), 1, 0.1, 0.0);
    let hs = h.stats();
    let r = RetryLayer::new(budget)
        .max_retries(2)
        .backoff(Backoff::none())
        .metrics(false);
    let rs = r.stats();
    let svc = r.layer(h.layer(upstream));
    for _ in 0..100 {
        let req = Request::get("http://svc/").body(String::new()).unwrap();
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 503);
    }
    eprintln!(
        "100 requests, {} retries, {} through the hedge layer, {} hedges ({}% of requests)",
        rs.retries(),
        hs.requests(),
        hs.hedges(),
        hs.hedges()
    );
    assert!(hs.hedges() as f64 <= 0.1 * hs.requests() as f64 + 1e-9);
}
