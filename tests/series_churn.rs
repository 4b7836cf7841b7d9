//! Per-endpoint state and metric series under churn of distinct endpoints, with metrics
//! on and a recorder that can forget series (`BalanceBuilder::forget_series`).

use bytes::Bytes;
use meshless::balance::{Balance, Change};
use meshless::observe::ForgetSeries;
use meshless::outlier::OutlierConfig;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceExt};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Clone)]
struct Dropping(Arc<Registry<Key, AtomicStorage>>);

impl Recorder for Dropping {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

impl ForgetSeries for Dropping {
    fn forget_counter(&self, key: &Key) {
        self.0.delete_counter(key);
    }
    fn forget_gauge(&self, key: &Key) {
        self.0.delete_gauge(key);
    }
    fn forget_histogram(&self, key: &Key) {
        self.0.delete_histogram(key);
    }
}

impl Dropping {
    fn count(&self) -> usize {
        let mut n = 0;
        self.0.visit_counters(|_, _| n += 1);
        self.0.visit_gauges(|_, _| n += 1);
        self.0.visit_histograms(|_, _| n += 1);
        n
    }

    /// The value of the gauge `name` with label `state=<state>`.
    fn gauge(&self, name: &str, state: &str) -> Option<f64> {
        let mut out = None;
        self.0.visit_gauges(|key, g| {
            if key.name() == name
                && key
                    .labels()
                    .any(|l| l.key() == "state" && l.value() == state)
            {
                out = Some(f64::from_bits(g.load(Ordering::Relaxed)));
            }
        });
        out
    }

    fn endpoints_labelled(&self) -> usize {
        let mut set = std::collections::BTreeSet::new();
        let mut visit = |key: &Key| {
            for l in key.labels() {
                if l.key() == "endpoint" {
                    set.insert(l.value().to_string());
                }
            }
        };
        self.0.visit_counters(|k, _| visit(k));
        self.0.visit_gauges(|k, _| visit(k));
        self.0.visit_histograms(|k, _| visit(k));
        set.len()
    }
}

#[derive(Clone)]
struct Ep(u16);

impl Service<http::Request<()>> for Ep {
    type Response = http::Response<http_body_util::Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        let mut res = http::Response::new(http_body_util::Empty::new());
        *res.status_mut() = http::StatusCode::from_u16(self.0).unwrap();
        std::future::ready(Ok(res))
    }
}

async fn send(balance: &Balance<u64, Ep>) {
    let res = balance
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .expect("answered");
    let _ = http_body_util::BodyExt::collect(res.into_body()).await;
}

fn with<F: std::future::Future<Output = ()>>(recorder: &Dropping, test: impl FnOnce() -> F) {
    metrics::with_local_recorder(recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(test())
    });
}

/// No-op handles; forgets nothing. Isolates the balancer's own heap from a registry's.
#[derive(Clone)]
struct Noop;

impl Recorder for Noop {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl ForgetSeries for Noop {
    fn forget_counter(&self, _: &Key) {}
    fn forget_gauge(&self, _: &Key) {}
    fn forget_histogram(&self, _: &Key) {}
}

/// Hands out real handles and keeps a weak reference to each, to tell which stay alive.
type Handles = Vec<(String, std::sync::Weak<AtomicU64>)>;

#[derive(Clone, Default)]
struct Tracking(Arc<Mutex<Handles>>);

impl Tracking {
    fn handle(&self, key: &Key) -> Arc<AtomicU64> {
        let a = Arc::new(AtomicU64::new(0));
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{labels:?}", key.name());
        self.0.lock().unwrap().push((name, Arc::downgrade(&a)));
        a
    }

