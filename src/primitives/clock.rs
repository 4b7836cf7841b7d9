//! The one clock every layer measures with: instants counted from an origin, in one of two
//! units.
//!
//! - signed microseconds ([`Clock::micros`]): gates and windows (outlier, statistics). Signed,
//!   so that an instant from before the origin (a test's base instant, say) still orders
//!   correctly; 60 bits of microseconds span ±18,000 years, so no real instant is clamped.
//! - unsigned nanoseconds ([`Clock::nanos`]): the balancer's latency estimates and the retry
//!   budget's ledger, which need sub-microsecond resolution and count forward only; an instant
//!   before the origin reads as the origin, one past 584 years as `u64::MAX`.
//!
//! tokio's `Instant`, so that paused test time drives everything. A `Clock` never reads the
//! time itself: each event reads `Instant::now()` once and converts that reading.

use std::time::Duration;
use tokio::time::Instant;

/// Timestamps are clamped to ±`LIMIT` microseconds around a clock's origin (60 bits, the
/// width a [gate word](super::gate) keeps).
pub(crate) const LIMIT: i64 = (1 << 59) - 1;

/// Durations at or above this mean "no limit": far enough never to matter, near enough that
/// adding it to an `Instant` cannot overflow (`Duration::MAX` would).
pub(crate) const NO_LIMIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Reads instants against a fixed origin. Cheap to copy; it never reads the time itself, so
/// each event reads `Instant::now()` once and hands the reading to every window it feeds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    pub(crate) fn new(origin: Instant) -> Self {
        Clock { origin }
    }

    /// The instant every reading counts from.
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    /// The time from the origin to `now`, zero if `now` is earlier: for windows that count
    /// forward from the origin and drop stragglers.
    pub(crate) fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    /// `t` in signed microseconds from the origin, clamped to ±[`LIMIT`].
    pub(crate) fn micros(&self, t: Instant) -> i64 {
        match t.checked_duration_since(self.origin) {
            Some(after) => micros(after),
            None => -micros(self.origin.saturating_duration_since(t)),
        }
    }

    /// `now` in whole nanoseconds since the origin: 0 if `now` is earlier, `u64::MAX` if it is
    /// more than 584 years later. In 64-bit arithmetic, for the same reason as [`micros`].
    #[inline]
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        whole_nanos(now.saturating_duration_since(self.origin))
    }

    /// The instant `nanos` after the origin, `None` if the platform's `Instant` cannot hold
    /// it. Exact for any reading [`nanos`](Self::nanos) gave of a later instant.
    pub(crate) fn after_nanos(&self, nanos: u64) -> Option<Instant> {
        self.origin.checked_add(Duration::from_nanos(nanos))
    }

    /// The instant `micros` from the origin. One the platform's `Instant` cannot hold (an
    /// ejection with no maximum ends millennia away) becomes the farthest it can, found by
    /// halving: never the origin, which would read as an ejection already over.
    pub(crate) fn instant(&self, micros: i64) -> Instant {
        let mut offset = Duration::from_micros(micros.unsigned_abs());
        loop {
            let t = if micros >= 0 {
                self.origin.checked_add(offset)
            } else {
                self.origin.checked_sub(offset)
            };
            match t {
                Some(t) => return t,
                None if offset.is_zero() => return self.origin,
                None => offset /= 2,
            }
        }
    }
}

/// A duration in microseconds, clamped to [`LIMIT`]. In 64-bit arithmetic: `as_micros`'s
/// 128-bit product costs as much as the rest of the gate check on every request.
pub(crate) fn micros(d: Duration) -> i64 {
    d.as_secs()
        .checked_mul(1_000_000)
        .and_then(|us| us.checked_add(u64::from(d.subsec_micros())))
        .and_then(|us| i64::try_from(us).ok())
        .map_or(LIMIT, |us| us.min(LIMIT))
}

/// `d` in whole nanoseconds, saturating at `u64::MAX` (584 years).
#[inline]
pub(crate) fn whole_nanos(d: Duration) -> u64 {
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_signed_around_its_origin() {
        let origin = Instant::now();
        let clock = Clock::new(origin);
        let second = Duration::from_secs(1);
        assert_eq!(clock.micros(origin), 0);
        assert_eq!(clock.micros(origin + second), 1_000_000);
        if let Some(before) = origin.checked_sub(second) {
            assert_eq!(clock.micros(before), -1_000_000);
            assert_eq!(clock.instant(-1_000_000), before);
        }
        assert_eq!(clock.instant(1_000_000), origin + second);
        // Far-off values never panic.
        let _ = clock.instant(LIMIT);
        let _ = clock.instant(-LIMIT);
        assert_eq!(micros(Duration::MAX), LIMIT);
        for d in [
            Duration::ZERO,
            Duration::from_nanos(999),
            Duration::new(1, 999_999_999),
            Duration::from_micros(LIMIT as u64),
            Duration::from_micros(LIMIT as u64 + 1),
            Duration::new(u64::MAX / 1_000_000, 999_999_999),
            Duration::new(u64::MAX / 1_000_000 + 1, 0),
        ] {
            let exact = i64::try_from(d.as_micros()).map_or(LIMIT, |us| us.min(LIMIT));
            assert_eq!(micros(d), exact, "{d:?}");
        }
    }

    #[test]
    fn nanoseconds_count_forward_from_the_origin_and_saturate() {
        let origin = Instant::now();
        let clock = Clock::new(origin);
        assert_eq!(clock.nanos(origin), 0);
        assert_eq!(clock.nanos(origin + Duration::new(2, 5)), 2_000_000_005);
        if let Some(before) = origin.checked_sub(Duration::from_secs(1)) {
            assert_eq!(
                clock.nanos(before),
                0,
                "an earlier instant reads as the origin"
            );
        }
        if let Some(far) = origin.checked_add(Duration::from_secs(600 * 365 * 86_400)) {
            assert_eq!(clock.nanos(far), u64::MAX, "past 584 years saturates");
        }
        for n in [0, 1, 999_999_999, 1 << 40] {
            assert_eq!(clock.after_nanos(n).map(|t| clock.nanos(t)), Some(n));
        }
        for d in [
            Duration::ZERO,
            Duration::new(1, 999_999_999),
            Duration::from_nanos(u64::MAX),
            Duration::new(u64::MAX / 1_000_000_000 + 1, 0),
            Duration::MAX,
        ] {
            let exact = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            assert_eq!(whole_nanos(d), exact, "{d:?}");
        }
    }
}
