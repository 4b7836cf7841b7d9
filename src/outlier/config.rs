//! The detector's settings, checked once when they are built.

use super::{FailurePercentagePolicy, LatencyPolicy, SuccessRatePolicy};
use crate::error::ConfigError;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The outlier ejection settings of one balancer, given to
/// [`BalanceBuilder::outlier`](crate::balance::BalanceBuilder::outlier) or
/// [`ClientBuilder::outlier`](crate::http::ClientBuilder::outlier). `Default` gives the
/// documented defaults (see the [module docs](super#defaults-and-where-they-come-from)).
///
/// ```
/// use meshless::outlier::{LatencyPolicy, OutlierConfig};
/// use std::time::Duration;
///
/// let config = OutlierConfig::builder()
///     .consecutive_failures(Some(7))                                // linkerd's value
///     .latency(Some(LatencyPolicy::default().factor(5.0)))          // only very slow endpoints
///     .max_ejection_time(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(config.consecutive_failures(), Some(7));
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct OutlierConfig {
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub(crate) interval: Duration,
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::optional"))]
    pub(crate) consecutive_failures: Option<u32>,
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub(crate) base_ejection_time: Duration,
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub(crate) max_ejection_time: Duration,
    pub(crate) ejection_jitter: f64,
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub(crate) probe_timeout: Duration,
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::optional"))]
    pub(crate) success_rate: Option<SuccessRatePolicy>,
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::optional"))]
    pub(crate) failure_percentage: Option<FailurePercentagePolicy>,
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::optional"))]
    pub(crate) latency: Option<LatencyPolicy>,
    pub(crate) max_ejected_share: f64,
    pub(crate) panic_threshold: f64,
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub(crate) slow_start: Duration,
    pub(crate) slow_start_floor: f64,
    pub(crate) slow_start_new_endpoints: bool,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            interval: Duration::from_secs(10),
            consecutive_failures: Some(5),
            base_ejection_time: Duration::from_secs(1),
            max_ejection_time: Duration::from_secs(60),
            ejection_jitter: 0.5,
            probe_timeout: Duration::from_secs(10),
            success_rate: Some(SuccessRatePolicy::default()),
            failure_percentage: Some(FailurePercentagePolicy::default()),
            latency: Some(LatencyPolicy::default()),
            max_ejected_share: 0.5,
            panic_threshold: 0.5,
            slow_start: Duration::from_secs(10),
            slow_start_floor: 0.1,
            slow_start_new_endpoints: true,
        }
    }
}

impl OutlierConfig {
    /// Starts from the defaults.
    ///
    /// ```
    /// let config = meshless::outlier::OutlierConfig::builder().build()?;
    /// assert_eq!(config, Default::default());
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn builder() -> OutlierConfigBuilder {
        OutlierConfigBuilder {
            config: OutlierConfig::default(),
            max_ejection_set: false,
        }
    }

    /// How often the interval policies run (default 10 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = meshless::outlier::OutlierConfig::default();
    /// assert_eq!(config.interval(), Duration::from_secs(10));
    /// ```
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Failures in a row that eject an endpoint (default 5), or `None` when disabled.
    ///
    /// ```
    /// assert_eq!(meshless::outlier::OutlierConfig::default().consecutive_failures(), Some(5));
    /// ```
    pub fn consecutive_failures(&self) -> Option<u32> {
        self.consecutive_failures
    }

    /// The first ejection's nominal length (default 1 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = meshless::outlier::OutlierConfig::default();
    /// assert_eq!(config.base_ejection_time(), Duration::from_secs(1));
    /// ```
    pub fn base_ejection_time(&self) -> Duration {
        self.base_ejection_time
    }

    /// The longest ejection (default 60 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = meshless::outlier::OutlierConfig::default();
    /// assert_eq!(config.max_ejection_time(), Duration::from_secs(60));
    /// ```
    pub fn max_ejection_time(&self) -> Duration {
        self.max_ejection_time
    }

    /// How long a probe may go without a report before another may be sent (default 10 s;
    /// `Duration::MAX` for no limit).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = meshless::outlier::OutlierConfig::default();
    /// assert_eq!(config.probe_timeout(), Duration::from_secs(10));
    /// ```
    pub fn probe_timeout(&self) -> Duration {
        self.probe_timeout
    }

