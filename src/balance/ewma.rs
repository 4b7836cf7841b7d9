//! Peak-EWMA latency: reacts at once to a slower sample, forgets it smoothly.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A peak-sensitive exponentially weighted moving average of round-trip time.
///
/// A sample above the estimate replaces it (the peak), so an endpoint that slows down loses
/// traffic immediately; a sample below it is blended in with a weight that grows with the time
/// since the last update (decay time `tau`). Reading the estimate also decays it towards zero,
/// so an endpoint that gets no traffic — because it looked slow — is eventually tried again.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    tau_nanos: f64,
    state: Mutex<State>,
}

/// How fast a failure's penalty fades: e-fold every second. A penalty is not a latency the
/// endpoint showed, so it must not linger for the RTT's decay time (10 s): an endpoint that
/// failed once would sit idle for most of a minute (1 s decaying to a healthy 5 ms takes
/// 10 s × ln 200 ≈ 53 s). Fading in seconds brings an endpoint that blipped back within about
/// five seconds, while one that keeps failing keeps renewing its penalty.
const PENALTY_DECAY_NANOS: f64 = 1e9;

#[derive(Debug, Clone, Copy)]
struct State {
    estimate_nanos: f64,
    updated: Instant,
    penalty_nanos: f64,
    penalized: Instant,
}

