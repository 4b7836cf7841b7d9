//! The breaker layer, its service and its handle.

use super::config::BreakerConfig;
use super::future::{ResponseFuture, Ticket};
use super::machine::{Admit, CLOSED, Shared, state};
use super::route::Routes;
use super::telemetry::Telemetry;
use super::{BreakerState, BreakerStats, Rejected};
use crate::classify::{Classifier, Classify};
use crate::deadline::{DeadlineFromCaller, RequestDeadline};
use crate::error::{BoxError, ConfigError, Error, Kind};
use crate::observe::Settings;
use crate::primitives::step;
use http::Request;
use metrics::SharedString;
use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;
use tower::{Layer, Service};

/// Adds a circuit breaker to a service: [`Breaker`] services. Every service the layer builds
/// shares one breaker (the layer's [`handle`](Self::handle) controls it).
///
/// ```
/// use meshless::breaker::BreakerLayer;
///
/// let layer = BreakerLayer::new().service_name("payments");
/// let handle = layer.handle();
/// handle.isolate(); // refuse everything, say during a maintenance window
/// handle.reset();
/// ```
#[derive(Debug, Clone)]
pub struct BreakerLayer<C = Classifier> {
    shared: Arc<Shared>,
    classifier: C,
    observe: Settings,
    routes: Option<Arc<Routes>>,
}

impl BreakerLayer<Classifier> {
    /// A breaker with the default settings ([`BreakerConfig::default`]) and classifier.
    ///
    /// ```
    /// let layer = meshless::breaker::BreakerLayer::new();
    /// ```
    pub fn new() -> Self {
        BreakerLayer {
            shared: Arc::new(Shared::new(BreakerConfig::default())),
            classifier: Classifier::default(),
            observe: Settings::default(),
            routes: None,
        }
    }

    /// A breaker with these settings, once [`BreakerConfig::validate`] accepts them.
    ///
    /// ```
    /// use meshless::breaker::{BreakerConfig, BreakerLayer};
    /// let mut config = BreakerConfig::default();
    /// config.shadow = true;
    /// let layer = BreakerLayer::from_config(&config)?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &BreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(BreakerLayer {
            shared: Arc::new(Shared::new(config.clone())),
            classifier: Classifier::default(),
            observe: Settings::default(),
            routes: None,
        })
    }
}

impl Default for BreakerLayer<Classifier> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> BreakerLayer<C> {
    /// The settings of this breaker, as plain data.
    ///
    /// ```
    /// use meshless::breaker::{BreakerConfig, BreakerLayer};
    /// assert_eq!(BreakerLayer::new().config(), BreakerConfig::default());
    /// ```
    pub fn config(&self) -> BreakerConfig {
        self.shared.config.clone()
    }

    /// Classifies outcomes with `classifier` instead of the default, where a response does
    /// not already carry its verdict ([`Classified`](crate::classify::Classified)). Give it
    /// the classifier of the layers below.
    ///
    /// ```
    /// use meshless::classify::{Classifier, Http, Retryable};
    /// let layer = meshless::breaker::BreakerLayer::new()
    ///     .classifier(Classifier::new().http(Http::new().status(500, Retryable::Never)));
    /// ```
    pub fn classifier<C2: Classify>(self, classifier: C2) -> BreakerLayer<C2> {
        BreakerLayer {
            shared: self.shared,
            classifier,
            observe: self.observe,
            routes: self.routes,
        }
    }

