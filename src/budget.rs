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
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    origin: Instant,
    bucket_nanos: u64,
    /// A deposit is worth `deposit_units`, a withdrawal costs `withdraw_units`: the ratio is
    /// `deposit_units / withdraw_units`, exactly.
    deposit_units: i64,
    withdraw_units: i64,
    reserve_units: i64,
    /// The epoch (bucket number since `origin`) that `current` counts.
    rotated: AtomicU64,
    /// When (nanoseconds since `origin`) the next epoch begins: the hot path compares against
    /// it instead of dividing.
    next_epoch_at: AtomicU64,
    /// The current bucket: epoch tag, deposits and withdrawals, packed so that a withdrawal is
    /// one compare-and-swap on exactly the state it checked.
    current: AtomicU64,
    /// The reserve plus the live past buckets, tagged with the epoch of `current` it goes with.
    past: AtomicU64,
    /// The past buckets, touched only when the window moves.
    history: Mutex<Vec<Bucket>>,
    ttl: Duration,
    min_per_second: f64,
    ratio: f64,
}

#[derive(Clone, Copy)]
struct Bucket {
    epoch: u64,
    deposits: u64,
    withdrawals: u64,
}

// `current`: [tag: 8 bits][deposits: 28 bits][withdrawals: 28 bits]. The tag only has to tell
// apart the epochs of `current` and `past` while a rotation is between its two stores.
const COUNT_BITS: u32 = 28;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = 0xFF;

fn pack_current(epoch: u64, deposits: u64, withdrawals: u64) -> u64 {
    ((epoch & TAG_MASK) << (2 * COUNT_BITS)) | (deposits << COUNT_BITS) | withdrawals
}
fn tag(word: u64) -> u64 {
    word >> (2 * COUNT_BITS)
}
fn deposits(word: u64) -> u64 {
    (word >> COUNT_BITS) & COUNT_MAX
}
fn withdrawals(word: u64) -> u64 {
    word & COUNT_MAX
}

// `past`: [tag: 8 bits][balance: 56 bits, two's complement].
const BALANCE_BITS: u32 = 56;
const BALANCE_MAX: i64 = (1 << (BALANCE_BITS - 1)) - 1;
const BALANCE_MASK: u64 = (1 << BALANCE_BITS) - 1;

fn pack_past(epoch: u64, balance: i64) -> u64 {
    let balance = balance.clamp(-BALANCE_MAX, BALANCE_MAX);
    ((epoch & TAG_MASK) << BALANCE_BITS) | (balance as u64 & BALANCE_MASK)
}
fn past_balance(word: u64) -> i64 {
    // Sign-extend the low 48 bits.
    ((word << (64 - BALANCE_BITS)) as i64) >> (64 - BALANCE_BITS)
}
fn past_tag(word: u64) -> u64 {
    word >> BALANCE_BITS
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
            self.inner.advance(Instant::now());
        }
        self.inner.add_deposit();
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
        let epoch = self.inner.withdraw_at(Instant::now())?;
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
        let inner = &self.inner;
        inner.advance(Instant::now());
        let (current, past) = inner.snapshot();
        let units = inner.available(current, past).max(0);
        units as f64 / inner.withdraw_units as f64
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
        self.inner.advance(now);
        self.inner.add_deposit();
    }

    pub(crate) fn try_withdraw_at(&self, now: Instant) -> bool {
        self.inner.withdraw_at(now).is_some()
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
        self.budget.inner.refund(self.epoch);
    }
}

/// A retry's withdrawal travelling with the request it paid for, as a request extension, so
/// that a layer below the retry layer (the balancer) that drops the request without sending it
/// can give the token back. Whoever sends the request lets it go with the request: a dropped
/// `UnsentRetry` keeps the retry spent, like a dropped [`Withdrawal`].
#[derive(Debug, Clone)]
pub(crate) struct UnsentRetry(Arc<Mutex<Option<Withdrawal>>>);

impl UnsentRetry {
    pub(crate) fn new(withdrawal: Withdrawal) -> Self {
        UnsentRetry(Arc::new(Mutex::new(Some(withdrawal))))
    }

    /// Gives the token back: the request was never sent. At most once, whatever the clones.
    pub(crate) fn refund(&self) {
        let taken = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(withdrawal) = taken {
            withdrawal.refund();
        }
    }
}

