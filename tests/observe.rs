//! Observability contracts: metric names, labels and counts for scripted runs (recorded with
//! `metrics_util`'s `DebuggingRecorder`), `traceparent` pass-through, and `stats()`.
//!
//! Each test installs its own recorder on its own thread (`metrics::with_local_recorder`) and
//! runs a current-thread tokio runtime on paused time inside it, so that tests neither see each
//! other's metrics nor wait for real.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Empty;
use meshless::backoff::Backoff;
use meshless::balance::Balance;
use meshless::budget::Budget;
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use meshless::observe::{self, RecentStats};
use meshless::outlier::{OutlierConfig, Status};
use meshless::retry::{ReplayBody, RetryLayer};
use meshless::testing::{Backend, Behavior, Fleet};
use meshless::{BoxError, Error};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Service, ServiceBuilder, ServiceExt};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// Recording.
// ---------------------------------------------------------------------------------------------

/// One series: its name, its labels (sorted), its value.
#[derive(Debug)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: DebugValue,
}

/// What a run recorded.
struct Recorded(Vec<Series>);

impl Recorded {
    /// The series of `name` whose labels include every pair of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.0.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
    }

    /// The sum of the counters of `name` that match `labels`.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// The sum of the gauges of `name` that match `labels`.
    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                DebugValue::Gauge(v) => v.into_inner(),
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .sum()
    }

    /// Every sample of the histograms of `name` that match `labels`.
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, labels)
            .flat_map(|s| match &s.value {
                DebugValue::Histogram(v) => v.iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    }

    /// The values the `label` label takes in the series of `name`.
    fn values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.matching(name, &[])
            .filter_map(|s| s.labels.iter().find(|(k, _)| k == label))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn names(&self) -> BTreeSet<&str> {
        self.0.iter().map(|s| s.name.as_str()).collect()
    }
}

/// Runs `test` on a paused current-thread runtime with a fresh recorder installed for this
/// thread; returns its output and what was recorded.
///
/// Tests that check gauges return their balancer: dropping it retires its endpoints, which
/// takes them out of the gauges, and the snapshot is taken before the output is dropped.
fn recorded<F, T>(test: impl FnOnce() -> F) -> (T, Recorded)
where
    F: Future<Output = T>,
{
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(test())
    });
    let series = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, _description, value)| {
            let (_kind, key) = key.into_parts();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            labels.sort();
            Series {
                name: key.name().to_string(),
                labels,
                value,
            }
        })
        .collect();
    (out, Recorded(series))
}

// ---------------------------------------------------------------------------------------------
// Scripted endpoints.
// ---------------------------------------------------------------------------------------------

type Req = Request<ReplayBody<Empty<Bytes>>>;

#[derive(Clone, Copy, Debug)]
enum Step {
    Status(u16),
    /// Never answers.
    Hang,
}

/// An endpoint that answers each request with the next step of its script (the last step
/// repeats), and keeps every request's headers.
#[derive(Clone)]
struct Script {
    steps: Arc<Mutex<VecDeque<Step>>>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Script {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            seen: Arc::default(),
        }
    }

    fn next(&self) -> Step {
        let mut steps = self.steps.lock().unwrap();
        if steps.len() > 1 {
            steps.pop_front().unwrap()
        } else {
            *steps.front().expect("a script has at least one step")
        }
    }
}

/// The endpoint that plays `script`.
fn serve(
    script: Script,
) -> impl Service<
    Req,
    Response = Response<Empty<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Empty<Bytes>>, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |req: Req| {
        script.seen.lock().unwrap().push(req.headers().clone());
        let step = script.next();
        async move {
            match step {
                Step::Status(code) => {
                    let mut res = Response::new(Empty::new());
                    *res.status_mut() = StatusCode::from_u16(code).unwrap();
                    Ok(res)
                }
                Step::Hang => std::future::pending().await,
            }
        }
    })
}

/// An endpoint that fails with 503 while `failing` is set, and answers 200 otherwise.
fn switchable(
    failing: Arc<AtomicBool>,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Empty<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Empty<Bytes>>, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |_req: Request<Empty<Bytes>>| {
        let status = if failing.load(Ordering::SeqCst) {
            503
        } else {
            200
        };
        async move {
            let mut res = Response::new(Empty::new());
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(res)
        }
    })
}

