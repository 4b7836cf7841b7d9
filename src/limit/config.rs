//! The concurrency limit's settings as plain data, checked in one place.

use crate::error::ConfigError;
use std::time::Duration;

/// How the limit is chosen: a fixed number, or one of two adaptive algorithms.
///
/// ```
/// use meshless::limit::{Algorithm, GradientConfig};
/// let fixed = Algorithm::Fixed { max: 64 };
/// let adaptive = Algorithm::Gradient(GradientConfig::default());
/// assert_ne!(fixed, adaptive);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields, rename_all = "snake_case")
)]
pub enum Algorithm {
    /// At most `max` requests in flight, always.
    Fixed {
        /// The limit.
        max: u32,
    },
    /// The limit follows the latency: it falls when the latency grows with concurrency
    /// (queueing at the upstream) and grows while it does not.
    Gradient(GradientConfig),
    /// Additive increase, multiplicative decrease: +1 per success while busy, × `backoff` per
    /// drop (a timeout, or an upstream's overload answer: 503, 429).
    Aimd(AimdConfig),
    /// No limit: every request passes at once and holds no permit; the layer costs a branch.
    /// [`http::Client`](crate::http::Client)'s default.
    Unlimited,
}

/// The settings of the gradient algorithm ([`Algorithm::Gradient`]).
///
/// Each `window` (and at least `min_samples` successes) the median round-trip time of the
/// window is compared with a long-term baseline: the limit is multiplied by
/// `clamp(tolerance × baseline / median, 0.5, 1)`, a queue allowance of √limit is added, and the
/// result is smoothed into the limit with weight `smoothing`. Before that, from `initial`, a
/// slow start grows the limit by one per success while it is more than half used, until the
/// first sign of queueing. See the table of [`LimitConfig`] for each default and its source.
///
/// ```
/// let config = meshless::limit::GradientConfig::default();
/// assert_eq!((config.initial, config.min, config.max), (20, 20, 200));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct GradientConfig {
    /// The limit at start, from which slow start grows (one more per success while more
    /// than half used, until the first queueing).
    pub initial: u32,
    /// The limit never falls below this.
    pub min: u32,
    /// The limit never grows above this.
    pub max: u32,
    /// The weight of a window's new limit against the current one, in `(0, 1]`.
    pub smoothing: f64,
    /// How much slower than the baseline a window's median may be before the limit falls (≥ 1).
    pub tolerance: f64,
    /// How often the limit is recalculated (windows with fewer than `min_samples` successes
    /// are extended).
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub window: Duration,
    /// The fewest successes a window needs for its median to count.
    pub min_samples: u32,
    /// The number of busy windows the long-term baseline averages over.
    pub long_window: u32,
    /// How often, while the limit is cutting, one window at `min` measures the baseline again
    /// (± 15% at random); zero never does.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub recalculation: Duration,
}

impl Default for GradientConfig {
    fn default() -> Self {
        GradientConfig {
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            tolerance: 1.25,
            window: Duration::from_millis(100),
            min_samples: 10,
            long_window: 600,
            recalculation: Duration::from_secs(60),
        }
    }
}

/// The settings of the AIMD algorithm ([`Algorithm::Aimd`]).
///
/// ```
/// let config = meshless::limit::AimdConfig::default();
/// assert_eq!(config.backoff, 0.9);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct AimdConfig {
    /// The limit before any sample.
    pub initial: u32,
    /// The limit never falls below this.
    pub min: u32,
    /// The limit never grows above this.
    pub max: u32,
    /// The factor a drop multiplies the limit by, in `(0, 1)`.
    pub backoff: f64,
    /// A success slower than this counts as a drop.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub timeout: Duration,
}

