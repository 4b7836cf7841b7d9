//! The health gate through `Health`: ejection, probation, probes, slow start, retirement.

use super::*;
use crate::classify::{Reason, Retryable};
use crate::outlier::{Detector, OutlierConfig};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn fail() -> Class {
    Class::failure(Reason::Status(503), Retryable::IfIdempotent)
}

/// Only the consecutive-failure policy, so that the tests below see nothing else.
fn consecutive_only() -> OutlierConfig {
    OutlierConfig::builder()
        .success_rate(None)
        .failure_percentage(None)
        .latency(None)
        .build()
        .unwrap()
}

fn fleet(config: OutlierConfig, n: usize) -> (Detector, Vec<Health>, Instant) {
    let detector = Detector::new(config);
    // The detector's own origin: offsets from it are whole microseconds, so ejection
    // lengths read back exactly.
    let t0 = detector.origin();
    let endpoints = (0..n).map(|_| detector.register(t0)).collect();
    (detector, endpoints, t0)
}

fn until(h: &Health, now: Instant) -> Instant {
    match h.status(now) {
        Status::Ejected { until, .. } => until,
        other => panic!("not ejected: {other:?}"),
    }
}

/// Fails `h` until it is ejected; the ejection's length.
fn eject(h: &Health, now: Instant) -> Duration {
    for _ in 0..5 {
        h.report(now, &fail(), MS);
    }
    until(h, now) - now
}

#[test]
fn ejects_after_exactly_n_consecutive_failures() {
    let (_d, eps, t0) = fleet(consecutive_only(), 3);
    let h = &eps[0];
    for _ in 0..4 {
        h.report(t0, &fail(), MS);
    }
    assert_eq!(h.status(t0), Status::Active, "4 failures are not enough");
    assert_eq!(h.admit(t0), Admit::Yes);
    h.report(t0, &fail(), MS);
    assert!(matches!(
        h.status(t0),
        Status::Ejected {
            reason: EjectReason::ConsecutiveFailures,
            ..
        }
    ));
    assert_eq!(h.admit(t0), Admit::No);
    assert_eq!(h.ejections(), 1);
}

#[test]
fn a_success_resets_the_run() {
    let (_d, eps, t0) = fleet(consecutive_only(), 3);
    let h = &eps[0];
    for _ in 0..3 {
        for _ in 0..4 {
            h.report(t0, &fail(), MS);
        }
        h.report(t0, &Class::success(), MS);
    }
    assert_eq!(h.status(t0), Status::Active);
    assert_eq!(h.ejections(), 0);
}

#[test]
fn ejections_grow_from_one_to_sixty_seconds_within_the_jitter() {
    let (_d, eps, t0) = fleet(consecutive_only(), 3);
    let h = &eps[0];
    let mut now = t0;
    let mut first = eject(h, now);
    assert!((SEC..=SEC * 3 / 2).contains(&first), "{first:?}");
    for step in 1..10u32 {
        now += first;
        assert_eq!(h.admit(now), Admit::Probe);
        h.report(now, &fail(), MS);
        let length = until(h, now) - now;
        let nominal = (SEC * 2u32.pow(step)).min(60 * SEC);
        let low = (nominal / 2).max(SEC);
        let high = (nominal * 3 / 2).min(60 * SEC);
        assert!(
            (low..=high).contains(&length),
            "step {step}: {length:?} not in {low:?}..={high:?}"
        );
        first = length;
    }
    assert_eq!(h.ejections(), 10);
}

#[test]
fn exactly_one_probe_is_admitted_after_the_ejection() {
    let (_d, eps, t0) = fleet(consecutive_only(), 3);
    let h = &eps[0];
    let length = eject(h, t0);
    assert_eq!(h.admit(t0 + length - MS), Admit::No, "still ejected");
    let later = t0 + length;
    assert_eq!(h.status(later), Status::Probation);
    assert_eq!(h.peek(later), Admit::Probe);
    assert_eq!(h.peek(later), Admit::Probe, "peeking claims nothing");
    assert_eq!(h.admit(later), Admit::Probe);
    for _ in 0..10 {
        assert_eq!(h.admit(later + MS), Admit::No);
    }
    assert_eq!(h.peek(later), Admit::No);
    assert_eq!(h.status(later), Status::Probation);
}

#[test]
fn racing_threads_get_one_probe() {
    for _ in 0..20 {
        let (_d, eps, t0) = fleet(consecutive_only(), 3);
        let h = &eps[0];
        let later = t0 + eject(h, t0);
        let barrier = std::sync::Barrier::new(4);
        let probes: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        (0..100).filter(|_| h.admit(later) == Admit::Probe).count()
                    })
                })
                .collect();
            handles.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(probes, 1);
    }
}

