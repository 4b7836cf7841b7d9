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
    pub(super) fn import(mut self, at: &str) -> Result<GrpcMethodPolicy, ConfigError> {
        for (i, name) in self.name.iter_mut().enumerate() {
            // gRFC A2: an empty service or method is one not given (the default entry, every
            // method of the service).
            name.service.take_if(|s| s.is_empty());
            name.method.take_if(|m| m.is_empty());
            if name.service.is_none() && name.method.is_some() {
                return Err(bad(
                    format!("{at}.name[{i}].service"),
                    "a method needs its service (gRFC A2)",
                ));
            }
            for (field, value) in [("service", &name.service), ("method", &name.method)] {
                if let Some(value) = value {
                    if !crate::route::grpc_name(value) {
                        return Err(bad(
                            format!("{at}.name[{i}].{field}"),
                            format!(
                                "{value:?} never fits a call: a gRPC name is visible ASCII \
                                 without '/', '?' or '#'"
                            ),
                        ));
                    }
                }
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
            .map(|t| positive(format!("{at}.timeout"), &t))
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

/// A duration that must not be zero: a limit of no time at all would fail every call. Refused
/// here, at the service config's own field, rather than later under meshless's names.
fn positive(at: String, text: &str) -> Result<Duration, ConfigError> {
    let value = duration(at.clone(), text)?;
    if value.is_zero() {
        return Err(bad(at, "must be greater than zero"));
    }
    Ok(value)
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
            .map(|t| positive(format!("{at}.perAttemptRecvTimeout"), &t))
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
        if budget.ratio == 0.0 {
            // Kept to four places, a ratio this small is none at all: no retry would ever be
            // paid for beyond the floor, which is not what a positive ratio asks.
            return Err(bad(
                format!("{AT}.tokenRatio"),
                format!(
                    "{} is too small: below 0.00005 it rounds to no ratio at all",
                    self.token_ratio
                ),
            ));
        }
        budget.min_per_second = self.max_tokens / 2.0 / budget.ttl.as_secs_f64();
        Ok(budget)
    }
}
