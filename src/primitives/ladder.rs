//! How long to wait before a retry, and how long an ejection lasts: one doubling ladder,
//! randomised.
//!
//! Retrying at once, in lockstep with every other client, turns a blip into a thundering herd.
//! Both retry strategies here randomise the wait ("jitter"), as Envoy and linkerd do. An
//! endpoint's n-th consecutive ejection climbs the same ladder: `base × 2ⁿ`, capped.
//!
//! ```
//! use meshless::backoff::Backoff;
//! use std::time::Duration;
//!
//! let backoff = Backoff::full_jitter(Duration::from_millis(25), Duration::from_millis(250))?;
//! let mut state = backoff.start();
//! for _ in 0..5 {
//!     let wait = state.next_delay();
//!     assert!(wait <= Duration::from_millis(250));
//! }
//! # Ok::<(), meshless::ConfigError>(())
//! ```

use crate::error::ConfigError;
use rand::RngExt;
use std::time::Duration;

/// The longest first wait a backoff may have; a larger base counts as this. A larger one would
/// park every retry for longer than any server pushback is honoured (an hour). The cap may be
/// anything, `Duration::MAX` meaning no cap.
const MAX_BASE: Duration = Duration::from_secs(3_600);

/// A backoff strategy. Cheap to copy; each request keeps its own [`BackoffState`].
///
/// ```
/// use meshless::backoff::Backoff;
/// let default = Backoff::default(); // full jitter, 25 ms base, 250 ms cap (Envoy, linkerd)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    kind: Kind,
    base: Duration,
    cap: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    FullJitter,
    Decorrelated,
    None,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            kind: Kind::FullJitter,
            base: Duration::from_millis(25),
            cap: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// Exponential backoff with full jitter: the n-th retry waits a uniform random time in
    /// `[0, min(cap, base × 2ⁿ)]`. `base` is at least 1 ns; values above 1 hour count as
    /// 1 hour (`Duration::MAX` is accepted), since the doubling needs a finite first step.
    /// `cap` is at least the (clamped) base, with no upper bound: `Duration::MAX` means no cap.
    /// An uncapped wait is still cut short by the request's deadline, if it has one.
    ///
    /// ```
    /// use meshless::backoff::Backoff;
    /// use std::time::Duration;
    /// let b = Backoff::full_jitter(Duration::from_millis(10), Duration::from_secs(1))?;
    /// let unbounded = Backoff::full_jitter(Duration::MAX, Duration::MAX)?;
    /// assert!(unbounded.start().next_delay() <= Duration::from_secs(3600));
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn full_jitter(base: Duration, cap: Duration) -> Result<Self, ConfigError> {
        Self::checked(Kind::FullJitter, base, cap)
    }

    /// Decorrelated jitter: each wait is uniform in `[base, 3 × previous wait]`, capped. Waits
    /// grow like exponential backoff but spread out more between clients. The limits, and the
    /// meaning of `Duration::MAX`, are those of [`full_jitter`](Self::full_jitter).
    ///
    /// ```
    /// use meshless::backoff::Backoff;
    /// use std::time::Duration;
    /// let b = Backoff::decorrelated_jitter(Duration::from_millis(25), Duration::from_millis(250))?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn decorrelated_jitter(base: Duration, cap: Duration) -> Result<Self, ConfigError> {
        Self::checked(Kind::Decorrelated, base, cap)
    }

    /// No wait at all between attempts.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut s = meshless::backoff::Backoff::none().start();
    /// assert_eq!(s.next_delay(), Duration::ZERO);
    /// ```
    pub fn none() -> Self {
        Backoff {
            kind: Kind::None,
            base: Duration::ZERO,
            cap: Duration::ZERO,
        }
    }

    fn checked(kind: Kind, base: Duration, cap: Duration) -> Result<Self, ConfigError> {
        let config = BackoffConfig {
            kind: match kind {
                Kind::FullJitter => BackoffKind::FullJitter,
                Kind::Decorrelated => BackoffKind::DecorrelatedJitter,
                Kind::None => BackoffKind::None,
            },
            base,
            cap,
        };
        Backoff::from_config(&config)
    }

    /// The backoff these settings describe, once [`BackoffConfig::validate`] accepts them (a
    /// base above 1 hour counts as 1 hour).
    ///
    /// ```
    /// use meshless::backoff::{Backoff, BackoffConfig, BackoffKind};
    /// let mut config = BackoffConfig::default();
    /// assert_eq!(Backoff::from_config(&config)?, Backoff::default());
    /// config.kind = BackoffKind::None;
    /// assert_eq!(Backoff::from_config(&config)?, Backoff::none());
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &BackoffConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let kind = match config.kind {
            BackoffKind::FullJitter => Kind::FullJitter,
            BackoffKind::DecorrelatedJitter => Kind::Decorrelated,
            BackoffKind::None => return Ok(Backoff::none()),
        };
        Ok(Backoff {
            kind,
            base: config.base.min(MAX_BASE),
            cap: config.cap,
        })
    }

    /// The settings of this backoff, as plain data (a base above 1 hour reads as 1 hour).
    ///
    /// ```
    /// use meshless::backoff::{Backoff, BackoffConfig};
    /// assert_eq!(Backoff::default().config(), BackoffConfig::default());
    /// ```
    pub fn config(&self) -> BackoffConfig {
        BackoffConfig {
            kind: match self.kind {
                Kind::FullJitter => BackoffKind::FullJitter,
                Kind::Decorrelated => BackoffKind::DecorrelatedJitter,
                Kind::None => BackoffKind::None,
            },
            base: self.base,
            cap: self.cap,
        }
    }

    /// The longest single wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(meshless::backoff::Backoff::default().cap(), Duration::from_millis(250));
    /// ```
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The state for one request's sequence of retries.
    ///
    /// ```
    /// let state = meshless::backoff::Backoff::default().start();
    /// ```
    pub fn start(&self) -> BackoffState {
        BackoffState {
            backoff: *self,
            retries: 0,
            previous: self.base,
        }
    }
}

