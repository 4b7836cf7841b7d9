//! The balancer's settings as plain data, checked in one place.

use super::BalanceBuilder;
use crate::error::ConfigError;
use crate::outlier::OutlierConfig;
use std::time::Duration;

/// The settings of a [`Balance`](super::Balance) as plain data: what a configuration file
/// describes. The classifier (code) and where forgotten metric series go (a recorder) are
/// given to the [`BalanceBuilder`] apart.
///
/// `Default` gives the documented defaults; [`validate`](Self::validate) is the one place the
/// fields are checked, and [`BalanceBuilder::from_config`] calls it.
///
/// | field | default | valid | edge values |
/// |---|---|---|---|
/// | `default_rtt` | 30 ms (linkerd) | > 0 | `Duration::MAX` = a new endpoint waits until the others look slower |
/// | `decay` | 10 s (linkerd) | > 0 | `Duration::MAX` = latency never forgotten |
/// | `fail_fast` | 3 s (linkerd) | any | 0 = fail at once when no endpoint is ready; `Duration::MAX` = wait for the deadline |
/// | `miss_weight` | 0.25 | 0 ..= 1 | 0 = failures and outrun attempts do not raise the cost (their outlier ejection still applies) |
/// | `miss_wait` | 12.5 ms | any | 0 = a miss costs one more attempt only |
/// | `max_pushback` | 300 s | any | 0 = pushback ignored; `Duration::MAX` = any honoured |
/// | `rtt_at_headers` | `false`: RTT to the end of the body | any | |
/// | `outlier` | [`OutlierConfig::default`] | checked when it was built | |
///
/// ```
/// use meshless::balance::{BalanceBuilder, BalanceConfig};
/// use std::time::Duration;
///
/// let mut config = BalanceConfig::default();
/// config.fail_fast = Duration::from_millis(500);
/// let balance = BalanceBuilder::from_config(&config)?.build::<&str, ()>();
///
/// config.decay = Duration::ZERO;
/// assert_eq!(config.validate().unwrap_err().setting(), "balance.decay");
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BalanceConfig {
    /// The RTT assumed for an endpoint before its first answer.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub default_rtt: Duration,
    /// How fast the peak-EWMA latency forgets.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub decay: Duration,
    /// The longest a request waits for a ready endpoint.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub fail_fast: Duration,
    /// How far one attempt moves an endpoint's share of attempts without an answer, which
    /// divides its latency (see [`BalanceBuilder::miss_weight`]).
    pub miss_weight: f64,
    /// What a miss costs the caller besides another attempt (see
    /// [`BalanceBuilder::miss_wait`]).
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub miss_wait: Duration,
    /// The longest quiet an endpoint gets when its server pushes back.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub max_pushback: Duration,
    /// Whether RTT is measured to the response head rather than the end of its body.
    pub rtt_at_headers: bool,
    /// Outlier ejection.
    pub outlier: OutlierConfig,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceBuilder::default().config()
    }
}

impl BalanceConfig {
    /// Checks every field, naming the first bad one (`balance.decay`, `balance.default_rtt`).
    ///
    /// A zero `decay` or `default_rtt` is refused here: from a configuration it is most likely
    /// a mistake. [`BalanceBuilder::build`], which cannot fail, gives them a meaning instead
    /// (see [`BalanceBuilder::decay`] and [`BalanceBuilder::default_rtt`]).
    ///
    /// ```
    /// let mut config = meshless::balance::BalanceConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.default_rtt = std::time::Duration::ZERO;
    /// assert_eq!(config.validate().unwrap_err().setting(), "balance.default_rtt");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.decay.is_zero() {
            return Err(ConfigError::new(
                "balance.decay",
                "0ns: must be greater than zero",
            ));
        }
        if self.default_rtt.is_zero() {
            return Err(ConfigError::new(
                "balance.default_rtt",
                "0ns: must be greater than zero",
            ));
        }
        if !(0.0..=1.0).contains(&self.miss_weight) {
            return Err(ConfigError::new(
                "balance.miss_weight",
                format!("{}: must be between 0 and 1", self.miss_weight),
            ));
        }
        // The outlier settings can only be built checked (`OutlierConfig::builder().build()`).
        Ok(())
    }
}

impl BalanceBuilder {
    /// A builder with these settings, once [`BalanceConfig::validate`] accepts them; set the
    /// classifier, service name, metrics and forgotten series on it as usual.
    ///
    /// ```
    /// use meshless::balance::{BalanceBuilder, BalanceConfig};
    /// let balance = BalanceBuilder::from_config(&BalanceConfig::default())?
    ///     .service_name("payments")
    ///     .build::<&str, ()>();
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &BalanceConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(BalanceBuilder {
            default_rtt: config.default_rtt,
            decay: config.decay,
            fail_fast: config.fail_fast,
            miss_weight: config.miss_weight,
            miss_wait: config.miss_wait,
            max_pushback: config.max_pushback,
            rtt_at_headers: config.rtt_at_headers,
            outlier: config.outlier.clone(),
            ..BalanceBuilder::default()
        })
    }

    /// The settings so far, as plain data (unchecked: see [`validate`](Self::validate)).
    ///
    /// ```
    /// use meshless::balance::{Balance, BalanceConfig};
    /// assert_eq!(Balance::builder().config(), BalanceConfig::default());
    /// ```
    pub fn config(&self) -> BalanceConfig {
        BalanceConfig {
            default_rtt: self.default_rtt,
            decay: self.decay,
            fail_fast: self.fail_fast,
            miss_weight: self.miss_weight,
            miss_wait: self.miss_wait,
            max_pushback: self.max_pushback,
            rtt_at_headers: self.rtt_at_headers,
            outlier: self.outlier.clone(),
        }
    }
}
