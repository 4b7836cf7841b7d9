//! The retry layer's settings as plain data, checked in one place.

use super::layer::{DEFAULT_MAX_PUSHBACK, DEFAULT_MAX_RETRIES};
use super::replay::{DEFAULT_REPLAY_CAP, DEFAULT_REPLAY_FRAMES};
use crate::backoff::BackoffConfig;
use crate::error::ConfigError;
use std::time::Duration;

/// The settings of a [`RetryLayer`](super::RetryLayer) as plain data: what a configuration
/// file describes. The budget (shared state), the classifier and the idempotency rules (code)
/// are given to the layer apart.
///
/// `Default` gives the documented defaults; [`validate`](Self::validate) is the one place the
/// fields are checked, and [`RetryLayer::from_config`](super::RetryLayer::from_config) calls it.
///
/// | field | default | valid | edge values |
/// |---|---|---|---|
/// | `max_retries` | [`DEFAULT_MAX_RETRIES`] (2) | any | 0 = no retries (each request sent once) |
/// | `backoff` | full jitter, 25 ms base, 250 ms cap | see [`BackoffConfig`] | |
/// | `replay_cap` | [`DEFAULT_REPLAY_CAP`] (64 KiB) | any | 0 = only requests without body bytes are retried |
/// | `replay_frames` | [`DEFAULT_REPLAY_FRAMES`] | any | 0 = only requests without body frames are retried |
/// | `max_pushback` | [`DEFAULT_MAX_PUSHBACK`] (10 s) | any | 0 = a server asking for any wait gets its answer returned; `Duration::MAX` = honour any |
/// | `pushback_per_endpoint` | `false` | any | |
/// | `defer_to_caller` | `true` | any | `false` = retry even when the caller retries ([`CallerRetries`](super::CallerRetries)) |
///
/// ```
/// use meshless::{budget::Budget, retry::{RetryConfig, RetryLayer}};
///
/// let mut config = RetryConfig::default();
/// config.max_retries = 1;
/// let layer = RetryLayer::from_config(Budget::default(), &config)?;
/// assert_eq!(layer.config(), config);
///
/// config.backoff.base = std::time::Duration::ZERO;
/// let err = RetryLayer::from_config(Budget::default(), &config).unwrap_err();
/// assert_eq!(err.setting(), "retry.backoff.base");
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct RetryConfig {
    /// The most retries for one request.
    pub max_retries: u32,
    /// The wait between attempts.
    pub backoff: BackoffConfig,
    /// The most request-body bytes kept for replay; a larger body is sent once.
    pub replay_cap: usize,
    /// The most request-body data frames kept for replay; a body in more is sent once.
    pub replay_frames: usize,
    /// The longest server pushback the layer waits out.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub max_pushback: Duration,
    /// Whether a server's pushback holds back its endpoint alone rather than the request.
    pub pushback_per_endpoint: bool,
    /// Whether a request whose caller retries it ([`CallerRetries`](super::CallerRetries))
    /// leaves its retries to the caller, but for attempts that never left.
    pub defer_to_caller: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: BackoffConfig::default(),
            replay_cap: DEFAULT_REPLAY_CAP,
            replay_frames: DEFAULT_REPLAY_FRAMES,
            max_pushback: DEFAULT_MAX_PUSHBACK,
            pushback_per_endpoint: false,
            defer_to_caller: true,
        }
    }
}

impl RetryConfig {
    /// Checks every field, naming the first bad one (`retry.backoff.base`,
    /// `retry.backoff.cap`). The counts and durations have no invalid value: each edge has the
    /// meaning the table above gives it.
    ///
    /// ```
    /// let mut config = meshless::retry::RetryConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.backoff.cap = std::time::Duration::from_millis(1);
    /// assert_eq!(config.validate().unwrap_err().setting(), "retry.backoff.cap");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backoff.validate().map_err(|err| {
            let setting = match err.setting() {
                "backoff.base" => "retry.backoff.base",
                _ => "retry.backoff.cap",
            };
            ConfigError::new(setting, err.problem())
        })
    }
}
