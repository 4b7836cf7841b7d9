//! The rate window: calls, failures and slow calls over the last `window`, in ten buckets. The
//! breaker takes its failure and slow-call rates from one; the attempt timeout, how often
//! attempts run past it.
//!
//! Why not the [ledger](crate::primitives::ledger) or the [ring](crate::primitives::ring): the
//! ledger keeps one balance (its withdrawals are conditional, and it cannot be cleared), and the
//! ring is a fixed minute with a histogram per slot. A rate needs counts that move together (a
//! rate is failures over calls of the same buckets), a window that can be cleared, and no lock.
//! So each bucket is one `u64`: `[tag: 10 bits][calls: 18][failures: 18][slow: 18]`, and
//! recording a call is one compare-and-swap on exactly the bucket word it checked — exact,
//! unlike the ring.
//!
//! The tag is the bucket's epoch (bucket number since the origin) modulo 1024; whoever first
//! sees a new epoch zeroes the buckets the window slid past, so no bucket older than the window
//! keeps counts that a reader could take for the present. A bucket stops counting at 2¹⁸ − 1
//! calls (262,143 per tenth of the window): the rates are then those of its first calls.

use crate::primitives::clock::Clock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Buckets in the window.
pub(crate) const BUCKETS: u64 = 10;

const COUNT_BITS: u32 = 18;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const TAG_BITS: u32 = 10;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

fn pack(tag: u64, calls: u64, failures: u64, slow: u64) -> u64 {
    ((tag & TAG_MASK) << (3 * COUNT_BITS))
        | (calls << (2 * COUNT_BITS))
        | (failures << COUNT_BITS)
        | slow
}
fn tag(word: u64) -> u64 {
    word >> (3 * COUNT_BITS)
}
fn calls(word: u64) -> u64 {
    (word >> (2 * COUNT_BITS)) & COUNT_MAX
}
fn failures(word: u64) -> u64 {
    (word >> COUNT_BITS) & COUNT_MAX
}
fn slow(word: u64) -> u64 {
    word & COUNT_MAX
}

/// What the window holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// Calls, failures and slow calls over a sliding window (see the module doc).
#[derive(Debug)]
pub(crate) struct Window {
    clock: Clock,
    bucket_nanos: u64,
    /// The newest epoch any caller has seen: the buckets past it were zeroed when it moved.
    latest: AtomicU64,
    buckets: [AtomicU64; BUCKETS as usize],
}

impl Window {
    /// A window of `length` (at least ten nanoseconds) counting from `clock`'s origin.
    pub(crate) fn new(clock: Clock, length: Duration) -> Self {
        let nanos = crate::primitives::clock::whole_nanos(length);
        Window {
            clock,
            bucket_nanos: (nanos / BUCKETS).max(1),
            latest: AtomicU64::new(0),
            buckets: Default::default(),
        }
    }