#[test]
fn a_successful_probe_returns_the_endpoint_with_a_ramp() {
    let (d, eps, t0) = fleet(consecutive_only(), 3);
    let h = &eps[0];
    let back = t0 + eject(h, t0);
    assert_eq!(h.slow_start_factor(t0), 0.1, "ejected: the floor");
    assert_eq!(h.admit(back), Admit::Probe);
    h.report(back, &Class::success(), MS);
    assert_eq!(h.status(back), Status::Active);
    assert_eq!(h.admit(back), Admit::Yes);
    assert_eq!(h.slow_start_factor(back), 0.1);
    let halfway = h.slow_start_factor(back + 5 * SEC);
    assert!((halfway - 0.55).abs() < 1e-6, "{halfway}");
    assert_eq!(h.slow_start_factor(back + 10 * SEC), 1.0);
    assert_eq!(d.stats_at(back).ejected, 0);
    assert!(!d.panicking());
}

#[test]
fn a_failed_probe_ejects_again_for_longer() {
    let config = OutlierConfig::builder()
        .ejection_jitter(0.0)
        .success_rate(None)
        .failure_percentage(None)
        .latency(None)
        .build()
        .unwrap();
    let (_d, eps, t0) = fleet(config, 3);
    let h = &eps[0];
    assert_eq!(eject(h, t0), SEC);
    let probe = t0 + SEC;
    assert_eq!(h.admit(probe), Admit::Probe);
    h.report(probe, &fail(), MS);
    assert_eq!(until(h, probe) - probe, 2 * SEC);
    assert_eq!(h.admit(probe + SEC), Admit::No);
    let probe = probe + 2 * SEC;
    assert_eq!(h.admit(probe), Admit::Probe);
    h.report(probe, &fail(), MS);
    assert_eq!(until(h, probe) - probe, 4 * SEC);
}

#[test]
fn stragglers_do_not_decide_the_probation() {
    let (_d, eps, t0) = fleet(consecutive_only(), 3);
    let h = &eps[0];
    let back = t0 + eject(h, t0);
    assert_eq!(h.admit(back), Admit::Probe);
    // A request sent just before the ejection ends now: not the probe.
    let straggler = back + MS - t0 + MS;
    h.report(back + MS, &Class::success(), straggler);
    h.report(back + MS, &fail(), straggler);
    assert_eq!(h.status(back + MS), Status::Probation);
    // Reports while ejected change nothing either.
    h.report(t0, &Class::success(), MS);
    // The probe itself decides.
    h.report(back + 2 * MS, &Class::success(), MS);
    assert_eq!(h.status(back + 2 * MS), Status::Active);
}

#[test]
fn a_released_probe_is_replaced_at_once() {
    let (_d, hs, t0) = fleet(consecutive_only(), 3);
    let h = &hs[0];
    let back = t0 + eject(h, t0);
    assert_eq!(h.admit(back), Admit::Probe);
    assert_eq!(h.admit(back + MS), Admit::No);
    // A release naming another admission (a replaced probe) changes nothing.
    h.release_probe(back + MS);
    assert_eq!(h.admit(back + 2 * MS), Admit::No);
    h.release_probe(back);
    assert_eq!(h.status(back + 2 * MS), Status::Probation);
    assert_eq!(h.admit(back + 2 * MS), Admit::Probe);
    assert_eq!(h.admit(back + 3 * MS), Admit::No);
    assert_eq!(h.ejections(), 1, "released, not re-ejected");
}

#[test]
fn a_lost_probe_is_replaced_after_the_probe_timeout() {
    let (_d, eps, t0) = fleet(consecutive_only(), 3);
    let h = &eps[0];
    let back = t0 + eject(h, t0);
    assert_eq!(h.admit(back), Admit::Probe);
    assert_eq!(h.admit(back + 10 * SEC - MS), Admit::No);
    assert_eq!(h.admit(back + 10 * SEC), Admit::Probe);
    assert_eq!(h.admit(back + 10 * SEC), Admit::No);
}

#[test]
fn the_backoff_starts_over_after_a_long_healthy_run() {
    let config = OutlierConfig::builder()
        .ejection_jitter(0.0)
        .success_rate(None)
        .failure_percentage(None)
        .latency(None)
        .build()
        .unwrap();
    let (_d, eps, t0) = fleet(config, 3);
    let h = &eps[0];
    // Ejected, back, ejected again soon after: the second ejection is one step up.
    assert_eq!(eject(h, t0), SEC);
    let back = t0 + SEC;
    assert_eq!(h.admit(back), Admit::Probe);
    h.report(back, &Class::success(), MS);
    let soon = back + 30 * SEC;
    assert_eq!(eject(h, soon), 2 * SEC);
    // After 60 s active, the ladder starts over.
    let back = soon + 2 * SEC;
    assert_eq!(h.admit(back), Admit::Probe);
    h.report(back, &Class::success(), MS);
    assert_eq!(eject(h, back + 60 * SEC), SEC);
}

#[test]
fn new_endpoints_ramp_once_the_fleet_is_established() {
    let (d, eps, t0) = fleet(OutlierConfig::default(), 2);
    assert_eq!(
        eps[1].slow_start_factor(t0),
        1.0,
        "the first batch never ramps"
    );
    let early = d.register(t0 + 5 * SEC);
    assert_eq!(early.slow_start_factor(t0 + 5 * SEC), 1.0);
    let late = d.register(t0 + 10 * SEC);
    assert_eq!(late.slow_start_factor(t0 + 10 * SEC), 0.1);
    assert_eq!(late.slow_start_factor(t0 + 20 * SEC), 1.0);
    let config = OutlierConfig::builder()
        .slow_start_new_endpoints(false)
        .build()
        .unwrap();
    let (d, _eps, t0) = fleet(config, 2);
    assert_eq!(
        d.register(t0 + 60 * SEC).slow_start_factor(t0 + 60 * SEC),
        1.0
    );
}

