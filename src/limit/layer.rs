//! The layer, its service and the handle that reads the limit.

use super::config::{AimdConfig, Algorithm, GradientConfig, LimitConfig};
use super::future::{Refusal, ResponseBody, ResponseFuture};
use super::state::{Controller, Permit, Shared};
use crate::deadline::RequestDeadline;
use crate::error::{BoxError, ConfigError, Error, Kind};
use crate::observe::Settings;
use http::{Request, Response};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// How long a request over an adaptive limit that is still learning waits for a permit when
/// it has no deadline: long enough for a few round trips of the limit's growth, short enough
/// that a queue behind an upstream that stopped answering ends.
const LEARNING_WAIT: Duration = Duration::from_secs(1);

/// Limits the requests in flight through every service it builds: [`Limit`] services that
/// share one limit.
///
/// A request over the limit is refused at once with [`Kind::ConcurrencyLimited`], nothing sent,
/// or waits at most [`max_wait`](Self::max_wait) (never past its deadline); over an adaptive
/// limit that is still learning, it waits (see the [module](super)). A request holds its
/// permit until its response body ends, or until its caller drops the future or the body.
///
/// ```
/// use meshless::limit::LimitLayer;
/// use std::time::Duration;
/// let fixed = LimitLayer::fixed(64).max_wait(Duration::from_millis(20));
/// let adaptive = LimitLayer::adaptive().service_name("users");
/// assert_eq!(adaptive.handle().limit(), 20);
/// ```
#[derive(Clone)]
pub struct LimitLayer {
    config: LimitConfig,
    settings: Settings,
    // Made when the first service or handle needs it, so that the builder methods register no
    // metrics under a name about to change; shared by the layer's clones.
    shared: Arc<OnceLock<Arc<Shared>>>,
}

impl LimitLayer {
    /// A limit chosen by `algorithm`, refusing at once when full. Unchecked (a fixed limit of
    /// 0 refuses everything): use [`from_config`](Self::from_config) for checked settings.
    ///
    /// ```
    /// use meshless::limit::{AimdConfig, Algorithm, LimitLayer};
    /// let layer = LimitLayer::new(Algorithm::Aimd(AimdConfig::default()));
    /// ```
    pub fn new(algorithm: Algorithm) -> Self {
        let config = LimitConfig {
            algorithm,
            ..LimitConfig::default()
        };
        LimitLayer {
            config,
            settings: Settings::default(),
            shared: Arc::default(),
        }
    }

    /// At most `max` requests in flight.
    ///
    /// ```
    /// let layer = meshless::limit::LimitLayer::fixed(100);
    /// assert_eq!(layer.handle().limit(), 100);
    /// ```
    pub fn fixed(max: u32) -> Self {
        Self::new(Algorithm::Fixed { max })
    }

    /// The adaptive limit with the gradient algorithm's defaults ([`GradientConfig`]).
    ///
    /// ```
    /// let layer = meshless::limit::LimitLayer::adaptive();
    /// ```
    pub fn adaptive() -> Self {
        Self::new(Algorithm::Gradient(GradientConfig::default()))
    }

    /// The adaptive limit with AIMD's defaults ([`AimdConfig`]).
    ///
    /// ```
    /// let layer = meshless::limit::LimitLayer::aimd();
    /// ```
    pub fn aimd() -> Self {
        Self::new(Algorithm::Aimd(AimdConfig::default()))
    }

    /// A layer from checked settings.
    ///
    /// ```
    /// let layer = meshless::limit::LimitLayer::from_config(&Default::default())?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &LimitConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(LimitLayer {
            config: config.clone(),
            settings: Settings::default(),
            shared: Arc::default(),
        })
    }

    /// The settings this layer was built with.
    ///
    /// ```
    /// let layer = meshless::limit::LimitLayer::fixed(8);
    /// assert_eq!(layer.config().algorithm, meshless::limit::Algorithm::Fixed { max: 8 });
    /// ```
    pub fn config(&self) -> LimitConfig {
        self.config.clone()
    }

    /// Lets a request wait up to `max_wait` for a permit, in arrival order, and never past
    /// its [`RequestDeadline`]; zero refuses at once. Starts a fresh limit (with nothing in
    /// flight): call it before building services.
    ///
    /// ```
    /// let layer = meshless::limit::LimitLayer::fixed(8).max_wait(std::time::Duration::from_millis(50));
    /// ```
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = max_wait;
        self.shared = Arc::default();
        self
    }

    /// The `service` label of the limit's metrics. Starts a fresh limit: call it before
    /// building services.
    ///
    /// ```
    /// let layer = meshless::limit::LimitLayer::adaptive().service_name("payments");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.settings.set_service(name);
        self.shared = Arc::default();
        self
    }

    /// Turns the layer's metrics (`meshless_concurrency_*`) on or off; on by default. The
    /// clients' `metrics(false)` turns them off with the rest.
    ///
    /// ```
    /// let layer = meshless::limit::LimitLayer::adaptive().metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.settings.metrics = enabled;
        self.shared = Arc::default();
        self
    }

    /// Reads the limit, the requests in flight and the refusals.
    ///
    /// ```
    /// let handle = meshless::limit::LimitLayer::fixed(3).handle();
    /// assert_eq!((handle.limit(), handle.in_flight(), handle.rejected()), (3, 0, 0));
    /// ```
    pub fn handle(&self) -> LimitHandle {
        LimitHandle {
            shared: self.shared().clone(),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        self.shared
            .get_or_init(|| Shared::new(self.config.clone(), &self.settings))
    }
}

impl std::fmt::Debug for LimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;

    fn layer(&self, inner: S) -> Limit<S> {
        Limit {
            inner,
            shared: self.shared().clone(),
            below_refuses: false,
        }
    }
}

