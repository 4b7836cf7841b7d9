//! The layer stack the clients share (`meshless::http::Client`, `meshless::reqwest::Client`,
//! `meshless::tonic::Channel`): their policy settings, with defaults and checks, and the one
//! place that stacks Deadline → Limit → Breaker → Throttle → Retry → Hedge → AttemptTimeout
//! over a balancer. Each client keeps its own endpoints, connection settings and public API.

use crate::backoff::Backoff;
use crate::balance::{Balance, BalanceBuilder};
use crate::breaker::{Breaker, BreakerConfig, BreakerHandle, BreakerLayer};
use crate::budget::Budget;
use crate::classify::Classifier;
use crate::deadline::{
    AttemptTimeout, AttemptTimeoutConfig, AttemptTimeoutLayer, Deadline, DeadlineConfig,
    DeadlineLayer,
};
use crate::error::ConfigError;
use crate::hedge::{Hedge, HedgeConfig, HedgeLayer, HedgeStats};
use crate::limit::{Limit, LimitConfig, LimitHandle, LimitLayer};
use crate::primitives::route_policy::{HedgePlan, Switch};
use crate::retry::{Idempotency, Retry, RetryConfig, RetryLayer, RetryStats};
use crate::route::{Defaults, Route, Routing};
use crate::throttle::{Throttle, ThrottleConfig, ThrottleHandle, ThrottleLayer};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;

mod call;
#[cfg(test)]
mod tests;

pub(crate) use call::Call;

pub(crate) use crate::primitives::clock::NO_LIMIT;

/// The layers as their own types rather than boxed: a request then costs no allocation for
/// the service's clone nor for its future, and no dynamic call per poll.
pub(crate) type Stack<K, S> =
    Deadline<Limit<Breaker<Throttle<Retry<Hedge<AttemptTimeout<Balance<K, S>>>>>>>>;

/// Names the route of a request, for per-route breakers.
type RouteName =
    dyn Fn(&http::Method, &http::Uri, &http::HeaderMap) -> Option<Cow<'static, str>> + Send + Sync;

/// The route function of per-route breakers, shared by a builder's clones.
#[derive(Clone)]
pub(crate) struct BreakerRoute(pub(crate) Arc<RouteName>);

impl std::fmt::Debug for BreakerRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BreakerRoute(..)")
    }
}

/// The settings of the deadline, attempt and retry layers beyond the timeouts, as a
/// configuration file gives them (the http client). Without them the layers keep their own
/// defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerConfigs {
    /// The deadline layer's other settings (header, honoring inbound deadlines, streaming
    /// types); its timeout and idle limit are the policies' `deadline` and
    /// `body_idle_timeout`.
    pub(crate) deadline: DeadlineConfig,
    /// The header that tells the server an attempt's limit.
    pub(crate) attempt_header: Option<String>,
    /// The retry layer's replay and pushback limits; the rest is in the policies.
    pub(crate) retry: RetryConfig,
}

/// The policy settings of a client, with the defaults every client documents.
#[derive(Debug, Clone)]
pub(crate) struct Policies {
    pub(crate) deadline: Duration,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) body_idle_timeout: Option<Duration>,
    pub(crate) budget: Option<Budget>,
    pub(crate) max_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) idempotency: Idempotency,
    pub(crate) classifier: Classifier,
    pub(crate) balance: BalanceBuilder,
    pub(crate) breaker: BreakerConfig,
    pub(crate) breaker_route: Option<BreakerRoute>,
    pub(crate) limit: LimitConfig,
    pub(crate) throttle: ThrottleConfig,
    pub(crate) hedge: Option<HedgeConfig>,
    pub(crate) defer_to_caller: bool,
    pub(crate) service_name: String,
    pub(crate) metrics: bool,
    /// Trust a deadline the request carries (gRPC's `grpc-timeout` is the caller's own).
    pub(crate) honor_inbound: bool,
    pub(crate) layer_configs: Option<LayerConfigs>,
    /// Per-route policies, the first that fits a request winning.
    pub(crate) routes: Vec<Route>,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            deadline: Duration::from_secs(10),
            attempt_timeout: None,
            body_idle_timeout: None,
            budget: None,
            max_retries: crate::retry::DEFAULT_MAX_RETRIES,
            backoff: Backoff::default(),
            idempotency: Idempotency::default(),
            classifier: Classifier::default(),
            balance: BalanceBuilder::default(),
            breaker: BreakerConfig::default(),
            breaker_route: None,
            limit: LimitConfig::default(),
            throttle: ThrottleConfig::default(),
            hedge: None,
            defer_to_caller: true,
            service_name: crate::observe::DEFAULT_SERVICE.to_string(),
            metrics: true,
            honor_inbound: false,
            layer_configs: None,
            routes: Vec::new(),
        }
    }
}

