//! The hedge layer and service.

use super::config::HedgeConfig;
use super::delay::Delay;
use super::future::ResponseFuture;
use super::telemetry::{HedgeStats, Telemetry};
use crate::budget::Budget;
use crate::classify::{Classified, Idempotence, Retryable};
use crate::error::{BoxError, ConfigError, Error};
use crate::observe::Settings;
use crate::retry::{Idempotency, ReplayBody};
use http::{Request, Response};
use http_body::Body;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// The window the extra-load cap counts requests and hedges over: the retry budget's default
/// ttl, so that both caps forget at the same pace.
const EXTRA_LOAD_WINDOW: Duration = Duration::from_secs(10);

/// Adds hedging to a service: [`Hedge`] services.
///
/// Give it the [`Budget`] the [`RetryLayer`](crate::retry::RetryLayer) above it has (a clone:
/// clones share their tokens), so that retries and hedges together stay within its bound. The
/// retry layer deposits once per request; the hedge layer only withdraws, one token a hedge.
///
/// ```
/// use meshless::{budget::Budget, hedge::HedgeLayer, retry::RetryLayer};
/// use tower::ServiceBuilder;
///
/// let budget = Budget::default();
/// let stack = ServiceBuilder::new()
///     .layer(RetryLayer::new(budget.clone()))
///     .layer(HedgeLayer::new(budget));
/// # let _ = stack;
/// ```
#[derive(Debug, Clone)]
pub struct HedgeLayer {
    budget: Budget,
    /// Finagle's `maxExtraLoad` as a budget of its own: every request deposits, every hedge
    /// withdraws, at the configured ratio, over a reserve of `min_per_second`.
    extra: Budget,
    config: HedgeConfig,
    idempotency: Idempotency,
    stats: Arc<HedgeStats>,
    observe: Settings,
    routes: crate::primitives::route_policy::Switch,
}

impl HedgeLayer {
    /// Hedging under `budget` with the [defaults](HedgeConfig): one hedge after the p95 of the
    /// last 30 s of first attempts' waits (once there are 100), at most 5% extra load over a reserve
    /// of 10 hedges a second.
    ///
    /// ```
    /// let layer = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default());
    /// ```
    pub fn new(budget: Budget) -> Self {
        // The defaults pass validation (a unit test checks), so this never falls back.
        Self::from_config(budget.clone(), &HedgeConfig::default()).unwrap_or_else(|_| {
            HedgeLayer::build(budget, HedgeConfig::default(), Budget::default())
        })
    }

