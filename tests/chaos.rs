//! Contract tests of fault injection, on tokio's paused clock: rates, determinism under a seed,
//! exact delays, the injected answers as the classifier reads them, per-route rules, and the
//! layer off. `tests/chaos/` holds the tests with the retry layer and a real socket.

use http::Request;
use http_body_util::BodyExt;
use meshless::chaos::{
    CHAOS_HEADER, ChaosBody, ChaosConfig, ChaosLayer, ChaosRule, Fault, Faults, InjectedFault,
};
use meshless::classify::{
    Class, Classifier, Classify, Code, Idempotence, Pushback, Reason, Retryable, classify_error,
};
use meshless::error::Kind;
use meshless::{BoxError, Error};
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

#[path = "chaos/retry.rs"]
mod retry;

/// When the upstream's future first ran, per request, in order.
type Polls = Arc<Mutex<Vec<Instant>>>;

/// A healthy upstream answering 200 "ok", recording when each request's future first runs
/// (that is, when the request would be sent).
fn upstream(
    polls: Polls,
) -> impl Service<Request<()>, Response = http::Response<String>, Error = BoxError> + Clone {
    service_fn(move |_req: Request<()>| {
        let polls = polls.clone();
        async move {
            polls.lock().unwrap().push(Instant::now());
            Ok::<_, BoxError>(http::Response::new("ok".to_string()))
        }
    })
}

fn req(method: &str, path: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap()
}

/// What one request met, as its caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Met {
    Passed,
    Error(u16),
    Reset,
    Refused,
}

/// Sends one request and says what it met and how long it took.
async fn send<S>(svc: &mut S, req: Request<()>) -> (Met, Duration)
where
    S: Service<Request<()>, Response = http::Response<ChaosBody<String>>, Error = Error>,
{
    let start = Instant::now();
    let outcome = svc.ready().await.unwrap().call(req).await;
    let met = match outcome {
        Ok(res) if res.body().is_injected() => Met::Error(res.status().as_u16()),
        Ok(_) => Met::Passed,
        Err(e) => match e.source().and_then(|s| s.downcast_ref::<InjectedFault>()) {
            Some(f) if f.fault() == Fault::Refused => Met::Refused,
            Some(_) => Met::Reset,
            None => panic!("unexpected error {e}"),
        },
    };
    (met, start.elapsed())
}

/// `n` GETs of `/` through a layer, in order: what each met, and whether it was delayed.
async fn run(layer: &ChaosLayer, n: usize) -> Vec<(Met, bool)> {
    let mut svc = layer.layer(upstream(Polls::default()));
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (met, took) = send(&mut svc, req("GET", "/")).await;
        out.push((met, !took.is_zero()));
    }
    out
}

fn mixed(seed: u64) -> ChaosLayer {
    ChaosLayer::new().seed(seed).metrics(false).faults(
        Faults::none()
            .delay(0.1, Duration::from_millis(1))
            .error(0.05, 503)
            .reset(0.02)
            .refuse(0.03),
    )
}

/// Asserts `count` out of `n` is within 4 standard deviations of the binomial mean.
fn within_binomial(what: &str, count: usize, n: usize, rate: f64) {
    let mean = n as f64 * rate;
    let sd = (n as f64 * rate * (1.0 - rate)).sqrt();
    assert!(
        (count as f64 - mean).abs() <= 4.0 * sd,
        "{what}: {count} of {n}, expected {mean} ± {}",
        4.0 * sd
    );
}