/// The layers outside the retry layer, built (and so checked) before the endpoints are.
pub(crate) struct Protection {
    breaker: BreakerLayer,
    limit: LimitLayer,
    throttle: ThrottleLayer,
}

/// What a client reports on and controls, taken from its layers.
pub(crate) struct Handles {
    pub(crate) breaker: BreakerHandle,
    pub(crate) limit: LimitHandle,
    pub(crate) throttle: ThrottleHandle,
    pub(crate) hedge: Arc<HedgeStats>,
    pub(crate) retry: Arc<RetryStats>,
    /// The routes and defaults a reload swaps.
    pub(crate) routing: Arc<Routing>,
}

impl Policies {
    /// Refuses a zero deadline or attempt timeout.
    pub(crate) fn check_timeouts(&self) -> Result<(), ConfigError> {
        if self.deadline.is_zero() {
            return Err(ConfigError::new("deadline", "must be greater than zero"));
        }
        if self.attempt_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "attempt_timeout",
                "must be greater than zero",
            ));
        }
        if self.body_idle_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "body_idle_timeout",
                "must be greater than zero: 0 would fail every body that waits for a frame",
            ));
        }
        Ok(())
    }

    /// What a route may override, as the client has it.
    pub(crate) fn defaults(&self) -> Defaults {
        let hedge = self.hedge.as_ref();
        Defaults {
            deadline: self.deadline,
            attempt_timeout: self.attempt_timeout,
            max_retries: self.max_retries,
            hedge: HedgePlan {
                enabled: hedge.is_some_and(|h| h.enabled && h.max_hedges > 0),
                max_hedges: hedge.map_or(1, |h| h.max_hedges),
                delay: None,
            },
        }
    }

    /// The circuit breaker, the concurrency limit and the throttle, checked
    /// (`breaker.<field>`, `limit.<field>`, `throttle.<field>`).
    pub(crate) fn protection(&self) -> Result<Protection, ConfigError> {
        let mut breaker = BreakerLayer::from_config(&self.breaker)?
            .classifier(self.classifier.clone())
            .service_name(self.service_name.clone())
            .metrics(self.metrics);
        if let Some(route) = &self.breaker_route {
            let route = route.0.clone();
            breaker = breaker.per_route(move |method, uri, headers| route(method, uri, headers));
        }
        let limit = LimitLayer::from_config(&self.limit)?
            .service_name(self.service_name.clone())
            .metrics(self.metrics);
        let throttle = ThrottleLayer::from_config(&self.throttle)?
            .classifier(self.classifier.clone())
            .service_name(self.service_name.clone())
            .metrics(self.metrics);
        Ok(Protection {
            breaker,
            limit,
            throttle,
        })
    }

    /// An empty balancer with the policies' classifier, service name and metrics; the
    /// builder's settings were checked by `BalanceBuilder::validate`.
    pub(crate) fn balance<K, S>(&self) -> Balance<K, S> {
        self.balance
            .clone()
            .classifier(self.classifier.clone())
            .service_name(self.service_name.clone())
            .metrics(self.metrics)
            .build()
    }

    /// Stacks the layers over `balance`: the hedge and retry layers share one budget, and the
    /// attempt timeout defaults to the deadline shared by the attempts allowed. Checks the
    /// hedge settings (`hedge.<field>`) and the layer configurations.
    pub(crate) fn stack<K, S>(
        self,
        protection: Protection,
        balance: Balance<K, S>,
    ) -> Result<(Stack<K, S>, Handles), ConfigError> {
        // Matched by each client before its stack (`Routing::apply`), from `&self`.
        let routing = Arc::new(Routing::new(&self.routes, &self.defaults())?);
        let switch = Switch::client();
        let attempts = self.max_retries.saturating_add(1);
        let deadline = self.deadline.min(NO_LIMIT);
        // The deadline shared by the attempts allowed, unless asked for: a derived timeout
        // stands aside while attempts often run past it (`AttemptTimeoutLayer::derived`). Never
        // zero, even under a deadline of a few nanoseconds.
        let derived = self.attempt_timeout.is_none();
        let attempt_timeout = self
            .attempt_timeout
            .unwrap_or_else(|| (deadline / attempts).max(deadline.min(Duration::from_millis(1))))
            .min(NO_LIMIT);
        let budget = self.budget.unwrap_or_default();
        let hedge_config = self.hedge.unwrap_or(HedgeConfig {
            enabled: false,
            ..HedgeConfig::default()
        });
        let hedge = HedgeLayer::from_config(budget.clone(), &hedge_config)?
            .idempotency(self.idempotency.clone())
            .service_name(self.service_name.clone())
            .metrics(self.metrics)
            .routes(switch);
        let mut retry = RetryLayer::new(budget)
            .max_retries(self.max_retries)
            .backoff(self.backoff)
            .idempotency(self.idempotency)
            .routes(switch);
        if let Some(configs) = &self.layer_configs {
            retry = retry
                .replay_cap(configs.retry.replay_cap)
                .replay_frames(configs.retry.replay_frames)
                .max_pushback(configs.retry.max_pushback);
        }
        let retry = retry
            // A pushback keeps its endpoint away (the balancer holds it for its duration)
            // rather than the request: a peer can take the retry at once, and with none free
            // the balancer waits for the first one that is, within the deadline.
            .pushback_per_endpoint(true)
            .defer_to_caller(self.defer_to_caller)
            .service_name(self.service_name.clone())
            .metrics(self.metrics)
            .classifier(self.classifier);
        let (deadline_layer, attempt_layer) = match self.layer_configs {
            None => (
                DeadlineLayer::new(deadline).honor_inbound(self.honor_inbound),
                AttemptTimeoutLayer::new(attempt_timeout),
            ),
            Some(configs) => {
                let deadline_layer = DeadlineLayer::from_config(&DeadlineConfig {
                    timeout: deadline,
                    body_idle_timeout: None,
                    ..configs.deadline
                })?;
                let attempt_layer = AttemptTimeoutLayer::from_config(&AttemptTimeoutConfig {
                    timeout: Some(attempt_timeout),
                    deadline_header: configs.attempt_header,
                })?;
                (deadline_layer, attempt_layer)
            }
        };
        let deadline_layer = match self.body_idle_timeout {
            Some(idle) => deadline_layer.body_idle_timeout(idle),
            None => deadline_layer,
        }
        .routes(switch);
        let attempt_layer = attempt_layer.routes(switch);
        let attempt_layer = if derived {
            attempt_layer.derived()
        } else {
            attempt_layer
        };
        let handles = Handles {
            breaker: protection.breaker.handle(),
            limit: protection.limit.handle(),
            throttle: protection.throttle.handle(),
            hedge: hedge.stats(),
            retry: retry.stats(),
            routing,
        };
        let stack = ServiceBuilder::new()
            .layer(deadline_layer)
            .layer(protection.limit)
            .layer(protection.breaker)
            .layer(protection.throttle)
            .layer(retry)
            .layer(hedge)
            .layer(attempt_layer)
            .service(balance);
        Ok((stack, handles))
    }
}