impl Default for AimdConfig {
    fn default() -> Self {
        AimdConfig {
            initial: 20,
            min: 20,
            max: 200,
            backoff: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The settings of a [`LimitLayer`](super::LimitLayer) as plain data: what a configuration file describes.
///
/// `Default` gives [`http::Client`](crate::http::Client)'s defaults (no limit, no waiting;
/// [`LimitLayer::adaptive`](super::LimitLayer::adaptive) is the limit that finds itself);
/// [`validate`](Self::validate) is the one place the fields are checked, and
/// [`LimitLayer::from_config`](super::LimitLayer::from_config) calls it.
///
/// | field | default | source | valid |
/// |---|---|---|---|
/// | `algorithm` | `Unlimited` | linkerd has no client limit; Envoy's fixed 1,024 surprises callers whose own concurrency is higher. Choose `Gradient` (a limit that finds itself) for an upstream that can be overloaded | |
/// | `max_wait` | 0 (reject at once; an adaptive limit still learning — slow start until `min_samples` successes in a row come later than `tolerance` × the baseline, AIMD until its first drop — lets a request wait up to its deadline, 1 s without one, and refuses those still waiting once it has learnt) | tower's `LoadShed` rejects at once; never past the deadline. Refusing over a limit that has seen no queueing and no drop sheds load nobody showed to be too much: 32 closed-loop callers over the starting 20 had 20 of 20,000 requests served | any |
/// | `Fixed.max` | — | | ≥ 1 |
/// | `Gradient.initial` / `min` / `max` | 20 / 20 / 200 | Netflix concurrency-limits `Gradient2Limit` | 1 ≤ min ≤ initial ≤ max |
/// | `Gradient.smoothing` | 0.2 | Netflix `Gradient2Limit` | (0, 1] |
/// | `Gradient.tolerance` | 1.25 | Envoy adaptive concurrency's 25% buffer (Netflix `Gradient2Limit` rttTolerance is 1.5: with it the limit settles at 1.5× the upstream's capacity, and latency at 2× the uncongested in the lab's overload) | ≥ 1 |
/// | `Gradient.window` | 100 ms | Envoy adaptive concurrency `concurrency_update_interval` | > 0 |
/// | `Gradient.min_samples` | 10 | Netflix `WindowedLimit` windowSize | ≥ 1 |
/// | `Gradient.long_window` | 600 | Netflix `Gradient2Limit` longWindow | ≥ 1 |
/// | `Gradient.recalculation` | 60 s, ± 15% | Envoy `min_rtt_calc_interval`, jitter 15% | any; 0 = never |
/// | (start) | `initial`, slow start: +1 per success while more than half used (doubles per round trip) until two busy windows in a row queue (median > `tolerance` × the lowest window median) or a drop; then half the limit reached | TCP slow start (RFC 5681); a start at `min` with 0 wait refused 90% of a healthy client's requests | |
/// | (baseline) | the lowest busy window median during slow start; measured again at `min` for one window when slow start ends | Envoy measures the minimum RTT at `min_concurrency` | |
/// | (sample) | the window's median RTT | Envoy `sample_aggregate_percentile` p50 | |
/// | (queue allowance) | √limit | Netflix `Gradient2Limit` queueSize | |
/// | `Aimd.initial` / `min` / `max` | 20 / 20 / 200 | Netflix `AIMDLimit` | 1 ≤ min ≤ initial ≤ max |
/// | `Aimd.backoff` | 0.9 | Netflix `AIMDLimit` backoffRatio | (0, 1) |
/// | `Aimd.timeout` | 5 s | Netflix `AIMDLimit` timeout | > 0 |
///
/// ```
/// use meshless::limit::{Algorithm, LimitConfig, LimitLayer};
///
/// let mut config = LimitConfig::default();
/// config.algorithm = Algorithm::Fixed { max: 100 };
/// let layer = LimitLayer::from_config(&config)?;
/// assert_eq!(layer.config(), config);
///
/// config.algorithm = Algorithm::Fixed { max: 0 };
/// assert_eq!(config.validate().unwrap_err().setting(), "limit.max");
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct LimitConfig {
    /// How the limit is chosen.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::choice"))]
    pub algorithm: Algorithm,
    /// How long a request may wait for a permit when the limit is full (never past its
    /// deadline); zero rejects at once.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub max_wait: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            algorithm: Algorithm::Unlimited,
            max_wait: Duration::ZERO,
        }
    }
}

impl LimitConfig {
    /// Checks every field, naming the first bad one (`limit.max`, `limit.min`,
    /// `limit.initial`, `limit.smoothing`, `limit.tolerance`, `limit.window`,
    /// `limit.min_samples`, `limit.long_window`, `limit.backoff`, `limit.timeout`).
    ///
    /// ```
    /// use meshless::limit::{Algorithm, GradientConfig, LimitConfig};
    /// let mut gradient = GradientConfig::default();
    /// gradient.smoothing = 0.0;
    /// let mut config = LimitConfig::default();
    /// config.algorithm = Algorithm::Gradient(gradient);
    /// assert_eq!(config.validate().unwrap_err().setting(), "limit.smoothing");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.algorithm {
            Algorithm::Fixed { max } => {
                if *max == 0 {
                    return Err(ConfigError::new(
                        "limit.max",
                        "0 would refuse every request",
                    ));
                }
            }
            Algorithm::Gradient(g) => {
                bounds(g.initial, g.min, g.max)?;
                if !(g.smoothing > 0.0 && g.smoothing <= 1.0) {
                    return Err(ConfigError::new(
                        "limit.smoothing",
                        format!("{} is not in (0, 1]", g.smoothing),
                    ));
                }
                if !(g.tolerance >= 1.0 && g.tolerance.is_finite()) {
                    return Err(ConfigError::new(
                        "limit.tolerance",
                        format!(
                            "{} is below 1 (or not a number): the limit would fall at a steady latency",
                            g.tolerance
                        ),
                    ));
                }
                if g.window.is_zero() {
                    return Err(ConfigError::new("limit.window", "0ns is no window"));
                }
                if g.min_samples == 0 {
                    return Err(ConfigError::new(
                        "limit.min_samples",
                        "a median needs a sample",
                    ));
                }
                if g.long_window == 0 {
                    return Err(ConfigError::new(
                        "limit.long_window",
                        "0 windows is no baseline",
                    ));
                }
            }
            Algorithm::Unlimited => {}
            Algorithm::Aimd(a) => {
                bounds(a.initial, a.min, a.max)?;
                if !(a.backoff > 0.0 && a.backoff < 1.0) {
                    return Err(ConfigError::new(
                        "limit.backoff",
                        format!("{} is not in (0, 1)", a.backoff),
                    ));
                }
                if a.timeout.is_zero() {
                    return Err(ConfigError::new(
                        "limit.timeout",
                        "0ns would count every success as a drop",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `1 ≤ min ≤ initial ≤ max`, naming the first bound broken.
fn bounds(initial: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    if min == 0 {
        return Err(ConfigError::new(
            "limit.min",
            "0 would let the limit refuse everything",
        ));
    }
    if max < min {
        return Err(ConfigError::new(
            "limit.max",
            format!("{max} is below min ({min})"),
        ));
    }
    if initial < min || initial > max {
        return Err(ConfigError::new(
            "limit.initial",
            format!("{initial} is not between min ({min}) and max ({max})"),
        ));
    }
    Ok(())
}
