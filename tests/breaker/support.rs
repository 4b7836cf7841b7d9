//! The scripted upstream and helpers the breaker tests share.

pub(crate) use http::{Request, Response};
pub(crate) use meshless::breaker::{
    Breaker, BreakerConfig, BreakerHandle, BreakerLayer, BreakerState, Rejected, TripReason,
};
pub(crate) use meshless::error::{Kind, Layer};
pub(crate) use meshless::{BoxError, Error};
pub(crate) use std::error::Error as _;
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
pub(crate) use std::sync::{Arc, Mutex};
pub(crate) use std::time::Duration;
pub(crate) use tokio::time::Instant;
pub(crate) use tower::util::BoxCloneService;
pub(crate) use tower::{Layer as _, Service, ServiceExt};

pub(crate) const MS: Duration = Duration::from_millis(1);
pub(crate) const S: Duration = Duration::from_secs(1);

/// The defaults but for the breaks and the ramp (set below), without jitter so that breaks are exact, and at a 50% failure threshold so
/// that the tests count round numbers on either side of it.
pub(crate) fn config() -> BreakerConfig {
    let mut config = BreakerConfig::default();
    config.break_jitter = 0.0;
    config.failure_rate_threshold = 0.5;
    // The breaks and the ramp the tests time (the defaults are 0.5 s doubling to 1 s, and a
    // 0.5 s ramp).
    config.break_duration = S;
    config.max_break_duration = 2 * S;
    config.ramp = S;
    config
}

/// What the upstream does with each request.
#[derive(Debug, Clone)]
struct Script {
    status: u16,
    latency: Duration,
    error: Option<Kind>,
    classified_failure: bool,
}

/// A scripted upstream: answers every request as its script says now, and counts them.
#[derive(Clone)]
pub(crate) struct Upstream {
    script: Arc<Mutex<Script>>,
    received: Arc<AtomicU64>,
}

pub(crate) type Inner = BoxCloneService<Request<()>, Response<()>, BoxError>;
pub(crate) type Svc = Breaker<Inner>;

impl Upstream {
    pub(crate) fn new() -> Self {
        Upstream {
            script: Arc::new(Mutex::new(Script {
                status: 200,
                latency: Duration::ZERO,
                error: None,
                classified_failure: false,
            })),
            received: Arc::default(),
        }
    }

    fn edit(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.script.lock().unwrap());
    }

    pub(crate) fn status(&self, status: u16) {
        self.edit(|s| s.status = status);
    }

    pub(crate) fn latency(&self, latency: Duration) {
        self.edit(|s| s.latency = latency);
    }

    /// Fails every request with a meshless error of `kind` (`None`: answers again).
    pub(crate) fn error(&self, kind: Option<Kind>) {
        self.edit(|s| s.error = kind);
    }

    /// Attaches a failure verdict ([`Classified`](meshless::classify::Classified)) to each
    /// response, as the balancer does.
    pub(crate) fn classified_failure(&self, on: bool) {
        self.edit(|s| s.classified_failure = on);
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    pub(crate) fn service(&self) -> Inner {
        let this = self.clone();
        BoxCloneService::new(tower::service_fn(move |_req: Request<()>| {
            this.received.fetch_add(1, Ordering::SeqCst);
            let script = this.script.lock().unwrap().clone();
            async move {
                tokio::time::sleep(script.latency).await;
                if let Some(kind) = script.error {
                    return Err(BoxError::from(Error::new(kind)));
                }
                let mut res = Response::new(());
                *res.status_mut() = http::StatusCode::from_u16(script.status).unwrap();
                if script.classified_failure {
                    use meshless::classify::{Class, Classified, Reason, Retryable};
                    let class = Class::failure(Reason::Other, Retryable::Never);
                    res.extensions_mut().insert(Classified(class));
                }
                Ok(res)
            }
        }))
    }
}

/// A breaker with `config` over `upstream`, and its handle.
pub(crate) fn breaker(config: &BreakerConfig, upstream: &Upstream) -> (Svc, BreakerHandle) {
    let layer = BreakerLayer::from_config(config).unwrap().metrics(false);
    let handle = layer.handle();
    (layer.layer(upstream.service()), handle)
}

/// Sends one request and waits for its answer.
pub(crate) async fn call(svc: &Svc) -> Result<Response<()>, Error> {
    svc.clone().oneshot(Request::new(())).await
}

/// Sends `n` requests one after the other; returns how many the breaker refused.
pub(crate) async fn calls(svc: &Svc, n: usize) -> usize {
    let mut refused = 0;
    for _ in 0..n {
        if call(svc)
            .await
            .is_err_and(|e| e.kind() == Kind::CircuitOpen)
        {
            refused += 1;
        }
    }
    refused
}

/// The breaker's refusal behind `err`.
pub(crate) fn rejected(err: &Error) -> Rejected {
    assert_eq!(err.kind(), Kind::CircuitOpen, "{err}");
    assert_eq!(err.layer(), Layer::Breaker);
    *err.source()
        .and_then(|s| s.downcast_ref::<Rejected>())
        .expect("the source says why")
}

/// Trips the breaker with 20 failures (the default minimum) at the current instant.
pub(crate) async fn trip(svc: &Svc, upstream: &Upstream, handle: &BreakerHandle) {
    upstream.status(503);
    assert_eq!(calls(svc, 20).await, 0);
    assert_eq!(handle.state(), BreakerState::Open);
}