/// Which wait a [`BackoffConfig`] describes.
///
/// ```
/// assert_eq!(meshless::backoff::BackoffKind::default(), meshless::backoff::BackoffKind::FullJitter);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields, rename_all = "snake_case")
)]
pub enum BackoffKind {
    /// [`Backoff::full_jitter`].
    #[default]
    FullJitter,
    /// [`Backoff::decorrelated_jitter`].
    DecorrelatedJitter,
    /// [`Backoff::none`]: `base` and `cap` are ignored.
    None,
}

/// The settings of a [`Backoff`] as plain data. `Default` is Envoy's and linkerd's: full
/// jitter, 25 ms base, 250 ms cap.
///
/// | field | valid | edge values |
/// |---|---|---|
/// | `base` | > 0 | above 1 hour (`Duration::MAX` included) counts as 1 hour |
/// | `cap` | ≥ the (clamped) base | `Duration::MAX` = no cap (the deadline still bounds a wait) |
///
/// Neither is checked when `kind` is [`BackoffKind::None`].
///
/// ```
/// use meshless::backoff::BackoffConfig;
/// use std::time::Duration;
/// let mut config = BackoffConfig::default();
/// config.cap = Duration::from_millis(1);
/// assert_eq!(config.validate().unwrap_err().setting(), "backoff.cap");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BackoffConfig {
    /// The strategy.
    pub kind: BackoffKind,
    /// The first wait's ceiling (full jitter) or floor of every wait (decorrelated jitter).
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub base: Duration,
    /// The longest single wait.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub cap: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Backoff::default().config()
    }
}

