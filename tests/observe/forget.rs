//! The series of an endpoint that discovery removed are dropped from a recorder that can drop
//! them (`ForgetSeries`), once its last request has finished, and only then.

use crate::support::ms;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use meshless::balance::Balance;
use meshless::observe::{self, ForgetSeries};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tower::{Service, ServiceExt, service_fn};

/// A recorder over a `metrics_util` registry, which can drop series.
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
    /// The names of the series labelled `endpoint=<endpoint>`, of every kind.
    fn series_of(&self, endpoint: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut visit = |key: &Key| {
            if key
                .labels()
                .any(|l| l.key() == observe::ENDPOINT && l.value() == endpoint)
            {
                let labels: Vec<String> = key
                    .labels()
                    .filter(|l| l.key() != observe::ENDPOINT && l.key() != observe::SERVICE)
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                names.insert(format!("{}{labels:?}", key.name()));
            }
        };
        self.0.visit_counters(|key, _| visit(key));
        self.0.visit_gauges(|key, _| visit(key));
        self.0.visit_histograms(|key, _| visit(key));
        names
    }
}

type Req = Request<Empty<Bytes>>;

/// Runs `test` with `recorder` installed for this thread, on a paused runtime.
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

async fn send<S>(balance: &mut S)
where
    S: Service<Req, Response = Response<meshless::balance::ResponseBody<Empty<Bytes>>>>,
    S::Error: std::fmt::Debug,
{
    balance
        .ready()
        .await
        .expect("ready")
        .call(Request::new(Empty::new()))
        .await
        .expect("an answer");
}

fn ok()
-> impl Service<Req, Response = Response<Empty<Bytes>>, Error = Infallible, Future: Send> + Clone {
    service_fn(|_req: Req| async { Ok::<_, Infallible>(Response::new(Empty::new())) })
}

#[test]
fn a_removed_endpoint_loses_its_series_and_its_peers_keep_theirs() {
    let recorder = Dropping(Arc::new(Registry::atomic()));
    with(&recorder, || async {
        let mut balance = Balance::builder()
            .service_name("forget")
            .forget_series(recorder.clone())
            .build();
        balance.insert("a", ok());
        balance.insert("b", ok());
        for _ in 0..20 {
            send(&mut balance).await;
        }
        let a = recorder.series_of("a");
        let b = recorder.series_of("b");
        assert!(
            a.iter()
                .any(|s| s.starts_with(observe::ENDPOINT_REQUESTS_TOTAL)),
            "{a:?}"
        );
        assert!(
            a.iter().any(|s| s.starts_with(observe::ENDPOINT_STATE)),
            "{a:?}"
        );
        assert!(a.len() >= 7, "{a:?}");

        balance.remove(&"a");
        assert_eq!(recorder.series_of("a"), BTreeSet::new());
        assert_eq!(recorder.series_of("b"), b);
        // The peer still records.
        send(&mut balance).await;
        assert!(!recorder.series_of("b").is_empty());
    });
}

#[test]
fn series_outlive_the_last_request_of_a_removed_endpoint_and_a_reinserted_one_keeps_them() {
    let recorder = Dropping(Arc::new(Registry::atomic()));
    with(&recorder, || async {
        let (release, held) = oneshot::channel::<()>();
        let held = Arc::new(std::sync::Mutex::new(Some(held)));
        // The first request to "slow" waits for `release`; later ones answer at once.
        let slow = service_fn(move |_req: Req| {
            let held = held.lock().unwrap().take();
            async move {
                if let Some(held) = held {
                    let _ = held.await;
                }
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            }
        });
        let balance = Balance::builder()
            .service_name("forget")
            .forget_series(recorder.clone())
            .build();
        balance.insert("slow", slow.clone());
        let mut caller = balance.clone();
        let in_flight = tokio::spawn(async move {
            send(&mut caller).await;
        });
        tokio::time::sleep(ms(1)).await;
        assert!(!recorder.series_of("slow").is_empty());

        // Removed while its request is in flight: the request still records, so its series
        // stay until it finishes.
        balance.remove(&"slow");
        assert!(!recorder.series_of("slow").is_empty());

        // Inserted again under the same label before the old one finished: the new endpoint
        // shares the series, so the old one's end must not drop them.
        balance.insert("slow", slow);
        release.send(()).unwrap();
        in_flight.await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let series = recorder.series_of("slow");
        assert!(
            series
                .iter()
                .any(|s| s.starts_with(observe::ENDPOINT_RTT_EWMA_SECONDS)),
            "{series:?}"
        );

        // Removed with nothing in flight: gone at once.
        balance.remove(&"slow");
        assert_eq!(recorder.series_of("slow"), BTreeSet::new());
    });
}
