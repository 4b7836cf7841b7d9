//! The hedge layer's settings as plain data, checked in one place.

use crate::error::ConfigError;
use std::time::Duration;

/// The most hedges one request may send: gRPC A6 caps a hedged call at 5 attempts, the first
/// included.
pub const MAX_HEDGES: u32 = 4;

/// When a request that has no answer yet gets a hedge.
///
/// ```
/// use meshless::hedge::HedgeDelay;
/// use std::time::Duration;
///
/// let fixed = HedgeDelay::Fixed(Duration::from_millis(20));
/// let p95 = HedgeDelay::default();
/// assert_eq!(
///     p95,
///     HedgeDelay::Percentile { percentile: 0.95, min_samples: 100, window: Duration::from_secs(30) }
/// );
/// # let _ = fixed;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields, rename_all = "snake_case")
)]
pub enum HedgeDelay {
    /// After this percentile of how long recent first attempts waited (from their send to
    /// their end, whatever it was, or to the hedge that outran them): Finagle's backup requests
    /// and "The Tail at Scale" both hedge at p95. Taken over first attempts rather than good
    /// answers, the percentile says how many requests a delay would hedge; it is raised when
    /// those would not fit under nine tenths of `max_extra_load` (p95.5 under the default 5%),
    /// so that the cap rarely has to refuse and the hedges go to the slowest requests.
    Percentile {
        /// The percentile, in `(0, 1)`: 0.95 hedges the slowest 5% (at most; the extra-load
        /// cap bounds them too).
        #[cfg_attr(feature = "serde", serde(default = "defaults::percentile"))]
        percentile: f64,
        /// No hedge until the window holds this many samples: a percentile of a handful of
        /// samples is noise. A request sent before then is hedged once the delay is known,
        /// counted from its own send.
        #[cfg_attr(feature = "serde", serde(default = "defaults::min_samples"))]
        min_samples: u32,
        /// The sliding window the samples are taken over (six slots; the delay is worked out
        /// again every 64 samples, whenever a slot turns over, and while it is not known).
        #[cfg_attr(
            feature = "serde",
            serde(default = "defaults::window", with = "crate::policy::duration")
        )]
        window: Duration,
    },
    /// After a fixed time (Polly's hedging: 2 s by default; gRPC A6's `hedgingDelay`).
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    Fixed(Duration),
}

impl Default for HedgeDelay {
    fn default() -> Self {
        HedgeDelay::Percentile {
            percentile: defaults::percentile(),
            min_samples: defaults::min_samples(),
            window: defaults::window(),
        }
    }
}

/// The default percentile delay's settings, also those a configuration file leaves out.
mod defaults {
    use std::time::Duration;

    pub(super) fn percentile() -> f64 {
        0.95
    }

    pub(super) fn min_samples() -> u32 {
        100
    }

    pub(super) fn window() -> Duration {
        Duration::from_secs(30)
    }
}

/// The settings of a [`HedgeLayer`](super::HedgeLayer) as plain data: what a configuration
/// file describes. The budget, the idempotency rules and the classifier are given to the layer
/// apart (they are shared with the retry layer).
///
/// | field | default | anchor, and why | valid |
/// |---|---|---|---|
/// | `enabled` | `true` | — (`false` passes every request through: a branch per request) | any |
/// | `max_hedges` | 1 | Polly `MaxHedgedAttempts` 1; gRPC A6 `maxAttempts` ≤ 5 (so ≤ 4 hedges); tower `hedge` 1 | 0..=4; 0 = off |
/// | `delay` | p95 of the last 30 s of first attempts' waits, after 100 of them | Finagle `BackupRequestFilter`: p(100·(1 − maxExtraLoad)) = p95 at 5%; "The Tail at Scale" (Dean, Barroso 2013): p95; Polly: fixed 2 s | percentile in (0, 1), window ≥ 1 s; fixed > 0 |
/// | `max_extra_load` | 0.05 | Finagle's `maxExtraLoad` 5%; Tail at Scale: hedging at p95 added ~5% load (2% with a 10 ms delay in their Bigtable test) | (0, 1] |
/// | `min_per_second` | 10 | the retry budget's reserve (Finagle's and linkerd's 10 retries/s): a client's first moments, when nothing is known of its endpoints and a dead one gets its share of the first requests, need hedges before the ratio has earned any | finite, ≥ 0 |
/// | `non_fatal_statuses` | 502, 503, 504 | gRPC A6 `nonFatalStatusCodes` (UNAVAILABLE): the HTTP statuses a gateway gives for an upstream that did not answer | 100..=599 |
///
/// Besides these statuses, a response the balancer classified as a retryable failure
/// ([`Classified`](crate::classify::Classified)) and an error are non-fatal too: they let the
/// other attempts run on.
///
/// ```
/// use meshless::hedge::{HedgeConfig, HedgeLayer};
///
/// let mut config = HedgeConfig::default();
/// config.max_hedges = 2;
/// let layer = HedgeLayer::from_config(meshless::budget::Budget::default(), &config)?;
/// assert_eq!(layer.config(), config);
///
/// config.max_hedges = 5;
/// assert_eq!(config.validate().unwrap_err().setting(), "hedge.max_hedges");
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct HedgeConfig {
    /// Whether the layer hedges at all.
    pub enabled: bool,
    /// The most hedges per request, besides the first attempt.
    pub max_hedges: u32,
    /// When a hedge is sent.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::choice"))]
    pub delay: HedgeDelay,
    /// The most hedges as a share of the requests through the layer over the last 10 s, on
    /// top of the reserve.
    pub max_extra_load: f64,
    /// Hedges per second allowed besides the share: a reserve of `min_per_second × 10 s`.
    pub min_per_second: f64,
    /// The HTTP statuses that let the other attempts run on instead of ending the request.
    pub non_fatal_statuses: Vec<u16>,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        HedgeConfig {
            enabled: true,
            max_hedges: 1,
            delay: HedgeDelay::default(),
            max_extra_load: 0.05,
            min_per_second: 10.0,
            non_fatal_statuses: vec![502, 503, 504],
        }
    }
}

