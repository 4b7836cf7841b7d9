//! A gRPC service config (JSON) imported into meshless's settings.

use super::ClientConfig;
use super::duration::parse_duration;
use crate::backoff::{BackoffConfig, BackoffKind};
use crate::budget::BudgetConfig;
use crate::classify::{Code, Grpc, Retryable};
use crate::error::ConfigError;
use crate::hedge::{HedgeConfig, HedgeDelay, MAX_HEDGES};
use crate::retry::RetryConfig;
use crate::route::{Route, RouteHedge};
use serde::Deserialize;
use std::time::Duration;

/// The setting every import error is reported under; its path names the JSON field.
const SETTING: &str = "grpc_service_config";

/// gRPC caps a call at 5 attempts, retries or hedges; more is read as 5 (gRFC A6).
const MAX_ATTEMPTS: u32 = 5;

/// A gRPC service config (the JSON a gRPC channel takes, gRFC A2 and A6), imported into
/// meshless's settings, one [`GrpcMethodPolicy`] per `methodConfig` entry.
///
/// What maps to what (refused means the import fails with a [`ConfigError`] naming the field,
/// rather than run with a different behaviour than the file asks for):
///
/// | gRPC | meshless | notes |
/// |---|---|---|
/// | `methodConfig[].name[].{service, method}` | [`GrpcMethodName`] | matched as gRPC does: method, then service, then the empty name |
/// | `timeout` | `deadline.timeout` | the whole call, retries included, as in gRPC |
/// | `retryPolicy.maxAttempts` | `retry.max_retries` = maxAttempts − 1 | ≥ 2; above 5 read as 5, as gRPC does |
/// | `retryPolicy.initialBackoff`, `maxBackoff` | `retry.backoff` full jitter, `base`, `cap` | the same waits: random(0, min(initial × 2ⁿ, max)) |
/// | `retryPolicy.backoffMultiplier` | — | must be 2 (meshless's backoff doubles); any other is refused |
/// | `retryPolicy.retryableStatusCodes` | [`classifier`](GrpcMethodPolicy::classifier): each code a failure retried if idempotent | gRPC retries them on any call; meshless only on calls marked idempotent ([`Idempotency`](crate::retry::Idempotency)), since every gRPC call is a POST |
/// | `retryPolicy.perAttemptRecvTimeout` | `attempt_timeout.timeout` | |
/// | `hedgingPolicy.maxAttempts` | `hedge.max_hedges` = maxAttempts − 1, `retry.max_retries` = 0 | ≥ 2; above 5 read as 5 |
/// | `hedgingPolicy.hedgingDelay` | `hedge.delay` = fixed | a zero or missing delay (every copy at once) is refused |
/// | `hedgingPolicy.nonFatalStatusCodes` | the classifier, as retryable codes | a retryable failure lets the other attempts run on |
/// | `retryThrottling.{maxTokens, tokenRatio}` | `budget`: `ratio` = tokenRatio ÷ (1 + tokenRatio), `min_per_second` = maxTokens ÷ 2 per 10 s | both cap retries at a share of traffic; gRPC's spare maxTokens ÷ 2 failures become a reserve renewed every 10 s |
/// | `loadBalancingConfig`, `loadBalancingPolicy` | ignored | meshless balances by P2C over latency whatever the policy |
/// | `waitForReady: true`, `maxRequestMessageBytes`, `maxResponseMessageBytes`, `healthCheckConfig`, anything else | refused | not supported |
///
/// [`routes`](Self::routes) turns every entry into a per-method [`Route`] for one client of
/// many methods; [`apply`](Self::apply) writes one method's policy into a client's settings.
///
/// ```
/// use meshless::policy::{ClientConfig, GrpcServiceConfig};
/// use std::time::Duration;
///
/// let grpc = GrpcServiceConfig::from_json_str(r#"{
///   "methodConfig": [{
///     "name": [{"service": "helloworld.Greeter"}],
///     "timeout": "1.5s",
///     "retryPolicy": {
///       "maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
///       "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
///     }
///   }]
/// }"#)?;
/// let mut config = ClientConfig::default();
/// assert!(grpc.apply("helloworld.Greeter", "SayHello", &mut config).is_some());
/// assert_eq!(config.deadline.timeout, Duration::from_millis(1500));
/// assert_eq!(config.retry.max_retries, 2);
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GrpcServiceConfig {
    /// One policy per `methodConfig` entry, in the file's order.
    pub methods: Vec<GrpcMethodPolicy>,
    /// The retry budget `retryThrottling` maps to, if given.
    pub budget: Option<BudgetConfig>,
}

