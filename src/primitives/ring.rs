//! The lossy statistics ring: outcomes and latencies over the last minute, for `stats()`.
//!
//! Its contract, unlike the retry budget's exact ledger: readings are statistics.
//!
//! Time is cut into 10-second slots ([`SLOT_SECS`]), and the last [`SLOTS`] of them are kept
//! in a ring: the current slot and the five before it, so a reading covers between 50 and 60
//! seconds.
//! Each slot holds its success and failure counts and a latency histogram (the outlier
//! detector's quarter-octave buckets: percentiles within 12.5%). Recording is a few relaxed
//! atomic increments; the first request of a new slot clears the slot it reuses.
//!
//! It is a statistic, not a ledger: a request recorded by one thread while another clears the
//! slot it lands in may be lost, once per slot at most per thread.

use super::clock::Clock;
use super::histogram::{self, BUCKETS, Histogram};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How long one slot lasts, in whole seconds (so that finding a slot divides seconds, not
/// 128-bit nanoseconds).
const SLOT_SECS: u64 = 10;
/// How many slots the ring keeps.
pub(crate) const SLOTS: usize = 6;

/// Outcomes and latency percentiles of the logical requests that finished in the last minute
/// (between 50 and 60 seconds: the window moves in 10-second steps).
///
/// Latencies run from the call to the answer, retries included, for successes and failures
/// alike; requests their caller cancelled are left out. Percentiles are the middle of a
/// quarter-octave bucket: within 12.5% of the true value.
///
/// ```
/// use meshless::{budget::Budget, retry::RetryLayer};
/// let layer = RetryLayer::new(Budget::default());
/// let recent = layer.stats().recent();
/// assert_eq!(recent.requests(), 0);
/// assert_eq!(recent.success_rate(), None);
/// assert_eq!(recent.p99, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct RecentStats {
    /// The stretch of time the figures cover, up to the snapshot.
    pub window: Duration,
    /// Requests that succeeded.
    pub successes: u64,
    /// Requests that failed (a failure answer, an error, or the client's deadline timer ended
    /// them).
    pub failures: u64,
    /// The median latency, or `None` with no request in the window.
    pub p50: Option<Duration>,
    /// The 90th-percentile latency.
    pub p90: Option<Duration>,
    /// The 99th-percentile latency.
    pub p99: Option<Duration>,
}

impl RecentStats {
    /// Requests finished in the window: successes and failures.
    ///
    /// ```
    /// let recent = meshless::observe::RecentStats::default();
    /// assert_eq!(recent.requests(), 0);
    /// ```
    pub fn requests(&self) -> u64 {
        self.successes + self.failures
    }

    /// The share of requests that succeeded, in `[0, 1]`; `None` with no request in the
    /// window.
    ///
    /// ```
    /// let recent = meshless::observe::RecentStats::default();
    /// assert_eq!(recent.success_rate(), None);
    /// ```
    pub fn success_rate(&self) -> Option<f64> {
        let requests = self.requests();
        (requests > 0).then(|| self.successes as f64 / requests as f64)
    }
}

/// The last minute of outcomes.
pub(crate) struct Recent {
    clock: Clock,
    slots: [Slot; SLOTS],
}

struct Slot {
    /// The number of the slot of time this one holds, plus one (0: never used).
    tag: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    latency: Histogram,
}

impl Default for Recent {
    fn default() -> Self {
        Recent::new(Instant::now())
    }
}

impl Recent {
    pub(crate) fn new(origin: Instant) -> Self {
        Recent {
            clock: Clock::new(origin),
            slots: std::array::from_fn(|_| Slot {
                tag: AtomicU64::new(0),
                successes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                latency: Histogram::new(true),
            }),
        }
    }

    /// The tag of the slot of time `now` falls in.
    fn tag(&self, now: Instant) -> u64 {
        self.clock.elapsed(now).as_secs() / SLOT_SECS + 1
    }

