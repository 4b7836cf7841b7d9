//! Endpoint churn on the balancer: memory stays bounded, removed endpoints' requests
//! finish and are counted, state of those that stay is kept.

use meshless::balance::{Balance, Change};
use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

/// Counts the bytes live on the heap.
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

/// An endpoint answering 200 (or 500), counting its calls.
#[derive(Clone)]
struct Ep {
    status: u16,
    calls: Arc<AtomicUsize>,
}

impl Ep {
    fn new(status: u16) -> Ep {
        Ep {
            status,
            calls: Arc::default(),
        }
    }
}

impl Service<http::Request<()>> for Ep {
    type Response = http::Response<http_body_util::Empty<bytes::Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut res = http::Response::new(http_body_util::Empty::new());
        *res.status_mut() = http::StatusCode::from_u16(self.status).unwrap();
        std::future::ready(Ok(res))
    }
}

async fn send(balance: &Balance<u64, Ep>) -> u16 {
    let res = balance
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .expect("answered");
    let status = res.status().as_u16();
    let _ = http_body_util::BodyExt::collect(res.into_body()).await;
    status
}

/// 10,000 add/remove cycles of fresh endpoints beside two that stay, with a request through
/// each new one: the heap does not grow with the number of cycles, and the endpoints that
/// stay keep their counts.
#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_add_remove_cycles_keep_memory_flat_and_state_of_those_that_stay() {
    let balance: Balance<u64, Ep> = Balance::builder().metrics(false).build();
    let (a, b) = (Ep::new(200), Ep::new(200));
    balance.insert(0, a.clone());
    balance.insert(1, b.clone());
    for _ in 0..50 {
        send(&balance).await;
    }
    let stays = |balance: &Balance<u64, Ep>| {
        let mut v: Vec<(u64, u64)> = balance
            .endpoints()
            .into_iter()
            .filter(|e| e.key < 2)
            .map(|e| (e.key, e.requests))
            .collect();
        v.sort();
        v
    };
    let before = stays(&balance);
    let cycle = |balance: &Balance<u64, Ep>, n: u64| {
        balance.apply([Change::Insert(n, Ep::new(200))]);
        balance.apply([Change::Remove(n)]);
    };
    for n in 2..1_002 {
        cycle(&balance, n);
    }
    let warm = LIVE.load(Ordering::Relaxed);
    for n in 1_002..11_002 {
        cycle(&balance, n);
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(balance.len(), 2);
    assert_eq!(
        stays(&balance),
        before,
        "the endpoints that stayed keep their counts"
    );
    // 10,000 more cycles: a per-cycle leak of even 64 bytes would show as 640 kB.
    assert!(
        after - warm < 64 * 1024,
        "heap grew by {} bytes over 10,000 cycles",
        after - warm
    );
}

/// The same, with requests in flight on the endpoints when
/// they are removed: those requests finish, and the heap stays flat.
#[tokio::test(flavor = "current_thread")]
async fn churn_with_requests_in_flight_finishes_them_and_keeps_memory_flat() {
    let balance: Balance<u64, Ep> = Balance::builder().metrics(false).build();
    balance.insert(0, Ep::new(200));
    let cycle = |n: u64, balance: &Balance<u64, Ep>| {
        let ep = Ep::new(200);
        let calls = ep.calls.clone();
        balance.apply([Change::Insert(n, ep), Change::Remove(0)]);
        // The only endpoint now: the request goes to it, then it leaves while the body is
        // unread.
        let balance2 = balance.clone();
        let fut = async move { balance2.oneshot(http::Request::new(())).await.unwrap() };
        (fut, calls)
    };
    let mut warm = 0;
    for n in 1..6_001u64 {
        let (fut, calls) = cycle(n, &balance);
        let res = fut.await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        balance.apply([Change::Insert(0, Ep::new(200)), Change::Remove(n)]);
        // The body ends after its endpoint left.
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
        if n == 1_000 {
            warm = LIVE.load(Ordering::Relaxed);
        }
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(balance.len(), 1);
    for e in balance.endpoints() {
        assert_eq!(e.in_flight, 0, "{e:?}");
    }
    assert!(
        after - warm < 64 * 1024,
        "heap grew by {} bytes over 5,000 cycles",
        after - warm
    );
}

/// An endpoint whose answers are chosen at run time: 200, 500, or 500 after a gate opens.
#[derive(Clone)]
struct Switch {
    mode: Arc<std::sync::atomic::AtomicU8>,
    gate: Arc<tokio::sync::Semaphore>,
    calls: Arc<AtomicUsize>,
}

const OK: u8 = 0;
const FAIL: u8 = 1;
const HOLD_THEN_FAIL: u8 = 2;

impl Switch {
    fn new(mode: u8) -> Switch {
        Switch {
            mode: Arc::new(std::sync::atomic::AtomicU8::new(mode)),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            calls: Arc::default(),
        }
    }
}

type BoxFut<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl Service<http::Request<()>> for Switch {
    type Response = http::Response<http_body_util::Empty<bytes::Bytes>>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = self.mode.load(Ordering::SeqCst);
        let gate = self.gate.clone();
        Box::pin(async move {
            if mode == HOLD_THEN_FAIL {
                gate.acquire().await.unwrap().forget();
            }
            let mut res = http::Response::new(http_body_util::Empty::new());
            *res.status_mut() = if mode == OK {
                http::StatusCode::OK
            } else {
                http::StatusCode::INTERNAL_SERVER_ERROR
            };
            Ok(res)
        })
    }
}

