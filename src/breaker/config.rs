//! The breaker's settings as plain data, checked in one place.

use crate::error::ConfigError;
use std::time::Duration;

/// The most probes a half-open circuit admits at once (six bits of the state word).
pub const MAX_HALF_OPEN_PROBES: u32 = 63;

/// The settings of a [`BreakerLayer`](super::BreakerLayer) as plain data: what a configuration
/// file describes. The classifier (code) is given to the layer apart.
///
/// The defaults suit a breaker that sits *outside* the retry layer, as in
/// [`http::Client`](crate::http::Client): it sees each logical request's final outcome, after
/// retries, so a failure it counts is one that retries could not mask. It must stay closed
/// while retries still deliver most requests, and open in a real outage. It has no fallback:
/// an open circuit turns every request, including those the upstream would have answered,
/// into a failure. So by default it opens only when almost nothing gets through, and leaves a
/// partial failure to retries, ejection and throttling: at a 50% threshold, three endpoints
/// each failing half their requests at random (no overload, nothing a pause would heal) drew
/// 10% successes through the client against 50% with no breaker (examples/loadgen).
///
/// | field | default | anchor, and why | valid |
/// |---|---|---|---|
/// | `enabled` | `true` | on in [`http::Client`](crate::http::Client): an outage then costs the upstream probes only | any; `false` passes every request through untouched |
/// | `failure_rate_threshold` | 0.9 | ours: an outage, not a partial failure (see above). resilience4j 50%, Polly 10% (both with a fallback) | (0, 1] |
/// | `window` | 5 s, in 10 buckets | ours (resilience4j's time window 60 s, Polly 30 s): an outage after busy traffic trips it once its failures make 90% of the window, 4.5 s in. A shorter outage (a restart, a partition of a few seconds) never trips it, and costs nothing once it heals: at 2 s a 2 s outage tripped the circuit as the fleet came back (a hanging fleet's failures arrive a deadline late), which then refused and ramped for two more seconds (loadgen, 16 callers in a closed loop: 33–42% served against 99.95% without a breaker). At 10 s the successes before a 6 s outage kept it closed throughout. A fleet flapping in phase (half a second failing, half healthy) stays below 90% | ≥ 10 ms |
/// | `minimum_calls` | 20 | resilience4j and Polly ask for 100 calls; 20 lets a client of 10 requests/s trip at all, and keeps the threshold from firing on a handful of calls | ≥ 1 |
/// | `slow_call_duration` | `None` (off) | resilience4j 60 s | > 0 when set |
/// | `slow_call_rate_threshold` | 1.0 | resilience4j 100%: only a window of slow calls trips | (0, 1] |
/// | `consecutive_failures` | 0 (off) | linkerd failure accrual 7 (per endpoint, under retries) | 0 = off |
/// | `break_duration` | 0.5 s | linkerd 1 s; Polly 5 s. Short, then doubling: a blip costs little, and a healed upstream is found soon (the lab's 6 s outage: 55% of requests served at 0.5 s, against 40% at 1 s doubling to 2 s with a 1 s ramp; plain 57%) | ≥ 1 ms |
/// | `max_break_duration` | 1 s | ours, below Polly's 5 s break; linkerd climbs to 60 s, resilience4j waits 60 s. Every request refused after the upstream healed is lost to the caller: with 1 s the client finds the healed upstream within 1.5 s (± jitter), while its probes (3 per break) stay a trickle | ≥ `break_duration` |
/// | `break_jitter` | 0.5 | linkerd's jitter: clients that tripped together probe apart | [0, 1] |
/// | `half_open_probes` | 3 | resilience4j 10, Polly 1. A few concurrent probes, never a stampede | 1..=63 |
/// | `ramp` | 0.5 s | (none of the anchors ramps: their half-open → closed step is the stampede) | any; 0 = close at once |
/// | `ramp_start_share` | 0.1 | the ramp admits 10% of traffic at first, rising linearly to 100% | (0, 1] |
/// | `probe_timeout` | 30 s | resilience4j waits forever in half-open; a bound keeps a lost probe from holding the circuit half-open | ≥ 1 ms |
/// | `shadow` | `false` | resilience4j's metrics-only state | any |
/// | `max_routes` | 32 | bounds memory and label cardinality of [`per_route`](super::BreakerLayer::per_route) breakers | any; 0 = every route shares the client-wide breaker |
///
/// The break durations climb the doubling ladder on each trip that follows a close by less
/// than one `window` (a flapping upstream), and start again from `break_duration` once the
/// circuit has stayed closed for a whole window.
///
/// ```
/// use meshless::breaker::{BreakerConfig, BreakerLayer};
///
/// let mut config = BreakerConfig::default();
/// config.failure_rate_threshold = 0.3;
/// let layer = BreakerLayer::from_config(&config)?;
/// assert_eq!(layer.config(), config);
///
/// config.half_open_probes = 0;
/// assert_eq!(config.validate().unwrap_err().setting(), "breaker.half_open_probes");
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BreakerConfig {
    /// Whether the breaker acts at all: `false` passes every request through, counting
    /// nothing (a branch per request).
    pub enabled: bool,
    /// The share of failed calls in the window at which the circuit opens.
    pub failure_rate_threshold: f64,
    /// The sliding window the failure and slow-call rates are taken over (10 buckets).
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub window: Duration,
    /// The fewest calls in the window before a rate may open the circuit.
    pub minimum_calls: u32,
    /// A call at least this slow counts as slow; `None` turns the slow-call rate off.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration::optional"))]
    pub slow_call_duration: Option<Duration>,
    /// The share of slow calls in the window at which the circuit opens.
    pub slow_call_rate_threshold: f64,
    /// Opens after this many failures in a row; 0 turns it off.
    pub consecutive_failures: u32,
    /// How long the circuit stays open after its first trip.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub break_duration: Duration,
    /// The longest break, however many trips in a row.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub max_break_duration: Duration,
    /// Each break is moved by up to ± this share of itself (within the two bounds).
    pub break_jitter: f64,
    /// Probes a half-open circuit admits; that many successes end the break.
    pub half_open_probes: u32,
    /// How long the admitted share of traffic takes to rise back to 100% after the probes.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub ramp: Duration,
    /// The share admitted when the ramp begins.
    pub ramp_start_share: f64,
    /// A half-open circuit whose probes have not all answered within this reopens.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub probe_timeout: Duration,
    /// Computes and reports everything (state, metrics, tracing) but never refuses a request.
    pub shadow: bool,
    /// The most routes with a breaker of their own
    /// ([`per_route`](super::BreakerLayer::per_route)); requests of further routes share the
    /// client-wide breaker.
    pub max_routes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_rate_threshold: 0.9,
            window: Duration::from_secs(5),
            minimum_calls: 20,
            slow_call_duration: None,
            slow_call_rate_threshold: 1.0,
            consecutive_failures: 0,
            break_duration: Duration::from_millis(500),
            max_break_duration: Duration::from_secs(1),
            break_jitter: 0.5,
            half_open_probes: 3,
            ramp: Duration::from_millis(500),
            ramp_start_share: 0.1,
            probe_timeout: Duration::from_secs(30),
            shadow: false,
            max_routes: 32,
        }
    }
}

