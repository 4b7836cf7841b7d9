//! An endpoint's state word, and the clock its timestamps are measured with.
//!
//! The whole gate of an endpoint (state, ejection reason, one timestamp) lives in one `u64`, so
//! the hot path (`admit`, `slow_start_factor`) is a single atomic load, and every transition is
//! one compare-and-swap on exactly the state it checked: two callers can never both claim the
//! probe, and a report can never act on a state that another thread has already left.

use super::EjectReason;
use std::time::Duration;
use tokio::time::Instant;

/// Serving traffic. Timestamp: when its slow-start ramp began ([`LONG_AGO`] for no ramp).
pub(crate) const ACTIVE: u64 = 0;
/// Ejected. Timestamp: when the ejection ends.
pub(crate) const EJECTED: u64 = 1;
/// The ejection ended and a probe was admitted. Timestamp: when the probe was admitted.
pub(crate) const PROBING: u64 = 2;
/// Removed from discovery.
pub(crate) const RETIRED: u64 = 3;

// Layout: [state: 2 bits][reason: 2 bits][time: 60 bits, microseconds, biased].
// Microseconds are far finer than any ejection or ramp needs, and 60 bits of them span
// ±18,000 years around the origin, so no real instant is ever clamped.
const TIME_BITS: u32 = 60;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
const BIAS: i64 = 1 << (TIME_BITS - 1);

/// Timestamps are clamped to ±`LIMIT` microseconds around the clock's origin.
pub(crate) const LIMIT: i64 = BIAS - 1;
/// A timestamp before any real instant: "no slow-start ramp".
pub(crate) const LONG_AGO: i64 = -LIMIT;

pub(crate) fn pack(state: u64, reason: EjectReason, micros: i64) -> u64 {
    let time = (micros.clamp(-LIMIT, LIMIT) + BIAS) as u64 & TIME_MASK;
    (state << 62) | (reason.bits() << TIME_BITS) | time
}

pub(crate) fn state(word: u64) -> u64 {
    word >> 62
}

pub(crate) fn reason(word: u64) -> EjectReason {
    EjectReason::from_bits(word >> TIME_BITS)
}

pub(crate) fn time(word: u64) -> i64 {
    (word & TIME_MASK) as i64 - BIAS
}

/// Converts instants to signed microseconds from a fixed origin. Signed, so that an instant
/// from before the detector was built (a test's base instant, say) still orders correctly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    pub(crate) fn new(origin: Instant) -> Self {
        Clock { origin }
    }

    pub(crate) fn micros(&self, t: Instant) -> i64 {
        match t.checked_duration_since(self.origin) {
            Some(after) => micros(after),
            None => -micros(self.origin.saturating_duration_since(t)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for state_bits in [ACTIVE, EJECTED, PROBING, RETIRED] {
            for reason_value in EjectReason::ALL {
                for t in [0, 1, -1, LIMIT, -LIMIT, LONG_AGO, 123_456_789_012] {
                    let word = pack(state_bits, reason_value, t);
                    assert_eq!(state(word), state_bits);
                    assert_eq!(reason(word), reason_value);
                    assert_eq!(time(word), t);
                }
            }
        }
        let clamped = pack(EJECTED, EjectReason::Latency, i64::MAX);
        assert_eq!(time(clamped), LIMIT);
        assert_eq!(state(clamped), EJECTED);
        assert_eq!(time(pack(ACTIVE, EjectReason::Latency, i64::MIN)), -LIMIT);
    }

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
}
