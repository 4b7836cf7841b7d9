//! A retry budget: retries may add at most a fixed share of load, over a sliding window.
//!
//! Each request deposits into the budget, each retry withdraws from it. Over any window of `ttl`,
//! the retries granted never exceed `ratio × requests + min_per_second × ttl`: the ratio bounds
//! the extra load retries can add, the reserve lets a quiet client still retry. This is the model
//! of Finagle's and linkerd's budgets, with their defaults (10 s, 10 retries/s, 20%).
//!
//! Unlike tower's `TpsBudget`, the ratio is exact (0.3 grants 3 retries per 10 requests, not
//! one per 3), concurrent withdrawals cannot overdraw (each grant is one compare-and-swap on the
//! state it checked), and neither deposit nor withdraw takes a lock: a lock is taken only when the
//! window moves on, once per `ttl / 10`.
//!
//! ```
//! use meshless::budget::Budget;
//! use std::time::Duration;
//!
//! let budget = Budget::builder()
//!     .ttl(Duration::from_secs(10))
//!     .min_per_second(0.0)
//!     .ratio(0.5)
//!     .build()?;
//! budget.deposit();
//! budget.deposit();
//! assert!(budget.try_withdraw()); // 2 requests × 50% = 1 retry
//! assert!(!budget.try_withdraw());
//! # Ok::<(), meshless::ConfigError>(())
//! ```

use crate::error::ConfigError;
use crate::primitives::clock::Clock;
use crate::primitives::ledger::{Ledger, Units};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

thread_local! {
    /// Deposits made by this thread, to read the clock on only some of them.
    static CLOCK_EVERY: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The window is split into this many buckets; a deposit lives between 0.9 and 1.0 × ttl.
const BUCKETS: u64 = 10;

/// The longest window; a longer ttl counts as this.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// Ratios are kept as fractions over this denominator (reduced), so they are exact to four
/// decimal places.
const RATIO_SCALE: i64 = 10_000;

/// A retry budget, shared by every clone (and by every service given a clone).
///
/// ```
/// use meshless::budget::Budget;
///
/// let budget = Budget::default(); // 10 s, 10 retries/s reserve, 20%
/// let shared = budget.clone();    // same tokens
/// shared.deposit();
/// assert!(budget.try_withdraw()); // the reserve of 100 retries
/// ```
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    /// The deposits and withdrawals: a deposit is worth `deposit_units`, a withdrawal costs
    /// `withdraw_units`, so the ratio is `deposit_units / withdraw_units`, exactly.
    ledger: Ledger,
    ttl: Duration,
    min_per_second: f64,
    ratio: f64,
}

impl Default for Budget {
    /// Finagle's and linkerd's defaults: ttl 10 s, 10 retries per second, 20% of requests.
    fn default() -> Self {
        Budget::builder()
            .build()
            .expect("the default budget configuration is valid")
    }
}

