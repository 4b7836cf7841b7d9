//! Fleet-level tests: sweeps, the max ejected share, panic, stats, and the invariants under
//! arbitrary traffic. Per-endpoint behaviour is tested in `health.rs`, each policy's arithmetic
//! in its own file.

use super::*;
use crate::classify::{Class, Reason, Retryable};
use proptest::prelude::*;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn fail() -> Class {
    Class::failure(Reason::Status(500), Retryable::Never)
}

fn only() -> OutlierConfigBuilder {
    OutlierConfig::builder()
        .consecutive_failures(None)
        .success_rate(None)
        .failure_percentage(None)
        .latency(None)
}

fn fleet(config: OutlierConfig, n: usize) -> (Detector, Vec<Health>, Instant) {
    let detector = Detector::new(config);
    let t0 = detector.origin();
    let endpoints = (0..n).map(|_| detector.register(t0)).collect();
    (detector, endpoints, t0)
}

/// Reports `requests` requests of which `failures` fail, spread evenly, each `latency` long.
fn traffic(h: &Health, now: Instant, requests: u32, failures: u32, latency: Duration) {
    for i in 0..requests {
        // Bresenham-style spreading: no long runs of failures.
        let failed = (i + 1) * failures / requests.max(1) > i * failures / requests.max(1);
        let class = if failed { fail() } else { Class::success() };
        h.report(now, &class, latency);
    }
}

fn ejected_for(h: &Health, now: Instant) -> Option<EjectReason> {
    match h.status(now) {
        Status::Ejected { reason, .. } => Some(reason),
        _ => None,
    }
}

#[test]
fn reasons_round_trip_through_their_bits() {
    for reason in EjectReason::ALL {
        assert_eq!(EjectReason::from_bits(reason.bits()), reason);
        assert_eq!(reason.to_string(), reason.as_str());
    }
}

#[test]
fn success_rate_ejects_the_one_bad_endpoint_among_six() {
    let config = only()
        .success_rate(Some(SuccessRatePolicy::default()))
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 6);
    for (i, h) in eps.iter().enumerate() {
        traffic(h, t0, 200, if i == 2 { 100 } else { 2 }, MS);
    }
    let sweep = t0 + 10 * SEC;
    assert!(d.sweep_if_due(sweep));
    for (i, h) in eps.iter().enumerate() {
        let expect = (i == 2).then_some(EjectReason::SuccessRate);
        assert_eq!(ejected_for(h, sweep), expect, "endpoint {i}");
    }
    assert_eq!(d.stats_at(sweep).ejections.success_rate, 1);
}

#[test]
fn success_rate_needs_minimum_hosts() {
    let config = only()
        .success_rate(Some(SuccessRatePolicy::default()))
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 4);
    for (i, h) in eps.iter().enumerate() {
        traffic(h, t0, 200, if i == 0 { 200 } else { 0 }, MS);
    }
    assert!(d.sweep_if_due(t0 + 10 * SEC));
    assert_eq!(d.stats_at(t0 + 10 * SEC).ejected, 0);
}

#[test]
fn failure_percentage_ejects_at_the_threshold() {
    let config = only()
        .failure_percentage(Some(FailurePercentagePolicy::default()))
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 6);
    let failures = [0, 90, 80, 0, 1, 85];
    for (h, f) in eps.iter().zip(failures) {
        traffic(h, t0, 100, f, MS);
    }
    let sweep = t0 + 10 * SEC;
    d.sweep_if_due(sweep);
    let ejected: Vec<bool> = eps
        .iter()
        .map(|h| ejected_for(h, sweep).is_some())
        .collect();
    assert_eq!(ejected, [false, true, false, false, false, true]);
    assert_eq!(d.stats_at(sweep).ejections.failure_percentage, 2);
}

