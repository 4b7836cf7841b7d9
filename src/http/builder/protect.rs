//! The builder's protection settings: the circuit breaker, the concurrency limit and
//! client-side throttling, which sit outside the retry layer.

use super::ClientBuilder;
use crate::breaker::BreakerConfig;
use crate::hedge::HedgeConfig;
use crate::limit::LimitConfig;
use crate::stack::BreakerRoute;
use crate::throttle::ThrottleConfig;
use std::borrow::Cow;
use std::sync::Arc;

impl ClientBuilder {
    /// The circuit breaker's settings (default [`BreakerConfig::default`]: on, opening when
    /// half the requests of the last 10 s failed, at least 20 of them). It sits outside the
    /// retry layer: it judges each request by its final outcome, and an open circuit spends no
    /// retry budget. Checked by [`build`](Self::build), which names a bad field as
    /// `breaker.<field>`. Turn it off with `enabled = false`; control it through
    /// [`Client::breaker`](crate::http::Client::breaker).
    ///
    /// ```
    /// use meshless::breaker::BreakerConfig;
    /// use std::time::Duration;
    ///
    /// let mut breaker = BreakerConfig::default();
    /// breaker.break_duration = Duration::from_millis(500);
    /// let client = meshless::http::Client::builder()
    ///     .endpoints(["127.0.0.1:8080"])
    ///     .breaker(breaker)
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.policies.breaker = config;
        self
    }

    /// Gives each route that `route` names a circuit breaker of its own (with the settings of
    /// [`breaker`](Self::breaker)), so that one failing route does not open the circuit for
    /// the others; requests it names no route for share the client-wide breaker. Keep route
    /// names few and stable (a path template): they label the breaker's metrics. See
    /// [`BreakerLayer::per_route`](crate::breaker::BreakerLayer::per_route).
    ///
    /// ```
    /// use std::borrow::Cow;
    ///
    /// let client = meshless::http::Client::builder()
    ///     .endpoints(["127.0.0.1:8080"])
    ///     .breaker_per_route(|_method, uri, _headers| {
    ///         uri.path().starts_with("/search").then_some(Cow::Borrowed("search"))
    ///     })
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn breaker_per_route<F>(mut self, route: F) -> Self
    where
        F: Fn(&http::Method, &http::Uri, &http::HeaderMap) -> Option<Cow<'static, str>>
            + Send
            + Sync
            + 'static,
    {
        self.policies.breaker_route = Some(BreakerRoute(Arc::new(route)));
        self
    }

    /// The concurrency limit (default: none, [`Algorithm::Unlimited`](crate::limit::Algorithm)).
    /// It sits outside the breaker and the retry layer: a permit covers a request's attempts
    /// and is held until its response body ends. Choose
    /// [`Algorithm::Gradient`](crate::limit::Algorithm) for a limit that finds itself when the
    /// upstream can be overloaded: excess requests are refused at once with
    /// [`Kind::ConcurrencyLimited`](crate::error::Kind) instead of queueing until their
    /// deadline. Checked by [`build`](Self::build) (`limit.<field>`).
    ///
    /// ```
    /// use meshless::limit::{Algorithm, GradientConfig, LimitConfig};
    ///
    /// let mut limit = LimitConfig::default();
    /// limit.algorithm = Algorithm::Gradient(GradientConfig::default());
    /// let client = meshless::http::Client::builder()
    ///     .endpoints(["127.0.0.1:8080"])
    ///     .limit(limit)
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn limit(mut self, config: LimitConfig) -> Self {
        self.policies.limit = config;
        self
    }

    /// Client-side adaptive throttling (default: off, [`ThrottleConfig::default`]). When on,
    /// it refuses requests locally, with [`Kind::Throttled`](crate::error::Kind), in
    /// proportion to how many the upstream has been rejecting (Google SRE's formula). It sits
    /// between the breaker and the retry layer. Checked by [`build`](Self::build)
    /// (`throttle.<field>`).
    ///
    /// ```
    /// use meshless::throttle::ThrottleConfig;
    ///
    /// let mut throttle = ThrottleConfig::default();
    /// throttle.enabled = true;
    /// let client = meshless::http::Client::builder()
    ///     .endpoints(["127.0.0.1:8080"])
    ///     .throttle(throttle)
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn throttle(mut self, config: ThrottleConfig) -> Self {
        self.policies.throttle = config;
        self
    }

    /// Hedged requests (default: off): an idempotent request with no answer after the p95 of
    /// recent answers gets a second attempt at another endpoint, and the first good answer
    /// wins. Hedges draw on the retry budget (retries and hedges together never exceed it)
    /// and on a 5% extra-load cap, and never start when the deadline would not let them
    /// finish; the loser is cancelled, which charges no endpoint. One call turns it on with
    /// the defaults of [`HedgeConfig`]: `.hedge(HedgeConfig::default())`. Checked by
    /// [`build`](Self::build) (`hedge.<field>`).
    ///
    /// ```
    /// use meshless::hedge::HedgeConfig;
    ///
    /// let client = meshless::http::Client::builder()
    ///     .endpoints(["127.0.0.1:8080", "127.0.0.1:8081"])
    ///     .hedge(HedgeConfig::default())
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn hedge(mut self, config: HedgeConfig) -> Self {
        self.policies.hedge = Some(config);
        self
    }

    /// Whether a request made while serving a request its caller is retrying makes only the
    /// retries that are always safe (attempts that never left), leaving the rest to the
    /// caller (default `true`): one retry layer per call chain. See
    /// [`CallerRetries`](crate::retry::CallerRetries).
    ///
    /// ```
    /// let b = meshless::http::Client::builder().defer_to_caller(false);
    /// ```
    pub fn defer_to_caller(mut self, defer: bool) -> Self {
        self.policies.defer_to_caller = defer;
        self
    }
}