impl Budget {
    /// Starts a budget configuration with the defaults.
    ///
    /// ```
    /// let budget = meshless::budget::Budget::builder().ratio(0.1).build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn builder() -> BudgetBuilder {
        BudgetBuilder::default()
    }

    /// Records one request: it earns `ratio` of a retry for the next `ttl`.
    ///
    /// ```
    /// meshless::budget::Budget::default().deposit();
    /// ```
    pub fn deposit(&self) {
        // Reading the clock is most of a deposit's cost, and a deposit needs it only to notice
        // that the window moved on. So each thread reads it on every 8th deposit; in between, a
        // deposit may land in a bucket whose epoch just ended and so expire up to one bucket
        // early — which can only deny a retry, never grant an extra one.
        let look = CLOCK_EVERY.with(|count| {
            let n = count.get();
            count.set(n.wrapping_add(1));
            n % 8 == 0
        });
        if look {
            self.inner.ledger.advance(Instant::now());
        }
        self.inner.ledger.deposit();
    }

    /// Takes one retry from the budget if it has one.
    ///
    /// ```
    /// let budget = meshless::budget::Budget::default();
    /// assert!(budget.try_withdraw());
    /// ```
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(Instant::now())
    }

    /// Takes one retry from the budget if it has one, as a [`Withdrawal`] that can be given back
    /// with [`Withdrawal::refund`] if the retry is never sent (its caller gave up during the
    /// backoff, say). Dropping the withdrawal keeps the retry spent.
    ///
    /// ```
    /// let budget = meshless::budget::Budget::builder().min_per_second(0.1).build()?;
    /// assert_eq!(budget.balance(), 1.0);
    /// let token = budget.withdraw().expect("one retry in reserve");
    /// assert_eq!(budget.balance(), 0.0);
    /// token.refund(); // the retry was never sent
    /// assert_eq!(budget.balance(), 1.0);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn withdraw(&self) -> Option<Withdrawal> {
        let epoch = self.inner.ledger.withdraw_at(Instant::now())?;
        Some(Withdrawal {
            budget: self.clone(),
            epoch,
        })
    }

    /// The retries the budget could grant right now (possibly fractional, never negative).
    ///
    /// ```
    /// let budget = meshless::budget::Budget::default();
    /// assert_eq!(budget.balance(), 100.0); // 10/s × 10 s of reserve
    /// ```
    pub fn balance(&self) -> f64 {
        let ledger = &self.inner.ledger;
        let units = ledger.balance_at(Instant::now()).max(0);
        units as f64 / ledger.withdraw_units() as f64
    }

    /// The window over which deposits and withdrawals count.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(meshless::budget::Budget::default().ttl(), Duration::from_secs(10));
    /// ```
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// Retries per second always allowed, whatever the traffic.
    ///
    /// ```
    /// assert_eq!(meshless::budget::Budget::default().min_per_second(), 10.0);
    /// ```
    pub fn min_per_second(&self) -> f64 {
        self.inner.min_per_second
    }

    /// Retries allowed per request deposited.
    ///
    /// ```
    /// assert_eq!(meshless::budget::Budget::default().ratio(), 0.2);
    /// ```
    pub fn ratio(&self) -> f64 {
        self.inner.ratio
    }

    #[cfg(test)]
    pub(crate) fn deposit_at(&self, now: Instant) {
        self.inner.ledger.advance(now);
        self.inner.ledger.deposit();
    }

    pub(crate) fn try_withdraw_at(&self, now: Instant) -> bool {
        self.inner.ledger.withdraw_at(now).is_some()
    }
}

/// One retry taken from a [`Budget`] by [`Budget::withdraw`].
///
/// [`refund`](Self::refund) gives it back exactly: the budget is as if the withdrawal never
/// happened, down to when it would have left the window. Dropping it keeps the retry spent.
///
/// ```
/// let budget = meshless::budget::Budget::default();
/// let before = budget.balance();
/// let token = budget.withdraw().unwrap();
/// token.refund();
/// assert_eq!(budget.balance(), before);
/// ```
#[derive(Debug)]
#[must_use = "dropping a withdrawal keeps the retry spent; refund it if the retry is not sent"]
pub struct Withdrawal {
    budget: Budget,
    /// The window bucket the withdrawal was counted in.
    epoch: u64,
}

impl Withdrawal {
    /// Gives the retry back to its budget, for a retry that was never sent.
    ///
    /// ```
    /// let budget = meshless::budget::Budget::default();
    /// budget.withdraw().unwrap().refund();
    /// assert_eq!(budget.balance(), 100.0);
    /// ```
    pub fn refund(self) {
        self.budget.inner.ledger.refund(self.epoch);
    }
}

/// A retry's withdrawal travelling with the request it paid for, as a request extension, so
/// that a layer below the retry layer (the balancer) that drops the request without sending it
/// can give the token back. Whoever sends the request lets it go with the request: a dropped
/// `UnsentRetry` keeps the retry spent, like a dropped [`Withdrawal`].
///
/// Hedges pay from the same budget and carry one too.
#[derive(Debug, Clone)]
pub(crate) struct UnsentRetry(Arc<Mutex<Option<Withdrawal>>>);