#[tokio::test(start_paused = true)]
async fn rates_over_ten_thousand_requests_are_within_binomial_bounds() {
    let layer = mixed(7);
    let n = 10_000;
    let out = run(&layer, n).await;
    let count = |m: Met| out.iter().filter(|(met, _)| *met == m).count();
    let delayed = out.iter().filter(|(_, d)| *d).count();
    within_binomial("delays", delayed, n, 0.1);
    within_binomial("errors", count(Met::Error(503)), n, 0.05);
    within_binomial("resets", count(Met::Reset), n, 0.02);
    within_binomial("refusals", count(Met::Refused), n, 0.03);
    // The handle counts exactly what the callers met.
    let counts = layer.handle().counts();
    assert_eq!(counts.requests, n as u64);
    assert_eq!(counts.delays, delayed as u64);
    assert_eq!(counts.errors, count(Met::Error(503)) as u64);
    assert_eq!(counts.resets, count(Met::Reset) as u64);
    assert_eq!(counts.refusals, count(Met::Refused) as u64);
    assert_eq!(count(Met::Passed) as u64, n as u64 - counts.injected());
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_injects_the_same_faults_and_another_seed_others() {
    let first = run(&mixed(42), 2_000).await;
    let again = run(&mixed(42), 2_000).await;
    assert_eq!(first, again, "same seed, same sequence");
    let other = run(&mixed(43), 2_000).await;
    assert_ne!(first, other, "another seed");
    assert_eq!(mixed(42).seed_in_use(), 42);
}

#[tokio::test(start_paused = true)]
async fn a_delay_is_waited_exactly_before_the_request_goes_on() {
    let polls = Polls::default();
    let layer = ChaosLayer::new()
        .metrics(false)
        .faults(Faults::none().delay(1.0, Duration::from_millis(250)));
    let mut svc = layer.layer(upstream(polls.clone()));
    let start = Instant::now();
    let (met, took) = send(&mut svc, req("GET", "/")).await;
    assert_eq!((met, took), (Met::Passed, Duration::from_millis(250)));
    // The upstream ran only once the delay was over.
    assert_eq!(polls.lock().unwrap()[0] - start, Duration::from_millis(250));
    assert_eq!(layer.handle().counts().delays, 1);
}

#[tokio::test(start_paused = true)]
async fn a_jittered_delay_stays_within_its_bounds_and_varies() {
    let layer = ChaosLayer::new().seed(3).metrics(false).faults(
        Faults::none()
            .delay(1.0, Duration::from_millis(100))
            .delay_jitter(Duration::from_millis(50)),
    );
    let mut svc = layer.layer(upstream(Polls::default()));
    let mut took = Vec::new();
    for _ in 0..200 {
        took.push(send(&mut svc, req("GET", "/")).await.1);
    }
    let (min, max) = (took.iter().min().unwrap(), took.iter().max().unwrap());
    assert!(*min >= Duration::from_millis(100) && *max <= Duration::from_millis(150));
    assert!(*max - *min > Duration::from_millis(40), "{min:?}..{max:?}");
}

#[tokio::test(start_paused = true)]
async fn a_caller_cancelling_during_a_delay_sends_nothing() {
    let polls = Polls::default();
    let layer = ChaosLayer::new()
        .metrics(false)
        .faults(Faults::none().delay(1.0, Duration::from_secs(1)));
    let mut svc = layer.layer(upstream(polls.clone()));
    let fut = svc.ready().await.unwrap().call(req("GET", "/"));
    let timed = tokio::time::timeout(Duration::from_millis(10), fut).await;
    assert!(timed.is_err());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        polls.lock().unwrap().is_empty(),
        "the request never went on"
    );
}

#[tokio::test]
async fn an_error_response_carries_its_status_and_headers_and_reads_as_a_real_one() {
    let polls = Polls::default();
    let layer = ChaosLayer::new().metrics(false).faults(
        Faults::none()
            .error(1.0, 503)
            .error_header("retry-after", "1"),
    );
    let svc = layer.layer(upstream(polls.clone()));
    let res = svc.oneshot(req("POST", "/orders")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()[CHAOS_HEADER], "error");
    let class = Classifier::default()
        .classify_response(res.status(), res.headers())
        .unwrap();
    assert_eq!(class.reason(), Reason::Status(503));
    assert_eq!(class.retryable(), Retryable::NotProcessed);
    assert_eq!(
        class.pushback(),
        Some(Pushback::After(Duration::from_secs(1)))
    );
    assert!(res.body().is_injected());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    assert!(
        polls.lock().unwrap().is_empty(),
        "the upstream never saw it"
    );
}