/// Deadline → Retry → AttemptTimeout → Balance, as `meshless::http::Client` stacks them, with
/// no backoff jitter to keep times exact.
fn stack<S>(
    balance: Balance<&'static str, S>,
    retry: RetryLayer,
) -> impl Service<Request<Empty<Bytes>>, Response = Response<impl std::fmt::Debug>, Error = Error> + Clone
where
    S: Service<Req, Response = Response<Empty<Bytes>>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
{
    ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(2)))
        .layer(retry.backoff(Backoff::none()))
        .layer(AttemptTimeoutLayer::new(ms(100)))
        .service(balance)
}

fn get() -> Request<Empty<Bytes>> {
    Request::get("http://payments/charge")
        .body(Empty::new())
        .unwrap()
}

const PAYMENTS: (&str, &str) = ("service", "payments");

// ---------------------------------------------------------------------------------------------
// Metrics.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_retried_request_is_counted_once_per_request_attempt_and_endpoint() {
    let ((stats, _balance), m) = recorded(|| async {
        let solo = Script::new([Step::Status(503), Step::Status(200)]);
        let balance = Balance::builder().service_name("payments").build();
        balance.insert("solo", serve(solo.clone()));
        let retry = RetryLayer::new(Budget::default()).service_name("payments");
        let stats = retry.stats();
        let res = stack(balance.clone(), retry).oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
        (stats, balance)
    });

    assert_eq!(m.count(observe::REQUESTS_TOTAL, &[PAYMENTS]), 1);
    assert_eq!(m.count(observe::ATTEMPTS_TOTAL, &[PAYMENTS]), 2);
    assert_eq!(
        m.count(observe::RETRIES_TOTAL, &[PAYMENTS, ("reason", "http_5xx")]),
        1
    );
    assert_eq!(
        m.count(
            observe::REQUESTS_COMPLETED_TOTAL,
            &[PAYMENTS, ("class", "success"), ("reason", "success")]
        ),
        1
    );
    assert_eq!(
        m.count(observe::REQUESTS_COMPLETED_TOTAL, &[("class", "failure")]),
        0
    );
    assert_eq!(
        m.samples(
            observe::REQUEST_DURATION_SECONDS,
            &[PAYMENTS, ("class", "success")]
        )
        .len(),
        1
    );
    assert_eq!(m.samples(observe::BACKOFF_SECONDS, &[PAYMENTS]), vec![0.0]);
    for refusal in [
        "budget_exhausted",
        "retries_exhausted",
        "body_too_large",
        "pushback",
        "deadline",
    ] {
        // Registered up front, at zero, so that rates work from the first refusal.
        let series = m
            .matching(observe::RETRIES_REFUSED_TOTAL, &[("reason", refusal)])
            .count();
        assert_eq!(series, 1, "{refusal}");
    }
    assert_eq!(m.count(observe::RETRIES_REFUSED_TOTAL, &[]), 0);
    assert_eq!(m.count(observe::ATTEMPT_TIMEOUTS_TOTAL, &[PAYMENTS]), 0);
    assert_eq!(m.count(observe::REPLAY_OVERFLOWS_TOTAL, &[PAYMENTS]), 0);

    let solo = [PAYMENTS, ("endpoint", "solo")];
    assert_eq!(m.count(observe::ENDPOINT_REQUESTS_TOTAL, &solo), 2);
    assert_eq!(m.count(observe::ENDPOINT_FAILURES_TOTAL, &solo), 1);
    assert_eq!(m.samples(observe::ENDPOINT_LATENCY_SECONDS, &solo).len(), 2);
    // The failure added the 1 s penalty to the default 30 ms RTT; time is paused, so nothing
    // decayed either.
    let rtt = m.gauge(observe::ENDPOINT_RTT_EWMA_SECONDS, &solo);
    assert!((rtt - 1.03).abs() < 1e-9, "{rtt}");
    assert_eq!(
        m.gauge(
            observe::ENDPOINT_STATE,
            &[("endpoint", "solo"), ("state", "active")]
        ),
        1.0
    );
    assert_eq!(
        m.gauge(
            observe::BALANCER_ENDPOINTS,
            &[PAYMENTS, ("state", "active")]
        ),
        1.0
    );
    assert_eq!(m.count(observe::BALANCER_FAIL_FAST_TOTAL, &[PAYMENTS]), 0);

    // No label carries anything but the bounded values.
    assert_eq!(
        m.values(observe::ENDPOINT_REQUESTS_TOTAL, "service"),
        BTreeSet::from(["payments".to_string()])
    );
    for series in &m.0 {
        for (key, _) in &series.labels {
            assert!(
                ["service", "endpoint", "class", "reason", "state"].contains(&key.as_str()),
                "{series:?}"
            );
        }
        assert!(series.name.starts_with("meshless_"), "{series:?}");
    }

    // The same story in the stats.
    assert_eq!(
        (stats.requests(), stats.retries(), stats.attempts()),
        (1, 1, 2)
    );
    assert_eq!(
        (stats.successes(), stats.failures(), stats.cancelled()),
        (1, 0, 0)
    );
    assert_eq!(stats.recent().success_rate(), Some(1.0));
}