#[test]
fn latency_ejects_a_ten_times_slower_endpoint_but_not_a_slightly_slower_one() {
    let config = only()
        .latency(Some(LatencyPolicy::default()))
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 5);
    let latencies = [10, 11, 9, 100, 15]; // ms: #3 is 10×, #4 is 1.5×
    for (h, ms) in eps.iter().zip(latencies) {
        traffic(h, t0, 50, 0, ms * MS);
    }
    let sweep = t0 + 10 * SEC;
    d.sweep_if_due(sweep);
    let ejected: Vec<_> = eps.iter().map(|h| ejected_for(h, sweep)).collect();
    assert_eq!(
        ejected,
        [None, None, None, Some(EjectReason::Latency), None]
    );
}

#[test]
fn latency_needs_the_slowness_to_last_the_interval() {
    let config = only()
        .latency(Some(LatencyPolicy::default()))
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 5);
    for h in &eps {
        traffic(h, t0, 50, 0, 10 * MS);
    }
    // A handful of timeouts on one endpoint: its median is unmoved.
    traffic(&eps[0], t0, 10, 0, 30 * SEC);
    d.sweep_if_due(t0 + 10 * SEC);
    assert_eq!(d.stats_at(t0 + 10 * SEC).ejected, 0);
}

#[test]
fn windows_restart_at_every_sweep() {
    let config = only()
        .success_rate(Some(SuccessRatePolicy::default()))
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 6);
    for round in 1..=3u32 {
        // 60 requests per interval never reach the volume of 100, however many intervals.
        for (i, h) in eps.iter().enumerate() {
            traffic(h, t0, 60, if i == 0 { 60 } else { 0 }, MS);
        }
        assert!(d.sweep_if_due(t0 + round * 10 * SEC));
    }
    let stats = d.stats_at(t0 + 30 * SEC);
    assert_eq!((stats.ejected, stats.sweeps), (0, 3));
}

#[test]
fn an_endpoint_back_from_ejection_is_judged_on_what_it_did_since() {
    let config = OutlierConfig::builder()
        .failure_percentage(None)
        .latency(None)
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 6);
    for h in &eps[1..] {
        traffic(h, t0, 200, 0, MS);
    }
    // 60% failures, never five in a row, then a run of five: ejected by the run.
    traffic(&eps[0], t0, 100, 60, MS);
    traffic(&eps[0], t0, 5, 5, MS);
    assert_eq!(
        ejected_for(&eps[0], t0),
        Some(EjectReason::ConsecutiveFailures)
    );
    let back = t0 + 2 * SEC;
    assert_eq!(eps[0].admit(back), Admit::Probe);
    eps[0].report(back, &Class::success(), MS);
    traffic(&eps[0], back, 100, 0, MS);
    // Its 65 failures before the ejection would fail the success-rate test; they are gone.
    assert!(d.sweep_if_due(t0 + 10 * SEC));
    assert_eq!(eps[0].status(t0 + 10 * SEC), Status::Active);
    assert_eq!(d.stats_at(t0 + 10 * SEC).ejections.success_rate, 0);
}

#[test]
fn sweeps_run_once_per_interval() {
    let (d, _eps, t0) = fleet(OutlierConfig::default(), 3);
    assert!(!d.sweep_if_due(t0 + 9 * SEC));
    assert!(d.sweep_if_due(t0 + 12 * SEC));
    assert!(!d.sweep_if_due(t0 + 12 * SEC));
    assert!(
        !d.sweep_if_due(t0 + 21 * SEC),
        "the next one is due 10 s after the last"
    );
    assert!(d.sweep_if_due(t0 + 22 * SEC));
    let detector = Detector::default();
    assert!(
        !detector.sweep_if_due(t0 + 60 * SEC),
        "no endpoints, nothing armed"
    );
}

#[test]
fn racing_callers_run_one_sweep() {
    for _ in 0..20 {
        let (d, _eps, t0) = fleet(OutlierConfig::default(), 3);
        let due = t0 + 10 * SEC;
        let barrier = std::sync::Barrier::new(4);
        let runs: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        (0..50).filter(|_| d.sweep_if_due(due)).count()
                    })
                })
                .collect();
            handles.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(runs, 1);
    }
}

