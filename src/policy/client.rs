//! A whole client as data.

use super::place::{checked, outlier, place, renamed};
use crate::balance::BalanceConfig;
use crate::breaker::BreakerConfig;
use crate::budget::BudgetConfig;
use crate::deadline::{AttemptTimeoutConfig, DeadlineConfig};
use crate::error::ConfigError;
use crate::hedge::HedgeConfig;
use crate::limit::{Algorithm, LimitConfig};
use crate::retry::RetryConfig;
use crate::route::Route;
use crate::throttle::ThrottleConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Everything an [`http::Client`](crate::http::Client) is built from, as plain data: what a
/// configuration file describes. Build the client with
/// [`ClientBuilder::from_config`](crate::http::ClientBuilder::from_config) or
/// [`Client::from_file`](crate::http::Client::from_file).
///
/// Each section is one layer's own config struct, with that struct's defaults and checks; a
/// missing section or field takes its default, so an empty file but for the endpoints is the
/// [`ClientBuilder`](crate::http::ClientBuilder)'s defaults.
///
/// | key | type | default |
/// |---|---|---|
/// | `endpoints` | list of `IP:port` | none (give these or `dns`) |
/// | `dns` | a `host:port` resolved every 5 s | none |
/// | `service_name` | the `service` label of metrics and spans | `"default"` |
/// | `metrics` | bool: record metrics (no-ops until a recorder is installed) | `true` |
/// | `connect_timeout` | duration | `"1s"` |
/// | `http2_prior_knowledge` | bool | `false` |
/// | `deadline` | [`DeadlineConfig`] | 10 s |
/// | `attempt_timeout` | [`AttemptTimeoutConfig`] | `timeout` = deadline ÷ (max retries + 1) |
/// | `budget` | [`BudgetConfig`], shared by retries and hedges | 20% over 10 s, 10/s reserve |
/// | `retry` | [`RetryConfig`] | 2 retries, full jitter 25 ms .. 250 ms |
/// | `balance` | [`BalanceConfig`], its `outlier` section included | P2C over EWMA latency |
/// | `breaker` | [`BreakerConfig`] | on |
/// | `limit` | [`LimitConfig`] | unlimited |
/// | `throttle` | [`ThrottleConfig`] | off |
/// | `hedge` | [`HedgeConfig`] or `"off"` | off (missing) |
/// | `routes` | a list of [`Route`]s (`[[routes]]` in TOML) | none |
///
/// One setting is the client's own rather than the file's: an `http::Client` always holds a
/// server's pushback against the endpoint that sent it (its balancer routes around it), so
/// `retry.pushback_per_endpoint` applies to a [`RetryLayer`](crate::retry::RetryLayer) built
/// from the section alone.
///
/// ```
/// use meshless::policy::ClientConfig;
/// let config = ClientConfig::from_yaml_str("
/// endpoints: ['127.0.0.1:8080', '127.0.0.1:8081']
/// retry: { max_retries: 1 }
/// hedge: { max_hedges: 1, delay: { fixed: 20ms } }
/// ")?;
/// assert_eq!(config.retry.max_retries, 1);
/// assert!(config.hedge.is_some());
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Static endpoints, each `IP:port`.
    pub endpoints: Vec<String>,
    /// A DNS name (`host:port`) whose addresses are the endpoints.
    pub dns: Option<String>,
    /// The `service` label of the client's metrics and spans.
    pub service_name: String,
    /// Whether the client records metrics.
    pub metrics: bool,
    /// The longest a TCP connect and TLS handshake may take.
    #[serde(with = "super::duration")]
    pub connect_timeout: Duration,
    /// Whether to speak HTTP/2 without negotiating it.
    pub http2_prior_knowledge: bool,
    /// The total deadline of a request.
    pub deadline: DeadlineConfig,
    /// The limit on each attempt.
    pub attempt_timeout: AttemptTimeoutConfig,
    /// The retry budget, shared by retries and hedges.
    pub budget: BudgetConfig,
    /// Retries and their backoff.
    pub retry: RetryConfig,
    /// The balancer and its outlier ejection.
    pub balance: BalanceConfig,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// The concurrency limit.
    pub limit: LimitConfig,
    /// Client-side throttling.
    pub throttle: ThrottleConfig,
    /// Hedging; `None` (missing, or `"off"`) sends no hedge.
    #[serde(with = "super::optional")]
    pub hedge: Option<HedgeConfig>,
    /// Per-route policies (`[[routes]]`), the first that fits a request winning; see
    /// [`Route`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: Vec::new(),
            dns: None,
            service_name: crate::observe::DEFAULT_SERVICE.to_string(),
            metrics: true,
            connect_timeout: Duration::from_secs(1),
            http2_prior_knowledge: false,
            deadline: DeadlineConfig::default(),
            attempt_timeout: AttemptTimeoutConfig::default(),
            budget: BudgetConfig::default(),
            retry: RetryConfig::default(),
            balance: BalanceConfig::default(),
            breaker: BreakerConfig::default(),
            limit: LimitConfig::default(),
            throttle: ThrottleConfig::default(),
            hedge: None,
            routes: Vec::new(),
        }
    }
}