    /// Records a request that finished at `now` after `latency`.
    pub(crate) fn record(&self, now: Instant, latency: Duration, success: bool) {
        let tag = self.tag(now);
        // `tag` is at least 1, and the ring index only needs it modulo the ring's length.
        let slot = &self.slots[(tag % SLOTS as u64) as usize];
        let seen = slot.tag.load(Ordering::Acquire);
        if seen != tag {
            if seen > tag {
                return; // a straggler, from a slot of time already reused
            }
            // The first to move the slot to this tag clears it; others record into it.
            if slot
                .tag
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.successes.store(0, Ordering::Relaxed);
                slot.failures.store(0, Ordering::Relaxed);
                slot.latency.clear();
            }
        }
        let counter = if success {
            &slot.successes
        } else {
            &slot.failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        slot.latency.record(latency);
    }

    /// What the slots of the last minute hold, as seen at `now`.
    pub(crate) fn read(&self, now: Instant) -> RecentStats {
        let current = self.tag(now);
        let oldest = current.saturating_sub(SLOTS as u64 - 1).max(1);
        let mut successes = 0;
        let mut failures = 0;
        let mut counts = vec![0u64; BUCKETS];
        for slot in &self.slots {
            let tag = slot.tag.load(Ordering::Acquire);
            if (oldest..=current).contains(&tag) {
                successes += slot.successes.load(Ordering::Relaxed);
                failures += slot.failures.load(Ordering::Relaxed);
                slot.latency.add_counts_to(&mut counts);
            }
        }
        let percentile = |q: f64| {
            histogram::quantile(&counts, q).map(|micros| Duration::from_secs_f64(micros / 1e6))
        };
        // From the start of the oldest slot read (or the origin) to now.
        let covered = self.clock.elapsed(now);
        let oldest_start = Duration::from_secs((oldest - 1).saturating_mul(SLOT_SECS));
        RecentStats {
            window: covered.saturating_sub(oldest_start),
            successes,
            failures,
            p50: percentile(0.5),
            p90: percentile(0.9),
            p99: percentile(0.99),
        }
    }
}

impl fmt::Debug for Recent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recent")
            .field("origin", &self.clock.origin())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SLOT: Duration = Duration::from_secs(SLOT_SECS);

    #[test]
    fn counts_and_percentiles_over_the_window() {
        let t0 = Instant::now();
        let recent = Recent::new(t0);
        assert_eq!(recent.read(t0).requests(), 0);
        assert_eq!(recent.read(t0).p50, None);
        for i in 0..100u32 {
            recent.record(t0 + SLOT * (i % 3), MS * (i + 1), i % 10 != 0);
        }
        let stats = recent.read(t0 + SLOT * 2);
        assert_eq!((stats.successes, stats.failures), (90, 10));
        assert_eq!(stats.success_rate(), Some(0.9));
        let p50 = stats.p50.unwrap().as_secs_f64() * 1e3;
        assert!((p50 - 50.0).abs() <= 50.0 / 8.0, "{p50}");
        let p99 = stats.p99.unwrap().as_secs_f64() * 1e3;
        assert!((p99 - 99.0).abs() <= 99.0 / 8.0, "{p99}");
        assert_eq!(stats.window, SLOT * 2);
    }

    #[test]
    fn old_slots_fall_out_and_are_reused() {
        let t0 = Instant::now();
        let recent = Recent::new(t0);
        recent.record(t0, MS, false);
        recent.record(t0 + SLOT * 5, MS, true);
        let stats = recent.read(t0 + SLOT * 5);
        assert_eq!((stats.successes, stats.failures), (1, 1));
        assert_eq!(stats.window, SLOT * 5);
        // One slot later, the first slot is out of the window...
        let stats = recent.read(t0 + SLOT * 6);
        assert_eq!((stats.successes, stats.failures), (1, 0));
        assert_eq!(stats.window, SLOT * 5);
        // ...and reusing it forgets what it held.
        recent.record(t0 + SLOT * 6, MS, true);
        let stats = recent.read(t0 + SLOT * 6);
        assert_eq!((stats.successes, stats.failures), (2, 0));
        // A straggler from the slot of time it held before is dropped.
        recent.record(t0, MS, false);
        assert_eq!(recent.read(t0 + SLOT * 6).failures, 0);
        // Long after, nothing is left.
        assert_eq!(recent.read(t0 + SLOT * 60).requests(), 0);
    }
}