#[test]
fn the_max_ejected_share_caps_consecutive_ejections() {
    let (d, eps, t0) = fleet(OutlierConfig::default(), 10);
    for h in &eps {
        traffic(h, t0, 20, 20, MS);
    }
    let stats = d.stats_at(t0);
    assert_eq!((stats.ejected, stats.active), (5, 5));
    assert!(!d.panicking());
}

#[test]
fn the_max_ejected_share_caps_sweep_ejections_worst_first() {
    let config = only()
        .failure_percentage(Some(FailurePercentagePolicy::default()))
        .max_ejected_share(0.2)
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 10);
    let failures = [90, 100, 0, 0, 95, 0, 86, 0, 0, 0];
    for (h, f) in eps.iter().zip(failures) {
        traffic(h, t0, 100, f, MS);
    }
    d.sweep_if_due(t0 + 10 * SEC);
    let ejected: Vec<usize> = (0..10)
        .filter(|i| ejected_for(&eps[*i], t0 + 10 * SEC).is_some())
        .collect();
    assert_eq!(ejected, [1, 4], "the two worst of four");
}

#[test]
fn at_least_one_endpoint_of_two_may_be_ejected() {
    let config = OutlierConfig::builder()
        .max_ejected_share(0.0)
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 2);
    for h in &eps {
        traffic(h, t0, 10, 10, MS);
    }
    assert_eq!(d.stats_at(t0).ejected, 1);
}

#[test]
fn panicking_below_the_threshold() {
    let config = OutlierConfig::builder()
        .max_ejected_share(1.0)
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 4);
    for h in &eps[..2] {
        traffic(h, t0, 5, 5, MS);
    }
    assert!(!d.panicking(), "2 of 4 available is the threshold itself");
    traffic(&eps[2], t0, 5, 5, MS);
    assert!(d.panicking());
    // Probation still counts as unavailable; a successful probe ends the panic.
    let later = t0 + 2 * SEC;
    assert_eq!(eps[0].admit(later), Admit::Probe);
    assert!(d.panicking());
    eps[0].report(later, &Class::success(), MS);
    assert!(!d.panicking());

    let config = OutlierConfig::builder()
        .max_ejected_share(1.0)
        .panic_threshold(0.0)
        .build()
        .unwrap();
    let (d, eps, t0) = fleet(config, 2);
    for h in &eps {
        traffic(h, t0, 5, 5, MS);
    }
    assert_eq!(d.stats_at(t0).ejected, 2);
    assert!(!d.panicking(), "a zero threshold never panics");
}

#[test]
fn stats_count_every_state_and_reason() {
    let (d, eps, t0) = fleet(OutlierConfig::default(), 6);
    traffic(&eps[0], t0, 5, 5, MS); // ejected
    traffic(&eps[1], t0, 5, 5, MS); // ejected, then in probation
    let later = t0 + 2 * SEC;
    assert_eq!(eps[1].admit(later), Admit::Probe);
    eps[5].retire();
    let stats = d.stats_at(later);
    assert_eq!(
        (
            stats.endpoints,
            stats.active,
            stats.ejected,
            stats.probation
        ),
        (5, 3, 0, 2)
    );
    let stats = d.stats_at(t0);
    assert_eq!((stats.ejected, stats.probation), (1, 1));
    assert_eq!(stats.ejections.consecutive_failures, 2);
    assert_eq!(stats.ejections.total(), 2);
    assert_eq!(stats.sweeps, 0);
    assert!(format!("{d:?}").contains("unavailable"));
}

#[test]
fn instants_before_the_detector_was_built_still_work() {
    let early = Instant::now();
    let detector = Detector::default();
    let h = detector.register(early);
    traffic(&h, early, 5, 5, MS);
    let _second = detector.register(early);
    traffic(&h, early, 5, 5, MS);
    assert!(matches!(h.status(early), Status::Ejected { .. }));
    assert!(h.status(early + 2 * SEC) == Status::Probation);
}

// ---- Invariants under arbitrary traffic ----

