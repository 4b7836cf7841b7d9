//! Fault injection's settings as plain data, checked in one place.

use crate::error::ConfigError;
use http::{HeaderName, HeaderValue};
use std::time::Duration;

/// Default status of an injected error response: 503 Service Unavailable, the answer of an
/// overloaded or restarting upstream (Envoy's fault filter and Simmy's outcome examples use it).
pub const DEFAULT_ERROR_STATUS: u16 = 503;

/// Default gRPC status of an injected error answer to a gRPC request: 14, `UNAVAILABLE`, the
/// gRPC counterpart of 503.
pub const DEFAULT_GRPC_CODE: i32 = 14;

/// The longest injected delay, jitter included: longer would only hang a test.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// What to inject into the requests one rule covers, each fault at its own rate.
///
/// Two independent draws per request decide its faults: one whether it is **delayed** (by
/// `delay` plus a uniform share of `delay_jitter`, before the inner service is polled), the
/// other whether it is answered by an **error response**, **reset** or **refused** (one of
/// them at most, so `error_rate + reset_rate + refuse_rate` must not exceed 1) instead of
/// reaching the inner service. A delayed request may also fail: the delay comes first.
///
/// | field | default | valid |
/// |---|---|---|
/// | `delay_rate` | 0 | 0 to 1 |
/// | `delay` | 0 | up to [`MAX_DELAY`] with the jitter |
/// | `delay_jitter` | 0 | up to [`MAX_DELAY`] with the delay |
/// | `error_rate` | 0 | 0 to 1 |
/// | `error_status` | [`DEFAULT_ERROR_STATUS`] (503) | 400 to 599 |
/// | `error_grpc_code` | [`DEFAULT_GRPC_CODE`] (14, `UNAVAILABLE`) | 1 to 16 |
/// | `error_headers` | none | valid header names and values |
/// | `reset_rate` | 0 | 0 to 1 |
/// | `refuse_rate` | 0 | 0 to 1 |
///
/// ```
/// use meshless::chaos::Faults;
/// use std::time::Duration;
///
/// let faults = Faults::none()
///     .delay(0.1, Duration::from_millis(50))
///     .error(0.05, 503)
///     .error_header("retry-after", "1")
///     .reset(0.01);
/// assert_eq!(faults.error_status, 503);
/// assert!(faults.is_active());
/// assert!(!Faults::none().is_active());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct Faults {
    /// The share of requests delayed.
    pub delay_rate: f64,
    /// The fixed part of an injected delay.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub delay: Duration,
    /// The random part: a delayed request waits `delay` plus a uniform draw in
    /// `[0, delay_jitter]`.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub delay_jitter: Duration,
    /// The share of requests answered by an error response instead of the inner service.
    pub error_rate: f64,
    /// The HTTP status of an injected error response.
    pub error_status: u16,
    /// The gRPC status of an injected error answer to a gRPC request (a request whose
    /// `content-type` starts with `application/grpc`): a trailers-only response, HTTP 200 with
    /// `grpc-status` in its headers, as a gRPC server that fails a call at once sends it.
    pub error_grpc_code: i32,
    /// Headers added to every injected error response (`retry-after`, say), as
    /// `(name, value)` pairs.
    pub error_headers: Vec<(String, String)>,
    /// The share of requests failed as a reset connection would fail them: may have been
    /// processed, so retried only when idempotent.
    pub reset_rate: f64,
    /// The share of requests failed as a refused connection would fail them: never sent, so
    /// retried for any request.
    pub refuse_rate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            delay_rate: 0.0,
            delay: Duration::ZERO,
            delay_jitter: Duration::ZERO,
            error_rate: 0.0,
            error_status: DEFAULT_ERROR_STATUS,
            error_grpc_code: DEFAULT_GRPC_CODE,
            error_headers: Vec::new(),
            reset_rate: 0.0,
            refuse_rate: 0.0,
        }
    }
}