impl PeakEwma {
    pub(crate) fn new(initial: Duration, tau: Duration, now: Instant) -> Self {
        PeakEwma {
            tau_nanos: (tau.as_nanos() as f64).max(1.0),
            state: Mutex::new(State {
                estimate_nanos: initial.as_nanos() as f64,
                updated: now,
                penalty_nanos: 0.0,
                penalized: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every write leaves the state whole, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn decayed(&self, state: &State, now: Instant) -> f64 {
        let elapsed = nanos(now.saturating_duration_since(state.updated));
        state.estimate_nanos * (-elapsed / self.tau_nanos).exp() + penalty(state, now)
    }

    /// The current estimate, in nanoseconds, decayed to `now`.
    pub(crate) fn get(&self, now: Instant) -> f64 {
        let state = *self.lock();
        self.decayed(&state, now)
    }

    /// Records one round trip; returns the new estimate, in nanoseconds.
    pub(crate) fn observe(&self, rtt: Duration, now: Instant) -> f64 {
        let rtt = nanos(rtt);
        let mut state = self.lock();
        let current = state.estimate_nanos;
        state.estimate_nanos = if rtt > current {
            rtt
        } else {
            let elapsed = nanos(now.saturating_duration_since(state.updated));
            let keep = (-elapsed / self.tau_nanos).exp();
            current * keep + rtt * (1.0 - keep)
        };
        state.updated = state.updated.max(now);
        state.estimate_nanos
    }

    /// Forgets the history: used when an endpoint comes back from ejection, so that the penalty
    /// that got it ejected does not keep it idle after it has proven healthy again.
    /// Returns the new estimate, in nanoseconds.
    pub(crate) fn reset(&self, rtt: Duration, now: Instant) -> f64 {
        let mut state = self.lock();
        state.estimate_nanos = nanos(rtt);
        state.updated = now;
        state.penalty_nanos = 0.0;
        state.penalized = now;
        state.estimate_nanos
    }

    /// Records a failure's penalty: like a peak, it replaces what is left of earlier ones when
    /// larger (penalties do not pile up, or one burst of failures would bar an endpoint for
    /// long after it recovered). Returns the cost estimate it leads to, in nanoseconds.
    pub(crate) fn penalize(&self, amount: Duration, now: Instant) -> f64 {
        let mut state = self.lock();
        state.penalty_nanos = penalty(&state, now).max(nanos(amount));
        state.penalized = now;
        let state = *state;
        self.decayed(&state, now)
    }
}

/// What is left of the last penalty at `now`.
fn penalty(state: &State, now: Instant) -> f64 {
    // Most endpoints never failed: nothing to decay, and no clock arithmetic or `exp` to pay
    // on every pick (the product below would be 0.0 all the same).
    if state.penalty_nanos == 0.0 {
        return 0.0;
    }
    let elapsed = nanos(now.saturating_duration_since(state.penalized));
    state.penalty_nanos * (-elapsed / PENALTY_DECAY_NANOS).exp()
}

/// `d` in nanoseconds, rounded exactly as `d.as_nanos() as f64` would be, without its
/// 128-bit conversion (a library call costing as much as the rest of a pick's arithmetic)
/// for any duration under 584 years.
fn nanos(d: Duration) -> f64 {
    let whole = d
        .as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())));
    match whole {
        Some(n) => n as f64,
        None => d.as_nanos() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nanoseconds_round_as_the_128_bit_conversion_does() {
        let cases = [
            Duration::ZERO,
            Duration::from_nanos(1),
            30 * MS,
            Duration::from_nanos((1 << 53) + 1),
            Duration::from_nanos((1 << 54) + 3),
            Duration::from_nanos(u64::MAX),
            Duration::new(u64::MAX / 1_000_000_000, 999_999_999),
            Duration::new(u64::MAX / 1_000_000_000 + 1, 0),
            Duration::MAX,
        ];
        for d in cases {
            assert_eq!(nanos(d).to_bits(), (d.as_nanos() as f64).to_bits(), "{d:?}");
        }
    }

    #[test]
    fn a_slower_sample_is_taken_at_once() {
        let t0 = Instant::now();
        let e = PeakEwma::new(30 * MS, Duration::from_secs(10), t0);
        e.observe(500 * MS, t0);
        assert_eq!(e.get(t0), 500e6);
    }

    #[test]
    fn faster_samples_blend_by_elapsed_time() {
        let t0 = Instant::now();
        let e = PeakEwma::new(100 * MS, Duration::from_secs(10), t0);
        // Immediately after: almost no weight for the new sample.
        e.observe(10 * MS, t0 + Duration::from_millis(1));
        let v = e.get(t0 + Duration::from_millis(1));
        assert!(v > 99e6 && v < 100e6, "{v}");
        // Ten seconds (one tau) later: the sample gets 1 - 1/e of the weight.
        let e = PeakEwma::new(100 * MS, Duration::from_secs(10), t0);
        e.observe(10 * MS, t0 + Duration::from_secs(10));
        let expect = 100e6 * (-1f64).exp() + 10e6 * (1.0 - (-1f64).exp());
        assert!((e.get(t0 + Duration::from_secs(10)) - expect).abs() < 1.0);
    }

    #[test]
    fn idle_estimates_decay_towards_zero() {
        let t0 = Instant::now();
        let e = PeakEwma::new(1000 * MS, Duration::from_secs(10), t0);
        let later = e.get(t0 + Duration::from_secs(30));
        assert!((later - 1000e6 * (-3f64).exp()).abs() < 1.0);
    }

    #[test]
    fn penalties_fade_within_seconds() {
        let t0 = Instant::now();
        let e = PeakEwma::new(5 * MS, Duration::from_secs(10), t0);
        e.penalize(Duration::from_secs(1), t0);
        e.penalize(Duration::from_millis(500), t0);
        assert!(
            (e.get(t0) - 1.005e9).abs() < 1.0,
            "the larger penalty stands"
        );
        // Five seconds later the penalty is about 7 ms, against an RTT of about 3 ms.
        let later = e.get(t0 + Duration::from_secs(5));
        let expect = 5e6 * (-0.5f64).exp() + 1e9 * (-5f64).exp();
        assert!((later - expect).abs() < 1.0, "{later}");
        // A success does not clear it, but a probe's reset does.
        e.observe(MS, t0 + Duration::from_secs(5));
        assert!(e.get(t0 + Duration::from_secs(5)) > 6e6);
        e.reset(MS, t0 + Duration::from_secs(5));
        assert_eq!(e.get(t0 + Duration::from_secs(5)), 1e6);
    }

    #[test]
    fn reset_forgets_the_penalty() {
        let t0 = Instant::now();
        let e = PeakEwma::new(30 * MS, Duration::from_secs(10), t0);
        e.observe(Duration::from_secs(1), t0);
        e.reset(2 * MS, t0 + Duration::from_secs(1));
        assert_eq!(e.get(t0 + Duration::from_secs(1)), 2e6);
    }
}