#[test]
fn refusals_timeouts_and_cancellations_are_counted_by_reason() {
    let ((), m) = recorded(|| async {
        // No reserve and a zero ratio: the budget never has a token.
        let empty = Budget::builder()
            .min_per_second(0.0)
            .ratio(0.0)
            .build()
            .unwrap();
        let script = Script::new([Step::Status(503), Step::Hang]);
        let balance = Balance::builder().service_name("payments").build();
        balance.insert("solo", serve(script.clone()));
        let svc = stack(balance, RetryLayer::new(empty).service_name("payments"));

        // A 503 whose retry the budget refuses: the 503 is the answer.
        let res = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 503);

        // Hangs: the attempt times out, the retry is refused again.
        let err = svc.clone().oneshot(get()).await.unwrap_err();
        assert_eq!(err.kind(), meshless::error::Kind::BudgetExhausted);

        // Hangs until the caller gives up first.
        let call = svc.clone().oneshot(get());
        assert!(tokio::time::timeout(ms(10), call).await.is_err());
    });

    assert_eq!(m.count(observe::REQUESTS_TOTAL, &[PAYMENTS]), 3);
    assert_eq!(m.count(observe::ATTEMPTS_TOTAL, &[PAYMENTS]), 3);
    assert_eq!(m.count(observe::RETRIES_TOTAL, &[]), 0);
    assert_eq!(
        m.count(
            observe::RETRIES_REFUSED_TOTAL,
            &[PAYMENTS, ("reason", "budget_exhausted")]
        ),
        2
    );
    assert_eq!(m.count(observe::ATTEMPT_TIMEOUTS_TOTAL, &[PAYMENTS]), 1);
    let completed = |class: &str, reason: &str| {
        m.count(
            observe::REQUESTS_COMPLETED_TOTAL,
            &[PAYMENTS, ("class", class), ("reason", reason)],
        )
    };
    assert_eq!(completed("failure", "http_5xx"), 1);
    assert_eq!(completed("failure", "timeout"), 1);
    assert_eq!(completed("cancelled", "cancelled"), 1);
    assert_eq!(completed("success", "success"), 0);
    assert_eq!(
        m.samples(observe::REQUEST_DURATION_SECONDS, &[("class", "failure")]),
        vec![0.0, 0.1]
    );
    assert_eq!(
        m.samples(observe::REQUEST_DURATION_SECONDS, &[("class", "cancelled")]),
        vec![0.01]
    );
    // The attempt the caller abandoned is a cancellation at the endpoint, not a failure.
    assert_eq!(
        m.count(observe::ENDPOINT_FAILURES_TOTAL, &[("endpoint", "solo")]),
        2
    );
    assert_eq!(
        m.count(observe::ENDPOINT_CANCELLED_TOTAL, &[("endpoint", "solo")]),
        1
    );
}

