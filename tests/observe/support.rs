//! The recording harness and the scripted endpoints the observability tests share.

pub(crate) use bytes::Bytes;
pub(crate) use http::{HeaderMap, Request, Response, StatusCode};
pub(crate) use http_body_util::Empty;
pub(crate) use meshless::backoff::Backoff;
pub(crate) use meshless::balance::Balance;
pub(crate) use meshless::budget::Budget;
pub(crate) use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
pub(crate) use meshless::observe::{self, RecentStats};
pub(crate) use meshless::outlier::{OutlierConfig, Status};
pub(crate) use meshless::retry::{ReplayBody, RetryLayer};
pub(crate) use meshless::testing::{Backend, Behavior, Fleet};
pub(crate) use meshless::{BoxError, Error};
pub(crate) use metrics_util::debugging::{DebugValue, DebuggingRecorder};
pub(crate) use std::collections::{BTreeSet, VecDeque};
pub(crate) use std::convert::Infallible;
pub(crate) use std::future::Future;
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
pub(crate) use std::sync::{Arc, Mutex};
pub(crate) use std::time::Duration;
pub(crate) use tower::{Service, ServiceBuilder, ServiceExt};

pub(crate) const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// Recording.
// ---------------------------------------------------------------------------------------------

/// One series: its name, its labels (sorted), its value.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: DebugValue,
}

/// What a run recorded.
pub(crate) struct Recorded(pub(crate) Vec<Series>);

impl Recorded {
    /// The series of `name` whose labels include every pair of `labels`.
    pub(crate) fn matching<'a>(
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
    pub(crate) fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// The sum of the gauges of `name` that match `labels`.
    pub(crate) fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                DebugValue::Gauge(v) => v.into_inner(),
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .sum()
    }

    /// Every sample of the histograms of `name` that match `labels`.
    pub(crate) fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, labels)
            .flat_map(|s| match &s.value {
                DebugValue::Histogram(v) => v.iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    }

    /// The values the `label` label takes in the series of `name`.
    pub(crate) fn values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.matching(name, &[])
            .filter_map(|s| s.labels.iter().find(|(k, _)| k == label))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub(crate) fn names(&self) -> BTreeSet<&str> {
        self.0.iter().map(|s| s.name.as_str()).collect()
    }
}

/// Runs `test` on a paused current-thread runtime with a fresh recorder installed for this
/// thread; returns its output and what was recorded.
///
/// Tests that check gauges return their balancer: dropping it retires its endpoints, which
/// takes them out of the gauges, and the snapshot is taken before the output is dropped.
pub(crate) fn recorded<F, T>(test: impl FnOnce() -> F) -> (T, Recorded)
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

pub(crate) type Req = Request<ReplayBody<Empty<Bytes>>>;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    Status(u16),
    /// Never answers.
    Hang,
}

/// An endpoint that answers each request with the next step of its script (the last step
/// repeats), and keeps every request's headers.
#[derive(Clone)]
pub(crate) struct Script {
    pub(crate) steps: Arc<Mutex<VecDeque<Step>>>,
    pub(crate) seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Script {
    pub(crate) fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Script {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            seen: Arc::default(),
        }
    }

    pub(crate) fn next(&self) -> Step {
        let mut steps = self.steps.lock().unwrap();
        if steps.len() > 1 {
            steps.pop_front().unwrap()
        } else {
            *steps.front().expect("a script has at least one step")
        }
    }
}

/// The endpoint that plays `script`.
pub(crate) fn serve(
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
pub(crate) fn switchable(
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
pub(crate) fn stack<S>(
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

pub(crate) fn get() -> Request<Empty<Bytes>> {
    Request::get("http://payments/charge")
        .body(Empty::new())
        .unwrap()
}

pub(crate) const PAYMENTS: (&str, &str) = ("service", "payments");