impl ClientConfig {
    /// Checks every section with its layer's own check, naming the first bad value by its
    /// path in the file (`retry.backoff.cap`, `balance.outlier.interval`).
    ///
    /// ```
    /// let mut config = meshless::policy::ClientConfig::default();
    /// config.endpoints = vec!["127.0.0.1:80".into()];
    /// assert!(config.validate().is_ok());
    /// config.budget.ratio = -1.0;
    /// assert_eq!(config.validate().unwrap_err().path(), "budget.ratio");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.clone().normalized().map(drop)
    }

    /// The checked config, with the values the layers bring within range brought there (an
    /// outlier interval above 1 hour reads as 1 hour, as the builder does).
    pub(crate) fn normalized(mut self) -> Result<ClientConfig, ConfigError> {
        if self.endpoints.is_empty() && self.dns.is_none() {
            return Err(ConfigError::new(
                "endpoints",
                "give at least one endpoint or a DNS name",
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "connect_timeout",
                "0ns would fail every connection",
            ));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            crate::http::builder::check_endpoint(i, endpoint)?;
        }
        if let Some(name) = &self.dns {
            crate::http::builder::check_dns(name)?;
        }
        checked("deadline", "deadline", || self.deadline.validate())?;
        checked("attempt_timeout", "attempt", || {
            self.attempt_timeout.validate()
        })?;
        checked("budget", "budget", || self.budget.validate())?;
        checked("retry", "retry", || self.retry.validate())?;
        checked("balance", "balance", || self.balance.validate())?;
        self.balance.outlier =
            outlier(&self.balance.outlier).map_err(|err| place("balance", "balance", err))?;
        checked("breaker", "breaker", || self.breaker.validate())?;
        checked("limit", "limit", || self.limit.validate()).map_err(|err| {
            // The algorithm's own fields sit in its table in the file.
            let variant = match self.limit.algorithm {
                Algorithm::Fixed { .. } => "fixed",
                Algorithm::Gradient(_) => "gradient",
                Algorithm::Aimd(_) => "aimd",
                _ => return err,
            };
            let path = err.path();
            match path.strip_prefix("limit.") {
                Some(field) if field != "max_wait" => {
                    err.placed(format!("limit.algorithm.{variant}.{field}"))
                }
                _ => err,
            }
        })?;
        checked("throttle", "throttle", || self.throttle.validate())?;
        if let Some(hedge) = &self.hedge {
            checked("hedge", "hedge", || hedge.validate())
                .map_err(|err| renamed(err, "hedge.delay", || "hedge.delay.fixed".into()))
                .map_err(|err| {
                    renamed(err, "hedge.delay.percentile", || {
                        "hedge.delay.percentile.percentile".into()
                    })
                })
                .map_err(|err| {
                    renamed(err, "hedge.delay.window", || {
                        "hedge.delay.percentile.window".into()
                    })
                })?;
        }
        crate::route::validate_all(&self.routes)?;
        Ok(self)
    }
}
