//! The retry layer and service.

use super::config::RetryConfig;
use super::future::ResponseFuture;
use super::head::Head;
use super::hops::{self, CallerRetries};
use super::policy::{Idempotency, RetryStats};
use super::replay::{DEFAULT_REPLAY_CAP, DEFAULT_REPLAY_FRAMES, ReplayBody};
use super::state::RetryState;
use super::telemetry::RequestMetrics;
use super::trace::Trace;
use crate::backoff::Backoff;
use crate::budget::Budget;
use crate::classify::{Classifier, Classify, Idempotence};
use crate::deadline::RequestDeadline;
use crate::error::{BoxError, ConfigError, Error};
use crate::observe::Settings;
use http::Request;
use http_body::Body;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// Default retries per request. linkerd and Envoy allow 1, Polly 3, gRPC up to 4; 2 gives a
/// request that first met a dying endpoint a fair chance to find a healthy one, while the budget
/// — not this number — is what bounds the load retries add.
pub const DEFAULT_MAX_RETRIES: u32 = 2;

/// Default longest server pushback honoured: a server asking for a longer wait gets its answer
/// returned to the caller rather than an in-process wait.
pub const DEFAULT_MAX_PUSHBACK: Duration = Duration::from_secs(10);

/// Adds retries to a service: [`Retry`] services.
///
/// ```
/// use meshless::{backoff::Backoff, budget::Budget, retry::{Idempotency, RetryLayer}};
/// use std::time::Duration;
///
/// let layer = RetryLayer::new(Budget::default())
///     .max_retries(3)
///     .backoff(Backoff::decorrelated_jitter(Duration::from_millis(10), Duration::from_millis(500))?)
///     .idempotency(Idempotency::default().route(|_, uri, _| uri.path() == "/search"))
///     .replay_cap(16 * 1024);
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RetryLayer<C = Classifier> {
    config: Config<C>,
}

#[derive(Debug, Clone)]
pub(crate) struct Config<C> {
    pub(crate) budget: Budget,
    pub(crate) max_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) classifier: C,
    pub(crate) idempotency: Idempotency,
    pub(crate) replay_cap: usize,
    pub(crate) replay_frames: usize,
    pub(crate) max_pushback: Duration,
    pub(crate) pushback_per_endpoint: bool,
    pub(crate) defer_to_caller: bool,
    pub(crate) stats: Arc<RetryStats>,
    /// A low estimate of how long a successful attempt takes (nanoseconds, 0 = unknown), so
    /// that a retry which cannot finish before the deadline is not started.
    pub(crate) fast_attempt: Arc<AtomicU64>,
    /// The `service` label and whether to record metrics.
    pub(crate) observe: Settings,
    /// The metric handles, registered when the layer builds a service; `None` when metrics
    /// are off (or before the layer is applied).
    pub(crate) metrics: Option<Arc<RequestMetrics>>,
    /// Whether to look for a route's retries (a client's routes).
    pub(crate) routes: crate::primitives::route_policy::Switch,
}

impl RetryLayer<Classifier> {
    /// Retries under `budget`, with the default classifier, 2 retries per request, full-jitter
    /// backoff (25 ms base, 250 ms cap) and a 64 KiB replay buffer.
    ///
    /// ```
    /// let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// ```
    pub fn new(budget: Budget) -> Self {
        RetryLayer {
            config: Config {
                budget,
                max_retries: DEFAULT_MAX_RETRIES,
                backoff: Backoff::default(),
                classifier: Classifier::default(),
                idempotency: Idempotency::default(),
                replay_cap: DEFAULT_REPLAY_CAP,
                replay_frames: DEFAULT_REPLAY_FRAMES,
                max_pushback: DEFAULT_MAX_PUSHBACK,
                pushback_per_endpoint: false,
                defer_to_caller: true,
                stats: Arc::default(),
                fast_attempt: Arc::default(),
                observe: Settings::default(),
                metrics: None,
                routes: crate::primitives::route_policy::Switch::default(),
            },
        }
    }
}