impl UnsentRetry {
    /// A retry's (or a hedge's) token.
    pub(crate) fn new(withdrawal: Withdrawal) -> Self {
        UnsentRetry(Arc::new(Mutex::new(Some(withdrawal))))
    }

    /// Whether the token was given back: the request it paid for was dropped unsent.
    pub(crate) fn refunded(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// Gives the token back: the request was never sent. At most once, whatever the clones.
    pub(crate) fn refund(&self) {
        let taken = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(withdrawal) = taken {
            withdrawal.refund();
        }
    }
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("ttl", &self.inner.ttl)
            .field("min_per_second", &self.inner.min_per_second)
            .field("ratio", &self.inner.ratio)
            .field("balance", &self.balance())
            .finish()
    }
}

/// The settings of a [`Budget`] as plain data: what a configuration file describes.
///
/// `Default` gives Finagle's and linkerd's values. [`validate`](Self::validate) is the one
/// place they are checked; [`Budget::from_config`] and [`BudgetBuilder::build`] both call it.
///
/// | field | default | valid | edge values |
/// |---|---|---|---|
/// | `ttl` | 10 s | ≥ 100 ms | above 1 hour (`Duration::MAX` included) counts as 1 hour |
/// | `min_per_second` | 10.0 | finite, ≥ 0, `× ttl` ≤ 1e9 | 0 = no reserve: retries only from deposits |
/// | `ratio` | 0.2 | finite, 0 ..= 100, exact to 4 decimals | 0 = the reserve alone |
///
/// ```
/// use meshless::budget::{Budget, BudgetConfig};
/// use std::time::Duration;
///
/// let mut config = BudgetConfig::default();
/// config.ratio = 0.1;
/// let budget = Budget::from_config(&config)?;
/// assert_eq!(budget.ratio(), 0.1);
///
/// config.ttl = Duration::from_millis(10);
/// assert_eq!(config.validate().unwrap_err().setting(), "budget.ttl");
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BudgetConfig {
    /// How long a deposit counts.
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    pub ttl: Duration,
    /// Retries per second allowed even without traffic: a reserve of `min_per_second × ttl`.
    pub min_per_second: f64,
    /// Retries allowed per request deposited.
    pub ratio: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ttl: Duration::from_secs(10),
            min_per_second: 10.0,
            ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    /// Checks every field, naming the first bad one (`budget.ttl`, `budget.ratio`,
    /// `budget.min_per_second`).
    ///
    /// ```
    /// let mut config = meshless::budget::BudgetConfig::default();
    /// assert!(config.validate().is_ok());
    /// config.min_per_second = f64::NAN;
    /// assert_eq!(config.validate().unwrap_err().setting(), "budget.min_per_second");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let BudgetConfig {
            ttl,
            min_per_second,
            ratio,
        } = *self;
        if ttl < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "budget.ttl",
                format!("{ttl:?} is less than 100ms"),
            ));
        }
        if !(ratio.is_finite() && (0.0..=100.0).contains(&ratio)) {
            return Err(ConfigError::new(
                "budget.ratio",
                format!("{ratio} is outside 0..=100"),
            ));
        }
        let reserve = min_per_second * ttl.min(MAX_TTL).as_secs_f64();
        if !(min_per_second.is_finite() && min_per_second >= 0.0 && reserve <= 1e9) {
            return Err(ConfigError::new(
                "budget.min_per_second",
                format!("{min_per_second} must be >= 0 and give at most 1e9 retries per ttl"),
            ));
        }
        Ok(())
    }
}

impl Budget {
    /// A budget with these settings, once [`BudgetConfig::validate`] accepts them.
    ///
    /// ```
    /// use meshless::budget::{Budget, BudgetConfig};
    /// let budget = Budget::from_config(&BudgetConfig::default())?;
    /// assert_eq!(budget.config(), BudgetConfig::default());
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn from_config(config: &BudgetConfig) -> Result<Budget, ConfigError> {
        BudgetBuilder {
            config: config.clone(),
        }
        .build()
    }

