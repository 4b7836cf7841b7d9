//! When to hedge: a fixed delay, or a latency percentile of recent answers over a sliding
//! window, worked out when the window moves rather than on every request.

use super::config::HedgeDelay;
use crate::primitives::clock::Clock;
use crate::primitives::histogram::{self, BUCKETS, Histogram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The window is cut into this many slots; it moves a slot at a time.
const SLOTS: u64 = 6;

/// The cached delay when there is none yet (too few samples).
const UNKNOWN: u64 = u64::MAX;

/// The delay a request waits before its hedge.
pub(crate) enum Delay {
    Fixed(Duration),
    Percentile(Estimator),
}

impl Delay {
    pub(crate) fn new(config: HedgeDelay, origin: Instant) -> Self {
        match config {
            HedgeDelay::Fixed(delay) => Delay::Fixed(delay),
            HedgeDelay::Percentile {
                percentile,
                min_samples,
                window,
            } => Delay::Percentile(Estimator::new(percentile, min_samples, window, origin)),
        }
    }

    /// The delay now; `None` while the percentile has too few samples. One atomic load.
    #[inline]
    pub(crate) fn get(&self) -> Option<Duration> {
        match self {
            Delay::Fixed(delay) => Some(*delay),
            Delay::Percentile(estimator) => estimator.get(),
        }
    }

    /// Whether answers must be timed (and so the clock read when a request starts).
    #[inline]
    pub(crate) fn learns(&self) -> bool {
        matches!(self, Delay::Percentile(_))
    }

    /// Records an attempt that took `latency`, ending at `now`; `Some(delay)` when the delay
    /// changed (for the gauge).
    #[inline]
    pub(crate) fn record(&self, now: Instant, latency: Duration) -> Option<Option<Duration>> {
        match self {
            Delay::Fixed(_) => None,
            Delay::Percentile(estimator) => estimator.record(now, latency),
        }
    }
}

/// A latency percentile over a sliding window: six slots, each a quarter-octave histogram
/// (the floor's, so the percentile is within 12.5% of the true value, at any scale from
/// microseconds up).
pub(crate) struct Estimator {
    clock: Clock,
    quantile: f64,
    min_samples: u64,
    /// Nanoseconds per slot, at least 1.
    slot_nanos: u64,
    slots: Box<[Slot]>,
    /// The delay in nanoseconds, or [`UNKNOWN`].
    delay: AtomicU64,
}

struct Slot {
    /// The number of the stretch of time this slot holds, plus one (0: never used).
    tag: AtomicU64,
    latency: Histogram,
}

impl Estimator {
    fn new(quantile: f64, min_samples: u32, window: Duration, origin: Instant) -> Self {
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Estimator {
            clock: Clock::new(origin),
            quantile,
            min_samples: u64::from(min_samples),
            slot_nanos: (window / SLOTS).max(1),
            slots: (0..SLOTS)
                .map(|_| Slot {
                    tag: AtomicU64::new(0),
                    latency: Histogram::new(true),
                })
                .collect(),
            delay: AtomicU64::new(UNKNOWN),
        }
    }

    #[inline]
    fn get(&self) -> Option<Duration> {
        match self.delay.load(Ordering::Relaxed) {
            UNKNOWN => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    fn tag(&self, now: Instant) -> u64 {
        self.clock.nanos(now) / self.slot_nanos + 1
    }

    fn record(&self, now: Instant, latency: Duration) -> Option<Option<Duration>> {
        let tag = self.tag(now);
        let slot = &self.slots[(tag % SLOTS) as usize];
        let seen = slot.tag.load(Ordering::Acquire);
        let mut moved = false;
        if seen != tag {
            if seen > tag {
                return None; // a straggler from a stretch of time already reused
            }
            // The first to move the slot on clears it; a sample another thread records in
            // between may be lost, which a percentile can afford.
            if slot
                .tag
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.latency.clear();
                moved = true;
            }
        }
        slot.latency.record(latency);
        if moved || self.delay.load(Ordering::Relaxed) == UNKNOWN {
            return self.refresh(tag);
        }
        None
    }

    /// Works the delay out again from the slots of the window that ends in slot `current`;
    /// `Some(new)` when it changed.
    fn refresh(&self, current: u64) -> Option<Option<Duration>> {
        let oldest = current.saturating_sub(SLOTS - 1).max(1);
        let mut counts = [0u64; BUCKETS];
        for slot in self.slots.iter() {
            if (oldest..=current).contains(&slot.tag.load(Ordering::Acquire)) {
                slot.latency.add_counts_to(&mut counts);
            }
        }
        let total: u64 = counts.iter().sum();
        let delay = if total < self.min_samples.max(1) {
            UNKNOWN
        } else {
            histogram::quantile(&counts, self.quantile)
                .map_or(UNKNOWN, |micros| (micros * 1e3) as u64)
        };
        let old = self.delay.swap(delay, Ordering::Relaxed);
        (old != delay).then(|| (delay != UNKNOWN).then(|| Duration::from_nanos(delay)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn p95(min_samples: u32, origin: Instant) -> Delay {
        Delay::new(
            HedgeDelay::Percentile {
                percentile: 0.95,
                min_samples,
                window: Duration::from_secs(30),
            },
            origin,
        )
    }

    #[test]
    fn no_delay_before_the_minimum_then_the_percentile() {
        let t0 = Instant::now();
        let delay = p95(100, t0);
        for i in 0..99u32 {
            delay.record(t0, MS * (i % 20 + 1));
            assert_eq!(delay.get(), None, "{i}");
        }
        assert!(delay.record(t0, MS * 20).is_some());
        let d = delay.get().unwrap().as_secs_f64() * 1e3;
        // p95 of 1..=20 ms, five of each: 19 ms, within a bucket's 12.5%.
        assert!((d - 19.0).abs() <= 19.0 / 8.0, "{d}");
        // Sub-millisecond answers give a sub-millisecond delay.
        let fast = p95(10, t0);
        for _ in 0..10 {
            fast.record(t0, Duration::from_micros(300));
        }
        let d = fast.get().unwrap().as_micros();
        assert!((263..=338).contains(&d), "{d}");
    }

    #[test]
    fn old_answers_leave_the_window() {
        let t0 = Instant::now();
        let delay = p95(10, t0);
        for _ in 0..10 {
            delay.record(t0, MS * 100);
        }
        assert!(delay.get().unwrap() > MS * 80);
        // Thirty seconds on, fast answers only: the slow ones fall out as the slots turn.
        let later = t0 + Duration::from_secs(31);
        for _ in 0..10 {
            delay.record(later, MS);
        }
        assert!(delay.get().unwrap() < MS * 2, "{:?}", delay.get());
        // Too few samples in the window again: no delay.
        delay.record(t0 + Duration::from_secs(70), MS);
        assert_eq!(delay.get(), None);
        assert!(!Delay::new(HedgeDelay::Fixed(MS), t0).learns());
    }
}