/// One `methodConfig[].name[]` entry: no service matches every call, no method every method
/// of the service.
///
/// ```
/// let name = meshless::policy::GrpcMethodName { service: Some("a.B".into()), method: None };
/// # let _ = name;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcMethodName {
    /// The fully qualified service (`package.Service`).
    pub service: Option<String>,
    /// The method within the service.
    pub method: Option<String>,
}

/// The meshless settings of one `methodConfig` entry (see [`GrpcServiceConfig`] for the
/// mapping).
///
/// ```
/// use meshless::policy::GrpcServiceConfig;
/// let grpc = GrpcServiceConfig::from_json_str(r#"{"methodConfig": [{"name": [{}], "timeout": "2s"}]}"#)?;
/// let policy = grpc.policy_for("any.Service", "Any").expect("the default entry");
/// assert_eq!(policy.timeout, Some(std::time::Duration::from_secs(2)));
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GrpcMethodPolicy {
    /// The methods it applies to.
    pub names: Vec<GrpcMethodName>,
    /// The call's deadline (`timeout`).
    pub timeout: Option<Duration>,
    /// The limit on one attempt (`retryPolicy.perAttemptRecvTimeout`).
    pub attempt_timeout: Option<Duration>,
    /// Retries (`retryPolicy`); `None` with a hedging policy, which turns retries off.
    pub retry: Option<RetryConfig>,
    /// Hedging (`hedgingPolicy`).
    pub hedge: Option<HedgeConfig>,
    /// The codes retried or hedged on (`retryableStatusCodes`, `nonFatalStatusCodes`).
    pub retryable_codes: Vec<Code>,
}

impl GrpcMethodPolicy {
    /// gRPC status rules with exactly the listed codes retryable (if the call is
    /// idempotent); the other server-error codes are failures that are not retried. Give it
    /// to the client with [`ClientBuilder::classifier`](crate::http::ClientBuilder::classifier).
    ///
    /// ```
    /// use meshless::classify::{Code, Retryable};
    /// use meshless::policy::GrpcServiceConfig;
    /// let grpc = GrpcServiceConfig::from_json_str(r#"{"methodConfig": [{"name": [{}],
    ///   "retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.1s", "maxBackoff": "1s",
    ///     "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "aborted"]}}]}"#)?;
    /// let rules = grpc.methods[0].classifier();
    /// assert_eq!(rules.classify_code(Code::Aborted).retryable(), Retryable::IfIdempotent);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn classifier(&self) -> Grpc {
        let mut rules = Grpc::new();
        for code in all_codes() {
            let retryable = rules.classify_code(code).retryable() != Retryable::Never;
            if retryable && !self.retryable_codes.contains(&code) {
                rules = rules.code(code, Retryable::Never);
            }
        }
        for &code in &self.retryable_codes {
            rules = rules.code(code, Retryable::IfIdempotent);
        }
        rules
    }
}

