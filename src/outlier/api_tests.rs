//! The detector's crate-internal API as the balancer drives it: `Detector`, `Health`, `Admit`
//! and the test-only stats. These were doc examples while the types were public; each
//! assertion of those examples is kept here.

use super::*;
use crate::classify::{Class, Reason, Retryable};
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

#[test]
fn an_endpoint_lives_through_ejection_probe_and_slow_start() {
    let detector = Detector::new(OutlierConfig::default());
    let t0 = Instant::now();
    let fleet: Vec<_> = (0..4).map(|_| detector.register(t0)).collect();
    let bad = &fleet[0];
    let latency = 3 * MS;
    let failure = Class::failure(Reason::Status(503), Retryable::IfIdempotent);
    for _ in 0..5 {
        assert_eq!(bad.admit(t0), Admit::Yes);
        bad.report(t0, &failure, latency);
    }
    assert!(matches!(bad.status(t0), Status::Ejected { .. })); // 5 consecutive failures
    assert_eq!(bad.admit(t0), Admit::No);

    // The first ejection lasts 1 to 1.5 s; then exactly one request probes the endpoint.
    let later = t0 + 2 * SEC;
    assert_eq!(bad.admit(later), Admit::Probe);
    assert_eq!(bad.admit(later), Admit::No);
    bad.report(later, &Class::success(), latency);
    assert_eq!(bad.status(later), Status::Active);
    assert!(bad.slow_start_factor(later) < 1.0); // ramping back up over 10 s
}

#[test]
fn admit_allows_yes_and_probe_only() {
    let endpoint = Detector::default().register(Instant::now());
    let admit = endpoint.admit(Instant::now());
    assert_eq!(admit, Admit::Yes);
    assert!(admit.allows());
    assert!(Admit::Probe.allows());
    assert!(!Admit::No.allows());
}

#[test]
fn a_registered_endpoint_is_active_until_retired() {
    let detector = Detector::default();
    let endpoint = detector.register(Instant::now());
    assert_eq!(endpoint.status(Instant::now()), Status::Active);
    assert_eq!(endpoint.ejections(), 0);
    endpoint.retire();
    assert_eq!(endpoint.status(Instant::now()), Status::Retired);
    assert_eq!(detector.stats().endpoints, 0);
}

#[test]
fn a_fresh_fleet_is_all_active_and_not_panicking() {
    let detector = Detector::new(OutlierConfig::default());
    let now = Instant::now();
    let _endpoints: Vec<_> = (0..3).map(|_| detector.register(now)).collect();
    assert!(!detector.sweep_if_due(now)); // the first interval has only begun
    assert!(!detector.panicking());
    assert_eq!(detector.stats().active, 3);
}

#[test]
fn stats_of_a_fresh_fleet_count_one_active_endpoint_and_no_ejection() {
    let detector = Detector::default();
    assert_eq!(detector.stats().endpoints, 0);
    assert_eq!(detector.stats_at(Instant::now()).ejected, 0);
    let _endpoint = detector.register(Instant::now());
    let stats = detector.stats();
    assert_eq!(
        (
            stats.endpoints,
            stats.active,
            stats.ejected,
            stats.probation
        ),
        (1, 1, 0, 0)
    );
    let counts = stats.ejections;
    assert_eq!(counts.total(), 0);
    assert_eq!(counts.get(EjectReason::Latency), counts.latency);
    assert_eq!(counts.get(EjectReason::SuccessRate), 0);
}

#[test]
fn ejection_counts_get_reads_the_field_of_each_reason() {
    let counts = EjectionCounts {
        consecutive_failures: 1,
        success_rate: 2,
        failure_percentage: 3,
        latency: 4,
    };
    let read: Vec<u64> = EjectReason::ALL.iter().map(|r| counts.get(*r)).collect();
    assert_eq!(read, [1, 2, 3, 4]);
    assert_eq!(counts.total(), 10);
}

#[test]
fn a_detector_keeps_its_config() {
    let config = OutlierConfig::builder()
        .consecutive_failures(Some(3))
        .build()
        .unwrap();
    assert_eq!(
        Detector::new(config).config().consecutive_failures(),
        Some(3)
    );
    assert_eq!(Detector::default().config().consecutive_failures(), Some(5));
}

#[test]
fn the_founding_batch_starts_at_full_share_and_a_newcomer_ramps() {
    let detector = Detector::default();
    let t0 = Instant::now();
    let first = detector.register(t0);
    assert_eq!(first.slow_start_factor(t0), 1.0);
    let later = t0 + 60 * SEC;
    let newcomer = detector.register(later);
    assert_eq!(newcomer.status(later), Status::Active);
    assert_eq!(newcomer.slow_start_factor(later), 0.1); // ramping up over 10 s
}

#[test]
fn a_sweep_runs_once_the_interval_has_passed_and_once_only() {
    let detector = Detector::default();
    let t0 = Instant::now();
    let _endpoint = detector.register(t0);
    assert!(!detector.sweep_if_due(t0));
    assert!(detector.sweep_if_due(t0 + 10 * SEC));
    assert!(!detector.sweep_if_due(t0 + 10 * SEC));
}

#[test]
fn a_fleet_of_one_active_endpoint_does_not_panic() {
    let detector = Detector::default();
    let _endpoint = detector.register(Instant::now());
    assert!(!detector.panicking());
}

#[test]
fn an_active_endpoint_admits_reports_and_keeps_its_full_share() {
    let detector = Detector::default();
    let endpoint = detector.register(Instant::now());
    let now = Instant::now();
    assert_eq!(endpoint.peek(now), Admit::Yes);
    assert_eq!(endpoint.admit(now), Admit::Yes);
    endpoint.report(now, &Class::success(), 12 * MS);
    assert_eq!(endpoint.slow_start_factor(now), 1.0); // the first batch never ramps
    // One failure is no run of failures: still active, never ejected.
    let refused = Class::failure(Reason::Refused, Retryable::NeverSent);
    endpoint.report(now, &refused, MS);
    assert_eq!(endpoint.status(now), Status::Active);
    assert_eq!(endpoint.ejections(), 0);
}

#[test]
fn releasing_a_probe_that_was_never_claimed_changes_nothing() {
    let endpoint = Detector::default().register(Instant::now());
    endpoint.release_probe(Instant::now()); // not probing: nothing to give back
    assert_eq!(endpoint.admit(Instant::now()), Admit::Yes);
}