#[test]
fn without_slow_start_a_returning_endpoint_gets_its_full_share() {
    let config = OutlierConfig::builder()
        .slow_start(Duration::ZERO)
        .build()
        .unwrap();
    let (_d, eps, t0) = fleet(config, 3);
    let h = &eps[0];
    let back = t0 + eject(h, t0);
    assert_eq!(h.admit(back), Admit::Probe);
    h.report(back, &Class::success(), MS);
    assert_eq!(h.slow_start_factor(back), 1.0);
}

#[test]
fn a_lone_endpoint_is_never_ejected() {
    let (d, eps, t0) = fleet(consecutive_only(), 1);
    for _ in 0..100 {
        eps[0].report(t0, &fail(), MS);
    }
    assert_eq!(eps[0].status(t0), Status::Active);
    assert_eq!(d.stats_at(t0).ejected, 0);
}

#[test]
fn retiring_releases_the_endpoint() {
    let (d, eps, t0) = fleet(consecutive_only(), 3);
    eject(&eps[0], t0);
    assert_eq!(d.stats_at(t0).ejected, 1);
    eps[0].retire();
    eps[0].retire(); // idempotent
    assert_eq!(eps[0].status(t0), Status::Retired);
    assert_eq!(eps[0].admit(t0), Admit::Yes, "no longer gated");
    eps[0].report(t0, &fail(), MS);
    assert_eq!(eps[0].slow_start_factor(t0), 1.0);
    let stats = d.stats_at(t0);
    assert_eq!((stats.endpoints, stats.ejected, stats.active), (2, 0, 2));
    // The freed slot lets another endpoint go (2 endpoints: one may be ejected).
    eject(&eps[1], t0);
    assert_eq!(d.stats_at(t0).ejected, 1);
    // Dropping the last clone retires too.
    drop(eps);
    assert_eq!(d.stats_at(t0).endpoints, 0);
    assert!(!d.panicking());
}

#[test]
fn debug_names_the_state() {
    let (_d, eps, t0) = fleet(consecutive_only(), 3);
    assert!(format!("{:?}", eps[0]).contains("active"));
    eject(&eps[0], t0);
    assert!(format!("{:?}", eps[0]).contains("ejected"));
}

/// A server's "slow down": 429, and any failure answered with pushback.
fn sheds() -> [Class; 3] {
    use crate::classify::Pushback;
    [
        Class::failure(Reason::Status(429), Retryable::NotProcessed),
        Class::failure(Reason::Status(503), Retryable::NotProcessed)
            .with_pushback(Some(Pushback::After(SEC))),
        Class::failure(
            Reason::Grpc(crate::classify::Code::Unavailable),
            Retryable::NotProcessed,
        )
        .with_pushback(Some(Pushback::After(MS))),
    ]
}

#[test]
fn an_endpoint_that_sheds_load_is_not_ejected() {
    let (d, eps, t0) = fleet(OutlierConfig::default(), 5);
    for h in &eps[1..] {
        for _ in 0..200 {
            h.report(t0, &Class::success(), MS);
        }
    }
    let h = &eps[0];
    for class in sheds() {
        for _ in 0..100 {
            h.report(t0, &class, MS);
        }
    }
    assert_eq!(h.status(t0), Status::Active);
    // Nor by the interval policies (success rate, failure percentage), which saw none of it.
    assert!(d.sweep_if_due(t0 + 10 * SEC));
    assert_eq!(h.status(t0 + 10 * SEC), Status::Active);
    // Between failures, it breaks no run: four plain failures, a 429, one more: ejected.
    for _ in 0..4 {
        h.report(t0, &fail(), MS);
    }
    h.report(t0, &sheds()[0], MS);
    h.report(t0, &fail(), MS);
    assert!(matches!(h.status(t0), Status::Ejected { .. }));
}

#[test]
fn a_do_not_retry_pushback_counts_as_a_failure() {
    use crate::classify::{Code, Pushback};
    let (_d, eps, t0) = fleet(consecutive_only(), 3);
    let h = &eps[0];
    let refused = Class::failure(Reason::Grpc(Code::Unavailable), Retryable::Never)
        .with_pushback(Some(Pushback::DoNotRetry));
    for _ in 0..5 {
        h.report(t0, &refused, MS);
    }
    assert!(matches!(h.status(t0), Status::Ejected { .. }));
}

#[test]
fn a_probe_that_is_told_to_slow_down_returns_the_endpoint() {
    let (_d, eps, t0) = fleet(consecutive_only(), 3);
    let h = &eps[0];
    let back = t0 + eject(h, t0);
    assert_eq!(h.admit(back), Admit::Probe);
    h.report(back, &sheds()[0], MS);
    assert_eq!(h.status(back), Status::Active, "it answered: it is up");
}