    /// Gives each route that `route` names a breaker of its own (the same settings), up to
    /// [`max_routes`](BreakerConfig::max_routes) of them; requests of further routes, and those
    /// `route` names none for, share the client-wide breaker. The route is the `route` label
    /// of the breaker's metrics: keep names few and stable (a path template, not a path).
    ///
    /// A route's breaker is made by its first request. With routes, `poll_ready` no longer
    /// refuses ahead of the request (it cannot know its route): an open route's requests are
    /// refused by `call`.
    ///
    /// ```
    /// use meshless::breaker::BreakerLayer;
    /// use std::borrow::Cow;
    ///
    /// let layer = BreakerLayer::new().per_route(|_method, uri, _headers| {
    ///     let path = uri.path();
    ///     if path.starts_with("/search") {
    ///         Some(Cow::Borrowed("search"))
    ///     } else if path.starts_with("/orders") {
    ///         Some(Cow::Borrowed("orders"))
    ///     } else {
    ///         None
    ///     }
    /// });
    /// ```
    pub fn per_route<F>(mut self, route: F) -> Self
    where
        F: Fn(&http::Method, &http::Uri, &http::HeaderMap) -> Option<Cow<'static, str>>
            + Send
            + Sync
            + 'static,
    {
        let config = self.shared.config.clone();
        self.routes = Some(Arc::new(Routes::new(Box::new(route), config)));
        self
    }

    /// The `service` label of this breaker's metrics and events (default `"default"`). Set it
    /// before the layer builds its first service: that is when the metrics are registered.
    ///
    /// ```
    /// let layer = meshless::breaker::BreakerLayer::new().service_name("payments");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.observe.set_service(name);
        self
    }

    /// Records metrics through the [`metrics`] facade (default `true`).
    ///
    /// ```
    /// let layer = meshless::breaker::BreakerLayer::new().metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.observe.metrics = enabled;
        self
    }

    /// A handle on the breaker every service of this layer shares.
    ///
    /// ```
    /// use meshless::breaker::{BreakerLayer, BreakerState};
    /// # tokio_test::block_on(async {
    /// assert_eq!(BreakerLayer::new().handle().state(), BreakerState::Closed);
    /// # });
    /// ```
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle {
            shared: self.shared.clone(),
            routes: self.routes.clone(),
        }
    }
}

impl<S, C: Clone> Layer<S> for BreakerLayer<C> {
    type Service = Breaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        // Registered here rather than when the layer is configured, so that a recorder
        // installed in between is the one that gets them; the first service built wins.
        self.shared.telemetry.get_or_init(|| {
            let route = SharedString::const_str("");
            Telemetry::register(&self.observe, route, self.shared.state(Instant::now()))
        });
        if let Some(routes) = &self.routes {
            routes.observe.get_or_init(|| self.observe.clone());
        }
        let core = Arc::new(Core {
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            routes: self.routes.clone(),
        });
        Breaker::wrap(inner, core)
    }
}

/// What a request's future needs: the breaker and the classifier.
#[derive(Debug)]
pub(crate) struct Core<C> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
    routes: Option<Arc<Routes>>,
}

/// Refuses requests while the circuit is open ([`Kind::CircuitOpen`]); see the
/// [module](super) for when it opens and closes.
///
/// ```
/// use meshless::breaker::Breaker;
/// use tower::{ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let svc = Breaker::new(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::io::Error>(http::Response::new("hello"))
/// }));
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(*res.body(), "hello");
/// # });
/// ```
#[derive(Debug)]
pub struct Breaker<S, C = Classifier> {
    inner: S,
    core: Arc<Core<C>>,
    /// The inner service said it was ready, and no call has used that yet.
    inner_ready: bool,
    /// `poll_ready` found the circuit refusing and did not wait for the inner service: the
    /// next call gets this refusal.
    refusal: Option<Rejected>,
}

impl<S: Clone, C> Clone for Breaker<S, C> {
    fn clone(&self) -> Self {
        // A clone has not been polled ready, as tower's services go.
        Breaker::wrap(self.inner.clone(), self.core.clone())
    }
}

impl<S> Breaker<S, Classifier> {
    /// Wraps `inner` in a breaker of its own, with the default settings.
    ///
    /// ```
    /// # let svc = tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::breaker::Breaker::new(svc);
    /// ```
    pub fn new(inner: S) -> Self {
        BreakerLayer::new().layer(inner)
    }
}