impl GrpcServiceConfig {
    /// Imports a gRPC service config, refusing what meshless cannot do as written.
    ///
    /// ```
    /// use meshless::policy::GrpcServiceConfig;
    /// let err = GrpcServiceConfig::from_json_str(r#"{"methodConfig": [{"name": [{}],
    ///   "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
    ///     "backoffMultiplier": 1.5, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#).unwrap_err();
    /// assert_eq!(err.path(), "methodConfig[0].retryPolicy.backoffMultiplier");
    /// ```
    pub fn from_json_str(text: &str) -> Result<GrpcServiceConfig, ConfigError> {
        let raw: raw::ServiceConfig = super::Format::Json.parse(text)?;
        let methods = raw
            .method_config
            .into_iter()
            .enumerate()
            .map(|(i, method)| method.import(&format!("methodConfig[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        duplicates(&methods)?;
        let budget = raw.retry_throttling.map(|t| t.import()).transpose()?;
        Ok(GrpcServiceConfig { methods, budget })
    }

    /// The policy gRPC would apply to `service`/`method`: the entry naming the method, else
    /// the one naming the service alone, else the one with an empty name.
    ///
    /// ```
    /// use meshless::policy::GrpcServiceConfig;
    /// let grpc = GrpcServiceConfig::from_json_str(r#"{"methodConfig": [
    ///   {"name": [{"service": "a.S"}], "timeout": "1s"},
    ///   {"name": [{"service": "a.S", "method": "Slow"}], "timeout": "9s"}]}"#)?;
    /// assert_eq!(grpc.policy_for("a.S", "Slow").unwrap().timeout.unwrap().as_secs(), 9);
    /// assert_eq!(grpc.policy_for("a.S", "Fast").unwrap().timeout.unwrap().as_secs(), 1);
    /// assert!(grpc.policy_for("b.T", "Fast").is_none());
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn policy_for(&self, service: &str, method: &str) -> Option<&GrpcMethodPolicy> {
        let matches = |want_service: Option<&str>, want_method: Option<&str>| {
            self.methods.iter().find(|policy| {
                policy.names.iter().any(|name| {
                    name.service.as_deref() == want_service && name.method.as_deref() == want_method
                })
            })
        };
        matches(Some(service), Some(method))
            .or_else(|| matches(Some(service), None))
            .or_else(|| matches(None, None))
    }

    /// Writes the policy for `service`/`method` and the retry budget into `config`, for a
    /// client that calls that method: the deadline, the attempt timeout, retries, hedging.
    /// Returns the policy applied, `None` (and `config` untouched but for the budget) when no
    /// entry matches. Give the client its [`classifier`](GrpcMethodPolicy::classifier) too.
    ///
    /// ```
    /// use meshless::policy::{ClientConfig, GrpcServiceConfig};
    /// let grpc = GrpcServiceConfig::from_json_str(r#"{"methodConfig": [{"name": [{}],
    ///   "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.02s",
    ///     "nonFatalStatusCodes": ["UNAVAILABLE"]}}]}"#)?;
    /// let mut config = ClientConfig::default();
    /// grpc.apply("s.S", "M", &mut config);
    /// assert_eq!(config.hedge.map(|h| h.max_hedges), Some(2));
    /// assert_eq!(config.retry.max_retries, 0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn apply<'a>(
        &'a self,
        service: &str,
        method: &str,
        config: &mut ClientConfig,
    ) -> Option<&'a GrpcMethodPolicy> {
        if let Some(budget) = &self.budget {
            config.budget = budget.clone();
        }
        let policy = self.policy_for(service, method)?;
        if let Some(timeout) = policy.timeout {
            config.deadline.timeout = timeout;
        }
        if let Some(timeout) = policy.attempt_timeout {
            config.attempt_timeout.timeout = Some(timeout);
        }
        if let Some(retry) = &policy.retry {
            config.retry.max_retries = retry.max_retries;
            config.retry.backoff = retry.backoff;
        }
        if let Some(hedge) = &policy.hedge {
            config.hedge = Some(hedge.clone());
            config.retry.max_retries = 0;
        }
        Some(policy)
    }
}

impl GrpcServiceConfig {
    /// One [`Route`] per `methodConfig[].name[]` entry, ordered as gRPC picks them (the
    /// entries naming a method, then those naming a service, then the empty name), so that
    /// the first route that fits is the entry gRPC would apply: the whole service config on
    /// one client. A route carries the entry's `timeout`, `perAttemptRecvTimeout`, retries
    /// (`maxAttempts` − 1; none with a hedging policy) and hedging (`maxAttempts` − 1 hedges
    /// after the fixed `hedgingDelay`). An entry with a retry or hedging policy marks its calls
    /// idempotent: the service config says they are safe to send again, as gRPC reads it. The
    /// retryable codes stay the client's ([`classifier`](GrpcMethodPolicy::classifier)), and
    /// an entry's backoff is not per route (the client's applies).
    ///
    /// ```
    /// use meshless::policy::GrpcServiceConfig;
    /// let grpc = GrpcServiceConfig::from_json_str(r#"{"methodConfig": [
    ///   {"name": [{}], "timeout": "1s"},
    ///   {"name": [{"service": "a.S", "method": "Slow"}], "timeout": "9s"}]}"#)?;
    /// let routes = grpc.routes();
    /// assert_eq!(routes[0].matches.method.as_deref(), Some("Slow"));
    /// assert_eq!(routes[1].timeout, Some(std::time::Duration::from_secs(1)));
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn routes(&self) -> Vec<Route> {
        let mut routes = Vec::new();
        for rank in 0..3 {
            for policy in &self.methods {
                for name in &policy.names {
                    let route = match (&name.service, &name.method, rank) {
                        (Some(service), Some(method), 0) => Route::grpc_method(service, method),
                        (Some(service), None, 1) => Route::grpc_service(service),
                        (None, _, 2) => Route::any(),
                        _ => continue,
                    };
                    routes.push(policy.route(route));
                }
            }
        }
        routes
    }
}

impl GrpcMethodPolicy {
    /// `route` with this entry's policies.
    fn route(&self, mut route: Route) -> Route {
        route.timeout = self.timeout;
        route.attempt_timeout = self.attempt_timeout;
        if let Some(retry) = &self.retry {
            route.max_retries = Some(retry.max_retries);
            route.idempotent = Some(true);
        }
        if let Some(hedge) = &self.hedge {
            route.max_retries = Some(0);
            route.idempotent = Some(true);
            let mut plan = RouteHedge::on().max_hedges(hedge.max_hedges);
            if let HedgeDelay::Fixed(delay) = hedge.delay {
                plan = plan.delay(delay);
            }
            route.hedge = Some(plan);
        }
        route
    }
}

fn all_codes() -> impl Iterator<Item = Code> {
    (0..17).map(Code::from_i32)
}

fn bad(path: String, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(SETTING, problem).placed(path)
}

fn duration(path: String, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|problem| bad(path, problem))
}