impl Faults {
    /// No fault at all (the default).
    ///
    /// ```
    /// assert!(!meshless::chaos::Faults::none().is_active());
    /// ```
    pub fn none() -> Self {
        Faults::default()
    }

    /// Delays `rate` of the requests by `delay` (plus the jitter, if any).
    ///
    /// ```
    /// let faults = meshless::chaos::Faults::none().delay(0.5, std::time::Duration::from_millis(10));
    /// assert_eq!(faults.delay_rate, 0.5);
    /// ```
    pub fn delay(mut self, rate: f64, delay: Duration) -> Self {
        self.delay_rate = rate;
        self.delay = delay;
        self
    }

    /// Adds a uniform random share of `jitter` to each injected delay.
    ///
    /// ```
    /// let faults = meshless::chaos::Faults::none().delay_jitter(std::time::Duration::from_millis(5));
    /// assert_eq!(faults.delay_jitter.as_millis(), 5);
    /// ```
    pub fn delay_jitter(mut self, jitter: Duration) -> Self {
        self.delay_jitter = jitter;
        self
    }

    /// Answers `rate` of the requests with an error response of this HTTP status.
    ///
    /// ```
    /// let faults = meshless::chaos::Faults::none().error(0.1, 429);
    /// assert_eq!(faults.error_status, 429);
    /// ```
    pub fn error(mut self, rate: f64, status: u16) -> Self {
        self.error_rate = rate;
        self.error_status = status;
        self
    }

    /// The gRPC status of injected error answers to gRPC requests (default 14, `UNAVAILABLE`).
    ///
    /// ```
    /// let faults = meshless::chaos::Faults::none().error_grpc_code(8);
    /// assert_eq!(faults.error_grpc_code, 8);
    /// ```
    pub fn error_grpc_code(mut self, code: i32) -> Self {
        self.error_grpc_code = code;
        self
    }

    /// Adds a header to injected error responses.
    ///
    /// ```
    /// let faults = meshless::chaos::Faults::none().error_header("retry-after", "2");
    /// assert_eq!(faults.error_headers.len(), 1);
    /// ```
    pub fn error_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.error_headers.push((name.into(), value.into()));
        self
    }

    /// Fails `rate` of the requests as a reset connection would.
    ///
    /// ```
    /// let faults = meshless::chaos::Faults::none().reset(0.01);
    /// assert_eq!(faults.reset_rate, 0.01);
    /// ```
    pub fn reset(mut self, rate: f64) -> Self {
        self.reset_rate = rate;
        self
    }

    /// Fails `rate` of the requests as a refused connection would: nothing was sent.
    ///
    /// ```
    /// let faults = meshless::chaos::Faults::none().refuse(0.2);
    /// assert_eq!(faults.refuse_rate, 0.2);
    /// ```
    pub fn refuse(mut self, rate: f64) -> Self {
        self.refuse_rate = rate;
        self
    }

    /// True when some fault has a rate above 0 (a delay of zero length counts too: it still
    /// yields to the scheduler once).
    ///
    /// ```
    /// assert!(meshless::chaos::Faults::none().reset(0.5).is_active());
    /// ```
    pub fn is_active(&self) -> bool {
        [
            self.delay_rate,
            self.error_rate,
            self.reset_rate,
            self.refuse_rate,
        ]
        .iter()
        .any(|rate| *rate > 0.0)
    }
}

/// Faults for the requests of one route: a method and/or a path prefix. A rule with neither
/// matches every request.
///
/// ```
/// use meshless::chaos::{ChaosRule, Faults};
///
/// let rule = ChaosRule::new().method("POST").path_prefix("/orders").faults(Faults::none().reset(0.1));
/// assert_eq!(rule.method.as_deref(), Some("POST"));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct ChaosRule {
    /// The method the request must have (`"GET"`, compared exactly); `None` for any.
    pub method: Option<String>,
    /// The start of the path the request must have (`"/api/"`, a plain string prefix of the
    /// URI's path, so `"/api"` also matches `"/apix"`); `None` for any.
    pub path_prefix: Option<String>,
    /// What to inject into the requests it matches.
    pub faults: Faults,
}