#[tokio::test]
async fn a_grpc_request_gets_a_trailers_only_answer_with_the_configured_code() {
    let layer = ChaosLayer::new()
        .metrics(false)
        .faults(Faults::none().error(1.0, 503).error_grpc_code(13));
    let svc = layer.layer(upstream(Polls::default()));
    let grpc = Request::post("/pkg.Svc/Method")
        .header("content-type", "application/grpc+proto")
        .body(())
        .unwrap();
    let res = svc.oneshot(grpc).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/grpc+proto");
    assert_eq!(res.headers()["grpc-status"], "13");
    let class = Classifier::default()
        .classify_response(res.status(), res.headers())
        .unwrap();
    assert_eq!(
        class,
        Class::failure(Reason::Grpc(Code::Internal), Retryable::Never)
    );
}

#[tokio::test]
async fn an_injected_reset_classifies_exactly_as_a_real_reset() {
    let layer = ChaosLayer::new()
        .metrics(false)
        .faults(Faults::none().reset(1.0));
    let err = layer
        .layer(upstream(Polls::default()))
        .oneshot(req("GET", "/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Service);
    // An io::Error of kind ConnectionReset is in the source chain.
    let mut chain = err.source();
    let mut io_kind = None;
    while let Some(e) = chain {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        chain = e.source();
    }
    assert_eq!(io_kind, Some(std::io::ErrorKind::ConnectionReset));
    let class = classify_error(&err);
    let real = Error::from_service(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    assert_eq!(class, classify_error(&real));
    assert_eq!(class.reason(), Reason::Reset);
    assert!(class.retryable().allows(true), "idempotent: retried");
    assert!(!class.retryable().allows(false), "not idempotent: never");
    assert_eq!(class, Classifier::default().classify_error(&err));
}

#[tokio::test]
async fn an_injected_refusal_classifies_as_never_sent() {
    let layer = ChaosLayer::new()
        .metrics(false)
        .faults(Faults::none().refuse(1.0));
    let err = layer
        .layer(upstream(Polls::default()))
        .oneshot(req("POST", "/"))
        .await
        .unwrap_err();
    let class = classify_error(&err);
    assert_eq!(
        class,
        Class::failure(Reason::Connect, Retryable::NeverSent),
        "{err:?}"
    );
    assert!(class.retryable().allows(Idempotence::Forbidden));
    assert_eq!(layer.handle().counts().refusals, 1);
}

#[tokio::test(start_paused = true)]
async fn per_route_rules_hit_only_their_requests_and_the_first_match_wins() {
    let layer = ChaosLayer::new()
        .metrics(false)
        .rule(
            ChaosRule::new()
                .method("POST")
                .path_prefix("/orders")
                .faults(Faults::none().reset(1.0)),
        )
        .rule(
            ChaosRule::new()
                .path_prefix("/orders")
                .faults(Faults::none().error(1.0, 500)),
        )
        .rule(
            ChaosRule::new()
                .path_prefix("/slow")
                .faults(Faults::none().delay(1.0, Duration::from_millis(30))),
        )
        .rule(
            ChaosRule::new()
                .method("DELETE")
                .faults(Faults::none().refuse(1.0)),
        );
    let mut svc = layer.layer(upstream(Polls::default()));
    let cases = [
        ("POST", "/orders/1", Met::Reset, 0),
        ("GET", "/orders/1", Met::Error(500), 0),
        ("POST", "/order", Met::Passed, 0),
        ("GET", "/slowpoke", Met::Passed, 30),
        ("GET", "/fast", Met::Passed, 0),
        ("DELETE", "/anything", Met::Refused, 0),
        ("PUT", "/", Met::Passed, 0),
    ];
    for (method, path, want, ms) in cases {
        let got = send(&mut svc, req(method, path)).await;
        assert_eq!(got, (want, Duration::from_millis(ms)), "{method} {path}");
    }
    // Requests no rule matched (and the default faults are off) drew nothing.
    assert_eq!(layer.handle().counts().requests, 4);
}

#[tokio::test(start_paused = true)]
async fn off_the_layer_passes_every_request_through_untouched() {
    let mut active = ChaosConfig::default();
    active.faults = Faults::none()
        .error(1.0, 503)
        .delay(1.0, Duration::from_secs(1));
    // The default config, and faults configured but not enabled.
    for config in [ChaosConfig::default(), active] {
        let layer = ChaosLayer::from_config(&config).unwrap();
        let polls = Polls::default();
        let mut svc = layer.layer(upstream(polls.clone()));
        for _ in 0..10_000 {
            let (met, took) = send(&mut svc, req("POST", "/")).await;
            assert_eq!((met, took), (Met::Passed, Duration::ZERO));
        }
        assert_eq!(polls.lock().unwrap().len(), 10_000);
        assert_eq!(layer.handle().counts(), Default::default());
    }
    // Enabled with every rate at 0: nothing either.
    let layer = ChaosLayer::new().faults(Faults::none().error(0.0, 503));
    assert!(
        run(&layer, 1_000)
            .await
            .iter()
            .all(|o| *o == (Met::Passed, false))
    );
    // The inner response comes back as it was.
    let svc = ChaosLayer::new().layer(upstream(Polls::default()));
    let res = svc.oneshot(req("GET", "/")).await.unwrap();
    assert_eq!(res.into_body().into_inner().as_deref(), Some("ok"));
}

#[test]
fn invalid_settings_are_refused_by_field_name() {
    type Edit = fn(&mut ChaosConfig);
    let cases: [(Edit, &str, Option<usize>); 12] = [
        (|c| c.faults.delay_rate = -0.1, "chaos.delay_rate", None),
        (|c| c.faults.error_rate = f64::NAN, "chaos.error_rate", None),
        (|c| c.faults.reset_rate = 1.5, "chaos.reset_rate", None),
        (
            |c| c.faults.refuse_rate = f64::INFINITY,
            "chaos.refuse_rate",
            None,
        ),
        (
            |c| c.faults = Faults::none().error(0.6, 503).reset(0.6),
            "chaos.refuse_rate",
            None,
        ),
        (
            |c| c.faults.delay = Duration::from_secs(7200),
            "chaos.delay",
            None,
        ),
        (|c| c.faults.error_status = 200, "chaos.error_status", None),
        (
            |c| c.faults.error_grpc_code = 0,
            "chaos.error_grpc_code",
            None,
        ),
        (
            |c| c.faults = Faults::none().error_header("bad name", "x"),
            "chaos.error_headers",
            None,
        ),
        (
            |c| c.rules = vec![ChaosRule::new(), ChaosRule::new().method("GE T")],
            "chaos.rules.method",
            Some(1),
        ),
        (
            |c| c.rules = vec![ChaosRule::new().path_prefix("api")],
            "chaos.rules.path_prefix",
            Some(0),
        ),
        (
            |c| c.rules = vec![ChaosRule::new().faults(Faults::none().delay(2.0, Duration::ZERO))],
            "chaos.rules.delay_rate",
            Some(0),
        ),
    ];
    for (edit, setting, index) in cases {
        let mut config = ChaosConfig::default();
        edit(&mut config);
        let err = ChaosLayer::from_config(&config).unwrap_err();
        assert_eq!((err.setting(), err.index()), (setting, index), "{err}");
    }
    assert!(ChaosConfig::default().validate().is_ok());
}

#[test]
fn injected_faults_are_counted_by_kind_in_the_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let counts = metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let layer = ChaosLayer::new().seed(8).service_name("orders").faults(
            Faults::none()
                .delay(0.2, Duration::from_millis(1))
                .error(0.1, 503)
                .reset(0.1)
                .refuse(0.1),
        );
        let mut svc = layer.layer(upstream(Polls::default()));
        rt.block_on(async {
            for _ in 0..500 {
                send(&mut svc, req("GET", "/")).await;
            }
        });
        layer.handle().counts()
    });
    let mut seen = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if key.key().name() != meshless::observe::CHAOS_INJECTED_TOTAL {
            continue;
        }
        let labels: Vec<_> = key.key().labels().map(|l| (l.key(), l.value())).collect();
        let DebugValue::Counter(n) = value else {
            panic!("not a counter")
        };
        assert_eq!(labels[0], ("service", "orders"));
        seen.push((labels[1].1.to_string(), n));
    }
    seen.sort();
    let want = [
        ("delay", counts.delays),
        ("error", counts.errors),
        ("refused", counts.refusals),
        ("reset", counts.resets),
    ];
    let want: Vec<_> = want.iter().map(|(f, n)| (f.to_string(), *n)).collect();
    assert_eq!(seen, want);
    assert!(counts.delays > 0 && counts.injected() > 0);
}
