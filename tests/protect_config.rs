//! Contracts found by review: hostile settings (NaN, infinities, zero, `Duration::MAX`)
//! through every `from_config` and `ClientBuilder::build`: a `ConfigError` naming the field,
//! or a working layer — never a panic, also once requests flow, trip and recover.

use http::{Request, Response};
use meshless::breaker::{BreakerConfig, BreakerLayer};
use meshless::limit::{AimdConfig, Algorithm, GradientConfig, LimitConfig, LimitLayer};
use meshless::throttle::{ThrottleConfig, ThrottleLayer};
use std::convert::Infallible;
use std::time::Duration;
use tower::{Layer, ServiceExt, service_fn};

const F: [f64; 6] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -1.0, 1e300];
const D: [Duration; 3] = [Duration::ZERO, Duration::MAX, Duration::from_nanos(1)];

fn breakers() -> Vec<(&'static str, BreakerConfig)> {
    let mut out = Vec::new();
    for f in F {
        let mut c = BreakerConfig::default();
        c.failure_rate_threshold = f;
        out.push(("breaker.failure_rate_threshold", c));
        let mut c = BreakerConfig::default();
        c.slow_call_rate_threshold = f;
        out.push(("breaker.slow_call_rate_threshold", c));
        let mut c = BreakerConfig::default();
        c.break_jitter = f;
        out.push(("breaker.break_jitter", c));
        let mut c = BreakerConfig::default();
        c.ramp_start_share = f;
        out.push(("breaker.ramp_start_share", c));
    }
    for d in D {
        let mut c = BreakerConfig::default();
        c.window = d;
        out.push(("breaker.window", c));
        let mut c = BreakerConfig::default();
        c.slow_call_duration = Some(d);
        out.push(("breaker.slow_call_duration", c));
        let mut c = BreakerConfig::default();
        c.break_duration = d;
        c.max_break_duration = Duration::MAX;
        out.push(("breaker.break_duration", c));
        let mut c = BreakerConfig::default();
        c.max_break_duration = d;
        out.push(("breaker.max_break_duration", c));
        let mut c = BreakerConfig::default();
        c.ramp = d;
        out.push(("breaker.ramp", c));
        let mut c = BreakerConfig::default();
        c.probe_timeout = d;
        out.push(("breaker.probe_timeout", c));
    }
    for n in [0, 1, 63, 64, u32::MAX] {
        let mut c = BreakerConfig::default();
        c.half_open_probes = n;
        out.push(("breaker.half_open_probes", c));
        let mut c = BreakerConfig::default();
        c.minimum_calls = n;
        out.push(("breaker.minimum_calls", c));
        let mut c = BreakerConfig::default();
        c.consecutive_failures = n;
        out.push(("breaker.consecutive_failures", c));
        let mut c = BreakerConfig::default();
        c.max_routes = n;
        out.push(("breaker.max_routes", c));
    }
    out
}

fn limits() -> Vec<(&'static str, LimitConfig)> {
    let mut out = Vec::new();
    let with = |a: Algorithm, w: Duration| {
        let mut c = LimitConfig::default();
        c.algorithm = a;
        c.max_wait = w;
        c
    };
    for f in F {
        let mut g = GradientConfig::default();
        g.smoothing = f;
        out.push((
            "limit.smoothing",
            with(Algorithm::Gradient(g), Duration::ZERO),
        ));
        let mut g = GradientConfig::default();
        g.tolerance = f;
        out.push((
            "limit.tolerance",
            with(Algorithm::Gradient(g), Duration::ZERO),
        ));
        let mut a = AimdConfig::default();
        a.backoff = f;
        out.push(("limit.backoff", with(Algorithm::Aimd(a), Duration::ZERO)));
    }
    for d in D {
        let mut g = GradientConfig::default();
        g.window = d;
        out.push(("limit.window", with(Algorithm::Gradient(g), Duration::MAX)));
        let mut g = GradientConfig::default();
        g.recalculation = d;
        out.push(("limit.recalculation", with(Algorithm::Gradient(g), d)));
        let mut a = AimdConfig::default();
        a.timeout = d;
        out.push(("limit.timeout", with(Algorithm::Aimd(a), d)));
        out.push(("limit.max_wait", with(Algorithm::Fixed { max: 1 }, d)));
        out.push(("limit.max_wait", with(Algorithm::Unlimited, d)));
    }
    for n in [0, 1, u32::MAX] {
        out.push((
            "limit.max",
            with(Algorithm::Fixed { max: n }, Duration::MAX),
        ));
        let mut g = GradientConfig::default();
        (g.initial, g.min, g.max) = (n, n, n);
        out.push(("limit.min", with(Algorithm::Gradient(g), Duration::ZERO)));
        let mut g = GradientConfig::default();
        g.min_samples = n;
        g.long_window = n;
        out.push((
            "limit.min_samples",
            with(Algorithm::Gradient(g), Duration::ZERO),
        ));
        let mut a = AimdConfig::default();
        (a.initial, a.min, a.max) = (n, n, n);
        out.push(("limit.min", with(Algorithm::Aimd(a), Duration::ZERO)));
    }
    out
}

