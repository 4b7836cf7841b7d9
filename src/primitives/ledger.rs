//! The exact ledger: deposits and withdrawals over a sliding window, for the retry budget.
//!
//! Its contract, unlike the [statistics ring](super::ring)'s (a statistic, which may lose a
//! count):
//!
//! - **exact**: every deposit and every withdrawal is counted once, in the bucket of the epoch
//!   it was made in, and counts for exactly `buckets` epochs (a deposit lives between
//!   `(buckets − 1) / buckets` and 1 × the window); a full bucket (2²⁸ − 1 deposits, or as many
//!   withdrawals) stops counting, which can only deny a withdrawal, never grant one;
//! - **never overdrawn under concurrency**: a withdrawal is granted only if the balance
//!   (reserve + deposits × their credit − withdrawals × their cost, over the live buckets)
//!   covers its cost, and the grant is one compare-and-swap on exactly the bucket word it
//!   checked, so two withdrawals racing for the last credit cannot both win;
//! - **refunds are exact**: a refunded withdrawal leaves the ledger as if it had never been
//!   made, down to when it would have expired; one already expired gives nothing back;
//! - **lock-free on the hot path**: deposit, withdraw and same-bucket refunds are atomics only;
//!   the lock is taken when the window moves (once per bucket) or for a refund of an older
//!   bucket;
//! - **time is the caller's**: nothing here reads the clock; callers hand in an instant, and
//!   it reads on the one [`Clock`] as nanoseconds since the origin.
//!
//! Amounts are integer units, so ratios stay exact: a deposit credits `deposit_units`, a
//! withdrawal costs `withdraw_units`, and the window starts with `reserve_units`.

use super::clock::Clock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// A ledger's amounts, in integer units.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Units {
    /// What one deposit credits.
    pub(crate) deposit: i64,
    /// What one withdrawal costs.
    pub(crate) withdrawal: i64,
    /// What the window holds before any deposit, renewed forever.
    pub(crate) reserve: i64,
}

/// Deposits and withdrawals over a sliding window of `buckets` buckets (see the module doc for
/// the contract).
#[derive(Debug)]
pub(crate) struct Ledger {
    clock: Clock,
    bucket_nanos: u64,
    buckets: u64,
    units: Units,
    /// The epoch (bucket number since the origin) that `current` counts.
    rotated: AtomicU64,
    /// When (the clock's nanoseconds) the next epoch begins: the hot path compares against it
    /// instead of dividing.
    next_epoch_at: AtomicU64,
    /// The current bucket: epoch tag, deposits and withdrawals, packed so that a withdrawal is
    /// one compare-and-swap on exactly the state it checked.
    current: AtomicU64,
    /// The reserve plus the live past buckets, tagged with the epoch of `current` it goes with.
    past: AtomicU64,
    /// The past buckets, touched only when the window moves.
    history: Mutex<Vec<Bucket>>,
}

#[derive(Debug, Clone, Copy)]
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
    // Sign-extend the low 56 bits.
    ((word << (64 - BALANCE_BITS)) as i64) >> (64 - BALANCE_BITS)
}
fn past_tag(word: u64) -> u64 {
    word >> BALANCE_BITS
}

impl Ledger {
    /// An empty ledger (but for its reserve) whose window is `buckets` buckets of
    /// `bucket_nanos` each, counting from `clock`'s origin.
    pub(crate) fn new(clock: Clock, bucket_nanos: u64, buckets: u64, units: Units) -> Self {
        let bucket_nanos = bucket_nanos.max(1);
        let buckets = buckets.max(1);
        Ledger {
            clock,
            bucket_nanos,
            buckets,
            units,
            rotated: AtomicU64::new(0),
            next_epoch_at: AtomicU64::new(bucket_nanos),
            current: AtomicU64::new(pack_current(0, 0, 0)),
            past: AtomicU64::new(pack_past(0, units.reserve)),
            history: Mutex::new(Vec::with_capacity(buckets as usize)),
        }
    }

    /// The clock the ledger's epochs count on.
    #[cfg(test)]
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// What one withdrawal costs.
    pub(crate) fn withdraw_units(&self) -> i64 {
        self.units.withdrawal
    }

    /// Counts one deposit in the current bucket, without reading the time: the caller moves the
    /// window with [`advance`](Self::advance) as often as it cares to.
    #[inline]
    pub(crate) fn deposit(&self) {
        let mut word = self.current.load(Ordering::Acquire);
        loop {
            // A full bucket stops counting: that only ever denies withdrawals, never grants.
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

    /// Moves the window to `now`, if a bucket ended since it last moved.
    #[inline]
    pub(crate) fn advance(&self, now: Instant) {
        let nanos = self.clock.nanos(now);
        if nanos >= self.next_epoch_at.load(Ordering::Acquire) {
            self.rotate(nanos / self.bucket_nanos);
        }
    }

    /// The balance at `now`, in units (negative when withdrawals outlive their deposits).
    pub(crate) fn balance_at(&self, now: Instant) -> i64 {
        self.advance(now);
        let (current, past) = self.snapshot();
        self.available(current, past)
    }

    /// Takes one withdrawal at `now` if the balance covers it, returning the epoch of the
    /// bucket it was counted in (what [`refund`](Self::refund) needs).
    #[inline]
    pub(crate) fn withdraw_at(&self, now: Instant) -> Option<u64> {
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
            if self.available(current, past) < self.units.withdrawal
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
    pub(crate) fn refund(&self, epoch: u64) {
        // Most refunds come within the bucket they were taken in (a retry's backoff is
        // milliseconds, a bucket a tenth of the window): one compare-and-swap, no lock.
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
        let balance = past_balance(past).saturating_add(self.units.withdrawal);
        // `past` only changes under this lock, so the store loses nothing.
        self.past
            .store(pack_past(past_tag(past), balance), Ordering::Release);
    }

    /// A consistent pair of `current` and `past`: both tagged with the same epoch.
    #[inline]
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

    #[inline]
    fn available(&self, current: u64, past: u64) -> i64 {
        past_balance(past) + deposits(current) as i64 * self.units.deposit
            - withdrawals(current) as i64 * self.units.withdrawal
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
        let oldest_live = epoch.saturating_sub(self.buckets - 1);
        history.retain(|b| b.epoch >= oldest_live);
        let units = self.units;
        let sum = history.iter().fold(i128::from(units.reserve), |sum, b| {
            sum + i128::from(b.deposits) * i128::from(units.deposit)
                - i128::from(b.withdrawals) * i128::from(units.withdrawal)
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

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
