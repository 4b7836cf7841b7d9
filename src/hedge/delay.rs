//! When to hedge: a fixed delay, or a percentile of how long recent first attempts waited over
//! a sliding window, worked out every few dozen samples rather than on every request.

use super::config::HedgeDelay;
use crate::primitives::clock::Clock;
use crate::primitives::histogram::{self, BUCKETS, Histogram};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tokio::time::Instant;

/// The window is cut into this many slots; it moves a slot at a time.
const SLOTS: u64 = 6;

/// The cached delay when there is none yet (too few samples).
const UNKNOWN: u64 = u64::MAX;

/// The share of the extra-load cap a percentile delay aims to fill. The cap admits hedges first
/// come, first served: were the percentile to ask for the whole cap (p95 under a 5% cap), the
/// noise of a sliding window would have it refuse hedges all the time, and those it refuses
/// would as likely be the requests stuck on a dead endpoint as the merely slowish ones. Aiming a
/// little under it keeps the cap for bursts, and hedges the slowest.
const CAP_SHARE: f64 = 0.9;

/// Samples between two workings-out of the percentile besides those at each turn of a slot, so
/// that a young window (a client's first seconds) follows the data rather than its first
/// hundred answers.
const REFRESH_EVERY: u64 = 64;

/// The percentile a delay is taken at: the configured one, or higher when the hedges it would
/// send do not fit under [`CAP_SHARE`] of the extra-load cap.
pub(crate) fn effective_percentile(percentile: f64, max_extra_load: f64) -> f64 {
    percentile.max(1.0 - CAP_SHARE * max_extra_load)
}

/// The delay for a request being sent, as [`Delay::known`] tells it.
pub(crate) enum Known {
    Now(Duration),
    /// Not yet: the future completes when it becomes known (or is taken again).
    Later(OwnedNotified),
}

/// The delay a request waits before its hedge.
pub(crate) enum Delay {
    Fixed(Duration),
    Percentile(Estimator),
}

impl Delay {
    pub(crate) fn new(config: HedgeDelay, max_extra_load: f64, origin: Instant) -> Self {
        match config {
            HedgeDelay::Fixed(delay) => Delay::Fixed(delay),
            HedgeDelay::Percentile {
                percentile,
                min_samples,
                window,
            } => Delay::Percentile(Estimator::new(
                effective_percentile(percentile, max_extra_load),
                min_samples,
                window,
                origin,
            )),
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

    /// The delay for a request sent now: known, or a way to learn when it is. A request sent
    /// while the percentile still has too few samples (a client's first moments, when nothing
    /// is known of its endpoints yet and a dead one gets its share of requests) is hedged once
    /// the delay is known, counted from its own send.
    pub(crate) fn known(&self) -> Known {
        match self {
            Delay::Fixed(delay) => Known::Now(*delay),
            Delay::Percentile(estimator) => {
                if let Some(delay) = estimator.get() {
                    return Known::Now(delay);
                }
                // Waiting first, then reading again: a delay worked out in between is seen.
                let later = estimator.known.clone().notified_owned();
                match estimator.get() {
                    Some(delay) => Known::Now(delay),
                    None => Known::Later(later),
                }
            }
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
    /// Samples since the delay was last worked out.
    unrefreshed: AtomicU64,
    /// Told when the delay becomes known.
    known: Arc<Notify>,
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
            unrefreshed: AtomicU64::new(0),
            known: Arc::new(Notify::new()),
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
        let due = self.unrefreshed.fetch_add(1, Ordering::Relaxed) + 1 >= REFRESH_EVERY;
        if moved || due || self.delay.load(Ordering::Relaxed) == UNKNOWN {
            self.unrefreshed.store(0, Ordering::Relaxed);
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
        if old == UNKNOWN && delay != UNKNOWN {
            self.known.notify_waiters();
        }
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
            1.0,
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
        assert!(!Delay::new(HedgeDelay::Fixed(MS), 0.05, t0).learns());
    }

    #[test]
    fn the_percentile_rises_to_fit_under_the_cap() {
        assert_eq!(effective_percentile(0.99, 0.05), 0.99);
        assert!((effective_percentile(0.95, 0.05) - 0.955).abs() < 1e-12);
        assert!((effective_percentile(0.5, 0.1) - 0.91).abs() < 1e-12);
        // Under the default cap, a window where 4% of first attempts wait 100 ms and the rest
        // 1 ms hedges only the slow ones: p95.5 is 1 ms.
        let t0 = Instant::now();
        let delay = Delay::new(HedgeDelay::default(), 0.05, t0);
        for i in 0..1_000u32 {
            delay.record(t0, if i % 25 == 0 { MS * 100 } else { MS });
        }
        assert!(delay.get().unwrap() < MS * 2, "{:?}", delay.get());
    }

    #[test]
    fn a_young_window_follows_the_data() {
        // The first hundred answers are fast, then every answer takes 10 ms: within the same
        // slot, the delay moves after the next 64 samples rather than at the slot's turn.
        let t0 = Instant::now();
        let delay = p95(100, t0);
        for _ in 0..100 {
            delay.record(t0, MS);
        }
        assert!(delay.get().unwrap() < MS * 2);
        for _ in 0..200 {
            delay.record(t0, MS * 10);
        }
        assert!(delay.get().unwrap() > MS * 8, "{:?}", delay.get());
    }
}