#[test]
fn a_request_dropped_at_its_deadline_is_a_timeout_failure() {
    let ((), m) = recorded(|| async {
        let balance = Balance::builder().build();
        balance.insert("hangs", serve(Script::new([Step::Hang])));
        let svc = ServiceBuilder::new()
            .layer(DeadlineLayer::new(ms(250)))
            .layer(RetryLayer::new(Budget::default()))
            .service(balance);
        let err = svc.oneshot(get()).await.unwrap_err();
        assert!(err.is_timeout());
    });
    let default = ("service", observe::DEFAULT_SERVICE);
    assert_eq!(
        m.count(
            observe::REQUESTS_COMPLETED_TOTAL,
            &[default, ("class", "failure"), ("reason", "timeout")]
        ),
        1
    );
    assert_eq!(
        m.samples(observe::REQUEST_DURATION_SECONDS, &[default]),
        vec![0.25]
    );
}

#[test]
fn ejection_probation_and_return_move_the_state_gauges() {
    let ((stats, _balance), m) = recorded(|| async {
        let failing = Arc::new(AtomicBool::new(true));
        let config = OutlierConfig::builder()
            .success_rate(None)
            .failure_percentage(None)
            .latency(None)
            .build()
            .unwrap();
        let balance = Balance::builder()
            .service_name("payments")
            .outlier(config)
            .build();
        // A heavy weight keeps "bad" the cheaper pick even with its failure penalty, so that
        // it fails five times in a row.
        balance.insert_weighted("bad", switchable(failing.clone()), 1000.0);
        balance.insert("good", switchable(Arc::new(AtomicBool::new(false))));
        for _ in 0..5 {
            let res = balance.clone().oneshot(get()).await.unwrap();
            assert_eq!(res.status(), 503);
        }
        let ejected = balance.stats();
        assert_eq!((ejected.active, ejected.ejected), (1, 1));

        // The ejection lasts 1 to 1.5 s; then one probe, which succeeds.
        failing.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2)).await;
        let res = balance.clone().oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
        (balance.stats(), balance)
    });
    assert_eq!((stats.active, stats.ejected, stats.probation), (2, 0, 0));
    let bad = stats.endpoints.iter().find(|e| e.key == "bad").unwrap();
    assert_eq!((bad.status, bad.ejections), (Status::Active, 1));

    let bad = [PAYMENTS, ("endpoint", "bad")];
    assert_eq!(
        m.count(
            observe::ENDPOINT_EJECTIONS_TOTAL,
            &[
                PAYMENTS,
                ("endpoint", "bad"),
                ("reason", "consecutive_failures")
            ]
        ),
        1
    );
    assert_eq!(
        m.count(observe::ENDPOINT_EJECTIONS_TOTAL, &[("endpoint", "good")]),
        0
    );
    assert_eq!(m.count(observe::ENDPOINT_REQUESTS_TOTAL, &bad), 6);
    assert_eq!(m.count(observe::ENDPOINT_FAILURES_TOTAL, &bad), 5);
    // Back to active: every gauge tells the end state.
    for (state, value) in [("active", 1.0), ("ejected", 0.0), ("probation", 0.0)] {
        let labels = [PAYMENTS, ("endpoint", "bad"), ("state", state)];
        assert_eq!(m.gauge(observe::ENDPOINT_STATE, &labels), value, "{state}");
    }
    assert_eq!(
        m.gauge(observe::BALANCER_ENDPOINTS, &[("state", "active")]),
        2.0
    );
    assert_eq!(
        m.gauge(observe::BALANCER_ENDPOINTS, &[("state", "ejected")]),
        0.0
    );
}

#[test]
fn replacing_and_removing_endpoints_keeps_the_gauges_right() {
    let (_balance, m) = recorded(|| async {
        let balance = Balance::builder().build();
        balance.insert("a", serve(Script::new([Step::Status(200)])));
        balance.insert("b", serve(Script::new([Step::Status(200)])));
        // The same key again: the new endpoint joins before the old one leaves.
        balance.insert("a", serve(Script::new([Step::Status(200)])));
        balance.remove(&"b");
        balance
    });
    assert_eq!(
        m.gauge(
            observe::ENDPOINT_STATE,
            &[("endpoint", "a"), ("state", "active")]
        ),
        1.0
    );
    assert_eq!(
        m.gauge(
            observe::ENDPOINT_STATE,
            &[("endpoint", "b"), ("state", "active")]
        ),
        0.0
    );
    assert_eq!(
        m.gauge(observe::BALANCER_ENDPOINTS, &[("state", "active")]),
        1.0
    );
}