    /// The settings this budget runs with (a ttl above 1 hour reads as 1 hour).
    ///
    /// ```
    /// let config = meshless::budget::Budget::default().config();
    /// assert_eq!(config, meshless::budget::BudgetConfig::default());
    /// ```
    pub fn config(&self) -> BudgetConfig {
        BudgetConfig {
            ttl: self.ttl(),
            min_per_second: self.min_per_second(),
            ratio: self.ratio(),
        }
    }
}

/// Configures a [`Budget`] fluently: each setter writes one field of a [`BudgetConfig`], and
/// [`build`](Self::build) checks it with [`BudgetConfig::validate`].
///
/// ```
/// use meshless::budget::Budget;
/// use std::time::Duration;
/// let budget = Budget::builder()
///     .ttl(Duration::from_secs(5))
///     .min_per_second(2.0)
///     .ratio(0.3)
///     .build()?;
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct BudgetBuilder {
    config: BudgetConfig,
}

impl BudgetBuilder {
    /// How long a deposit counts (default 10 s). At least 100 ms. Values above 1 hour count as
    /// 1 hour (`Duration::MAX` is accepted): deposits must expire for the ratio to bound the
    /// load retries add, and an hour already remembers far more than any incident needs.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = meshless::budget::Budget::builder().ttl(Duration::from_secs(30));
    /// let budget = meshless::budget::Budget::builder().ttl(Duration::MAX).build()?;
    /// assert_eq!(budget.ttl(), Duration::from_secs(3600));
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = ttl;
        self
    }

    /// Retries per second allowed even without traffic (default 10): a reserve of
    /// `min_per_second × ttl` retries. 0 leaves no reserve.
    ///
    /// ```
    /// let b = meshless::budget::Budget::builder().min_per_second(1.0);
    /// ```
    pub fn min_per_second(mut self, min_per_second: f64) -> Self {
        self.config.min_per_second = min_per_second;
        self
    }

    /// Retries allowed per request (default 0.2, that is 20% extra load at most). Between 0 and
    /// 100, exact to four decimal places.
    ///
    /// ```
    /// let b = meshless::budget::Budget::builder().ratio(0.3);
    /// ```
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.config.ratio = ratio;
        self
    }

    /// The settings so far, unchecked.
    ///
    /// ```
    /// let config = meshless::budget::Budget::builder().ratio(0.5).config();
    /// assert_eq!(config.ratio, 0.5);
    /// ```
    pub fn config(&self) -> BudgetConfig {
        self.config.clone()
    }

    /// Checks the settings with [`BudgetConfig::validate`] (a ttl above 1 hour counts as
    /// 1 hour) and builds the budget.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = meshless::budget::Budget::builder().ttl(Duration::ZERO).build();
    /// assert!(err.is_err());
    /// ```
    pub fn build(self) -> Result<Budget, ConfigError> {
        self.config.validate()?;
        let BudgetConfig {
            ttl,
            min_per_second,
            ratio,
        } = self.config;
        let ttl = ttl.min(MAX_TTL);
        let reserve = min_per_second * ttl.as_secs_f64();
        // `validate` range-checked both values, so these conversions are exact.
        let scaled = (ratio * RATIO_SCALE as f64).round() as i64;
        let divisor = gcd(scaled, RATIO_SCALE);
        let (deposit_units, withdraw_units) = (scaled / divisor, RATIO_SCALE / divisor);
        let reserve_units = (reserve * withdraw_units as f64).round() as i64;
        let bucket_nanos = u64::try_from(ttl.as_nanos() / u128::from(BUCKETS))
            .unwrap_or(u64::MAX)
            .max(1);
        Ok(Budget {
            inner: Arc::new(Inner {
                ledger: Ledger::new(
                    Clock::new(Instant::now()),
                    bucket_nanos,
                    BUCKETS,
                    Units {
                        deposit: deposit_units,
                        withdrawal: withdraw_units,
                        reserve: reserve_units,
                    },
                ),
                ttl,
                min_per_second,
                ratio,
            }),
        })
    }
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
