//! The throttle layer, its service and its handle.

use super::config::{DEFAULT_K, DEFAULT_MAX_PROBABILITY, DEFAULT_WINDOW, ThrottleConfig};
use super::future::ResponseFuture;
use super::state::{Shared, ThrottleCounts};
use super::telemetry::Telemetry;
use crate::classify::{Classifier, Classify};
use crate::error::{BoxError, ConfigError, Error};
use crate::observe::Settings;
use http::Request;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Adds client-side adaptive throttling to a service: [`Throttle`] services, which all share
/// one window of counts (take the [`handle`](Self::handle) after configuring the layer: each
/// setting starts a fresh window).
///
/// ```
/// use meshless::throttle::ThrottleLayer;
/// use std::time::Duration;
///
/// let layer = ThrottleLayer::new().k(1.5).window(Duration::from_secs(60)).max_probability(0.9);
/// let handle = layer.handle();
/// assert_eq!(handle.probability(), 0.0);
/// ```
#[derive(Debug, Clone)]
pub struct ThrottleLayer<C = Classifier> {
    config: ThrottleConfig,
    seed: Option<u64>,
    classifier: C,
    observe: Settings,
    /// `None` when the layer is disabled: its services pass requests straight through.
    shared: Option<Arc<Shared>>,
}

impl ThrottleLayer<Classifier> {
    /// Throttling on, with the defaults: K = 2, a 2-minute window, refusals capped at 80%.
    ///
    /// ```
    /// let layer = meshless::throttle::ThrottleLayer::new();
    /// assert!(layer.config().enabled);
    /// ```
    pub fn new() -> Self {
        let config = ThrottleConfig {
            enabled: true,
            ..ThrottleConfig::default()
        };
        ThrottleLayer::build(config, None, Classifier::default(), Settings::default())
    }

    /// Throttling with these settings, once [`ThrottleConfig::validate`] accepts them; with
    /// `enabled: false` (the default) the layer passes requests straight through.
    ///
    /// ```
    /// use meshless::throttle::{ThrottleConfig, ThrottleLayer};
    /// let layer = ThrottleLayer::from_config(&ThrottleConfig::default())?;
    /// assert!(!layer.config().enabled);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &ThrottleConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(ThrottleLayer::build(
            config.clone(),
            None,
            Classifier::default(),
            Settings::default(),
        ))
    }
}

impl Default for ThrottleLayer<Classifier> {
    fn default() -> Self {
        ThrottleLayer::new()
    }
}

impl<C> ThrottleLayer<C> {
    fn build(config: ThrottleConfig, seed: Option<u64>, classifier: C, observe: Settings) -> Self {
        let shared = config.enabled.then(|| {
            // Out-of-range values from the builder methods are clamped rather than refused:
            // `from_config` is where settings are checked.
            let k = if config.k.is_finite() {
                config.k.max(1.0)
            } else {
                DEFAULT_K
            };
            let max = if config.max_probability.is_nan() {
                DEFAULT_MAX_PROBABILITY
            } else {
                config.max_probability.clamp(0.0, 1.0)
            };
            let window = if config.window.is_zero() {
                DEFAULT_WINDOW
            } else {
                config.window
            };
            let seed = seed.unwrap_or_else(rand::random);
            Arc::new(Shared::new(k, window, max, seed))
        });
        ThrottleLayer {
            config,
            seed,
            classifier,
            observe,
            shared,
        }
    }

    fn rebuild(self, config: ThrottleConfig) -> Self {
        ThrottleLayer::build(config, self.seed, self.classifier, self.observe)
    }

    /// The settings of this layer, as plain data.
    ///
    /// ```
    /// use meshless::throttle::ThrottleLayer;
    /// assert_eq!(ThrottleLayer::new().config().k, 2.0);
    /// ```
    pub fn config(&self) -> ThrottleConfig {
        self.config.clone()
    }

    /// Turns throttling on or off (on after [`new`](ThrottleLayer::new)).
    ///
    /// ```
    /// let layer = meshless::throttle::ThrottleLayer::new().enabled(false);
    /// assert_eq!(layer.handle().probability(), 0.0);
    /// ```
    pub fn enabled(self, enabled: bool) -> Self {
        let config = ThrottleConfig {
            enabled,
            ..self.config.clone()
        };
        self.rebuild(config)
    }

    /// The multiplier of accepted requests (default 2; at least 1).
    ///
    /// ```
    /// let layer = meshless::throttle::ThrottleLayer::new().k(1.1);
    /// ```
    pub fn k(self, k: f64) -> Self {
        let config = ThrottleConfig {
            k,
            ..self.config.clone()
        };
        self.rebuild(config)
    }

    /// How far back requests and accepts are counted (default 2 minutes): far longer than the
    /// worst latency.
    ///
    /// ```
    /// let layer = meshless::throttle::ThrottleLayer::new().window(std::time::Duration::from_secs(30));
    /// ```
    pub fn window(self, window: Duration) -> Self {
        let config = ThrottleConfig {
            window,
            ..self.config.clone()
        };
        self.rebuild(config)
    }

    /// The highest refusal probability (default 0.8, between 0 and 1).
    ///
    /// ```
    /// let layer = meshless::throttle::ThrottleLayer::new().max_probability(0.5);
    /// ```
    pub fn max_probability(self, max: f64) -> Self {
        let config = ThrottleConfig {
            max_probability: max,
            ..self.config.clone()
        };
        self.rebuild(config)
    }