    /// Hedging under `budget` with these settings, once [`HedgeConfig::validate`] accepts them.
    ///
    /// ```
    /// use meshless::hedge::{HedgeConfig, HedgeDelay, HedgeLayer};
    /// let mut config = HedgeConfig::default();
    /// config.delay = HedgeDelay::Fixed(std::time::Duration::from_millis(10));
    /// let layer = HedgeLayer::from_config(meshless::budget::Budget::default(), &config)?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(budget: Budget, config: &HedgeConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let extra = Budget::builder()
            .ttl(EXTRA_LOAD_WINDOW)
            .min_per_second(config.min_per_second)
            .ratio(config.max_extra_load)
            .build()
            .map_err(|e| {
                let field = if e.setting().contains("min_per_second") {
                    "hedge.min_per_second"
                } else {
                    "hedge.max_extra_load"
                };
                ConfigError::new(field, e.to_string())
            })?;
        Ok(HedgeLayer::build(budget, config.clone(), extra))
    }

    fn build(budget: Budget, config: HedgeConfig, extra: Budget) -> Self {
        let delay = Delay::new(config.delay, config.max_extra_load, Instant::now());
        HedgeLayer {
            budget,
            extra,
            config,
            idempotency: Idempotency::default(),
            stats: Arc::new(HedgeStats::new(delay)),
            observe: Settings::default(),
            routes: crate::primitives::route_policy::Switch::default(),
        }
    }

    /// Reads a request's route for whether, how often and after how long to hedge it.
    pub(crate) fn routes(mut self, routes: crate::primitives::route_policy::Switch) -> Self {
        self.routes = routes;
        self
    }

    /// The settings of this layer, as plain data.
    ///
    /// ```
    /// use meshless::hedge::{HedgeConfig, HedgeLayer};
    /// let layer = HedgeLayer::new(meshless::budget::Budget::default());
    /// assert_eq!(layer.config(), HedgeConfig::default());
    /// ```
    pub fn config(&self) -> HedgeConfig {
        self.config.clone()
    }

    /// Which requests are safe to repeat (default: the retry layer's defaults — GET, HEAD,
    /// OPTIONS, PUT, DELETE, TRACE, an `Idempotency-Key`, or an
    /// [`Idempotent(true)`](crate::retry::Idempotent) marking). Give it the rules the retry
    /// layer has. Only these requests are hedged: a hedge always reaches a server.
    ///
    /// ```
    /// # let layer = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.idempotency(meshless::retry::Idempotency::default().all(true));
    /// ```
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = idempotency;
        self
    }

    /// The `service` label of this layer's metrics (default `"default"`).
    ///
    /// ```
    /// # let layer = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.service_name("search");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.observe.set_service(name);
        self
    }

    /// Records metrics through the [`metrics`] facade (default `true`); registered when the
    /// layer builds a service. [`stats`](Self::stats) and tracing are not affected.
    ///
    /// ```
    /// # let layer = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.observe.metrics = enabled;
        self
    }

    /// The counters and the delay of every service this layer builds (they share one latency
    /// window and one extra-load cap).
    ///
    /// ```
    /// let layer = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default());
    /// assert_eq!(layer.stats().hedges(), 0);
    /// ```
    pub fn stats(&self) -> Arc<HedgeStats> {
        self.stats.clone()
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = Hedge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let config = &self.config;
        Hedge {
            inner,
            shared: Arc::new(Shared {
                enabled: config.enabled && config.max_hedges > 0,
                budget: self.budget.clone(),
                extra: self.extra.clone(),
                max_hedges: config.max_hedges,
                idempotency: self.idempotency.clone(),
                non_fatal: config.non_fatal_statuses.clone(),
                service: self.observe.service.clone(),
                telemetry: Telemetry::new(self.stats.clone(), &self.observe),
                routes: self.routes,
            }),
        }
    }
}

/// What every request of a [`Hedge`] service reads.
pub(super) struct Shared {
    pub(super) enabled: bool,
    pub(super) budget: Budget,
    pub(super) extra: Budget,
    pub(super) max_hedges: u32,
    idempotency: Idempotency,
    non_fatal: Vec<u16>,
    pub(super) service: metrics::SharedString,
    pub(super) telemetry: Telemetry,
    routes: crate::primitives::route_policy::Switch,
}

impl Shared {
    /// Whether an answer lets the other attempts run on instead of ending the request: a
    /// status listed as non-fatal, or a failure the balancer classified as retryable.
    pub(super) fn non_fatal<RB>(&self, res: &Response<RB>) -> bool {
        if self.non_fatal.contains(&res.status().as_u16()) {
            return true;
        }
        if res.extensions().is_empty() {
            return false;
        }
        res.extensions()
            .get::<Classified>()
            .is_some_and(|c| c.0.is_failure() && c.0.retryable() != Retryable::Never)
    }
}