async fn send_switch(balance: &Balance<&'static str, Switch>) {
    if let Ok(res) = balance.clone().oneshot(http::Request::new(())).await {
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
    }
}

fn status_of(
    balance: &Balance<&'static str, Switch>,
    key: &str,
) -> Option<meshless::outlier::Status> {
    balance
        .endpoints()
        .into_iter()
        .find(|e| e.key == key)
        .map(|e| e.status)
}

/// An endpoint removed while its probe is in flight, the probe then failing: the ejection
/// slot it held is not kept, so a peer that fails later can still be ejected (max ejected
/// share 50% of two endpoints: one).
#[tokio::test(start_paused = true)]
async fn a_probe_failing_after_its_endpoint_left_keeps_no_ejection_slot() {
    let outlier = meshless::outlier::OutlierConfig::builder()
        .consecutive_failures(Some(1))
        .base_ejection_time(std::time::Duration::from_secs(1))
        .max_ejection_time(std::time::Duration::from_secs(1))
        .ejection_jitter(0.0)
        .max_ejected_share(0.5)
        .slow_start(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let balance: Balance<&'static str, Switch> =
        Balance::builder().metrics(false).outlier(outlier).build();
    let x = Switch::new(FAIL);
    balance.insert("x", x.clone());
    balance.insert("y", Switch::new(OK));
    for _ in 0..200 {
        if x.calls.load(Ordering::SeqCst) > 0 {
            break;
        }
        send_switch(&balance).await;
    }
    assert!(
        matches!(
            status_of(&balance, "x"),
            Some(meshless::outlier::Status::Ejected { .. })
        ),
        "{:?}",
        status_of(&balance, "x")
    );
    // The ejection ends; x's probe will hang, then fail.
    tokio::time::advance(std::time::Duration::from_millis(1500)).await;
    x.mode.store(HOLD_THEN_FAIL, Ordering::SeqCst);
    let mut probing = Vec::new();
    for _ in 0..200 {
        if x.calls.load(Ordering::SeqCst) > 1 {
            break;
        }
        let b = balance.clone();
        probing.push(tokio::spawn(async move { send_switch(&b).await }));
        tokio::task::yield_now().await;
    }
    assert_eq!(x.calls.load(Ordering::SeqCst), 2, "x got its probe");
    // Discovery drops x while the probe is in flight; the probe then fails.
    balance.remove(&"x");
    x.gate.add_permits(10);
    for p in probing {
        p.await.unwrap();
    }
    // y leaves, two new endpoints come, z failing: one of the two may be ejected.
    let z = Switch::new(FAIL);
    balance.apply([
        Change::Remove("y"),
        Change::Insert("z", z.clone()),
        Change::Insert("w", Switch::new(OK)),
    ]);
    for _ in 0..200 {
        if z.calls.load(Ordering::SeqCst) > 0 {
            break;
        }
        send_switch(&balance).await;
    }
    assert!(z.calls.load(Ordering::SeqCst) > 0);
    let status = status_of(&balance, "z");
    assert!(
        matches!(status, Some(meshless::outlier::Status::Ejected { .. })),
        "z failed and was not ejected: {status:?}"
    );
}