#[test]
fn a_fleet_under_faults_adds_up() {
    let (stats, m) = recorded(|| async {
        let balance = Balance::builder().service_name("payments").build();
        balance.insert("a", serve(Script::new([Step::Status(503)])));
        balance.insert("b", serve(Script::new([Step::Status(200)])));
        balance.insert(
            "c",
            serve(Script::new([Step::Status(502), Step::Status(200)])),
        );
        let retry = RetryLayer::new(Budget::default()).service_name("payments");
        let stats = retry.stats();
        let svc = stack(balance, retry);
        for _ in 0..200 {
            let _ = svc.clone().oneshot(get()).await;
        }
        stats
    });
    let requests = m.count(observe::REQUESTS_TOTAL, &[PAYMENTS]);
    let completed = m.count(observe::REQUESTS_COMPLETED_TOTAL, &[PAYMENTS]);
    let attempts = m.count(observe::ATTEMPTS_TOTAL, &[PAYMENTS]);
    let retries = m.count(observe::RETRIES_TOTAL, &[PAYMENTS]);
    let at_endpoints = m.count(observe::ENDPOINT_REQUESTS_TOTAL, &[PAYMENTS]);
    assert_eq!(requests, 200);
    assert_eq!(completed, requests);
    assert_eq!(attempts, requests + retries);
    assert_eq!(at_endpoints, attempts);
    assert!(retries > 0, "endpoint a always fails");
    assert_eq!(
        m.values(observe::ENDPOINT_REQUESTS_TOTAL, "endpoint"),
        BTreeSet::from(["a".into(), "b".into(), "c".into()])
    );
    assert!(
        m.values(observe::RETRIES_TOTAL, "reason")
            .is_subset(&BTreeSet::from(["http_5xx".into()]))
    );
    // The stats agree with the metrics.
    assert_eq!(stats.requests(), requests);
    assert_eq!(stats.retries(), retries);
    assert_eq!(stats.successes() + stats.failures(), completed);
    assert_eq!(
        stats.successes(),
        m.count(observe::REQUESTS_COMPLETED_TOTAL, &[("class", "success")])
    );
    let recent: RecentStats = stats.recent();
    assert_eq!(recent.requests(), 200);
    assert!(
        recent.p99 < Some(Duration::from_micros(1)),
        "paused time: no latency"
    );
}

#[test]
fn metrics_off_records_nothing() {
    let (stats, m) = recorded(|| async {
        let balance = Balance::builder().metrics(false).build();
        balance.insert(
            "a",
            serve(Script::new([Step::Status(503), Step::Status(200)])),
        );
        let retry = RetryLayer::new(Budget::default()).metrics(false);
        let stats = retry.stats();
        let res = stack(balance, retry).oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
        stats
    });
    assert!(m.names().is_empty(), "{:?}", m.names());
    assert_eq!((stats.requests(), stats.retries()), (1, 1), "stats stay on");
}

#[test]
fn handles_registered_with_no_recorder_stay_silent() {
    // Built outside any recorder: the handles are no-ops, and using them is harmless.
    let balance = Balance::builder().build();
    balance.insert("a", serve(Script::new([Step::Status(200)])));
    let svc = stack(balance, RetryLayer::new(Budget::default()));
    let ((), m) = recorded(|| async {
        let res = svc.oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
    });
    assert!(m.names().is_empty(), "{:?}", m.names());
}

