//! How long an ejection lasts: exponential backoff with jitter, per endpoint.
//!
//! The n-th consecutive ejection of one endpoint lasts `base × 2ⁿ` (capped at `max`), moved by
//! up to ± `jitter` of itself and kept within `[base, max]`. Doubling lets a flapping endpoint
//! fail its probe cheaply at first and then rarely; jitter keeps the many clients that ejected
//! the same endpoint at the same moment from probing it in lockstep. The clamp keeps the
//! documented bounds exact: never shorter than `base`, never longer than `max`.

use rand::RngExt;

/// The ejection length in microseconds for ladder step `step` (0 for the first ejection).
/// Callers guarantee `0 < base <= max` (checked by the config).
pub(crate) fn ejection_micros(base: i64, max: i64, jitter: f64, step: u32) -> i64 {
    let nominal = base.saturating_mul(1i64 << step.min(62)).min(max);
    let spread = if jitter > 0.0 {
        1.0 + jitter * rand::rng().random_range(-1.0..=1.0)
    } else {
        1.0
    };
    // f64 → i64 saturates, and `spread` is within [0, 2], so this never wraps.
    let jittered = (nominal as f64 * spread) as i64;
    jittered.max(base).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn ejections_double_from_one_to_sixty_seconds_within_the_jitter() {
        for step in 0..12u32 {
            let nominal = (S << step).min(60 * S);
            let low = (nominal / 2).max(S);
            let high = (nominal + nominal / 2).min(60 * S);
            for _ in 0..200 {
                let d = ejection_micros(S, 60 * S, 0.5, step);
                assert!((low..=high).contains(&d), "step {step}: {d}");
            }
        }
    }

    #[test]
    fn without_jitter_the_ladder_is_exact() {
        let ladder: Vec<i64> = (0..8)
            .map(|n| ejection_micros(S, 60 * S, 0.0, n) / S)
            .collect();
        assert_eq!(ladder, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn jitter_spreads_the_ejections() {
        let samples: Vec<i64> = (0..200)
            .map(|_| ejection_micros(S, 60 * S, 0.5, 3))
            .collect();
        assert!(samples.iter().any(|d| *d < 7 * S));
        assert!(samples.iter().any(|d| *d > 9 * S));
    }

    #[test]
    fn extreme_steps_and_lengths_do_not_overflow() {
        assert!(ejection_micros(S, 60 * S, 0.5, u32::MAX) <= 60 * S);
        let huge = i64::MAX / 2;
        assert!(ejection_micros(huge, i64::MAX, 1.0, 40) >= huge);
    }
}