fn throttles() -> Vec<(&'static str, ThrottleConfig)> {
    let mut out = Vec::new();
    for f in F {
        let mut c = ThrottleConfig::default();
        c.enabled = true;
        c.k = f;
        out.push(("throttle.k", c));
        let mut c = ThrottleConfig::default();
        c.enabled = true;
        c.max_probability = f;
        out.push(("throttle.max_probability", c));
    }
    for d in D {
        let mut c = ThrottleConfig::default();
        c.enabled = true;
        c.window = d;
        out.push(("throttle.window", c));
    }
    out
}

fn answer(
    status: u16,
) -> impl Fn(
    Request<()>,
) -> std::future::Ready<Result<Response<http_body_util::Empty<bytes::Bytes>>, Infallible>>
+ Clone {
    move |_req| {
        std::future::ready(Ok(Response::builder()
            .status(status)
            .body(http_body_util::Empty::new())
            .unwrap()))
    }
}

#[tokio::test(start_paused = true)]
async fn hostile_settings_error_or_work_never_panic() {
    for (field, c) in breakers() {
        match BreakerLayer::from_config(&c) {
            Err(e) => assert!(e.setting().starts_with("breaker."), "{field}: {e}"),
            Ok(layer) => {
                let svc = layer.metrics(false).layer(service_fn(answer(503)));
                for round in 0..3 {
                    for _ in 0..100 {
                        let _ = svc.clone().oneshot(Request::new(())).await;
                    }
                    tokio::time::advance(Duration::from_secs(3600 * (round + 1))).await;
                }
                let _ = svc.clone().oneshot(Request::new(())).await;
            }
        }
        let built = meshless::http::Client::builder()
            .endpoints(["127.0.0.1:1"])
            .breaker(c)
            .build();
        if let Err(e) = built {
            assert!(e.setting().starts_with("breaker."), "{field}: {e}");
        }
    }
    for (field, c) in limits() {
        match LimitLayer::from_config(&c) {
            Err(e) => assert!(e.setting().starts_with("limit."), "{field}: {e}"),
            Ok(layer) => {
                let svc = layer.layer(service_fn(move |_req: Request<()>| async move {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
                }));
                let mut tasks = Vec::new();
                for _ in 0..300 {
                    let svc = svc.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut req = Request::new(());
                        req.extensions_mut()
                            .insert(meshless::deadline::RequestDeadline::after(
                                Duration::from_millis(50),
                            ));
                        let _ = svc.oneshot(req).await;
                    }));
                    tokio::time::advance(Duration::from_micros(300)).await;
                }
                for t in tasks {
                    t.await.unwrap_or_else(|e| panic!("{field}: {c:?}: {e}"));
                }
            }
        }
        let built = meshless::http::Client::builder()
            .endpoints(["127.0.0.1:1"])
            .limit(c)
            .build();
        if let Err(e) = built {
            assert!(e.setting().starts_with("limit."), "{field}: {e}");
        }
    }
    for (field, c) in throttles() {
        match ThrottleLayer::from_config(&c) {
            Err(e) => assert!(e.setting().starts_with("throttle."), "{field}: {e}"),
            Ok(layer) => {
                let svc = layer.metrics(false).layer(service_fn(answer(503)));
                for _ in 0..200 {
                    let _ = svc.clone().oneshot(Request::new(())).await;
                }
                tokio::time::advance(Duration::from_secs(3600)).await;
                let _ = svc.clone().oneshot(Request::new(())).await;
            }
        }
        let built = meshless::http::Client::builder()
            .endpoints(["127.0.0.1:1"])
            .throttle(c)
            .build();
        if let Err(e) = built {
            assert!(e.setting().starts_with("throttle."), "{field}: {e}");
        }
    }
}
