//! Throttling's settings as plain data, checked in one place.

use crate::error::ConfigError;
use std::time::Duration;

/// Default multiplier of accepted requests (Google SRE book, "Handling Overload": K = 2). The
/// client sends up to K times what the upstream accepts before it starts refusing.
pub const DEFAULT_K: f64 = 2.0;

/// Default window of the request and accept counts: 2 minutes, the SRE book's "history of the
/// last two minutes". It must be far longer than the worst latency: a request is counted when it
/// is sent and its accept only when its answer arrives.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);

/// Default cap on the refusal probability: 0.8, Envoy admission control's default
/// `max_rejection_probability`. At least a fifth of the requests still reach the upstream, so
/// that its recovery shows in the accepts without waiting for the window to forget the outage;
/// a full outage is the circuit breaker's to handle.
pub const DEFAULT_MAX_PROBABILITY: f64 = 0.8;

/// The settings of a [`ThrottleLayer`](super::ThrottleLayer) as plain data.
///
/// | field | default | valid | source |
/// |---|---|---|---|
/// | `enabled` | `false` | any | off in the client: the breaker covers outages |
/// | `k` | [`DEFAULT_K`] (2) | finite, ≥ 1 | Google SRE book |
/// | `window` | [`DEFAULT_WINDOW`] (2 min) | 1 s to 1 day | Google SRE book |
/// | `max_probability` | [`DEFAULT_MAX_PROBABILITY`] (0.8) | 0 to 1 | Envoy admission control |
/// | (requests in flight) | in the denominator only | | not in the SRE book: an unanswered request is neither accepted nor refused, so a burst before any answer is not throttled |
///
/// `k` below 1 would refuse requests from an upstream that accepts all of them; a
/// `max_probability` of 0 counts but never refuses (a dry run, with the gauge), 1 lifts the cap.
///
/// ```
/// use meshless::throttle::{ThrottleConfig, ThrottleLayer};
///
/// let mut config = ThrottleConfig::default();
/// config.enabled = true;
/// config.k = 1.5;
/// let layer = ThrottleLayer::from_config(&config)?;
/// assert_eq!(layer.config(), config);
///
/// config.k = 0.5;
/// let err = ThrottleLayer::from_config(&config).unwrap_err();
/// assert_eq!(err.setting(), "throttle.k");
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct ThrottleConfig {
    /// Whether the layer throttles at all. Off, it passes requests straight through.
    pub enabled: bool,
    /// How many times the accepted requests the client may send before refusing some.
    pub k: f64,
    /// How far back requests and accepts are counted.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub window: Duration,
    /// The highest probability of refusing a request.
    pub max_probability: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            enabled: false,
            k: DEFAULT_K,
            window: DEFAULT_WINDOW,
            max_probability: DEFAULT_MAX_PROBABILITY,
        }
    }
}

/// The shortest window: a bucket of it (a twentieth) is then 50 ms.
const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The longest window: longer only keeps an outage in memory for longer.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl ThrottleConfig {
    /// Checks every field, naming the first bad one (`throttle.k`, `throttle.window`,
    /// `throttle.max_probability`).
    ///
    /// ```
    /// let mut config = meshless::throttle::ThrottleConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.max_probability = 1.5;
    /// assert_eq!(config.validate().unwrap_err().setting(), "throttle.max_probability");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.k.is_finite() || self.k < 1.0 {
            return Err(ConfigError::new(
                "throttle.k",
                format!(
                    "{} must be a number of at least 1 (below 1, an upstream that accepts \
                     every request would still be throttled)",
                    self.k
                ),
            ));
        }
        if self.window < MIN_WINDOW || self.window > MAX_WINDOW {
            return Err(ConfigError::new(
                "throttle.window",
                format!(
                    "{:?} must be between {MIN_WINDOW:?} and {MAX_WINDOW:?} (and longer than \
                     the worst latency)",
                    self.window
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.max_probability) {
            return Err(ConfigError::new(
                "throttle.max_probability",
                format!("{} must be between 0 and 1", self.max_probability),
            ));
        }
        Ok(())
    }
}