impl RetryLayer<Classifier> {
    /// Retries under `budget` with these settings, once [`RetryConfig::validate`] accepts
    /// them, with the default classifier and idempotency rules (set them with
    /// [`classifier`](Self::classifier) and [`idempotency`](Self::idempotency)).
    ///
    /// ```
    /// use meshless::{budget::Budget, retry::{RetryConfig, RetryLayer}};
    /// let layer = RetryLayer::from_config(Budget::default(), &RetryConfig::default())?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(budget: Budget, config: &RetryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let backoff = Backoff::from_config(&config.backoff)?;
        Ok(RetryLayer::new(budget)
            .max_retries(config.max_retries)
            .backoff(backoff)
            .replay_cap(config.replay_cap)
            .replay_frames(config.replay_frames)
            .max_pushback(config.max_pushback)
            .pushback_per_endpoint(config.pushback_per_endpoint)
            .defer_to_caller(config.defer_to_caller))
    }
}

impl<C> RetryLayer<C> {
    /// The settings of this layer, as plain data.
    ///
    /// ```
    /// use meshless::{budget::Budget, retry::{RetryConfig, RetryLayer}};
    /// assert_eq!(RetryLayer::new(Budget::default()).config(), RetryConfig::default());
    /// ```
    pub fn config(&self) -> RetryConfig {
        let c = &self.config;
        RetryConfig {
            max_retries: c.max_retries,
            backoff: c.backoff.config(),
            replay_cap: c.replay_cap,
            replay_frames: c.replay_frames,
            max_pushback: c.max_pushback,
            pushback_per_endpoint: c.pushback_per_endpoint,
            defer_to_caller: c.defer_to_caller,
        }
    }

    /// Reads a request's route for its retries, in place of `max_retries`.
    pub(crate) fn routes(mut self, routes: crate::primitives::route_policy::Switch) -> Self {
        self.config.routes = routes;
        self
    }

