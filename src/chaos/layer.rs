//! The chaos layer, its service and its handle.

use super::config::{ChaosConfig, ChaosRule, Faults};
use super::future::{Answer, CHAOS_HEADER, ResponseFuture};
use super::plan::{ChaosCounts, Decision, Outcome, Plan};
use super::telemetry::Telemetry;
use crate::error::{BoxError, ConfigError, Error};
use crate::observe::Settings;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, StatusCode};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Adds fault injection to a service: [`Chaos`] services, which all share one sequence of
/// draws and one set of counts (take the [`handle`](Self::handle) after configuring the
/// layer: each setting starts afresh).
///
/// ```
/// use meshless::chaos::{ChaosLayer, ChaosRule, Faults};
/// use std::time::Duration;
///
/// let layer = ChaosLayer::new()
///     .seed(42)
///     .faults(Faults::none().error(0.1, 503))
///     .rule(ChaosRule::new().path_prefix("/slow").faults(
///         Faults::none().delay(0.5, Duration::from_millis(100)),
///     ));
/// assert_eq!(layer.handle().counts().requests, 0);
/// ```
#[derive(Debug, Clone)]
pub struct ChaosLayer {
    config: ChaosConfig,
    /// The seed in use: the configured one, or the random one drawn for this layer.
    seed: u64,
    observe: Settings,
    /// `None` when the layer injects nothing: its services pass requests straight through.
    plan: Option<Arc<Plan>>,
}

impl ChaosLayer {
    /// Fault injection on, with no fault yet: add them with [`faults`](Self::faults) and
    /// [`rule`](Self::rule).
    ///
    /// ```
    /// let layer = meshless::chaos::ChaosLayer::new();
    /// assert!(layer.config().enabled);
    /// assert!(!layer.config().is_active());
    /// ```
    pub fn new() -> Self {
        let config = ChaosConfig {
            enabled: true,
            ..ChaosConfig::default()
        };
        ChaosLayer::build(config, Settings::default())
    }

    /// Fault injection with these settings, once [`ChaosConfig::validate`] accepts them; with
    /// `enabled: false` (the default) or no rate above 0 the layer passes requests straight
    /// through.
    ///
    /// ```
    /// use meshless::chaos::{ChaosConfig, ChaosLayer};
    /// let layer = ChaosLayer::from_config(&ChaosConfig::default())?;
    /// assert!(!layer.config().enabled);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &ChaosConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(ChaosLayer::build(config.clone(), Settings::default()))
    }

    fn build(config: ChaosConfig, observe: Settings) -> Self {
        let seed = config.seed.unwrap_or_else(rand::random);
        // Out-of-range values from the builder methods are clamped or dropped rather than
        // refused: `from_config` is where settings are checked.
        let plan = Plan::new(&config, seed).map(Arc::new);
        ChaosLayer {
            config,
            seed,
            observe,
            plan,
        }
    }

    fn rebuild(self, config: ChaosConfig) -> Self {
        ChaosLayer::build(config, self.observe)
    }

    /// The settings of this layer, as plain data.
    ///
    /// ```
    /// use meshless::chaos::{ChaosLayer, Faults};
    /// let layer = ChaosLayer::new().faults(Faults::none().reset(0.1));
    /// assert_eq!(layer.config().faults.reset_rate, 0.1);
    /// ```
    pub fn config(&self) -> ChaosConfig {
        self.config.clone()
    }

    /// The seed of the draws: the one configured, or the random one this layer drew (read it
    /// to replay a run that found something).
    ///
    /// ```
    /// assert_eq!(meshless::chaos::ChaosLayer::new().seed(9).seed_in_use(), 9);
    /// ```
    pub fn seed_in_use(&self) -> u64 {
        self.seed
    }

    /// Turns injection on or off (on after [`new`](Self::new)).
    ///
    /// ```
    /// use meshless::chaos::{ChaosLayer, Faults};
    /// let layer = ChaosLayer::new().faults(Faults::none().reset(1.0)).enabled(false);
    /// assert!(!layer.config().is_active());
    /// ```
    pub fn enabled(self, enabled: bool) -> Self {
        let config = ChaosConfig {
            enabled,
            ..self.config.clone()
        };
        self.rebuild(config)
    }

    /// Seeds the draws, so that a run can be replayed: the same seed and the same sequence of
    /// requests inject the same faults. By default the seed is random.
    ///
    /// ```
    /// let layer = meshless::chaos::ChaosLayer::new().seed(42);
    /// ```
    pub fn seed(self, seed: u64) -> Self {
        let config = ChaosConfig {
            seed: Some(seed),
            ..self.config.clone()
        };
        self.rebuild(config)
    }

    /// The faults of requests no rule matches.
    ///
    /// ```
    /// use meshless::chaos::{ChaosLayer, Faults};
    /// let layer = ChaosLayer::new().faults(Faults::none().refuse(0.2));
    /// ```
    pub fn faults(self, faults: Faults) -> Self {
        let config = ChaosConfig {
            faults,
            ..self.config.clone()
        };
        self.rebuild(config)
    }

    /// Adds a per-route rule after those already there: the first rule that matches a request
    /// decides its faults.
    ///
    /// ```
    /// use meshless::chaos::{ChaosLayer, ChaosRule, Faults};
    /// let layer = ChaosLayer::new()
    ///     .rule(ChaosRule::new().method("POST").faults(Faults::none().reset(0.1)));
    /// assert_eq!(layer.config().rules.len(), 1);
    /// ```
    pub fn rule(self, rule: ChaosRule) -> Self {
        let mut config = self.config.clone();
        config.rules.push(rule);
        self.rebuild(config)
    }

    /// The `service` label of this layer's metrics (default `"default"`).
    ///
    /// ```
    /// let layer = meshless::chaos::ChaosLayer::new().service_name("payments");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.observe.set_service(name);
        self
    }

    /// Records metrics through the [`metrics`] facade (default `true`).
    ///
    /// ```
    /// let layer = meshless::chaos::ChaosLayer::new().metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.observe.metrics = enabled;
        self
    }

    /// A handle on the counts every service of this layer adds to.
    ///
    /// ```
    /// let handle = meshless::chaos::ChaosLayer::new().handle();
    /// assert_eq!(handle.counts().injected(), 0);
    /// ```
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle {
            plan: self.plan.clone(),
        }
    }
}