impl Inner {
    /// Takes one retry, returning the epoch of the bucket it was counted in.
    fn withdraw_at(&self, now: Instant) -> Option<u64> {
        self.advance(now);
        loop {
            // `rotated` read around the snapshot names the epoch of `current` exactly: a
            // rotation stores `rotated` after swapping `current`, under the history lock, so
            // equal reads and a matching tag rule out any other epoch.
            let before = self.rotated.load(Ordering::Acquire);
            let (current, past) = self.snapshot();
            let after = self.rotated.load(Ordering::Acquire);
            if before != after || tag(current) != before & TAG_MASK {
                // A rotation is between its stores; wait for it to finish.
                drop(self.lock_history());
                continue;
            }
            if self.available(current, past) < self.withdraw_units
                || withdrawals(current) == COUNT_MAX
            {
                return None;
            }
            // The swap succeeds only if `current` is unchanged since it was checked; `past`
            // cannot have changed without `current` changing first (see `rotate`), except to
            // grow by a refund, which only makes the check more conservative.
            if self
                .current
                .compare_exchange(current, current + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some(before);
            }
        }
    }

    /// Takes back one withdrawal counted in the bucket of `epoch`.
    fn refund(&self, epoch: u64) {
        // Most refunds come within the bucket they were taken in (a backoff is milliseconds, a
        // bucket a tenth of the ttl): one compare-and-swap, no lock.
        loop {
            let before = self.rotated.load(Ordering::Acquire);
            let current = self.current.load(Ordering::Acquire);
            let after = self.rotated.load(Ordering::Acquire);
            if before != epoch || after != epoch || tag(current) != epoch & TAG_MASK {
                break;
            }
            if withdrawals(current) == 0 {
                return; // cannot happen for a real withdrawal; never go negative
            }
            if self
                .current
                .compare_exchange(current, current - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
        // The window moved on: the withdrawal is in the history, or already expired. The lock
        // keeps rotations out while the history and `past` change together.
        let mut history = self.lock_history();
        if self.rotated.load(Ordering::Acquire) == epoch {
            // The fast path met a rotation between its stores. Under the lock none runs, so
            // `current` is this epoch's bucket.
            let mut current = self.current.load(Ordering::Acquire);
            while withdrawals(current) > 0 {
                match self.current.compare_exchange(
                    current,
                    current - 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return,
                    Err(actual) => current = actual,
                }
            }
            return;
        }
        let Some(bucket) = history
            .iter_mut()
            .find(|b| b.epoch == epoch && b.withdrawals > 0)
        else {
            return; // it already left the window: nothing to give back
        };
        bucket.withdrawals -= 1;
        let past = self.past.load(Ordering::Acquire);
        let balance = past_balance(past).saturating_add(self.withdraw_units);
        // `past` only changes under this lock, so the store loses nothing.
        self.past
            .store(pack_past(past_tag(past), balance), Ordering::Release);
    }

    fn add_deposit(&self) {
        let mut word = self.current.load(Ordering::Acquire);
        loop {
            // A full bucket stops counting: that only ever denies retries, never grants extra.
            if deposits(word) == COUNT_MAX {
                return;
            }
            match self.current.compare_exchange_weak(
                word,
                word + (1 << COUNT_BITS),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin);
        elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()))
    }

    fn advance(&self, now: Instant) {
        let nanos = self.nanos(now);
        if nanos >= self.next_epoch_at.load(Ordering::Acquire) {
            self.rotate(nanos / self.bucket_nanos);
        }
    }

    /// A consistent pair of `current` and `past`: both tagged with the same epoch.
    fn snapshot(&self) -> (u64, u64) {
        loop {
            let current = self.current.load(Ordering::Acquire);
            let past = self.past.load(Ordering::Acquire);
            if tag(current) == past_tag(past) {
                return (current, past);
            }
            // A rotation is between its two stores; wait for it to finish.
            drop(self.lock_history());
        }
    }

    fn available(&self, current: u64, past: u64) -> i64 {
        past_balance(past) + deposits(current) as i64 * self.deposit_units
            - withdrawals(current) as i64 * self.withdraw_units
    }

    fn lock_history(&self) -> MutexGuard<'_, Vec<Bucket>> {
        // The history is always consistent between statements, so a poisoned lock is safe.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the window to `epoch`: the current bucket joins the history, buckets older than
    /// the window leave it, and `past` is recomputed.
    fn rotate(&self, epoch: u64) {
        let mut history = self.lock_history();
        let previous = self.rotated.load(Ordering::Acquire);
        if epoch <= previous {
            return; // another thread rotated while this one waited for the lock
        }
        // Swap first, then publish `past`: a reader that sees the new `current` with the old
        // `past` sees different tags and waits, so it never combines two windows.
        let old = self
            .current
            .swap(pack_current(epoch, 0, 0), Ordering::AcqRel);
        history.push(Bucket {
            epoch: previous,
            deposits: deposits(old),
            withdrawals: withdrawals(old),
        });
        let oldest_live = epoch.saturating_sub(BUCKETS - 1);
        history.retain(|b| b.epoch >= oldest_live);
        let sum = history
            .iter()
            .fold(i128::from(self.reserve_units), |sum, b| {
                sum + i128::from(b.deposits) * i128::from(self.deposit_units)
                    - i128::from(b.withdrawals) * i128::from(self.withdraw_units)
            });
        let balance = i64::try_from(sum.clamp(-i128::from(BALANCE_MAX), i128::from(BALANCE_MAX)))
            .unwrap_or(0);
        self.past
            .store(pack_past(epoch, balance), Ordering::Release);
        self.rotated.store(epoch, Ordering::Release);
        let next = epoch.saturating_add(1).saturating_mul(self.bucket_nanos);
        self.next_epoch_at.store(next, Ordering::Release);
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
pub struct BudgetConfig {
    /// How long a deposit counts.
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
                origin: Instant::now(),
                bucket_nanos,
                deposit_units,
                withdraw_units,
                reserve_units,
                rotated: AtomicU64::new(0),
                next_epoch_at: AtomicU64::new(bucket_nanos),
                current: AtomicU64::new(pack_current(0, 0, 0)),
                past: AtomicU64::new(pack_past(0, reserve_units)),
                history: Mutex::new(Vec::with_capacity(BUCKETS as usize)),
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn budget(ttl_ms: u64, min: f64, ratio: f64) -> Budget {
        Budget::builder()
            .ttl(Duration::from_millis(ttl_ms))
            .min_per_second(min)
            .ratio(ratio)
            .build()
            .unwrap()
    }

    fn grants(b: &Budget, at: Instant) -> u32 {
        let mut n = 0;
        while b.try_withdraw_at(at) {
            n += 1;
        }
        n
    }

    #[test]
    fn fractional_ratios_are_exact() {
        for (ratio, deposits, expect) in [
            (0.3, 10, 3),
            (0.3, 100, 30),
            (0.2, 10, 2),
            (0.25, 7, 1),
            (1.5, 4, 6),
            (0.0, 50, 0),
        ] {
            let b = budget(10_000, 0.0, ratio);
            let now = b.inner.origin;
            for _ in 0..deposits {
                b.deposit_at(now);
            }
            assert_eq!(
                grants(&b, now),
                expect,
                "ratio {ratio} over {deposits} deposits"
            );
        }
    }

    #[test]
    fn reserve_is_min_per_second_times_ttl() {
        let b = budget(10_000, 10.0, 0.2);
        assert_eq!(grants(&b, b.inner.origin), 100);
        let b = budget(1_000, 2.5, 0.2);
        assert_eq!(grants(&b, b.inner.origin), 2);
    }

    #[test]
    fn deposits_expire_after_ttl_and_withdrawals_are_refunded() {
        let b = budget(1_000, 0.0, 1.0);
        let t0 = b.inner.origin;
        for _ in 0..5 {
            b.deposit_at(t0);
        }
        assert_eq!(grants(&b, t0 + Duration::from_millis(500)), 5);
        // At 0.95 s the deposits (bucket 0) still count, and so do the withdrawals (bucket 5).
        assert_eq!(grants(&b, t0 + Duration::from_millis(950)), 0);
        // At 1.0 s bucket 0 left the window: deposits gone, withdrawals still count.
        assert_eq!(b.balance_at(t0 + Duration::from_millis(1_000)), -5.0);
        // At 1.5 s the withdrawals left too.
        assert_eq!(b.balance_at(t0 + Duration::from_millis(1_500)), 0.0);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let bad = [
            Budget::builder().ttl(Duration::from_millis(10)).build(),
            Budget::builder().ratio(f64::NAN).build(),
            Budget::builder().ratio(-0.1).build(),
            Budget::builder().ratio(101.0).build(),
            Budget::builder().min_per_second(-1.0).build(),
            Budget::builder().min_per_second(f64::INFINITY).build(),
            Budget::builder().min_per_second(1e12).build(),
        ];
        for result in bad {
            assert!(result.is_err());
        }
    }

    #[test]
    fn a_ttl_past_an_hour_counts_as_an_hour() {
        for ttl in [Duration::from_secs(7200), Duration::MAX] {
            let b = Budget::builder()
                .ttl(ttl)
                .min_per_second(0.0)
                .ratio(1.0)
                .build()
                .unwrap();
            assert_eq!(b.ttl(), MAX_TTL);
            let t0 = b.inner.origin;
            b.deposit_at(t0);
            assert_eq!(b.balance_at(t0 + MAX_TTL - Duration::from_secs(1)), 1.0);
            assert_eq!(b.balance_at(t0 + MAX_TTL), 0.0);
        }
    }

    #[test]
    fn packing_round_trips() {
        for balance in [0, 1, -1, BALANCE_MAX, -BALANCE_MAX, 12_345_678_901] {
            let word = pack_past(0xABCD, balance);
            assert_eq!(past_balance(word), balance);
            assert_eq!(past_tag(word), 0xCD);
        }
        let word = pack_current(0x1_2345, 7, COUNT_MAX);
        assert_eq!(
            (tag(word), deposits(word), withdrawals(word)),
            (0x45, 7, COUNT_MAX)
        );
    }

    impl Budget {
        fn balance_at(&self, now: Instant) -> f64 {
            self.inner.advance(now);
            let (current, past) = self.inner.snapshot();
            self.inner.available(current, past) as f64 / self.inner.withdraw_units as f64
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Deposit,
        Withdraw,
        Refund(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Deposit),
            3 => Just(Op::Withdraw),
            1 => any::<usize>().prop_map(Op::Refund),
            1 => (0u64..400).prop_map(Op::Advance),
        ]
    }

    #[test]
    fn refunds_give_back_exactly_in_the_same_bucket_or_later() {
        let b = budget(1_000, 0.0, 1.0);
        let t0 = b.inner.origin;
        for _ in 0..2 {
            b.deposit_at(t0);
        }
        let at = |ms| t0 + Duration::from_millis(ms);
        let first = b.inner.withdraw_at(at(0)).unwrap();
        let second = b.inner.withdraw_at(at(50)).unwrap();
        assert_eq!(b.inner.withdraw_at(at(50)), None);
        // Same bucket: the lock-free path.
        b.inner.refund(second);
        assert_eq!(b.balance_at(at(50)), 1.0);
        // A later bucket: the withdrawal is in the history.
        assert_eq!(b.balance_at(at(450)), 1.0);
        b.inner.refund(first);
        assert_eq!(b.balance_at(at(450)), 2.0);
        // The deposits still expire on time, and the refunds with them.
        assert_eq!(b.balance_at(at(1_000)), 0.0);
        // Refunding a withdrawal that already left the window changes nothing.
        let c = budget(1_000, 1.0, 1.0);
        let t = c.inner.origin;
        let token = c.inner.withdraw_at(t).unwrap();
        assert_eq!(c.balance_at(t + Duration::from_millis(1_500)), 1.0);
        c.inner.refund(token);
        assert_eq!(c.balance_at(t + Duration::from_millis(1_500)), 1.0);
    }

    #[test]
    fn concurrent_withdrawals_and_refunds_never_lose_a_token() {
        let b = budget(10_000, 1.0, 0.0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        if let Some(token) = b.withdraw() {
                            token.refund();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.balance(), 10.0);
    }

    #[test]
    fn public_withdrawal_round_trips() {
        let b = budget(10_000, 1.0, 0.0);
        assert_eq!(b.balance(), 10.0);
        let tokens: Vec<_> = (0..10).map(|_| b.withdraw().unwrap()).collect();
        assert!(b.withdraw().is_none());
        for t in tokens {
            t.refund();
        }
        assert_eq!(b.balance(), 10.0);
    }

    proptest! {
        /// The budget grants exactly what the sliding-window definition allows.
        #[test]
        fn matches_the_sliding_window_model(
            ratio_pct in 0u32..=150,
            min in 0u32..5,
            ops in proptest::collection::vec(op(), 1..400),
        ) {
            let ratio = f64::from(ratio_pct) / 100.0;
            let b = budget(1_000, f64::from(min), ratio);
            let t0 = b.inner.origin;
            // (epoch, is a deposit, still counts)
            let (mut now_ms, mut events) = (0u64, Vec::<(u64, bool, bool)>::new());
            // Withdrawals not refunded yet: their token and their index in `events`.
            let mut taken = Vec::<(u64, usize)>::new();
            let epoch = |ms: u64| ms / 100;
            for op in ops {
                match op {
                    Op::Advance(ms) => now_ms += ms,
                    Op::Deposit => {
                        b.deposit_at(t0 + Duration::from_millis(now_ms));
                        events.push((epoch(now_ms), true, true));
                    }
                    Op::Withdraw => {
                        let e = epoch(now_ms);
                        let live = |d: bool| events.iter().filter(|(ev, dd, on)| *on && *dd == d && *ev + BUCKETS > e).count() as f64;
                        let model = f64::from(min) + ratio * live(true) - live(false) >= 1.0 - 1e-9;
                        let granted = b.inner.withdraw_at(t0 + Duration::from_millis(now_ms));
                        prop_assert_eq!(granted.is_some(), model);
                        if let Some(token) = granted {
                            taken.push((token, events.len()));
                            events.push((e, false, true));
                        }
                    }
                    Op::Refund(pick) => {
                        if !taken.is_empty() {
                            let (token, index) = taken.swap_remove(pick % taken.len());
                            b.inner.refund(token);
                            // As if it never happened: the event leaves the model.
                            events[index].2 = false;
                        }
                    }
                }
            }
        }
    }
}