    /// The most retries for one request (default [`DEFAULT_MAX_RETRIES`]); 0 disables retries.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.max_retries(1);
    /// ```
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.config.max_retries = max_retries;
        self
    }

    /// The wait between attempts (default: full jitter, 25 ms base, 250 ms cap).
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.backoff(meshless::backoff::Backoff::none());
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Which requests may be retried after a failure the server may have acted on.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.idempotency(meshless::retry::Idempotency::default().all(true));
    /// ```
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.config.idempotency = idempotency;
        self
    }

    /// The most request-body bytes kept for replay (default 64 KiB). Larger bodies are sent once
    /// and never retried.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.replay_cap(1024 * 1024);
    /// ```
    pub fn replay_cap(mut self, bytes: usize) -> Self {
        self.config.replay_cap = bytes;
        self
    }

    /// The most request-body data frames kept for replay (default [`DEFAULT_REPLAY_FRAMES`]),
    /// zero-length ones included. A body cut into more frames is sent once and never retried.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.replay_frames(4096);
    /// ```
    pub fn replay_frames(mut self, frames: usize) -> Self {
        self.config.replay_frames = frames;
        self
    }

    /// The longest server pushback the layer will wait out (default
    /// [`DEFAULT_MAX_PUSHBACK`]).
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.max_pushback(std::time::Duration::from_secs(2));
    /// ```
    pub fn max_pushback(mut self, max: Duration) -> Self {
        self.config.max_pushback = max;
        self
    }

    /// Treats a server's pushback (`Retry-After`, `grpc-retry-pushback-ms`) as that endpoint's
    /// alone (default `false`). Use it behind a balancer over several endpoints: the balancer
    /// keeps the endpoint that asked out of rotation for about as long as it asked (it records
    /// the pushback as the endpoint's quiet time), and the retry goes to another endpoint after the
    /// ordinary backoff instead of making the whole request wait. A pushback that forbids
    /// retries still forbids them. [`crate::http::Client`] turns this on when it has two or more
    /// static endpoints.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.pushback_per_endpoint(true);
    /// ```
    pub fn pushback_per_endpoint(mut self, per_endpoint: bool) -> Self {
        self.config.pushback_per_endpoint = per_endpoint;
        self
    }

    /// Leaves retries to the caller when the caller of the request being served retries it
    /// (default `true`): with [`CallerRetries`](super::CallerRetries) set, by the request's
    /// extension or the scope of a [`CallerRetriesLayer`](super::CallerRetriesLayer), only
    /// attempts that never left are sent again, and every other failure goes back to the
    /// caller, which retries under its own budget. `false` retries as if no caller did.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.defer_to_caller(false);
    /// assert!(!layer.config().defer_to_caller);
    /// ```
    pub fn defer_to_caller(mut self, defer: bool) -> Self {
        self.config.defer_to_caller = defer;
        self
    }

    /// Classifies outcomes with `classifier` instead of the default. Behind a meshless
    /// [`Balance`](crate::balance::Balance), a failed response arrives already classified by the
    /// balancer's classifier ([`Classified`](crate::classify::Classified)) and that verdict is
    /// used: give both the same classifier (`ClientBuilder::classifier` does).
    ///
    /// ```
    /// use meshless::classify::{Classifier, Http, Retryable};
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.classifier(Classifier::new().http(Http::new().status(500, Retryable::IfIdempotent)));
    /// ```
    pub fn classifier<C2: Classify>(self, classifier: C2) -> RetryLayer<C2> {
        let c = self.config;
        RetryLayer {
            config: Config {
                budget: c.budget,
                max_retries: c.max_retries,
                backoff: c.backoff,
                classifier,
                idempotency: c.idempotency,
                replay_cap: c.replay_cap,
                replay_frames: c.replay_frames,
                max_pushback: c.max_pushback,
                pushback_per_endpoint: c.pushback_per_endpoint,
                defer_to_caller: c.defer_to_caller,
                stats: c.stats,
                fast_attempt: c.fast_attempt,
                observe: c.observe,
                metrics: c.metrics,
                routes: c.routes,
            },
        }
    }

    /// The `service` label of this layer's metrics and spans (default `"default"`): the
    /// logical service its requests go to. See [`crate::observe`].
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.service_name("payments");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.config.observe.set_service(name);
        self
    }

    /// Records metrics through the [`metrics`] facade (default `true`); `false` turns them off
    /// for this layer. [`stats`](Self::stats) and tracing are not affected.
    ///
    /// The layer registers its metric handles when it builds a service: install the recorder
    /// before that.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let layer = layer.metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.config.observe.metrics = enabled;
        self
    }

    /// The counters of every service this layer builds.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let stats = layer.stats();
    /// assert_eq!(stats.retries(), 0);
    /// ```
    pub fn stats(&self) -> Arc<RetryStats> {
        self.config.stats.clone()
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let mut config = self.config.clone();
        // Registered here rather than when the layer is configured, so that a recorder
        // installed in between is the one that gets them.
        config.metrics = RequestMetrics::register(&config.observe).map(Arc::new);
        Retry {
            inner,
            config: Arc::new(config),
        }
    }
}

/// Retries failed attempts of a request, within its budget, deadline and idempotency rules.
///
/// The wrapped service receives `Request<ReplayBody<B>>`; a retry goes through the service's
/// `poll_ready` again, so behind a balancer it goes to a freshly chosen endpoint. When retries
/// stop on a failed *response* (a 503, say), that response is returned as it is; when they stop
/// on an *error*, the [`Error`] says why they stopped and carries the last failure as its source.
/// The response's body is a [`ResponseBody`](super::ResponseBody), which counts the request when
/// it ends.
///
/// ```
/// use meshless::{budget::Budget, retry::{ReplayBody, Retry}};
/// use tower::{ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let svc = Retry::new(
///     service_fn(|_: http::Request<ReplayBody<String>>| async {
///         Ok::<_, std::io::Error>(http::Response::new(String::from("hello")))
///     }),
///     Budget::default(),
/// );
/// let res = svc.oneshot(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(res.body().get_ref(), "hello");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Retry<S, C = Classifier> {
    inner: S,
    config: Arc<Config<C>>,
}