    /// Counts one call that ended at `now`. Returns false when it was dropped: a straggler
    /// from before the window, or a full bucket.
    #[inline]
    pub(crate) fn record(&self, now: Instant, failed: bool, was_slow: bool) -> bool {
        let epoch = self.advance(now);
        let Some(epoch) = epoch else { return false };
        let bucket = &self.buckets[(epoch % BUCKETS) as usize];
        let add = pack(0, 1, u64::from(failed), u64::from(was_slow));
        let mut word = bucket.load(Ordering::Acquire);
        loop {
            let next = if tag(word) == epoch & TAG_MASK {
                if calls(word) == COUNT_MAX {
                    return false;
                }
                word + add
            } else {
                // Left over from an epoch the window slid past: this call starts it afresh.
                pack(epoch, 0, 0, 0) + add
            };
            match bucket.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => word = actual,
            }
        }
    }

    /// The counts of the window that ends at `now`.
    pub(crate) fn read(&self, now: Instant) -> Counts {
        let Some(epoch) = self.advance(now) else {
            return Counts::default();
        };
        let mut counts = Counts::default();
        for back in 0..BUCKETS {
            let Some(e) = epoch.checked_sub(back) else {
                break;
            };
            let word = self.buckets[(e % BUCKETS) as usize].load(Ordering::Acquire);
            if tag(word) == e & TAG_MASK {
                counts.calls += calls(word);
                counts.failures += failures(word);
                counts.slow += slow(word);
            }
        }
        counts
    }

    /// Forgets everything counted so far.
    pub(crate) fn clear(&self) {
        for (index, bucket) in (0..).zip(&self.buckets) {
            // The tag of the epoch after the bucket's own: no epoch the bucket holds ever has
            // it (see `expire`), so the next call starts the bucket afresh.
            bucket.store(pack(index + 1, 0, 0, 0), Ordering::Release);
        }
    }

    /// The epoch of `now`, after zeroing the buckets the window slid past since the newest
    /// epoch seen; `None` for a straggler older than the window.
    #[inline]
    fn advance(&self, now: Instant) -> Option<u64> {
        let epoch = self.clock.nanos(now) / self.bucket_nanos;
        let mut latest = self.latest.load(Ordering::Acquire);
        while epoch > latest {
            match self
                .latest
                .compare_exchange(latest, epoch, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.expire(latest, epoch);
                    return Some(epoch);
                }
                Err(actual) => latest = actual,
            }
        }
        (epoch + BUCKETS > latest).then_some(epoch)
    }

    /// Zeroes the buckets of the epochs after `from` up to `to` whose words still hold an
    /// older epoch (a caller of the new epoch may already have started its bucket).
    fn expire(&self, from: u64, to: u64) {
        let first = from.saturating_add(1).max(to.saturating_sub(BUCKETS - 1));
        for e in first..=to {
            let bucket = &self.buckets[(e % BUCKETS) as usize];
            let word = bucket.load(Ordering::Acquire);
            if tag(word) != e & TAG_MASK {
                // Tagged `e + 1`, which no epoch of this bucket has (they are `e` modulo 10, and
                // `e + 1 + 1024k` never is), so no reader counts it and the next call restarts it.
                let _ = bucket.compare_exchange(
                    word,
                    pack(e.wrapping_add(1), 0, 0, 0),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn counts_slide_out_bucket_by_bucket() {
        let t0 = Instant::now();
        let window = Window::new(Clock::new(t0), 10 * S);
        assert!(window.record(t0, true, false));
        assert!(window.record(t0 + S / 2, false, true));
        assert!(window.record(t0 + 5 * S, false, false));
        let c = window.read(t0 + 9 * S);
        assert_eq!((c.calls, c.failures, c.slow), (3, 1, 1));
        // The first bucket (0–1 s) leaves at 10 s.
        let c = window.read(t0 + 10 * S);
        assert_eq!((c.calls, c.failures, c.slow), (1, 0, 0));
        let c = window.read(t0 + 16 * S);
        assert_eq!(c, Counts::default());
        // A straggler from before the window is dropped.
        assert!(!window.record(t0 + 5 * S, true, false));
        assert_eq!(window.read(t0 + 16 * S).calls, 0);
    }

    #[test]
    fn a_long_idle_never_brings_old_counts_back() {
        let t0 = Instant::now();
        let window = Window::new(Clock::new(t0), 10 * S);
        for i in 0..10 {
            window.record(t0 + i * S, true, false);
        }
        // 1024 epochs later the tags repeat: the expired buckets must not count again.
        let later = t0 + 1024 * S;
        assert_eq!(window.read(later), Counts::default());
        window.record(later, false, false);
        assert_eq!(window.read(later).calls, 1);
    }

    #[test]
    fn clear_forgets_and_counting_resumes() {
        let t0 = Instant::now();
        let window = Window::new(Clock::new(t0), 10 * S);
        for _ in 0..5 {
            window.record(t0, true, true);
        }
        window.clear();
        assert_eq!(window.read(t0), Counts::default());
        window.record(t0, true, false);
        assert_eq!(window.read(t0).failures, 1);
    }

    #[test]
    fn racing_threads_lose_no_count() {
        let t0 = Instant::now();
        let window = std::sync::Arc::new(Window::new(Clock::new(t0), 10 * S));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let window = window.clone();
                std::thread::spawn(move || {
                    for n in 0..10_000u32 {
                        // Spread over epochs, so that buckets start while others record.
                        let at = t0 + Duration::from_millis(u64::from(n % 3000));
                        window.record(at, (n + i) % 2 == 0, false);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let c = window.read(t0 + 3 * S);
        assert_eq!(c.calls, 40_000);
        assert_eq!(c.failures, 20_000);
    }
}