    /// Seeds the random draws that decide refusals, so that a run can be replayed: the same
    /// seed and the same sequence of requests refuse the same ones. By default the seed is
    /// random.
    ///
    /// ```
    /// let layer = meshless::throttle::ThrottleLayer::new().seed(42);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        let config = self.config.clone();
        self.rebuild(config)
    }

    /// Classifies answers with `classifier` instead of the default. A failed response that
    /// carries a [`Classified`](crate::classify::Classified) verdict is read, not classified
    /// again.
    ///
    /// ```
    /// use meshless::classify::Classifier;
    /// let layer = meshless::throttle::ThrottleLayer::new().classifier(Classifier::default());
    /// ```
    pub fn classifier<C2: Classify>(self, classifier: C2) -> ThrottleLayer<C2> {
        ThrottleLayer {
            config: self.config,
            seed: self.seed,
            classifier,
            observe: self.observe,
            shared: self.shared,
        }
    }

    /// The `service` label of this layer's metrics (default `"default"`).
    ///
    /// ```
    /// let layer = meshless::throttle::ThrottleLayer::new().service_name("payments");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.observe.set_service(name);
        self
    }

    /// Records metrics through the [`metrics`] facade (default `true`).
    ///
    /// ```
    /// let layer = meshless::throttle::ThrottleLayer::new().metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.observe.metrics = enabled;
        self
    }

    /// A handle on the window every service of this layer counts in.
    ///
    /// ```
    /// let handle = meshless::throttle::ThrottleLayer::new().handle();
    /// assert_eq!(handle.rejected(), 0);
    /// ```
    pub fn handle(&self) -> ThrottleHandle {
        ThrottleHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S, C: Clone> Layer<S> for ThrottleLayer<C> {
    type Service = Throttle<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        if let Some(shared) = &self.shared {
            // Registered here rather than when configured, so that a recorder installed in
            // between gets them.
            if let Some(telemetry) = Telemetry::register(&self.observe) {
                let _ = shared.telemetry.set(telemetry);
            }
        }
        Throttle {
            inner,
            engaged: self.shared.as_ref().map(|shared| {
                Arc::new(Engaged {
                    shared: shared.clone(),
                    classifier: self.classifier.clone(),
                })
            }),
        }
    }
}

/// What a throttle sees: the refusal probability now, and the counts it comes from.
///
/// ```
/// use meshless::throttle::ThrottleLayer;
/// let handle = ThrottleLayer::new().handle();
/// assert_eq!(handle.counts().requests, 0);
/// assert_eq!(handle.probability(), 0.0);
/// ```
#[derive(Debug, Clone)]
pub struct ThrottleHandle {
    shared: Option<Arc<Shared>>,
}

impl ThrottleHandle {
    /// The probability that a request made now is refused: `max(0, (requests − in_flight −
    /// K·accepts) / (requests + 1))`, capped; 0 when throttling is off.
    ///
    /// ```
    /// assert_eq!(meshless::throttle::ThrottleLayer::new().handle().probability(), 0.0);
    /// ```
    pub fn probability(&self) -> f64 {
        match &self.shared {
            Some(shared) => shared.probability(shared.counts(Instant::now())),
            None => 0.0,
        }
    }

    /// The requests and accepts in the window now (zero when throttling is off).
    ///
    /// ```
    /// assert_eq!(meshless::throttle::ThrottleLayer::new().handle().counts().accepts, 0);
    /// ```
    pub fn counts(&self) -> ThrottleCounts {
        match &self.shared {
            Some(shared) => shared.counts(Instant::now()),
            None => ThrottleCounts::default(),
        }
    }

    /// Requests refused since the layer was configured.
    ///
    /// ```
    /// assert_eq!(meshless::throttle::ThrottleLayer::new().handle().rejected(), 0);
    /// ```
    pub fn rejected(&self) -> u64 {
        self.shared.as_ref().map_or(0, |shared| shared.rejected())
    }
}

/// Refuses requests locally, with the probability the upstream's recent refusals give, before
/// they reach an upstream that is already refusing too many (see the [module](super) docs).
///
/// ```
/// use meshless::throttle::ThrottleLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let svc = ThrottleLayer::new().layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::io::Error>(http::Response::new("hello"))
/// }));
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(*res.body(), "hello");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Throttle<S, C = Classifier> {
    inner: S,
    /// `None` when throttling is off: a request then costs one branch.
    engaged: Option<Arc<Engaged<C>>>,
}

/// What a counted request's future needs at its end, behind one pointer.
#[derive(Debug)]
pub(crate) struct Engaged<C> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
}

impl<S, C> Throttle<S, C> {
    /// The wrapped service.
    ///
    /// ```
    /// # use tower::{Layer, service_fn};
    /// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::throttle::ThrottleLayer::new().layer(svc);
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
    /// let inner = meshless::throttle::ThrottleLayer::new().layer(svc).into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, B, RB> Service<Request<B>> for Throttle<S, C>
where
    S: Service<Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    C: Classify,
{
    type Response = http::Response<RB>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(engaged) = &self.engaged else {
            return ResponseFuture::passthrough(self.inner.call(req));
        };
        match engaged.shared.admit(Instant::now()) {
            Ok(epoch) => ResponseFuture::counted(self.inner.call(req), engaged.clone(), epoch),
            Err(()) => ResponseFuture::rejected(),
        }
    }
}