const MS: Duration = Duration::from_millis(1);

impl BreakerConfig {
    /// Checks every field, naming the first bad one as `breaker.<field>`.
    ///
    /// ```
    /// let mut config = meshless::breaker::BreakerConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.failure_rate_threshold = 1.5;
    /// assert_eq!(config.validate().unwrap_err().setting(), "breaker.failure_rate_threshold");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        share(
            "breaker.failure_rate_threshold",
            self.failure_rate_threshold,
        )?;
        if self.window < 10 * MS {
            return Err(ConfigError::new(
                "breaker.window",
                format!("{:?} is less than 10ms (ten buckets of 1ms)", self.window),
            ));
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new(
                "breaker.minimum_calls",
                "0: must be at least 1",
            ));
        }
        if self.slow_call_duration.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "breaker.slow_call_duration",
                "0ns: must be greater than zero (None turns slow calls off)",
            ));
        }
        share(
            "breaker.slow_call_rate_threshold",
            self.slow_call_rate_threshold,
        )?;
        if self.break_duration < MS {
            return Err(ConfigError::new(
                "breaker.break_duration",
                format!("{:?} is less than 1ms", self.break_duration),
            ));
        }
        if self.max_break_duration < self.break_duration {
            return Err(ConfigError::new(
                "breaker.max_break_duration",
                format!(
                    "{:?} is less than the break duration {:?}",
                    self.max_break_duration, self.break_duration
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.break_jitter) {
            return Err(ConfigError::new(
                "breaker.break_jitter",
                format!("{}: must be within [0, 1]", self.break_jitter),
            ));
        }
        if !(1..=MAX_HALF_OPEN_PROBES).contains(&self.half_open_probes) {
            return Err(ConfigError::new(
                "breaker.half_open_probes",
                format!(
                    "{}: must be within 1..={MAX_HALF_OPEN_PROBES}",
                    self.half_open_probes
                ),
            ));
        }
        share("breaker.ramp_start_share", self.ramp_start_share)?;
        if self.probe_timeout < MS {
            return Err(ConfigError::new(
                "breaker.probe_timeout",
                format!("{:?} is less than 1ms", self.probe_timeout),
            ));
        }
        Ok(())
    }
}

/// A share in (0, 1]; NaN is refused.
fn share(setting: &'static str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            setting,
            format!("{value}: must be within (0, 1]"),
        ))
    }
}
