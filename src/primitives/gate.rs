//! A gate's state word: active / ejected / probing / retired — a circuit breaker's closed /
//! open / half-open, plus "removed".
//!
//! The whole gate (state, the reason it closed, one timestamp) lives in one `u64`, so the hot
//! path (admitting a request) is a single atomic load, and every transition is one
//! compare-and-swap on exactly the state it checked: two callers can never both claim the
//! probe, and a report can never act on a state that another thread has already left.
//!
//! The reason is two opaque bits: the layer that owns the gate gives them their meaning (the
//! outlier detector's [`EjectReason`](crate::outlier::EjectReason), for one).

use super::clock::LIMIT;

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

/// A timestamp before any real instant: "no slow-start ramp".
pub(crate) const LONG_AGO: i64 = -LIMIT;

/// The word for `state`, `reason` (its low two bits) and `micros` (clamped to ±[`LIMIT`]).
pub(crate) fn pack(state: u64, reason: u64, micros: i64) -> u64 {
    let time = (micros.clamp(-LIMIT, LIMIT) + BIAS) as u64 & TIME_MASK;
    (state << 62) | ((reason & 0b11) << TIME_BITS) | time
}

pub(crate) fn state(word: u64) -> u64 {
    word >> 62
}

pub(crate) fn reason(word: u64) -> u64 {
    (word >> TIME_BITS) & 0b11
}

pub(crate) fn time(word: u64) -> i64 {
    (word & TIME_MASK) as i64 - BIAS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for state_bits in [ACTIVE, EJECTED, PROBING, RETIRED] {
            for reason_value in 0..4 {
                for t in [0, 1, -1, LIMIT, -LIMIT, LONG_AGO, 123_456_789_012] {
                    let word = pack(state_bits, reason_value, t);
                    assert_eq!(state(word), state_bits);
                    assert_eq!(reason(word), reason_value);
                    assert_eq!(time(word), t);
                }
            }
        }
        let clamped = pack(EJECTED, 3, i64::MAX);
        assert_eq!(time(clamped), LIMIT);
        assert_eq!(state(clamped), EJECTED);
        assert_eq!(time(pack(ACTIVE, 3, i64::MIN)), -LIMIT);
    }
}
