//! A gate: active / ejected / probing / retired — a circuit breaker's closed / open /
//! half-open, plus "removed" — as one state word and the transitions between its states.
//!
//! | gate | breaker | lets requests through | timestamp |
//! |---|---|---|---|
//! | [`ACTIVE`] | closed | all | when its slow-start ramp began ([`LONG_AGO`]: none) |
//! | [`EJECTED`] | open | none | when the ejection ends |
//! | [`PROBING`] | half-open | one probe at a time | when the probe was admitted |
//! | [`RETIRED`] | (removed) | all: no longer gated | — |
//!
//! Transitions, each one compare-and-swap from exactly the word its caller checked:
//! [`Gate::claim`] (ejected or probing → probing: admit the probe), [`Gate::eject`] (active →
//! ejected), [`Gate::probe_failed`] (probing → ejected), [`Gate::probe_succeeded`] (probing →
//! active), [`Gate::release_probe`] (probing → probing, the probe due at once) and
//! [`Gate::retire`] (any → retired, a swap). The layer that owns the gate decides when: the
//! outlier detector's health (`outlier::Health`) today, a circuit breaker tomorrow.
//!
//! The whole gate (state, the reason it closed, one timestamp) lives in one `u64`, so the hot
//! path (admitting a request) is a single atomic load, and every transition is one
//! compare-and-swap on exactly the state it checked: two callers can never both claim the
//! probe, and a report can never act on a state that another thread has already left.
//!
//! The reason is two opaque bits: the layer that owns the gate gives them their meaning (the
//! outlier detector's [`EjectReason`](crate::outlier::EjectReason), for one).

use super::clock::LIMIT;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// What [`Gate::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Active or retired: the gate lets every request through.
    Pass,
    /// Ejected, or a probe already out: no request may go.
    Shut,
    /// This caller, and no other, holds the probe. `first`: the gate was ejected (the probation
    /// began now); otherwise a probe lost past its timeout was replaced.
    Probe {
        /// Whether the gate left the ejected state for it.
        first: bool,
    },
}

/// The state word and its transitions (see the module doc). Times are the owner's [clock
/// micros](super::clock::Clock::micros); the reason is two opaque bits.
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct Gate {
    word: AtomicU64,
}

impl Gate {
    /// An active gate whose slow-start ramp began at `ramp_start` ([`LONG_AGO`]: no ramp).
    pub(crate) fn new(ramp_start: i64) -> Self {
        Gate {
            word: AtomicU64::new(active(ramp_start)),
        }
    }

    /// The state word: the one atomic load of the hot path. Decode it with [`state`],
    /// [`reason`] and [`time`], and hand it back to a transition, which acts only if the gate
    /// still holds it.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    /// Whether a probe may be claimed from `word` at `now`: the ejection is over, and no probe
    /// was admitted within `probe_timeout` (micros) before `now`.
    pub(crate) fn probe_due(word: u64, now: i64, probe_timeout: i64) -> bool {
        match state(word) {
            EJECTED => now >= time(word),
            PROBING => now >= time(word).saturating_add(probe_timeout),
            _ => false,
        }
    }

    /// Admits a request at `now`, starting from `word` (a recent [`load`](Self::load)): passes
    /// it if the gate is active or retired, gives it the probe if one is due and no other
    /// caller's swap took it first, shuts it out otherwise.
    pub(crate) fn claim(&self, mut word: u64, now: i64, probe_timeout: i64) -> Claim {
        loop {
            if matches!(state(word), ACTIVE | RETIRED) {
                return Claim::Pass;
            }
            if !Self::probe_due(word, now, probe_timeout) {
                return Claim::Shut;
            }
            // Only the caller whose swap succeeds gets the probe; the others see PROBING.
            let probing = pack(PROBING, reason(word), now);
            match self.swap_from(word, probing) {
                Ok(()) => {
                    return Claim::Probe {
                        first: state(word) == EJECTED,
                    };
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// Ejects the gate from the active `word` until `until`, for `reason`. False if `word` is
    /// not active or the gate left it meanwhile (another caller ejected or retired it).
    pub(crate) fn eject(&self, word: u64, reason: u64, until: i64) -> bool {
        state(word) == ACTIVE && self.swap_from(word, pack(EJECTED, reason, until)).is_ok()
    }

    /// The probe of the probing `word` failed: ejected again until `until`, for the same
    /// reason. False if the gate left `word` meanwhile.
    pub(crate) fn probe_failed(&self, word: u64, until: i64) -> bool {
        state(word) == PROBING
            && self
                .swap_from(word, pack(EJECTED, reason(word), until))
                .is_ok()
    }

    /// The probe of the probing `word` succeeded: active again, its ramp from `ramp_start`.
    /// False if the gate left `word` meanwhile.
    pub(crate) fn probe_succeeded(&self, word: u64, ramp_start: i64) -> bool {
        state(word) == PROBING && self.swap_from(word, active(ramp_start)).is_ok()
    }

    /// Gives back the probe admitted at `admitted` (micros) whose request was cancelled: still
    /// probing, but due again at once, as if lost `probe_timeout` ago. The state does not
    /// change. False if that probe was already decided or replaced.
    pub(crate) fn release_probe(&self, admitted: i64, probe_timeout: i64) -> bool {
        let word = self.load();
        if state(word) != PROBING || time(word) != admitted {
            return false;
        }
        let due = admitted.saturating_sub(probe_timeout);
        self.swap_from(word, pack(PROBING, reason(word), due))
            .is_ok()
    }

    /// Retires the gate, whatever its state; returns the word it left.
    pub(crate) fn retire(&self) -> u64 {
        self.word.swap(pack(RETIRED, 0, 0), Ordering::AcqRel)
    }

    fn swap_from(&self, word: u64, next: u64) -> Result<(), u64> {
        self.word
            .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
    }
}

/// The word of an active gate whose ramp began at `ramp_start`; its reason bits mean nothing.
fn active(ramp_start: i64) -> u64 {
    pack(ACTIVE, 0, ramp_start)
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod gate_tests;

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