    /// The success-rate policy, if enabled.
    ///
    /// ```
    /// assert!(meshless::outlier::OutlierConfig::default().success_rate().is_some());
    /// ```
    pub fn success_rate(&self) -> Option<&SuccessRatePolicy> {
        self.success_rate.as_ref()
    }

    /// The failure-percentage policy, if enabled.
    ///
    /// ```
    /// assert!(meshless::outlier::OutlierConfig::default().failure_percentage().is_some());
    /// ```
    pub fn failure_percentage(&self) -> Option<&FailurePercentagePolicy> {
        self.failure_percentage.as_ref()
    }

    /// The latency policy, if enabled.
    ///
    /// ```
    /// assert!(meshless::outlier::OutlierConfig::default().latency().is_some());
    /// ```
    pub fn latency(&self) -> Option<&LatencyPolicy> {
        self.latency.as_ref()
    }

    /// The largest share of endpoints that may be ejected at once (default 0.5).
    ///
    /// ```
    /// assert_eq!(meshless::outlier::OutlierConfig::default().max_ejected_share(), 0.5);
    /// ```
    pub fn max_ejected_share(&self) -> f64 {
        self.max_ejected_share
    }

    /// The available share below which the balancer should fail open (default 0.5).
    ///
    /// ```
    /// assert_eq!(meshless::outlier::OutlierConfig::default().panic_threshold(), 0.5);
    /// ```
    pub fn panic_threshold(&self) -> f64 {
        self.panic_threshold
    }

    /// The slow-start window (default 10 s; zero when disabled).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = meshless::outlier::OutlierConfig::default();
    /// assert_eq!(config.slow_start(), Duration::from_secs(10));
    /// ```
    pub fn slow_start(&self) -> Duration {
        self.slow_start
    }
}

/// Builds an [`OutlierConfig`]; [`build`](OutlierConfigBuilder::build) checks every setting.
///
/// ```
/// use meshless::outlier::OutlierConfig;
/// use std::time::Duration;
///
/// let config = OutlierConfig::builder()
///     .interval(Duration::from_secs(5))
///     .success_rate(None)
///     .failure_percentage(None)
///     .build()?;
/// assert!(config.success_rate().is_none());
///
/// let err = OutlierConfig::builder().interval(Duration::ZERO).build().unwrap_err();
/// assert!(err.to_string().contains("interval"));
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct OutlierConfigBuilder {
    config: OutlierConfig,
    /// Whether `max_ejection_time` was set: if not, it follows a base above its default.
    max_ejection_set: bool,
}

impl OutlierConfigBuilder {
    /// How often the interval policies run (default 10 s). At least 1 ms. Values above 1 hour
    /// count as 1 hour (`Duration::MAX` is accepted): the policies need a finite interval to run
    /// at all, and an hour of reports already judges only endpoints that fail for that long.
    ///
    /// ```
    /// use meshless::outlier::OutlierConfig;
    /// use std::time::Duration;
    /// let config = OutlierConfig::builder().interval(Duration::MAX).build()?;
    /// assert_eq!(config.interval(), Duration::from_secs(3600));
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// Failures in a row that eject an endpoint (default `Some(5)`); `None` disables the
    /// policy. At least 1.
    ///
    /// ```
    /// let b = meshless::outlier::OutlierConfig::builder().consecutive_failures(None);
    /// ```
    pub fn consecutive_failures(mut self, failures: Option<u32>) -> Self {
        self.config.consecutive_failures = failures;
        self
    }

    /// The first ejection's nominal length (default 1 s); each consecutive ejection of the
    /// same endpoint doubles it, up to the maximum. At least 1 ms. Values above 1 day count as
    /// 1 day (`Duration::MAX` is accepted): an ejection must end for its probe to be sent, and
    /// the ladder of doublings needs a finite first step.
    ///
    /// If [`max_ejection_time`](Self::max_ejection_time) is not set, it becomes the larger of
    /// its default (60 s) and this base, as in Envoy.
    ///
    /// ```
    /// use meshless::outlier::OutlierConfig;
    /// use std::time::Duration;
    /// let config = OutlierConfig::builder().base_ejection_time(Duration::MAX).build()?;
    /// assert_eq!(config.base_ejection_time(), Duration::from_secs(24 * 3600));
    /// assert_eq!(config.max_ejection_time(), Duration::from_secs(24 * 3600));
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn base_ejection_time(mut self, base: Duration) -> Self {
        self.config.base_ejection_time = base;
        self
    }