impl ChaosRule {
    /// A rule that matches every request and injects nothing yet.
    ///
    /// ```
    /// let rule = meshless::chaos::ChaosRule::new();
    /// assert!(rule.method.is_none() && rule.path_prefix.is_none());
    /// ```
    pub fn new() -> Self {
        ChaosRule::default()
    }

    /// Matches only requests of this method.
    ///
    /// ```
    /// let rule = meshless::chaos::ChaosRule::new().method("GET");
    /// ```
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Matches only requests whose path starts with `prefix`.
    ///
    /// ```
    /// let rule = meshless::chaos::ChaosRule::new().path_prefix("/v1/");
    /// ```
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// The faults to inject into the matched requests.
    ///
    /// ```
    /// use meshless::chaos::{ChaosRule, Faults};
    /// let rule = ChaosRule::new().faults(Faults::none().error(1.0, 500));
    /// ```
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}

/// The settings of a [`ChaosLayer`](super::ChaosLayer) as plain data.
///
/// A request gets the faults of the first of `rules` that matches it, or `faults` when none
/// does. Off by default: `ChaosConfig::default()` injects nothing, and neither does a config
/// whose rates are all 0.
///
/// | field | default | valid |
/// |---|---|---|
/// | `enabled` | `false` | any |
/// | `seed` | `None` (a random seed) | any |
/// | `faults` | [`Faults::none`] | see [`Faults`] (named `chaos.<field>`) |
/// | `rules` | none | see [`ChaosRule`] (named `chaos.rules.<field>`, with the rule's index) |
///
/// ```
/// use meshless::chaos::{ChaosConfig, ChaosLayer, Faults};
///
/// let mut config = ChaosConfig::default();
/// config.enabled = true;
/// config.seed = Some(7);
/// config.faults = Faults::none().error(0.1, 503);
/// let layer = ChaosLayer::from_config(&config)?;
/// assert_eq!(layer.config(), config);
///
/// config.faults.error_rate = 1.5;
/// let err = ChaosLayer::from_config(&config).unwrap_err();
/// assert_eq!(err.setting(), "chaos.error_rate");
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct ChaosConfig {
    /// Whether the layer injects anything. Off, it passes requests straight through.
    pub enabled: bool,
    /// The seed of the draws: the same seed and the same sequence of requests inject the same
    /// faults. `None` draws a random seed when the layer is configured.
    pub seed: Option<u64>,
    /// The faults of requests no rule matches.
    pub faults: Faults,
    /// Per-route faults: the first rule that matches a request decides its faults.
    pub rules: Vec<ChaosRule>,
}

impl ChaosConfig {
    /// True when the layer would inject something: enabled, and some rate above 0.
    ///
    /// ```
    /// use meshless::chaos::{ChaosConfig, Faults};
    /// assert!(!ChaosConfig::default().is_active());
    /// let mut config = ChaosConfig::default();
    /// config.enabled = true;
    /// config.faults = Faults::none().refuse(0.1);
    /// assert!(config.is_active());
    /// ```
    pub fn is_active(&self) -> bool {
        self.enabled
            && (self.faults.is_active() || self.rules.iter().any(|rule| rule.faults.is_active()))
    }

    /// Checks every field, naming the first bad one: `chaos.<field>` for the default faults,
    /// `chaos.rules.<field>` with the rule's [`index`](ConfigError::index) for a rule's.
    ///
    /// ```
    /// use meshless::chaos::{ChaosConfig, ChaosRule, Faults};
    ///
    /// let mut config = ChaosConfig::default();
    /// config.faults.reset_rate = f64::NAN;
    /// assert_eq!(config.validate().unwrap_err().setting(), "chaos.reset_rate");
    ///
    /// let mut config = ChaosConfig::default();
    /// config.rules.push(ChaosRule::new().path_prefix("no-slash"));
    /// let err = config.validate().unwrap_err();
    /// assert_eq!((err.setting(), err.index()), ("chaos.rules.path_prefix", Some(0)));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_faults(&self.faults, &TOP)
            .map_err(|(setting, problem)| ConfigError::new(setting, problem))?;
        for (index, rule) in self.rules.iter().enumerate() {
            validate_rule(rule)
                .map_err(|(setting, problem)| ConfigError::at(setting, index, problem))?;
        }
        Ok(())
    }
}