#[derive(Debug, Clone)]
enum Op {
    Report { ep: usize, fail: bool, ms: u64 },
    Admit { ep: usize },
    Advance(u64),
    Sweep,
    Register,
    Retire { ep: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0usize..64, any::<bool>(), 0u64..30).prop_map(|(ep, fail, ms)| Op::Report { ep, fail, ms }),
        6 => (0usize..64).prop_map(|ep| Op::Admit { ep }),
        3 => (0u64..25).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
        1 => Just(Op::Register),
        1 => (0usize..64).prop_map(|ep| Op::Retire { ep }),
    ]
}

/// The max ejected share, recomputed independently of the implementation.
fn model_allowed(total: usize, share: f64) -> usize {
    let by_share = (share * total as f64).floor() as usize;
    if total >= 2 {
        by_share.max(1)
    } else {
        by_share
    }
}

proptest! {
    /// Whatever the traffic: ejections never push the unavailable count beyond the max
    /// ejected share, the count matches the endpoints' states, and a second probe is never
    /// admitted before the first is reported (unless the probe timeout passed).
    #[test]
    fn ejections_respect_the_share_and_probes_are_single(
        share_tenths in 0u32..=10,
        initial in 1usize..12,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let share = f64::from(share_tenths) / 10.0;
        let probe_timeout = 30 * MS;
        let config = OutlierConfig::builder()
            .interval(50 * MS)
            .consecutive_failures(Some(2))
            .base_ejection_time(5 * MS)
            .max_ejection_time(40 * MS)
            .probe_timeout(probe_timeout)
            .success_rate(Some(SuccessRatePolicy::default().minimum_hosts(2).request_volume(2)))
            .failure_percentage(Some(
                FailurePercentagePolicy::default().threshold(50).minimum_hosts(1).request_volume(2),
            ))
            .latency(Some(
                LatencyPolicy::default().factor(2.0).minimum_hosts(2).request_volume(2).floor(Duration::ZERO),
            ))
            .max_ejected_share(share)
            .slow_start(20 * MS)
            .build()
            .unwrap();
        let (d, mut eps, mut now) = fleet(config, initial);
        let mut probe_since: Vec<Option<Instant>> = vec![None; eps.len()];
        let mut previous = 0;
        for op in ops {
            let retiring = matches!(op, Op::Retire { .. });
            match op {
                Op::Report { ep, fail: failed, ms } => {
                    let ep = ep % eps.len();
                    let class = if failed { fail() } else { Class::success() };
                    eps[ep].report(now, &class, Duration::from_millis(ms));
                    probe_since[ep] = None;
                }
                Op::Admit { ep } => {
                    let ep = ep % eps.len();
                    let peeked = eps[ep].peek(now);
                    let admitted = eps[ep].admit(now);
                    prop_assert_eq!(peeked, admitted, "peek foretells admit");
                    if admitted == Admit::Probe {
                        if let Some(since) = probe_since[ep] {
                            prop_assert!(now - since >= probe_timeout, "second probe without a report");
                        }
                        probe_since[ep] = Some(now);
                    }
                }
                Op::Advance(ms) => now += Duration::from_millis(ms),
                Op::Sweep => {
                    d.sweep_if_due(now);
                }
                Op::Register => {
                    eps.push(d.register(now));
                    probe_since.push(None);
                }
                Op::Retire { ep } => {
                    let ep = ep % eps.len();
                    eps[ep].retire();
                }
            }
            let (total, unavailable) = (d.total(), d.unavailable());
            if !retiring {
                prop_assert!(
                    unavailable <= model_allowed(total, share) || unavailable <= previous,
                    "{} unavailable of {} at share {}", unavailable, total, share
                );
            }
            let stats = d.stats_at(now);
            prop_assert_eq!(stats.endpoints, total);
            prop_assert_eq!(stats.ejected + stats.probation, unavailable);
            prop_assert_eq!(stats.active + unavailable, total);
            for h in &eps {
                let f = h.slow_start_factor(now);
                prop_assert!(f > 0.0 && f <= 1.0);
            }
            previous = unavailable;
        }
    }
}