impl Default for ChaosLayer {
    fn default() -> Self {
        ChaosLayer::new()
    }
}

impl<S> Layer<S> for ChaosLayer {
    type Service = Chaos<S>;

    fn layer(&self, inner: S) -> Self::Service {
        if let Some(plan) = &self.plan {
            // Registered here rather than when configured, so that a recorder installed in
            // between gets them.
            if plan.telemetry.get().is_none() {
                if let Some(telemetry) = Telemetry::register(&self.observe) {
                    let _ = plan.telemetry.set(telemetry);
                }
            }
        }
        Chaos {
            inner,
            plan: self.plan.clone(),
        }
    }
}

/// What a chaos layer injected so far.
///
/// ```
/// use meshless::chaos::{ChaosLayer, Faults};
/// let handle = ChaosLayer::new().faults(Faults::none().error(0.5, 503)).handle();
/// assert_eq!(handle.counts().errors, 0);
/// ```
#[derive(Debug, Clone)]
pub struct ChaosHandle {
    plan: Option<Arc<Plan>>,
}

impl ChaosHandle {
    /// The counts since the layer was configured (zero when it injects nothing).
    ///
    /// ```
    /// assert_eq!(meshless::chaos::ChaosLayer::new().handle().counts().resets, 0);
    /// ```
    pub fn counts(&self) -> ChaosCounts {
        self.plan
            .as_ref()
            .map_or_else(ChaosCounts::default, |plan| plan.counts())
    }
}

/// Injects delays, error responses and aborts into the requests it passes on (see the
/// [module](super) docs).
///
/// ```
/// use meshless::chaos::{ChaosLayer, Faults};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let svc = ChaosLayer::new().faults(Faults::none().error(1.0, 503)).layer(service_fn(
///     |_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new("hello")) },
/// ));
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(res.status(), 503);
/// assert!(res.body().is_injected());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Chaos<S> {
    inner: S,
    /// `None` when nothing is injected: a request then costs one branch.
    plan: Option<Arc<Plan>>,
}

impl<S> Chaos<S> {
    /// The wrapped service.
    ///
    /// ```
    /// # use tower::{Layer, service_fn};
    /// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::chaos::ChaosLayer::new().layer(svc);
    /// let _inner = svc.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// # use tower::{Layer, service_fn};
    /// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let inner = meshless::chaos::ChaosLayer::new().layer(svc).into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Chaos<S>
where
    S: Service<Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<super::ChaosBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(plan) = &self.plan else {
            return ResponseFuture::call(self.inner.call(req), None);
        };
        let Some(decision) = plan.decide(&req) else {
            return ResponseFuture::call(self.inner.call(req), None);
        };
        let delay = decision.delay.map(|d| Box::pin(tokio::time::sleep(d)));
        match decision.outcome {
            // The inner service is called now, so that the readiness it granted is used, and
            // its future polled once the delay is over: a lazy future (hyper's) sends nothing
            // before.
            Outcome::Pass => ResponseFuture::call(self.inner.call(req), delay),
            // Not passed on: the inner service's readiness stays granted for the next call.
            Outcome::Error => {
                ResponseFuture::answer(Answer::Respond(respond(&decision, &req)), delay)
            }
            Outcome::Reset => ResponseFuture::answer(Answer::Abort(super::Fault::Reset), delay),
            Outcome::Refused => ResponseFuture::answer(Answer::Abort(super::Fault::Refused), delay),
        }
    }
}

/// The injected error response for this request: the configured status and headers, or for a
/// gRPC request a trailers-only answer with the configured gRPC status.
fn respond<B>(decision: &Decision<'_>, req: &Request<B>) -> http::Response<()> {
    let faults = decision.faults;
    let mut res = http::Response::new(());
    *res.headers_mut() = faults.headers.clone();
    let grpc = req
        .headers()
        .get(CONTENT_TYPE)
        .filter(|ct| ct.as_bytes().starts_with(b"application/grpc"));
    match grpc {
        Some(content_type) => {
            *res.status_mut() = StatusCode::OK;
            res.headers_mut().insert(CONTENT_TYPE, content_type.clone());
            res.headers_mut()
                .insert("grpc-status", faults.grpc_code.clone());
            res.headers_mut()
                .insert("grpc-message", HeaderValue::from_static("injected fault"));
        }
        None => *res.status_mut() = faults.status,
    }
    res.headers_mut()
        .insert(CHAOS_HEADER, HeaderValue::from_static("error"));
    res
}
