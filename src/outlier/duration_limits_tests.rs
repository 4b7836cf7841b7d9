//! `Duration::MAX` in every duration setting, driven on the detector itself with explicit
//! instants: the ladder of ejections runs for thousands of years, further than a balancer's
//! timers can be advanced, and must saturate instead of overflowing. (tests/duration_limits.rs
//! proves the same settings through a `Balance`.)

use super::*;
use crate::classify::{Class, Reason, Retryable};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Every duration setting of the detector at `Duration::MAX`.
fn all_max() -> OutlierConfigBuilder {
    OutlierConfig::builder()
        .interval(Duration::MAX)
        .base_ejection_time(Duration::MAX)
        .max_ejection_time(Duration::MAX)
        .probe_timeout(Duration::MAX)
        .slow_start(Duration::MAX)
}

fn fail() -> Class {
    Class::failure(Reason::Status(500), Retryable::Never)
}

/// The end of `status`'s ejection; panics if it is not ejected.
fn until(status: Status) -> Instant {
    match status {
        Status::Ejected { until, .. } => until,
        other => panic!("not ejected: {other:?}"),
    }
}

/// The detector alone, driven with explicit instants: the clamped periods act at their clamp,
/// the unbounded limits never end, and a ladder of ejections with no maximum saturates instead
/// of overflowing.
#[tokio::test(start_paused = true)]
async fn a_detector_with_duration_max_settings_saturates_instead_of_overflowing() {
    let config = all_max().ejection_jitter(0.0).build().unwrap();
    let detector = Detector::new(config);
    let t0 = Instant::now();
    let bad = detector.register(t0);
    let _good = detector.register(t0);

    // The interval counts as an hour.
    assert!(!detector.sweep_if_due(t0 + HOUR - MS));
    assert!(detector.sweep_if_due(t0 + HOUR));
    assert!(!detector.sweep_if_due(t0 + 2 * HOUR - MS));
    assert!(detector.sweep_if_due(t0 + 2 * HOUR));

    // Five failures in a row eject for the base, which counts as a day.
    for _ in 0..5 {
        bad.report(t0, &fail(), Duration::ZERO);
    }
    let back = until(bad.status(t0));
    assert!(back.duration_since(t0).abs_diff(DAY) <= MS, "{back:?}");

    // No probe timeout: a probe that never reports is not replaced, even a millennium later;
    // giving it back makes the next request the probe.
    assert_eq!(bad.admit(back), Admit::Probe);
    let millennium = back + 365_000 * DAY;
    assert_eq!(bad.admit(millennium), Admit::No);
    bad.release_probe(back);
    assert_eq!(bad.admit(back), Admit::Probe);

    // The probe succeeds: the ramp counts as an hour.
    bad.report(back, &Class::success(), Duration::ZERO);
    assert_eq!(bad.status(back), Status::Active);
    assert_eq!(bad.slow_start_factor(back), 0.1);
    let halfway = bad.slow_start_factor(back + 30 * MINUTE);
    assert!((halfway - 0.55).abs() < 1e-3, "{halfway}");
    assert_eq!(bad.slow_start_factor(back + HOUR), 1.0);

    // With no maximum the ladder never starts over, and each failed probe doubles the
    // ejection. Sixty-four steps run far past what the detector's clock can count (about
    // 18,000 years): there it saturates, and the endpoint is probed again at once.
    let mut now = back + HOUR;
    for _ in 0..5 {
        bad.report(now, &fail(), Duration::ZERO);
    }
    let mut expected = 2 * DAY;
    for step in 0..64 {
        match bad.status(now) {
            Status::Ejected { until, reason } => {
                assert_eq!(reason, EjectReason::ConsecutiveFailures);
                if step < 20 {
                    let length = until.duration_since(now);
                    assert!(length.abs_diff(expected) <= MS, "step {step}: {length:?}");
                    expected *= 2;
                }
                assert!(until >= now);
                now = until;
            }
            Status::Probation => assert!(step > 20, "saturated at step {step}"),
            other => panic!("step {step}: {other:?}"),
        }
        assert_eq!(bad.admit(now), Admit::Probe, "step {step}");
        bad.report(now, &fail(), Duration::ZERO);
    }
    assert_eq!(bad.ejections(), 66);
    let stats = detector.stats_at(now);
    assert_eq!(stats.ejected + stats.probation, 1);
}