/// The setting names of one set of faults: the default one's, or a rule's.
struct Names {
    delay_rate: &'static str,
    delay: &'static str,
    error_rate: &'static str,
    error_status: &'static str,
    error_grpc_code: &'static str,
    error_headers: &'static str,
    reset_rate: &'static str,
    refuse_rate: &'static str,
}

const TOP: Names = Names {
    delay_rate: "chaos.delay_rate",
    delay: "chaos.delay",
    error_rate: "chaos.error_rate",
    error_status: "chaos.error_status",
    error_grpc_code: "chaos.error_grpc_code",
    error_headers: "chaos.error_headers",
    reset_rate: "chaos.reset_rate",
    refuse_rate: "chaos.refuse_rate",
};

const RULE: Names = Names {
    delay_rate: "chaos.rules.delay_rate",
    delay: "chaos.rules.delay",
    error_rate: "chaos.rules.error_rate",
    error_status: "chaos.rules.error_status",
    error_grpc_code: "chaos.rules.error_grpc_code",
    error_headers: "chaos.rules.error_headers",
    reset_rate: "chaos.rules.reset_rate",
    refuse_rate: "chaos.rules.refuse_rate",
};

type Problem = (&'static str, String);

fn validate_rule(rule: &ChaosRule) -> Result<(), Problem> {
    if let Some(method) = &rule.method {
        if let Some(problem) = crate::route::method_problem(method) {
            return Err(("chaos.rules.method", problem));
        }
    }
    if let Some(prefix) = &rule.path_prefix {
        if !prefix.starts_with('/') {
            return Err((
                "chaos.rules.path_prefix",
                format!("{prefix:?} must start with '/'"),
            ));
        }
    }
    validate_faults(&rule.faults, &RULE)
}

fn validate_faults(faults: &Faults, names: &Names) -> Result<(), Problem> {
    for (name, rate) in [
        (names.delay_rate, faults.delay_rate),
        (names.error_rate, faults.error_rate),
        (names.reset_rate, faults.reset_rate),
        (names.refuse_rate, faults.refuse_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err((name, format!("{rate} must be between 0 and 1")));
        }
    }
    let outcomes = faults.error_rate + faults.reset_rate + faults.refuse_rate;
    if outcomes > 1.0 {
        // Named after the last of the three, which is what overflows the draw's interval.
        return Err((
            names.refuse_rate,
            format!(
                "error_rate + reset_rate + refuse_rate = {outcomes} must not exceed 1 (a \
                 request gets one of them at most)"
            ),
        ));
    }
    if faults.delay.saturating_add(faults.delay_jitter) > MAX_DELAY {
        return Err((
            names.delay,
            format!(
                "{:?} plus a jitter of {:?} must not exceed {MAX_DELAY:?}",
                faults.delay, faults.delay_jitter
            ),
        ));
    }
    if !(400..=599).contains(&faults.error_status) {
        return Err((
            names.error_status,
            format!(
                "{} must be an error status, 400 to 599",
                faults.error_status
            ),
        ));
    }
    if !(1..=16).contains(&faults.error_grpc_code) {
        return Err((
            names.error_grpc_code,
            format!(
                "{} must be a gRPC error code, 1 to 16",
                faults.error_grpc_code
            ),
        ));
    }
    for (name, value) in &faults.error_headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err((
                names.error_headers,
                format!("{name:?} is not a header name"),
            ));
        }
        if HeaderValue::from_str(value).is_err() {
            return Err((
                names.error_headers,
                format!("the value of {name:?}, {value:?}, is not a header value"),
            ));
        }
    }
    Ok(())
}