impl HedgeConfig {
    /// Checks every field, naming the first bad one (`hedge.<field>`).
    ///
    /// ```
    /// let mut config = meshless::hedge::HedgeConfig::default();
    /// config.max_extra_load = 0.0;
    /// assert_eq!(config.validate().unwrap_err().setting(), "hedge.max_extra_load");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_hedges > MAX_HEDGES {
            return Err(ConfigError::new(
                "hedge.max_hedges",
                format!(
                    "{} is above {MAX_HEDGES} (gRPC A6: 5 attempts at most)",
                    self.max_hedges
                ),
            ));
        }
        match self.delay {
            HedgeDelay::Percentile {
                percentile, window, ..
            } => {
                if !(percentile > 0.0 && percentile < 1.0) {
                    return Err(ConfigError::new(
                        "hedge.delay.percentile",
                        format!("{percentile} is not in (0, 1)"),
                    ));
                }
                if window < Duration::from_secs(1) {
                    return Err(ConfigError::new(
                        "hedge.delay.window",
                        format!("{window:?} is below 1 s"),
                    ));
                }
            }
            HedgeDelay::Fixed(delay) => {
                if delay.is_zero() {
                    return Err(ConfigError::new(
                        "hedge.delay",
                        "a fixed delay must be above 0",
                    ));
                }
            }
        }
        if !(self.max_extra_load > 0.0 && self.max_extra_load <= 1.0) {
            return Err(ConfigError::new(
                "hedge.max_extra_load",
                format!("{} is not in (0, 1]", self.max_extra_load),
            ));
        }
        if !(self.min_per_second.is_finite() && (0.0..=1e8).contains(&self.min_per_second)) {
            return Err(ConfigError::new(
                "hedge.min_per_second",
                format!("{} is not a finite rate in 0 ..= 1e8", self.min_per_second),
            ));
        }
        if let Some(bad) = self
            .non_fatal_statuses
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(ConfigError::new(
                "hedge.non_fatal_statuses",
                format!("{bad} is not an HTTP status"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        assert!(HedgeConfig::default().validate().is_ok());
        let bad = |f: fn(&mut HedgeConfig)| {
            let mut c = HedgeConfig::default();
            f(&mut c);
            c.validate().unwrap_err().setting().to_owned()
        };
        assert_eq!(bad(|c| c.max_hedges = 5), "hedge.max_hedges");
        assert_eq!(
            bad(|c| c.delay = HedgeDelay::Percentile {
                percentile: 1.0,
                min_samples: 1,
                window: Duration::from_secs(5)
            }),
            "hedge.delay.percentile"
        );
        assert_eq!(
            bad(|c| c.delay = HedgeDelay::Percentile {
                percentile: f64::NAN,
                min_samples: 1,
                window: Duration::from_secs(5)
            }),
            "hedge.delay.percentile"
        );
        assert_eq!(
            bad(|c| c.delay = HedgeDelay::Percentile {
                percentile: 0.9,
                min_samples: 1,
                window: Duration::from_millis(5)
            }),
            "hedge.delay.window"
        );
        assert_eq!(
            bad(|c| c.delay = HedgeDelay::Fixed(Duration::ZERO)),
            "hedge.delay"
        );
        assert_eq!(bad(|c| c.max_extra_load = 1.5), "hedge.max_extra_load");
        assert_eq!(bad(|c| c.max_extra_load = f64::NAN), "hedge.max_extra_load");
        assert_eq!(bad(|c| c.min_per_second = -1.0), "hedge.min_per_second");
        assert_eq!(
            bad(|c| c.min_per_second = f64::INFINITY),
            "hedge.min_per_second"
        );
        assert_eq!(
            bad(|c| c.non_fatal_statuses = vec![503, 99]),
            "hedge.non_fatal_statuses"
        );
    }
}