/// Sends a request again, to another endpoint, when it has no answer after the hedge delay;
/// the first good answer wins and the others are cancelled.
///
/// The wrapped service receives `Request<ReplayBody<B>>`, the body type the
/// [retry layer](crate::retry::Retry) gives it; a request is hedged only when
///
/// - it is safe to repeat by the [idempotency rules](HedgeLayer::idempotency);
/// - the delay is known (a fixed one, or a percentile with its minimum of samples); a request
///   sent before it is known is hedged once it is, the delay counted from its own send;
/// - its body has been read whole into the replay buffer by then (a body still streaming, or
///   larger than the replay cap, is not hedged: a hedge needs the same bytes);
/// - the request's [`RequestDeadline`](crate::deadline::RequestDeadline), if any, leaves at
///   least the delay again (what an attempt typically takes at the percentile);
/// - the extra-load cap and then the shared retry budget each give a token.
///
/// Each attempt carries one [`AvoidEndpoints`](crate::balance::AvoidEndpoints) list, so a
/// [`Balance`](crate::balance::Balance) below sends each hedge to an endpoint the others did not
/// go to, when one is ready.
///
/// An answer with a status in `non_fatal_statuses` (502, 503, 504), a response the balancer
/// classified as a retryable failure, or an error, does not end the request while another
/// attempt runs; when none does, the last such failure is returned (a response rather than an
/// error), and the retry layer above decides what next. Unlike gRPC A6, such a failure does not
/// send the next hedge at once: retries have backoff and pushback, hedges do not.
///
/// ```
/// use meshless::{budget::Budget, hedge::Hedge, retry::ReplayBody};
/// use tower::{ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let svc = Hedge::new(
///     service_fn(|_: http::Request<ReplayBody<String>>| async {
///         Ok::<_, std::io::Error>(http::Response::new("hello"))
///     }),
///     Budget::default(),
/// );
/// let req = http::Request::new(ReplayBody::new(String::new(), 1024));
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(*res.body(), "hello");
/// # });
/// ```
#[derive(Clone)]
pub struct Hedge<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Hedge<S> {
    /// Wraps `inner` with the default hedging under `budget`.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<meshless::retry::ReplayBody<String>>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::hedge::Hedge::new(svc, meshless::budget::Budget::default());
    /// ```
    pub fn new(inner: S, budget: Budget) -> Self {
        HedgeLayer::new(budget).layer(inner)
    }

    /// The wrapped service.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<meshless::retry::ReplayBody<String>>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::hedge::Hedge::new(svc, meshless::budget::Budget::default());
    /// let _inner = svc.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<meshless::retry::ReplayBody<String>>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let inner = meshless::hedge::Hedge::new(svc, meshless::budget::Budget::default()).into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The counters and delay shared with the layer that built this service.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<meshless::retry::ReplayBody<String>>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::hedge::Hedge::new(svc, meshless::budget::Budget::default());
    /// assert_eq!(svc.stats().requests(), 0);
    /// ```
    pub fn stats(&self) -> Arc<HedgeStats> {
        self.shared.telemetry.stats.clone()
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Hedge<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("max_hedges", &self.shared.max_hedges)
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<ReplayBody<B>>> for Hedge<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service)
    }

    fn call(&mut self, mut req: Request<ReplayBody<B>>) -> Self::Future {
        let shared = &self.shared;
        let (enabled, max_hedges, fixed) = match shared.routes.route(&req) {
            None => (shared.enabled, shared.max_hedges, None),
            Some(route) => {
                let plan = route.0.hedge;
                (plan.enabled, plan.max_hedges, plan.delay)
            }
        };
        if !enabled {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        shared.extra.deposit();
        let telemetry = &shared.telemetry;
        telemetry.request();
        let delay = &telemetry.stats.delay;
        // A request whose caller retries it is sent once by this client, as the retry layer
        // sends it: a hedge is a second send.
        let hedgeable = !req.body().is_capped()
            && !crate::retry::CallerRetries::of(&req)
            && if shared.idempotency.idempotence(&req) == Idempotence::Idempotent {
                true
            } else {
                if delay.get().is_some() {
                    telemetry.refused(super::telemetry::Refusal::NotIdempotent);
                }
                false
            };
        if !hedgeable {
            // The clock is read only when the answer is timed for the percentile.
            let started = delay.learns().then(Instant::now);
            return ResponseFuture::single(self.inner.call(req), shared.clone(), started);
        }
        let now = Instant::now();
        // The head is copied before the list goes in: the hedges get the list apart, so that a
        // request with no extensions does not have its map copied as well.
        let known = match fixed {
            Some(delay) => super::delay::Known::Now(delay),
            None => delay.known(),
        };
        let race = super::future::Race::new(self.inner.clone(), &req, known, max_hedges);
        req.extensions_mut().insert(race.avoid());
        let first = self.inner.call(req);
        ResponseFuture::race(first, shared.clone(), now, race)
    }
}