// ---------------------------------------------------------------------------------------------
// Trace context.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn traceparent_reaches_every_attempt_unchanged() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let script = Script::new([Step::Status(503), Step::Status(502), Step::Status(200)]);
    let balance = Balance::builder().build();
    balance.insert("solo", serve(script.clone()));
    let mut req = get();
    req.headers_mut()
        .insert("traceparent", TRACEPARENT.parse().unwrap());
    req.headers_mut()
        .insert("tracestate", TRACESTATE.parse().unwrap());
    let res = stack(balance, RetryLayer::new(Budget::default()))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "two retries");
    for headers in seen.iter() {
        assert_eq!(headers.get_all("traceparent").iter().count(), 1);
        assert_eq!(headers["traceparent"], TRACEPARENT);
        assert_eq!(headers["tracestate"], TRACESTATE);
    }
}

// ---------------------------------------------------------------------------------------------
// Stats.
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn recent_stats_give_the_success_rate_and_percentiles() {
    let slow = tower::service_fn(|req: Request<ReplayBody<Empty<Bytes>>>| async move {
        // The path says how long to take and what to answer.
        let path = req.uri().path().trim_start_matches('/').to_string();
        let (delay, status) = path.split_once('/').unwrap();
        tokio::time::sleep(ms(delay.parse().unwrap())).await;
        let mut res = Response::new(Empty::<Bytes>::new());
        *res.status_mut() = StatusCode::from_u16(status.parse().unwrap()).unwrap();
        Ok::<_, Infallible>(res)
    });
    let retry = RetryLayer::new(Budget::default()).max_retries(0);
    let stats = retry.stats();
    let svc = ServiceBuilder::new().layer(retry).service(slow);
    // 90 fast successes, 9 slower ones, one slow failure.
    for (n, path) in [(90, "/10/200"), (9, "/100/200"), (1, "/1000/500")] {
        for _ in 0..n {
            let req = Request::get(path).body(Empty::<Bytes>::new()).unwrap();
            let _ = svc.clone().oneshot(req).await.unwrap();
        }
    }
    let recent = stats.recent();
    assert_eq!((recent.successes, recent.failures), (99, 1));
    assert_eq!(recent.success_rate(), Some(0.99));
    let near = |got: Option<Duration>, want: Duration| {
        let got = got.unwrap().as_secs_f64();
        let want = want.as_secs_f64();
        assert!((got - want).abs() <= want / 8.0, "{got} vs {want}");
    };
    near(recent.p50, ms(10));
    near(recent.p90, ms(10));
    near(recent.p99, ms(100));
    assert!(recent.window >= ms(1000) && recent.window <= Duration::from_secs(60));

    // A minute later the window has moved past all of it.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(stats.recent().requests(), 0);
    assert_eq!(stats.requests(), 100, "lifetime counts stay");
}

#[tokio::test]
async fn client_stats_over_a_fleet() {
    let fleet = Fleet::builder()
        .backend(Backend::new(Behavior::healthy()))
        .backend(Backend::new(Behavior::healthy()))
        .backend(Backend::new(
            Behavior::healthy().errors(1.0, StatusCode::SERVICE_UNAVAILABLE),
        ))
        .start()
        .await
        .unwrap();
    let addrs: Vec<String> = fleet.addrs().iter().map(|a| a.to_string()).collect();
    let client = meshless::http::Client::builder()
        .endpoints(addrs.clone())
        .service_name("inventory")
        .build()
        .unwrap();
    for _ in 0..100 {
        let _ = client.get("/items").await;
    }
    let stats = client.stats();
    assert_eq!(stats.service, "inventory");
    assert_eq!(stats.requests, 100);
    assert_eq!(stats.successes + stats.failures + stats.cancelled, 100);
    assert_eq!(stats.recent.requests(), 100);
    let rate = stats.success_rate().unwrap();
    assert!(rate > 0.9, "retries hide the bad endpoint: {rate}");
    assert!(stats.recent.p50.is_some() && stats.recent.p99 >= stats.recent.p50);
    assert_eq!(stats.endpoints.len(), 3);
    let bad: std::net::SocketAddr = addrs[2].parse().unwrap();
    let bad = stats.endpoints.iter().find(|e| e.key == bad).unwrap();
    // Its first 503 puts a 1 s penalty into its EWMA, which keeps traffic away from it.
    assert!(bad.failures > 0 && bad.rtt > ms(500), "{bad:?}");
    assert!(stats.endpoints.iter().all(|e| e.rtt > Duration::ZERO));
    fleet.shutdown().await;
}