impl BackoffConfig {
    /// Checks the fields, naming the bad one `backoff.base` or `backoff.cap`.
    ///
    /// ```
    /// let mut config = meshless::backoff::BackoffConfig::default();
    /// config.base = std::time::Duration::ZERO;
    /// assert_eq!(config.validate().unwrap_err().setting(), "backoff.base");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kind == BackoffKind::None {
            return Ok(());
        }
        if self.base.is_zero() {
            return Err(ConfigError::new(
                "backoff.base",
                "0ns: must be greater than zero",
            ));
        }
        let base = self.base.min(MAX_BASE);
        if self.cap < base {
            return Err(ConfigError::new(
                "backoff.cap",
                format!("{:?} is less than the base {base:?}", self.cap),
            ));
        }
        Ok(())
    }
}

/// The backoff position of one request.
///
/// ```
/// use meshless::backoff::Backoff;
/// let mut state = Backoff::default().start();
/// let first = state.next_delay();
/// ```
#[derive(Debug, Clone)]
pub struct BackoffState {
    backoff: Backoff,
    retries: u32,
    previous: Duration,
}

impl BackoffState {
    /// The wait before the next retry.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut state = meshless::backoff::Backoff::default().start();
    /// assert!(state.next_delay() <= Duration::from_millis(25));
    /// assert!(state.next_delay() <= Duration::from_millis(50));
    /// ```
    pub fn next_delay(&mut self) -> Duration {
        let Backoff { kind, base, cap } = self.backoff;
        let delay = match kind {
            Kind::None => Duration::ZERO,
            Kind::FullJitter => {
                let ceiling =
                    duration_from_nanos(rung(base.as_nanos(), cap.as_nanos(), self.retries));
                uniform(Duration::ZERO, ceiling)
            }
            Kind::Decorrelated => {
                let ceiling = self.previous.saturating_mul(3).min(cap);
                let d = uniform(base, ceiling.max(base));
                self.previous = d;
                d
            }
        };
        self.retries = self.retries.saturating_add(1);
        delay
    }
}

/// Rung `step` of the ladder: `base × 2^step`, at most `cap`, in any unit (nanoseconds for
/// retry waits, microseconds for ejections). Saturates, so no step overflows.
pub(crate) fn rung(base: u128, cap: u128, step: u32) -> u128 {
    base.saturating_mul(1u128 << step.min(127)).min(cap)
}