impl<S> Retry<S, Classifier> {
    /// Wraps `inner` with the default retry policy under `budget`.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<meshless::retry::ReplayBody<String>>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::retry::Retry::new(svc, meshless::budget::Budget::default());
    /// ```
    pub fn new(inner: S, budget: Budget) -> Self {
        RetryLayer::new(budget).layer(inner)
    }
}

impl<S, C> Retry<S, C> {
    /// The wrapped service.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<meshless::retry::ReplayBody<String>>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::retry::Retry::new(svc, meshless::budget::Budget::default());
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
    /// let inner = meshless::retry::Retry::new(svc, meshless::budget::Budget::default()).into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The counters shared with the layer that built this service.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<meshless::retry::ReplayBody<String>>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::retry::Retry::new(svc, meshless::budget::Budget::default());
    /// assert_eq!(svc.stats().requests(), 0);
    /// ```
    pub fn stats(&self) -> Arc<RetryStats> {
        self.config.stats.clone()
    }
}

impl<S, C, B, RB> Service<Request<B>> for Retry<S, C>
where
    S: Service<Request<ReplayBody<B>>, Response = http::Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
    RB: Body,
    C: Classify,
{
    type Response = http::Response<super::ResponseBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<S, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // No step is entered here: a guard held across the first attempt's call makes the
        // compiler build its future aside and copy it (callgrind: one `memcpy` more). Above
        // the deadline layer it joins that layer's step; alone, the attempt's layers open one.
        // The ready service makes the first attempt, called in place; the future keeps a
        // clone for the retries, which it polls ready first. Swapping the ready one out
        // instead would move the attempt's future once more (callgrind: a `memcpy` of it).
        let service = self.inner.clone();
        let config = self.config.clone();
        config.budget.deposit();
        RetryStats::add(&config.stats.requests);
        if let Some(metrics) = &config.metrics {
            metrics.started();
        }

        let deadline = req.extensions().get::<RequestDeadline>().map(|d| d.0);
        let max_retries = match config.routes.route(&req) {
            Some(route) => route.0.max_retries,
            None => config.max_retries,
        };
        // With retries on, the head's copy answers if a failure asks; with them off there is
        // no copy, and the answer still decides how a failure is reported.
        let idempotent = (max_retries == 0).then(|| config.idempotency.idempotence(&req));
        let trace = Trace::start(&config.observe.service, req.method(), req.uri().path());
        let head = if max_retries > 0 {
            Some(Head::copy(&req, deadline.is_some()))
        } else {
            None
        };
        // Read where the call is made, inside the handler's scope even if the future is then
        // spawned; only a layer that could retry needs to know.
        let caller_retries = max_retries > 0 && config.defer_to_caller && CallerRetries::of(&req);
        // Mapped in place rather than taken apart and rebuilt: each of those moves the whole
        // head (callgrind: a `memcpy` each).
        let mut replay = None;
        let mut first = req.map(|body| {
            let body = ReplayBody::with_limits(body, config.replay_cap, config.replay_frames);
            match body.try_clone() {
                Some(first) => {
                    replay = Some(body);
                    first
                }
                None => body,
            }
        });
        if max_retries > 0 {
            // After the head's copy, which a retry marks with its own number.
            let announce = config.idempotency.idempotence(&first) == Idempotence::Idempotent;
            hops::announce_first(&mut first, announce);
            if !announce {
                // Only a request that never reached a server would be sent again: an attempt
                // timeout derived from the deadline must not cut it short.
                first.extensions_mut().insert(crate::deadline::SentOnce);
            }
        }
        let retry = head.map(|head| RetryState::new(head, replay));
        ResponseFuture::start(
            &mut self.inner,
            service,
            first,
            retry,
            config,
            idempotent,
            deadline,
            trace,
            caller_retries,
        )
    }
}
