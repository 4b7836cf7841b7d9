//! The slow-start ramp: the share an endpoint gets while it warms up.
//!
//! Linear from `floor` to 1 over the window, which is Envoy's curve with its default
//! aggression (1.0) and its `min_weight_percent` (10%). Linear is the predictable choice: an
//! endpoint halfway through its window takes about half its share. Starting at a floor rather
//! than at zero keeps a few requests flowing, so the balancer still learns the endpoint's
//! latency and a relapse is still noticed.

/// The share multiplier `elapsed_micros` into a ramp of `window_micros`, in `[floor, 1]`.
pub(crate) fn factor(elapsed_micros: i64, window_micros: i64, floor: f64) -> f64 {
    if elapsed_micros >= window_micros {
        return 1.0;
    }
    if elapsed_micros <= 0 {
        return floor;
    }
    let progress = elapsed_micros as f64 / window_micros as f64;
    floor + (1.0 - floor) * progress
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_is_linear_from_the_floor_to_one() {
        let window = 10_000_000;
        assert_eq!(factor(0, window, 0.1), 0.1);
        assert_eq!(factor(-5, window, 0.1), 0.1);
        assert!((factor(window / 2, window, 0.1) - 0.55).abs() < 1e-9);
        assert_eq!(factor(window, window, 0.1), 1.0);
        assert_eq!(factor(i64::MAX, window, 0.1), 1.0);
        let mut last = 0.0;
        for step in 0..=100 {
            let f = factor(window / 100 * step, window, 0.1);
            assert!(f >= last && f > 0.0 && f <= 1.0);
            last = f;
        }
    }

    #[test]
    fn a_zero_window_is_no_ramp() {
        assert_eq!(factor(0, 0, 0.1), 1.0);
        assert_eq!(factor(-1, 0, 0.1), 0.1);
    }
}
