//! `ForgetSeries`: a removed endpoint's series dropped, kept while a namesake lives, a racing re-insert, a panicking recorder.

use super::*;
use http::Response;
use http_body_util::Empty;
use meshless::balance::{Balance, Change, ChannelDiscover};
use meshless::observe::{self, ForgetSeries};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tower::{Service, ServiceExt, service_fn};

type Req = Request<Empty<Bytes>>;

/// Where a forget stops: it says it entered, then waits to be resumed.
type Pause = (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>);

#[derive(Clone)]
struct Dropping {
    reg: Arc<Registry<Key, AtomicStorage>>,
    /// Panic on every forget call.
    panics: Arc<AtomicBool>,
    /// On the first forget call: tell `entered`, then wait for `resume`.
    gate: Arc<Mutex<Option<Pause>>>,
    calls: Arc<AtomicUsize>,
}

impl Dropping {
    fn new() -> Self {
        Dropping {
            reg: Arc::new(Registry::atomic()),
            panics: Arc::default(),
            gate: Arc::default(),
            calls: Arc::default(),
        }
    }
    fn enter(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.panics.load(Ordering::SeqCst) {
            panic!("the user's ForgetSeries panicked");
        }
        let gate = self.gate.lock().unwrap().take();
        if let Some((entered, resume)) = gate {
            entered.send(()).unwrap();
            resume.recv().unwrap();
        }
    }
    fn series_of(&self, endpoint: &str) -> usize {
        let mut n = 0;
        let mut visit = |key: &Key| {
            if key
                .labels()
                .any(|l| l.key() == observe::ENDPOINT && l.value() == endpoint)
            {
                n += 1;
            }
        };
        self.reg.visit_counters(|k, _| visit(k));
        self.reg.visit_gauges(|k, _| visit(k));
        self.reg.visit_histograms(|k, _| visit(k));
        n
    }
}