/// `nanos` as a `Duration`, saturating at `Duration::MAX`.
fn duration_from_nanos(nanos: u128) -> Duration {
    const PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / PER_SEC) {
        Ok(secs) => Duration::new(secs, (nanos % PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

/// How long an ejection lasts, in microseconds, for ladder step `step` (0 for the first
/// ejection): [`rung`] `step`, moved by up to ± `jitter` of itself and kept within
/// `[base, max]`. Doubling lets a flapping endpoint fail its probe cheaply at first and then
/// rarely; jitter keeps the many clients that ejected the same endpoint at the same moment from
/// probing it in lockstep; the clamp keeps the documented bounds exact.
/// Callers guarantee `0 < base <= max` (checked by the config).
pub(crate) fn ejection_micros(base: i64, max: i64, jitter: f64, step: u32) -> i64 {
    // `base` and `max` are positive (checked by the config), so the casts are exact.
    let nominal = rung(base as u128, max as u128, step) as i64;
    let spread = if jitter > 0.0 {
        1.0 + jitter * rand::rng().random_range(-1.0..=1.0)
    } else {
        1.0
    };
    // f64 → i64 saturates, and `spread` is within [0, 2], so this never wraps.
    let jittered = (nominal as f64 * spread) as i64;
    jittered.max(base).min(max)
}

fn uniform(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let span = u64::try_from((high - low).as_nanos()).unwrap_or(u64::MAX);
    low + Duration::from_nanos(rand::rng().random_range(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn full_jitter_stays_under_the_exponential_ceiling() {
        let backoff = Backoff::full_jitter(25 * MS, 250 * MS).unwrap();
        for _ in 0..200 {
            let mut s = backoff.start();
            for ceiling in [25, 50, 100, 200, 250, 250, 250] {
                assert!(s.next_delay() <= ceiling * MS);
            }
        }
    }

    #[test]
    fn full_jitter_spreads_its_waits() {
        let mut s = Backoff::default().start();
        s.retries = 10;
        let waits: Vec<_> = (0..200).map(|_| s.clone().next_delay()).collect();
        assert!(waits.iter().any(|w| *w < 100 * MS));
        assert!(waits.iter().any(|w| *w > 150 * MS));
    }

    #[test]
    fn decorrelated_jitter_is_bounded_by_base_and_cap() {
        let backoff = Backoff::decorrelated_jitter(25 * MS, 250 * MS).unwrap();
        for _ in 0..200 {
            let mut s = backoff.start();
            let mut previous = 25 * MS;
            for _ in 0..10 {
                let d = s.next_delay();
                assert!(d >= 25 * MS && d <= 250 * MS && d <= previous * 3, "{d:?}");
                previous = d;
            }
        }
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(Backoff::full_jitter(Duration::ZERO, MS).is_err());
        assert!(Backoff::decorrelated_jitter(2 * MS, MS).is_err());
    }

    #[test]
    fn duration_max_is_no_cap_and_a_base_of_an_hour() {
        let hour = Duration::from_secs(3_600);
        for make in [Backoff::full_jitter, Backoff::decorrelated_jitter] {
            let backoff = make(Duration::MAX, Duration::MAX).unwrap();
            assert_eq!(backoff, make(hour, Duration::MAX).unwrap());
            assert_eq!(backoff.cap(), Duration::MAX);
            let mut s = backoff.start();
            for _ in 0..100 {
                let _ = s.next_delay();
            }
            // Clamped before the cap is checked: a cap between the hour and the base given is
            // above the base that counts.
            assert!(make(2 * hour, hour + MS).is_ok());
        }
    }

    #[test]
    fn huge_retry_counts_do_not_overflow() {
        let mut s = Backoff::full_jitter(Duration::from_secs(1), Duration::MAX)
            .unwrap()
            .start();
        s.retries = u32::MAX;
        let _ = s.next_delay();
        let _ = s.next_delay();
    }

    const S: i64 = 1_000_000;

    #[test]
    fn rungs_double_up_to_the_cap_and_saturate() {
        let ladder: Vec<u128> = (0..6).map(|n| rung(3, 40, n)).collect();
        assert_eq!(ladder, [3, 6, 12, 24, 40, 40]);
        assert_eq!(rung(u128::MAX / 2, u128::MAX, 200), u128::MAX);
        assert_eq!(duration_from_nanos(u128::MAX), Duration::MAX);
        assert_eq!(
            duration_from_nanos(1_500_000_000),
            Duration::from_millis(1_500)
        );
    }

    #[test]
    fn ejections_double_from_one_to_sixty_seconds_within_the_jitter() {
        for step in 0..12u32 {
            let nominal = (S << step).min(60 * S);
            let low = (nominal / 2).max(S);
            let high = (nominal + nominal / 2).min(60 * S);
            for _ in 0..200 {
                let d = ejection_micros(S, 60 * S, 0.5, step);
                assert!((low..=high).contains(&d), "step {step}: {d}");
            }
        }
    }

    #[test]
    fn without_jitter_the_ladder_is_exact() {
        let ladder: Vec<i64> = (0..8)
            .map(|n| ejection_micros(S, 60 * S, 0.0, n) / S)
            .collect();
        assert_eq!(ladder, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn jitter_spreads_the_ejections() {
        let samples: Vec<i64> = (0..200)
            .map(|_| ejection_micros(S, 60 * S, 0.5, 3))
            .collect();
        assert!(samples.iter().any(|d| *d < 7 * S));
        assert!(samples.iter().any(|d| *d > 9 * S));
    }

    #[test]
    fn extreme_steps_and_lengths_do_not_overflow() {
        assert!(ejection_micros(S, 60 * S, 0.5, u32::MAX) <= 60 * S);
        let huge = i64::MAX / 2;
        assert!(ejection_micros(huge, i64::MAX, 1.0, 40) >= huge);
    }
}