    /// The series whose handle someone still holds.
    fn alive(&self) -> Vec<String> {
        let v = self.0.lock().unwrap();
        v.iter()
            .filter(|(_, w)| w.strong_count() > 0)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl Recorder for Tracking {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn paused<F: std::future::Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
        .block_on(test)
}

/// One churn cycle: a fresh endpoint `n` (failing when odd) is inserted, gets requests, and
/// is removed, beside endpoint 0 that stays.
async fn cycle(balance: &Balance<u64, Ep>, n: u64) {
    let status = if n % 2 == 0 { 200 } else { 503 };
    balance.apply([Change::Insert(n, Ep(status))]);
    for _ in 0..3 {
        send(balance).await;
    }
    balance.apply([Change::Remove(n)]);
}

/// 10,000 distinct endpoints through a registry that can forget: the series set stays flat and
/// only the endpoint that stays is labelled.
#[test]
fn distinct_endpoint_churn_keeps_the_series_set_flat() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let recorder = Dropping(Arc::new(Registry::atomic()));
    with(&recorder, || async {
        let balance: Balance<u64, Ep> = Balance::builder()
            .service_name("churn")
            .forget_series(recorder.clone())
            .build();
        balance.insert(0, Ep(200));
        for n in 1..1_001 {
            cycle(&balance, n).await;
        }
        let warm_series = recorder.count();
        for n in 1_001..11_001 {
            cycle(&balance, n).await;
            if n % 1_000 == 0 {
                // Let outlier sweeps run over the churn too.
                tokio::time::advance(Duration::from_secs(11)).await;
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(balance.len(), 1);
        assert_eq!(balance.endpoints().len(), 1);
        assert_eq!(recorder.endpoints_labelled(), 1);
        assert_eq!(recorder.count(), warm_series);
    });
}

/// The same churn with metrics on and a forgetting recorder whose handles cost nothing: the
/// balancer's own heap does not grow with the number of endpoints it has seen.
#[test]
fn distinct_endpoint_churn_with_metrics_keeps_the_heap_flat() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    metrics::with_local_recorder(&Noop, || {
        paused(async {
            let balance: Balance<u64, Ep> = Balance::builder()
                .service_name("churn")
                .forget_series(Noop)
                .build();
            balance.insert(0, Ep(200));
            for n in 1..1_001 {
                cycle(&balance, n).await;
            }
            let warm = LIVE.load(Ordering::Relaxed);
            for n in 1_001..11_001 {
                cycle(&balance, n).await;
            }
            let after = LIVE.load(Ordering::Relaxed);
            assert!(
                after - warm < 64 * 1024,
                "heap grew by {} bytes over 10,000 cycles",
                after - warm
            );
        })
    });
}

/// No metric handle of a removed endpoint outlives it: after 1,000 cycles only endpoint 0's
/// series and the balancer-wide ones are held.
#[test]
fn removed_endpoints_hold_no_metric_handles() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tracking = Tracking::default();
    metrics::with_local_recorder(&tracking, || {
        paused(async {
            let balance: Balance<u64, Ep> = Balance::builder()
                .service_name("churn")
                .forget_series(Noop)
                .build();
            balance.insert(0, Ep(200));
            for n in 1..1_001 {
                cycle(&balance, n).await;
            }
            tokio::time::advance(Duration::from_secs(11)).await;
            tokio::task::yield_now().await;
            let alive = tracking.alive();
            assert!(
                alive.iter().any(|k| k.contains("endpoint=0\"")),
                "{alive:?}"
            );
            assert!(tracking.0.lock().unwrap().len() > 5_000);
            let leaked: Vec<String> = alive
                .into_iter()
                .filter(|k| k.contains("endpoint=") && !k.contains("endpoint=0\""))
                .collect();
            assert!(
                leaked.is_empty(),
                "{} handles held: {leaked:?}",
                leaked.len()
            );
        })
    });
}

/// An endpoint ejected and then removed by discovery: the balancer's per-state gauge
/// (`meshless_balancer_endpoints{state}`) counts only the endpoints present.
#[test]
fn removing_an_ejected_endpoint_leaves_the_balancer_gauges_right() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let recorder = Dropping(Arc::new(Registry::atomic()));
    with(&recorder, || async {
        let outlier = OutlierConfig::builder()
            .consecutive_failures(Some(2))
            .slow_start_new_endpoints(false)
            .build()
            .expect("outlier config");
        let balance: Balance<u64, Ep> = Balance::builder()
            .service_name("eject")
            .outlier(outlier)
            .forget_series(recorder.clone())
            .build();
        // Two failing endpoints: P2C sends to both, and one of the two may be ejected.
        balance.insert(2, Ep(503));
        balance.insert(3, Ep(503));
        let mut sent = 0;
        while balance.stats().ejected == 0 && sent < 200 {
            send(&balance).await;
            sent += 1;
        }
        assert_eq!(balance.stats().ejected, 1, "after {sent} requests");
        assert_eq!(
            recorder.gauge("meshless_balancer_endpoints", "ejected"),
            Some(1.0)
        );
        // Discovery replaces both with a healthy one.
        balance.apply([
            Change::Insert(0, Ep(200)),
            Change::Remove(2),
            Change::Remove(3),
        ]);
        tokio::task::yield_now().await;
        assert_eq!(balance.len(), 1);
        let ejected = recorder.gauge("meshless_balancer_endpoints", "ejected");
        let active = recorder.gauge("meshless_balancer_endpoints", "active");
        assert_eq!((ejected, active), (Some(0.0), Some(1.0)));
        // Past its ejection time the removed endpoint must not come back in the gauges.
        tokio::time::advance(Duration::from_secs(120)).await;
        tokio::task::yield_now().await;
        send(&balance).await;
        let ejected = recorder.gauge("meshless_balancer_endpoints", "ejected");
        let probation = recorder.gauge("meshless_balancer_endpoints", "probation");
        let active = recorder.gauge("meshless_balancer_endpoints", "active");
        assert_eq!(
            (ejected, probation.unwrap_or(0.0), active),
            (Some(0.0), 0.0, Some(1.0))
        );
    });
}
