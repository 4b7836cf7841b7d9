//! A gRPC service config (JSON) imported into meshless's settings.

use super::ClientConfig;
use super::duration::parse_duration;
use crate::backoff::{BackoffConfig, BackoffKind};
use crate::budget::BudgetConfig;
use crate::classify::{Code, Grpc, Retryable};
use crate::error::ConfigError;
use crate::hedge::{HedgeConfig, HedgeDelay, MAX_HEDGES};
use crate::retry::RetryConfig;
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

mod raw {
    //! The JSON as gRPC writes it (camelCase), before mapping.

    use super::*;
    use std::fmt;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(super) struct ServiceConfig {
        #[serde(default)]
        pub(super) method_config: Vec<MethodConfig>,
        pub(super) retry_throttling: Option<Throttling>,
        // Accepted and ignored: meshless picks endpoints by P2C over latency whatever the policy.
        #[serde(default, rename = "loadBalancingConfig")]
        _load_balancing_config: Option<serde::de::IgnoredAny>,
        #[serde(default, rename = "loadBalancingPolicy")]
        _load_balancing_policy: Option<serde::de::IgnoredAny>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(super) struct MethodConfig {
        #[serde(default)]
        name: Vec<GrpcMethodName>,
        timeout: Option<String>,
        retry_policy: Option<RetryPolicy>,
        hedging_policy: Option<HedgingPolicy>,
        #[serde(default)]
        wait_for_ready: bool,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct RetryPolicy {
        max_attempts: u32,
        initial_backoff: String,
        max_backoff: String,
        backoff_multiplier: f64,
        retryable_status_codes: Vec<CodeValue>,
        per_attempt_recv_timeout: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct HedgingPolicy {
        max_attempts: u32,
        hedging_delay: Option<String>,
        #[serde(default)]
        non_fatal_status_codes: Vec<CodeValue>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub(super) struct Throttling {
        max_tokens: f64,
        token_ratio: f64,
    }

    /// A status code as gRPC allows it: its number, or its name in any case.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum CodeValue {
        Number(i64),
        Name(String),
    }

    impl CodeValue {
        pub(super) fn code(&self) -> Option<Code> {
            match self {
                CodeValue::Number(n) => {
                    let n = i32::try_from(*n).ok().filter(|n| (0..17).contains(n))?;
                    Some(Code::from_i32(n))
                }
                CodeValue::Name(name) => all_codes().find(|code| {
                    code.label()
                        .strip_prefix("grpc_")
                        .is_some_and(|label| label.eq_ignore_ascii_case(name))
                }),
            }
        }
    }

    impl fmt::Display for CodeValue {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                CodeValue::Number(n) => write!(f, "{n}"),
                CodeValue::Name(name) => write!(f, "{name:?}"),
            }
        }
    }

    impl MethodConfig {
        pub(super) fn import(self, at: &str) -> Result<GrpcMethodPolicy, ConfigError> {
            for (i, name) in self.name.iter().enumerate() {
                if name.service.is_none() && name.method.is_some() {
                    return Err(bad(
                        format!("{at}.name[{i}].service"),
                        "a method needs its service (gRFC A2)",
                    ));
                }
            }
            if self.wait_for_ready {
                return Err(bad(
                    format!("{at}.waitForReady"),
                    "not supported: meshless waits for a ready endpoint only up to balance.fail_fast",
                ));
            }
            let timeout = self
                .timeout
                .map(|t| duration(format!("{at}.timeout"), &t))
                .transpose()?;
            let mut policy = GrpcMethodPolicy {
                names: self.name,
                timeout,
                attempt_timeout: None,
                retry: None,
                hedge: None,
                retryable_codes: Vec::new(),
            };
            match (self.retry_policy, self.hedging_policy) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        format!("{at}.hedgingPolicy"),
                        "a method has a retryPolicy or a hedgingPolicy, not both (gRFC A6)",
                    ));
                }
                (Some(retry), None) => retry.import(&format!("{at}.retryPolicy"), &mut policy)?,
                (None, Some(hedge)) => hedge.import(&format!("{at}.hedgingPolicy"), &mut policy)?,
                (None, None) => {}
            }
            Ok(policy)
        }
    }

    impl RetryPolicy {
        fn import(self, at: &str, policy: &mut GrpcMethodPolicy) -> Result<(), ConfigError> {
            let attempts = attempts(format!("{at}.maxAttempts"), self.max_attempts)?;
            let base = duration(format!("{at}.initialBackoff"), &self.initial_backoff)?;
            let cap = duration(format!("{at}.maxBackoff"), &self.max_backoff)?;
            if base.is_zero() {
                return Err(bad(
                    format!("{at}.initialBackoff"),
                    "must be greater than zero",
                ));
            }
            if cap < base {
                return Err(bad(
                    format!("{at}.maxBackoff"),
                    format!("{cap:?} is less than initialBackoff ({base:?})"),
                ));
            }
            if self.backoff_multiplier != 2.0 {
                return Err(bad(
                    format!("{at}.backoffMultiplier"),
                    format!(
                        "{}: meshless's backoff doubles each retry, so only 2 keeps gRPC's waits",
                        self.backoff_multiplier
                    ),
                ));
            }
            if self.retryable_status_codes.is_empty() {
                return Err(bad(
                    format!("{at}.retryableStatusCodes"),
                    "is empty: gRPC requires at least one code",
                ));
            }
            policy.retryable_codes = codes(
                &format!("{at}.retryableStatusCodes"),
                &self.retryable_status_codes,
            )?;
            policy.attempt_timeout = self
                .per_attempt_recv_timeout
                .map(|t| duration(format!("{at}.perAttemptRecvTimeout"), &t))
                .transpose()?;
            policy.retry = Some(RetryConfig {
                max_retries: attempts - 1,
                backoff: BackoffConfig {
                    kind: BackoffKind::FullJitter,
                    base,
                    cap,
                },
                ..RetryConfig::default()
            });
            Ok(())
        }
    }

    impl HedgingPolicy {
        fn import(self, at: &str, policy: &mut GrpcMethodPolicy) -> Result<(), ConfigError> {
            let attempts = attempts(format!("{at}.maxAttempts"), self.max_attempts)?;
            let delay = match self.hedging_delay {
                Some(text) => duration(format!("{at}.hedgingDelay"), &text)?,
                None => Duration::ZERO,
            };
            if delay.is_zero() {
                return Err(bad(
                    format!("{at}.hedgingDelay"),
                    "zero or missing: sending every copy at once is not supported (give a delay)",
                ));
            }
            policy.retryable_codes = codes(
                &format!("{at}.nonFatalStatusCodes"),
                &self.non_fatal_status_codes,
            )?;
            policy.hedge = Some(HedgeConfig {
                max_hedges: (attempts - 1).min(MAX_HEDGES),
                delay: HedgeDelay::Fixed(delay),
                ..HedgeConfig::default()
            });
            Ok(())
        }
    }

    impl Throttling {
        pub(super) fn import(self) -> Result<BudgetConfig, ConfigError> {
            const AT: &str = "retryThrottling";
            if !(self.max_tokens > 0.0 && self.max_tokens <= 1000.0) {
                return Err(bad(
                    format!("{AT}.maxTokens"),
                    format!("{} is outside (0, 1000] (gRFC A6)", self.max_tokens),
                ));
            }
            if !(self.token_ratio > 0.0 && self.token_ratio.is_finite()) {
                return Err(bad(
                    format!("{AT}.tokenRatio"),
                    format!("{} must be greater than zero", self.token_ratio),
                ));
            }
            let mut budget = BudgetConfig::default();
            let ratio = self.token_ratio / (1.0 + self.token_ratio);
            budget.ratio = (ratio * 10_000.0).round() / 10_000.0;
            budget.min_per_second = self.max_tokens / 2.0 / budget.ttl.as_secs_f64();
            Ok(budget)
        }
    }
}
