//! A lock-free latency histogram, precise enough for a median.
//!
//! The latency policy compares medians over whole intervals. A median needs the distribution,
//! not a running mean, but it does not need much precision: buckets a quarter of an octave
//! wide (the median is off by at most 12.5%) are plenty to tell a 3× slower endpoint apart.
//! Recording is one relaxed `fetch_add`; reading (once per interval) swaps the counts out.
//!
//! The stats window of [`crate::observe`] reuses it for latency percentiles, reading the counts
//! without clearing them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Four buckets per octave of microseconds, up to 2³³ µs (about 2.4 hours); slower requests
/// land in the last bucket.
pub(crate) const BUCKETS: usize = 128;

pub(crate) struct Histogram {
    /// Empty when the latency policy is off: nothing to record, nothing allocated.
    buckets: Box<[AtomicU32]>,
}

impl Histogram {
    pub(crate) fn new(enabled: bool) -> Self {
        let size = if enabled { BUCKETS } else { 0 };
        Histogram {
            buckets: (0..size).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        if let Some(bucket) = self.buckets.get(index(latency)) {
            // A u32 per bucket wraps after four billion requests in one interval, far beyond
            // what one endpoint serves in seconds.
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Relaxed);
        }
    }

    /// Adds each bucket's count to `totals` (one entry per bucket), leaving the counts as they
    /// are.
    pub(crate) fn add_counts_to(&self, totals: &mut [u64]) {
        for (total, bucket) in totals.iter_mut().zip(self.buckets.iter()) {
            *total += u64::from(bucket.load(Ordering::Relaxed));
        }
    }

    /// The median of everything recorded since the last call, in microseconds, and clears
    /// the counts. `None` when nothing was recorded.
    pub(crate) fn take_median(&self) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| u64::from(b.swap(0, Ordering::Relaxed)))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let half = total.div_ceil(2);
        let mut seen = 0;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= half {
                return Some(midpoint(i));
            }
        }
        None
    }
}

/// The value at quantile `q` (in `[0, 1]`) of a histogram's bucket `counts`, in
/// microseconds: the middle of the bucket that holds it. `None` when the counts are all zero.
pub(crate) fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the value sought, 1-based: at least the first value, at most the last.
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(midpoint(i));
        }
    }
    None
}

/// Values below 8 µs get a bucket each; above, an octave `[2ᵒ, 2ᵒ⁺¹)` splits into four buckets
/// by the two bits after the leading one.
fn index(latency: Duration) -> usize {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if us < 8 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // >= 3
    let quarter = ((us >> (octave - 2)) & 3) as usize;
    (4 * (octave - 1) + quarter).min(BUCKETS - 1)
}

/// The middle of bucket `i`, in microseconds.
fn midpoint(i: usize) -> f64 {
    if i < 8 {
        return i as f64 + 0.5;
    }
    let octave = i / 4 + 1;
    let width = 1u64 << (octave - 2);
    let low = (4 + (i % 4) as u64) << (octave - 2);
    low as f64 + width as f64 / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_within_an_eighth_of_the_value() {
        let mut last = 0;
        for us in (0..100_000u64).chain((17..33).map(|p| 1u64 << p)) {
            let i = index(Duration::from_micros(us));
            assert!(i >= last, "{us} µs");
            last = i;
            if us >= 8 {
                let error = (midpoint(i) - us as f64).abs() / us as f64;
                assert!(error <= 0.125, "{us} µs → bucket {i}, {error}");
            }
        }
        assert_eq!(index(Duration::MAX), BUCKETS - 1);
        assert_eq!(index(Duration::ZERO), 0);
    }

    #[test]
    fn the_median_is_taken_and_cleared() {
        let h = Histogram::new(true);
        assert_eq!(h.take_median(), None);
        for ms in [1, 2, 3, 100, 100] {
            h.record(Duration::from_millis(ms));
        }
        let median = h.take_median().unwrap();
        assert!((2_600.0..=3_400.0).contains(&median), "{median}");
        assert_eq!(h.take_median(), None);
    }

    #[test]
    fn a_few_slow_requests_do_not_move_the_median() {
        let h = Histogram::new(true);
        for _ in 0..95 {
            h.record(Duration::from_millis(10));
        }
        for _ in 0..5 {
            h.record(Duration::from_secs(30));
        }
        let median = h.take_median().unwrap();
        assert!((9_000.0..=11_000.0).contains(&median), "{median}");
    }

    #[test]
    fn quantiles_come_from_the_counts_without_clearing_them() {
        let h = Histogram::new(true);
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let mut counts = vec![0; BUCKETS];
        h.add_counts_to(&mut counts);
        let within = |q: f64, expect_ms: f64| {
            let got = quantile(&counts, q).unwrap() / 1000.0;
            assert!((got - expect_ms).abs() <= expect_ms / 8.0, "p{q}: {got} ms");
        };
        within(0.5, 50.0);
        within(0.9, 90.0);
        within(0.99, 99.0);
        within(0.0, 1.0);
        within(1.0, 100.0);
        assert_eq!(quantile(&[0; BUCKETS], 0.5), None);
        assert!(
            h.take_median().is_some(),
            "reading the counts left them in place"
        );
    }

    #[test]
    fn a_disabled_histogram_records_nothing() {
        let h = Histogram::new(false);
        h.record(Duration::from_millis(5));
        assert_eq!(h.take_median(), None);
        h.clear();
    }

    #[test]
    fn clearing_forgets_everything() {
        let h = Histogram::new(true);
        h.record(Duration::from_millis(5));
        h.clear();
        assert_eq!(h.take_median(), None);
    }
}