    /// The longest ejection (default 60 s, or the base if that is longer), also how long an
    /// endpoint must stay active for its backoff to start over. At least the base, with no
    /// upper bound: `Duration::MAX` means no limit, so each ejection of a relapsing endpoint
    /// doubles the last one for good and its ladder never starts over. The
    /// [max ejected share](Self::max_ejected_share) still keeps enough endpoints in.
    ///
    /// ```
    /// use meshless::outlier::OutlierConfig;
    /// use std::time::Duration;
    /// let b = OutlierConfig::builder().max_ejection_time(Duration::from_secs(300)); // Envoy's
    /// let unbounded = OutlierConfig::builder().max_ejection_time(Duration::MAX).build()?;
    /// assert_eq!(unbounded.max_ejection_time(), Duration::MAX);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn max_ejection_time(mut self, max: Duration) -> Self {
        self.config.max_ejection_time = max;
        self.max_ejection_set = true;
        self
    }

    /// Randomises each ejection by up to ± this share of its nominal length, kept within
    /// [base, max] (default 0.5). Between 0 and 1. Jitter keeps many clients that ejected the
    /// same endpoint together from probing it in lockstep.
    ///
    /// ```
    /// let b = meshless::outlier::OutlierConfig::builder().ejection_jitter(0.0);
    /// ```
    pub fn ejection_jitter(mut self, jitter: f64) -> Self {
        self.config.ejection_jitter = jitter;
        self
    }

    /// How long a probe may go without a report before another request may probe instead
    /// (default 10 s). At least 1 ms, with no upper bound: `Duration::MAX` means no limit, and
    /// then a probe that never reports (its task hung, say) keeps the endpoint out until it
    /// does. A cancelled probe gives its turn back at once either way.
    ///
    /// ```
    /// use meshless::outlier::OutlierConfig;
    /// use std::time::Duration;
    /// let b = OutlierConfig::builder().probe_timeout(Duration::from_secs(30));
    /// let unbounded = OutlierConfig::builder().probe_timeout(Duration::MAX).build()?;
    /// assert_eq!(unbounded.probe_timeout(), Duration::MAX);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.config.probe_timeout = timeout;
        self
    }

    /// The success-rate policy (default on, with [`SuccessRatePolicy::default`]); `None`
    /// disables it.
    ///
    /// ```
    /// use meshless::outlier::{OutlierConfig, SuccessRatePolicy};
    /// let b = OutlierConfig::builder().success_rate(Some(SuccessRatePolicy::default().stdev_factor(1.5)));
    /// ```
    pub fn success_rate(mut self, policy: Option<SuccessRatePolicy>) -> Self {
        self.config.success_rate = policy;
        self
    }

    /// The failure-percentage policy (default on, with [`FailurePercentagePolicy::default`]);
    /// `None` disables it.
    ///
    /// ```
    /// use meshless::outlier::{FailurePercentagePolicy, OutlierConfig};
    /// let b = OutlierConfig::builder()
    ///     .failure_percentage(Some(FailurePercentagePolicy::default().threshold(50)));
    /// ```
    pub fn failure_percentage(mut self, policy: Option<FailurePercentagePolicy>) -> Self {
        self.config.failure_percentage = policy;
        self
    }

    /// The latency policy (default on, with [`LatencyPolicy::default`]); `None` disables it
    /// and stops recording latencies.
    ///
    /// ```
    /// let b = meshless::outlier::OutlierConfig::builder().latency(None);
    /// ```
    pub fn latency(mut self, policy: Option<LatencyPolicy>) -> Self {
        self.config.latency = policy;
        self
    }

    /// The largest share of endpoints ejected at once (default 0.5), rounded down, but always
    /// at least one endpoint of a fleet of two or more. An ejection that would exceed it does
    /// not happen. Between 0 and 1.
    ///
    /// ```
    /// let b = meshless::outlier::OutlierConfig::builder().max_ejected_share(0.1); // Envoy's
    /// ```
    pub fn max_ejected_share(mut self, share: f64) -> Self {
        self.config.max_ejected_share = share;
        self
    }

    /// The balancer panics (fails open: ignores ejections and uses every endpoint, as Envoy
    /// does below its healthy panic threshold) when fewer than this share of the endpoints are
    /// available (default 0.5). Between 0 (never panic) and 1.
    ///
    /// ```
    /// let b = meshless::outlier::OutlierConfig::builder().panic_threshold(0.0);
    /// ```
    pub fn panic_threshold(mut self, threshold: f64) -> Self {
        self.config.panic_threshold = threshold;
        self
    }

    /// How long an endpoint ramps up from the floor to its full share after it returns from
    /// ejection or joins an established fleet (default 10 s). Zero disables slow start. Values
    /// above 1 hour count as 1 hour (`Duration::MAX` is accepted): a ramp that never ends
    /// would keep every returning endpoint at its floor for good.
    ///
    /// ```
    /// use meshless::outlier::OutlierConfig;
    /// use std::time::Duration;
    /// let b = OutlierConfig::builder().slow_start(Duration::ZERO);
    /// let config = OutlierConfig::builder().slow_start(Duration::MAX).build()?;
    /// assert_eq!(config.slow_start(), Duration::from_secs(3600));
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn slow_start(mut self, window: Duration) -> Self {
        self.config.slow_start = window;
        self
    }

    /// The share an endpoint starts its ramp at (default 0.1). Above 0, at most 1.
    ///
    /// ```
    /// let b = meshless::outlier::OutlierConfig::builder().slow_start_floor(0.25);
    /// ```
    pub fn slow_start_floor(mut self, floor: f64) -> Self {
        self.config.slow_start_floor = floor;
        self
    }

    /// Whether endpoints registered once the fleet is established (after its first slow-start
    /// window) ramp up too (default true). Endpoints of the first batch never ramp: there is
    /// no older endpoint to take their load.
    ///
    /// ```
    /// let b = meshless::outlier::OutlierConfig::builder().slow_start_new_endpoints(false);
    /// ```
    pub fn slow_start_new_endpoints(mut self, ramp: bool) -> Self {
        self.config.slow_start_new_endpoints = ramp;
        self
    }

    /// Checks every setting, and brings the periods above their largest supported value down
    /// to it (see each setter).
    ///
    /// ```
    /// use meshless::outlier::OutlierConfig;
    /// let err = OutlierConfig::builder().consecutive_failures(Some(0)).build().unwrap_err();
    /// assert_eq!(err.setting(), "outlier.consecutive_failures");
    /// ```
    pub fn build(self) -> Result<OutlierConfig, ConfigError> {
        let mut c = self.config;
        c.interval = at_least("outlier.interval", c.interval, MS)?.min(HOUR);
        if c.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                "outlier.consecutive_failures",
                "must be at least 1 (use None to disable the policy)",
            ));
        }
        c.base_ejection_time =
            at_least("outlier.base_ejection_time", c.base_ejection_time, MS)?.min(DAY);
        if !self.max_ejection_set {
            c.max_ejection_time = c.max_ejection_time.max(c.base_ejection_time);
        }
        if c.max_ejection_time < c.base_ejection_time {
            return Err(ConfigError::new(
                "outlier.max_ejection_time",
                format!(
                    "{:?} is less than the base ejection time ({:?})",
                    c.max_ejection_time, c.base_ejection_time
                ),
            ));
        }
        share("outlier.ejection_jitter", c.ejection_jitter)?;
        at_least("outlier.probe_timeout", c.probe_timeout, MS)?;
        if let Some(policy) = &c.success_rate {
            policy.validate()?;
        }
        if let Some(policy) = &c.failure_percentage {
            policy.validate()?;
        }
        if let Some(policy) = &c.latency {
            policy.validate()?;
        }
        share("outlier.max_ejected_share", c.max_ejected_share)?;
        share("outlier.panic_threshold", c.panic_threshold)?;
        c.slow_start = c.slow_start.min(HOUR);
        if !(c.slow_start_floor > 0.0 && c.slow_start_floor <= 1.0) {
            return Err(ConfigError::new(
                "outlier.slow_start_floor",
                format!("{} is outside (0, 1]", c.slow_start_floor),
            ));
        }
        Ok(c)
    }
}