impl<S, C> Breaker<S, C> {
    fn wrap(inner: S, core: Arc<Core<C>>) -> Self {
        Breaker {
            inner,
            core,
            inner_ready: false,
            refusal: None,
        }
    }

    /// The wrapped service.
    ///
    /// ```
    /// # let svc = tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::breaker::Breaker::new(svc);
    /// let _inner = svc.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// # let svc = tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let inner = meshless::breaker::Breaker::new(svc).into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle on this service's breaker.
    ///
    /// ```
    /// # let svc = tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// # tokio_test::block_on(async {
    /// let svc = meshless::breaker::Breaker::new(svc);
    /// assert_eq!(svc.handle().stats().trips, 0);
    /// # });
    /// ```
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle {
            shared: self.core.shared.clone(),
            routes: self.core.routes.clone(),
        }
    }
}

impl<S, C, B, RB> Service<Request<B>> for Breaker<S, C>
where
    S: Service<Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    C: Classify,
{
    type Response = http::Response<RB>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.inner_ready {
            return Poll::Ready(Ok(()));
        }
        // A refusal found by an earlier poll is found again or dropped: the service may have
        // been polled ready and then not called (a layer above refused), and the circuit may
        // have closed since.
        self.refusal = None;
        let shared = &self.core.shared;
        if !shared.config.enabled {
            ready!(self.inner.poll_ready(cx)).map_err(Error::from_service)?;
            self.inner_ready = true;
            return Poll::Ready(Ok(()));
        }
        // An open circuit refuses at once: the inner service may be waiting for an endpoint
        // (every one ejected, say) for as long as the balancer's fail-fast timeout.
        if state(shared.load()) != CLOSED && !shared.config.shadow && self.core.routes.is_none() {
            self.refusal = shared.refusal(Instant::now());
            if self.refusal.is_some() {
                // A limit above lets this request through without waiting for a permit.
                crate::primitives::refusing::mark();
                return Poll::Ready(Ok(()));
            }
        }
        ready!(self.inner.poll_ready(cx)).map_err(Error::from_service)?;
        self.inner_ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let core = self.core.clone();
        if let Some(why) = self.refusal.take() {
            return refuse(why, &core.shared, core.clone());
        }
        if !core.shared.config.enabled {
            self.inner_ready = false;
            return ResponseFuture::new(
                self.inner.call(req),
                core,
                None,
                Ticket::Done,
                None,
                (None, false),
            );
        }
        let route = core
            .routes
            .as_ref()
            .and_then(|routes| routes.lookup(req.method(), req.uri(), req.headers()));
        let shared = route.as_deref().unwrap_or(&core.shared);
        // Closed: one load, and no clock read unless slow calls are timed.
        let (admit, started) = if state(shared.load()) == CLOSED {
            (Admit::Pass, shared.slow_call.map(|_| step::now()))
        } else {
            let now = step::now();
            (shared.admit(now), Some(now))
        };
        let ticket = match admit {
            Admit::Pass => Ticket::Pass,
            Admit::Probe { episode } => Ticket::Probe { episode },
            Admit::Reject(why) if shared.config.shadow => {
                shared.count_shadow_rejected();
                if let Some(telemetry) = shared.telemetry.get() {
                    telemetry.rejected(why.state, true);
                }
                Ticket::Shadow
            }
            // The inner service's readiness stays for the next call.
            Admit::Reject(why) => return refuse(why, shared, core.clone()),
        };
        self.inner_ready = false;
        let extensions = req.extensions();
        // A deadline that is the caller's (shorter than the client's own) counts as a
        // cancellation when it passes, not as the upstream's failure.
        let (deadline, callers_deadline) = match extensions.get::<RequestDeadline>() {
            Some(_) if extensions.get::<DeadlineFromCaller>().is_some() => (None, true),
            Some(RequestDeadline(at)) => (Some(*at), false),
            None => (None, false),
        };
        // Called inside the future's one constructor: the inner future is written in place
        // rather than built aside and copied in (a builder step after it copies it again).
        ResponseFuture::new(
            self.inner.call(req),
            core,
            route,
            ticket,
            started,
            (deadline, callers_deadline),
        )
    }
}