impl Recorder for Dropping {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.reg
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.reg
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.reg
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

impl ForgetSeries for Dropping {
    fn forget_counter(&self, key: &Key) {
        self.enter();
        self.reg.delete_counter(key);
    }
    fn forget_gauge(&self, key: &Key) {
        self.enter();
        self.reg.delete_gauge(key);
    }
    fn forget_histogram(&self, key: &Key) {
        self.enter();
        self.reg.delete_histogram(key);
    }
}

fn ok()
-> impl Service<Req, Response = Response<Empty<Bytes>>, Error = Infallible, Future: Send> + Clone {
    service_fn(|_req: Req| async { Ok::<_, Infallible>(Response::new(Empty::new())) })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The old endpoint's last request ends on one thread while discovery inserts the same
/// address again on another: the forgetting must not delete the series the new endpoint
/// just registered (it lives, and records into handles nobody can see any more).
#[test]
fn forget_racing_a_reinsert_keeps_the_live_endpoints_series() {
    let rec = Dropping::new();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release_rx = Arc::new(Mutex::new(Some(release_rx)));
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
    let sent_tx = Arc::new(Mutex::new(sent_tx));
    let slow = service_fn(move |_req: Req| {
        let held = release_rx.lock().unwrap().take();
        let _ = sent_tx.lock().unwrap().send(());
        async move {
            if let Some(held) = held {
                let _ = held.await;
            }
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    metrics::with_local_recorder(&rec, || {
        let balance = Balance::builder()
            .service_name("r4-race")
            .forget_series(rec.clone())
            .build();
        balance.insert("a", slow.clone());
        assert!(rec.series_of("a") > 0);
        // The old endpoint's request, driven on its own thread.
        let mut caller = balance.clone();
        let old = std::thread::spawn(move || {
            rt().block_on(async move {
                let res = caller
                    .ready()
                    .await
                    .unwrap()
                    .call(Request::new(Empty::new()))
                    .await
                    .unwrap();
                drop(res);
            });
        });
        sent_rx.recv().unwrap();
        balance.remove(&"a");
        *rec.gate.lock().unwrap() = Some((entered_tx, resume_rx));
        release_tx.send(()).unwrap();
        // The old endpoint is forgetting its series (first key not yet deleted)...
        entered_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the removed endpoint never forgot its series");
        // ...while discovery brings the address back, on another thread (it waits for
        // the forget to finish, then registers its series again).
        let inserter = {
            let balance = balance.clone();
            let slow = slow.clone();
            let rec = rec.clone();
            // Recorders installed this way are per thread: the inserter needs it too.
            std::thread::spawn(move || {
                metrics::with_local_recorder(&rec, || balance.insert("a", slow))
            })
        };
        resume_tx.send(()).unwrap();
        inserter.join().unwrap();
        old.join().unwrap();
        // The live endpoint records a request.
        rt().block_on(async {
            let mut b = balance.clone();
            b.ready()
                .await
                .unwrap()
                .call(Request::new(Empty::new()))
                .await
                .unwrap();
        });
        assert_eq!(balance.len(), 1);
        assert!(
            rec.series_of("a") > 0,
            "endpoint \"a\" is live and recording, but its series were deleted from the \
             recorder by the old endpoint's forget"
        );
    });
}

/// A panic in the user's `ForgetSeries` while discovery removes an endpoint must not stop
/// the balancer following discovery.
#[tokio::test]
async fn panicking_forget_does_not_stop_discovery() {
    let rec = Dropping::new();
    rec.panics.store(true, Ordering::SeqCst);
    let balance: Balance<&str, _> = Balance::builder()
        .service_name("r4-panic")
        .forget_series(rec.clone())
        .build();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = balance.discover(ChannelDiscover::new(rx));
    tx.send(Change::Insert("a", ok())).unwrap();
    tx.send(Change::Insert("b", ok())).unwrap();
    for _ in 0..100 {
        if balance.len() == 2 {
            break;
        }
        sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(balance.len(), 2);
    tx.send(Change::Remove("a")).unwrap();
    for _ in 0..100 {
        if rec.calls.load(Ordering::SeqCst) > 0 {
            break;
        }
        sleep(Duration::from_millis(5)).await;
    }
    // Panicking once is the point; the rest of the test must not panic in a destructor.
    sleep(Duration::from_millis(20)).await;
    rec.panics.store(false, Ordering::SeqCst);
    let sent = tx.send(Change::Insert("c", ok()));
    for _ in 0..100 {
        if balance.len() == 2 && !task.is_finished() {
            let keys: Vec<_> = balance.endpoints().iter().map(|e| e.key).collect();
            if keys.contains(&"c") {
                break;
            }
        }
        sleep(Duration::from_millis(5)).await;
    }
    let keys: Vec<_> = balance.endpoints().iter().map(|e| e.key).collect();
    let finished = task.is_finished();
    let panicked = if finished {
        task.await.err().is_some_and(|e| e.is_panic())
    } else {
        false
    };
    assert!(
        !finished && sent.is_ok(),
        "the discovery task ended (panicked: {panicked}, later changes refused: {}); \
         endpoints {keys:?}",
        sent.is_err()
    );
    assert!(
        keys.contains(&"c"),
        "a later insert was never applied: {keys:?}"
    );
}

/// A panic in the user's `ForgetSeries` while `remove` runs must not escape into the caller
/// of `remove`, and the balancer keeps working.
#[test]
fn panicking_forget_does_not_escape_remove() {
    let rec = Dropping::new();
    metrics::with_local_recorder(&rec, || {
        let balance = Balance::builder()
            .service_name("r4-panic-remove")
            .forget_series(rec.clone())
            .build();
        balance.insert("a", ok());
        balance.insert("b", ok());
        rec.panics.store(true, Ordering::SeqCst);
        let removed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            balance.remove(&"a");
        }));
        rec.panics.store(false, Ordering::SeqCst);
        let keys: Vec<_> = balance.endpoints().iter().map(|e| e.key).collect();
        assert_eq!(keys, ["b"]);
        rt().block_on(async {
            let mut b = balance.clone();
            b.ready()
                .await
                .unwrap()
                .call(Request::new(Empty::new()))
                .await
                .unwrap();
        });
        assert!(
            removed.is_ok(),
            "the ForgetSeries panic escaped Balance::remove into its caller"
        );
    });
}