/// `d` itself if it is at least `low`; durations have no upper bound to check here, since
/// each setting either clamps its top or reads it as "no limit".
fn at_least(setting: &'static str, d: Duration, low: Duration) -> Result<Duration, ConfigError> {
    if d < low {
        return Err(ConfigError::new(
            setting,
            format!("{d:?} is less than {low:?}"),
        ));
    }
    Ok(d)
}

/// A share in [0, 1]; NaN fails the range check.
pub(crate) fn share(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if !(0.0..=1.0).contains(&value) {
        return Err(ConfigError::new(
            setting,
            format!("{value} is outside 0..=1"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(
            OutlierConfig::builder().build().unwrap(),
            OutlierConfig::default()
        );
    }

    #[test]
    fn every_bad_setting_names_itself() {
        let b = OutlierConfig::builder;
        let cases = [
            (b().interval(Duration::ZERO), "outlier.interval"),
            (
                b().consecutive_failures(Some(0)),
                "outlier.consecutive_failures",
            ),
            (
                b().base_ejection_time(Duration::ZERO),
                "outlier.base_ejection_time",
            ),
            (
                b().base_ejection_time(Duration::from_secs(10))
                    .max_ejection_time(Duration::from_secs(5)),
                "outlier.max_ejection_time",
            ),
            (b().ejection_jitter(1.5), "outlier.ejection_jitter"),
            (b().ejection_jitter(f64::NAN), "outlier.ejection_jitter"),
            (b().probe_timeout(Duration::ZERO), "outlier.probe_timeout"),
            (b().max_ejected_share(-0.1), "outlier.max_ejected_share"),
            (
                b().panic_threshold(f64::INFINITY),
                "outlier.panic_threshold",
            ),
            (b().slow_start_floor(0.0), "outlier.slow_start_floor"),
            (b().slow_start_floor(f64::NAN), "outlier.slow_start_floor"),
            (
                b().success_rate(Some(SuccessRatePolicy::default().stdev_factor(-1.0))),
                "outlier.success_rate.stdev_factor",
            ),
            (
                b().failure_percentage(Some(FailurePercentagePolicy::default().threshold(101))),
                "outlier.failure_percentage.threshold",
            ),
            (
                b().latency(Some(LatencyPolicy::default().factor(1.0))),
                "outlier.latency.factor",
            ),
        ];
        for (builder, setting) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err.setting(), setting, "{err}");
            assert!(err.to_string().contains(setting));
        }
    }

    #[test]
    fn periods_past_their_top_are_clamped_and_limits_past_it_are_kept() {
        let all_max = OutlierConfig::builder()
            .interval(Duration::MAX)
            .base_ejection_time(Duration::MAX)
            .max_ejection_time(Duration::MAX)
            .probe_timeout(Duration::MAX)
            .slow_start(Duration::MAX)
            .build()
            .unwrap();
        assert_eq!(all_max.interval(), HOUR);
        assert_eq!(all_max.base_ejection_time(), DAY);
        assert_eq!(all_max.max_ejection_time(), Duration::MAX);
        assert_eq!(all_max.probe_timeout(), Duration::MAX);
        assert_eq!(all_max.slow_start(), HOUR);
        let b = OutlierConfig::builder;
        assert_eq!(b().interval(2 * HOUR).build().unwrap().interval(), HOUR);
        assert_eq!(b().slow_start(2 * HOUR).build().unwrap().slow_start(), HOUR);
        let long = b().max_ejection_time(2 * DAY).build().unwrap();
        assert_eq!(long.max_ejection_time(), 2 * DAY);
    }

    #[test]
    fn an_unset_maximum_follows_a_longer_base_but_a_set_one_is_checked() {
        let b = OutlierConfig::builder;
        let two_min = Duration::from_secs(120);
        let config = b().base_ejection_time(two_min).build().unwrap();
        assert_eq!(config.max_ejection_time(), two_min);
        let config = b().base_ejection_time(MS).build().unwrap();
        assert_eq!(config.max_ejection_time(), Duration::from_secs(60));
        let err = b()
            .base_ejection_time(Duration::MAX)
            .max_ejection_time(HOUR)
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), "outlier.max_ejection_time");
    }

    #[test]
    fn policies_can_all_be_disabled() {
        let config = OutlierConfig::builder()
            .consecutive_failures(None)
            .success_rate(None)
            .failure_percentage(None)
            .latency(None)
            .slow_start(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(config.consecutive_failures(), None);
        assert!(config.latency().is_none());
    }
}