/// Refuses a request on behalf of `shared`: nothing is sent.
fn refuse<F, C>(why: Rejected, shared: &Shared, core: Arc<Core<C>>) -> ResponseFuture<F, C> {
    shared.count_rejected();
    if let Some(telemetry) = shared.telemetry.get() {
        telemetry.rejected(why.state, false);
    }
    ResponseFuture::refused(Error::with_source(Kind::CircuitOpen, why), core)
}

/// Controls and reads a breaker: its state, its counts, and the manual switches.
///
/// ```
/// use meshless::breaker::{BreakerLayer, BreakerState};
/// # tokio_test::block_on(async {
/// let handle = BreakerLayer::new().handle();
/// handle.isolate();
/// assert_eq!(handle.state(), BreakerState::Isolated);
/// handle.reset();
/// assert_eq!(handle.state(), BreakerState::Closed);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct BreakerHandle {
    shared: Arc<Shared>,
    routes: Option<Arc<Routes>>,
}

impl BreakerHandle {
    /// The state now. An open circuit whose break is over reads `Open` until a request
    /// arrives to probe it; a ramp that is over reads `Closed`.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let handle = meshless::breaker::BreakerLayer::new().handle();
    /// assert_eq!(handle.state().as_str(), "closed");
    /// # });
    /// ```
    pub fn state(&self) -> BreakerState {
        self.shared.state(Instant::now())
    }

    /// What the window holds now, and the counters since the breaker was built.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let stats = meshless::breaker::BreakerLayer::new().handle().stats();
    /// assert_eq!(stats.failures, 0);
    /// # });
    /// ```
    pub fn stats(&self) -> BreakerStats {
        self.shared.stats(Instant::now())
    }

    /// Opens the circuit until [`reset`](Self::reset): every request is refused (in shadow
    /// mode, reported as refused).
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let handle = meshless::breaker::BreakerLayer::new().handle();
    /// handle.isolate();
    /// # });
    /// ```
    pub fn isolate(&self) {
        self.shared.isolate();
    }

    /// Closes the circuit whatever its state, forgets the window and restarts the break
    /// ladder.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let handle = meshless::breaker::BreakerLayer::new().handle();
    /// handle.reset();
    /// # });
    /// ```
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// The handle of the breaker of `route` ([`BreakerLayer::per_route`]), once a request of
    /// that route has made one; `None` otherwise. The client-wide handle's switches act on the
    /// client-wide breaker alone.
    ///
    /// ```
    /// use meshless::breaker::BreakerLayer;
    /// let layer = BreakerLayer::new().per_route(|_, _, _| Some("all".into()));
    /// assert!(layer.handle().route("all").is_none()); // no request yet
    /// assert!(layer.handle().routes().is_empty());
    /// ```
    pub fn route(&self, route: &str) -> Option<BreakerHandle> {
        let shared = self.routes.as_ref()?.get(route)?;
        Some(BreakerHandle {
            shared,
            routes: None,
        })
    }

    /// The requests refused by this breaker and by its routes' breakers.
    pub(crate) fn rejected_everywhere(&self) -> u64 {
        self.shared.rejected() + self.routes.as_ref().map_or(0, |routes| routes.rejected())
    }

    /// The routes that have a breaker of their own, sorted.
    ///
    /// ```
    /// assert!(meshless::breaker::BreakerLayer::new().handle().routes().is_empty());
    /// ```
    pub fn routes(&self) -> Vec<String> {
        self.routes.as_ref().map_or_else(Vec::new, |r| r.names())
    }
}