/// The limit's state, read from outside the request path.
///
/// ```
/// let layer = meshless::limit::LimitLayer::aimd();
/// let handle = layer.handle();
/// assert_eq!(handle.limit(), 20);
/// assert_eq!(handle.waiting(), 0);
/// ```
#[derive(Clone)]
pub struct LimitHandle {
    shared: Arc<Shared>,
}

impl LimitHandle {
    /// The limit in force now.
    ///
    /// ```
    /// assert_eq!(meshless::limit::LimitLayer::fixed(5).handle().limit(), 5);
    /// ```
    pub fn limit(&self) -> u32 {
        self.shared.limit()
    }

    /// Requests holding a permit (from admission to the end of their response body).
    ///
    /// ```
    /// assert_eq!(meshless::limit::LimitLayer::fixed(5).handle().in_flight(), 0);
    /// ```
    pub fn in_flight(&self) -> u32 {
        self.shared.in_flight()
    }

    /// Requests queued for a permit (some may have given up and not yet been skipped).
    ///
    /// ```
    /// assert_eq!(meshless::limit::LimitLayer::fixed(5).handle().waiting(), 0);
    /// ```
    pub fn waiting(&self) -> u32 {
        self.shared.waiting()
    }

    /// Requests refused so far.
    ///
    /// ```
    /// assert_eq!(meshless::limit::LimitLayer::fixed(5).handle().rejected(), 0);
    /// ```
    pub fn rejected(&self) -> u64 {
        self.shared.rejected()
    }
}

impl std::fmt::Debug for LimitHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitHandle")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("rejected", &self.rejected())
            .finish()
    }
}

/// Admits a request only while fewer than the limit are in flight: see [`LimitLayer`].
///
/// ```
/// use meshless::limit::LimitLayer;
/// use tower::{Layer, service_fn};
/// let svc = LimitLayer::fixed(10)
///     .layer(service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
/// let _inner = svc.get_ref();
/// ```
#[derive(Clone)]
pub struct Limit<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The service below, polled ready, will refuse the next request without sending it (an
    /// open circuit breaker): it goes through without a permit, to be refused at once.
    below_refuses: bool,
}

impl<S> Limit<S> {
    /// The wrapped service.
    ///
    /// ```
    /// # use tower::{Layer, service_fn};
    /// # let svc = meshless::limit::LimitLayer::fixed(1).layer(service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
    /// let _inner = svc.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// # use tower::{Layer, service_fn};
    /// # let svc = meshless::limit::LimitLayer::fixed(1).layer(service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
    /// let _inner = svc.into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> std::fmt::Debug for Limit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limit")
            .field("limit", &self.shared.limit())
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<B>> for Limit<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    RB: http_body::Body,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.shared.unlimited {
            return self.inner.poll_ready(cx).map_err(Error::from_service);
        }
        crate::primitives::refusing::clear();
        let ready = self.inner.poll_ready(cx).map_err(Error::from_service);
        self.below_refuses = crate::primitives::refusing::take();
        ready
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.shared.unlimited || std::mem::take(&mut self.below_refuses) {
            return ResponseFuture::unlimited(self.inner.call(req));
        }
        if self.shared.try_acquire() {
            // The adaptive algorithms' round trip starts at admission: the one clock read.
            let started = self.shared.is_adaptive().then(Instant::now);
            let permit = Permit(self.shared.clone());
            return ResponseFuture::called(self.inner.call(req), permit, started);
        }
        self.full(req)
    }
}

impl<S> Limit<S> {
    /// The limit is full: refuse, or queue when waiting is allowed and there is time.
    #[inline(never)]
    fn full<B, RB>(&mut self, req: Request<B>) -> ResponseFuture<S::Future, S, B>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone,
    {
        let shared = &self.shared;
        let learning = shared.max_wait.is_zero() && shared.learning();
        if shared.max_wait.is_zero() && !learning {
            return self.refuse(Refusal::Full {
                limit: shared.limit(),
                in_flight: shared.in_flight(),
            });
        }
        let now = Instant::now();
        // A limit still learning makes the request wait up to its deadline, or `LEARNING_WAIT`
        // without one: permits come back within a round trip and the limit grows with them.
        let max_wait = if learning {
            LEARNING_WAIT
        } else {
            shared.max_wait
        };
        // Waiting only helps if the request can still be done once admitted: the gradient
        // algorithm knows how long that takes when nothing queues; the others do not.
        let reserve = match &shared.controller {
            Controller::Gradient(g) => g.baseline(),
            _ => Duration::ZERO,
        };
        let deadline = req
            .extensions()
            .get::<RequestDeadline>()
            .map(|d| d.0.checked_sub(reserve).unwrap_or(now));
        let own = now.checked_add(max_wait);
        let (until, by_deadline) = match (own, deadline) {
            (Some(own), Some(d)) if d < own => (d, true),
            (None, Some(d)) => (d, true),
            (Some(own), _) => (own, false),
            // A wait too long for the clock: a year is as good as forever.
            (None, None) => (now + Duration::from_secs(365 * 24 * 3600), false),
        };
        if until <= now {
            return self.refuse(Refusal::NoTime);
        }
        match shared.enqueue() {
            Ok(()) => {
                let started = shared.is_adaptive().then_some(now);
                let permit = Permit(shared.clone());
                ResponseFuture::called(self.inner.call(req), permit, started)
            }
            Err(rx) => {
                // The ready service goes with the request; a clone takes its place here.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(rx, shared.clone(), service, req, now, until, by_deadline)
            }
        }
    }

    fn refuse<F, B>(&self, why: Refusal) -> ResponseFuture<F, S, B> {
        self.shared.rejected_one();
        ResponseFuture::refused(Error::with_source(Kind::ConcurrencyLimited, why))
    }
}