/// `maxAttempts`: at least 2, above 5 read as 5.
fn attempts(path: String, n: u32) -> Result<u32, ConfigError> {
    if n < 2 {
        return Err(bad(path, format!("{n}: gRPC requires at least 2")));
    }
    Ok(n.min(MAX_ATTEMPTS))
}

fn codes(path: &str, values: &[raw::CodeValue]) -> Result<Vec<Code>, ConfigError> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            value.code().ok_or_else(|| {
                bad(
                    format!("{path}[{i}]"),
                    format!("{value} is not a gRPC status code"),
                )
            })
        })
        .collect()
}

mod raw;

/// A name given twice, in one entry or two: gRPC refuses such a config (the second entry could
/// never apply), and so does the import, at the second.
fn duplicates(methods: &[GrpcMethodPolicy]) -> Result<(), ConfigError> {
    let mut seen: Vec<(&GrpcMethodName, usize, usize)> = Vec::new();
    for (i, policy) in methods.iter().enumerate() {
        for (j, name) in policy.names.iter().enumerate() {
            if let Some((_, first_i, first_j)) = seen.iter().find(|(n, _, _)| *n == name) {
                return Err(ConfigError::new(
                    "grpc_service_config",
                    format!("the same name as methodConfig[{first_i}].name[{first_j}] (gRFC A2)"),
                )
                .placed(format!("methodConfig[{i}].name[{j}]")));
            }
            seen.push((name, i, j));
        }
    }
    Ok(())
}
