//! Unit tests of the state machine: racing threads, the ladder, the ramp's admit counter.

use super::config::BreakerConfig;
use super::machine::{Admit, Shared, testing};
use super::{BreakerState, TripReason};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tokio::time::Instant;

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn config() -> BreakerConfig {
    BreakerConfig {
        break_jitter: 0.0,
        minimum_calls: 10,
        ..BreakerConfig::default()
    }
}

/// Trips `shared` at `at` with ten failures.
fn trip(shared: &Shared, at: Instant) {
    for _ in 0..10 {
        shared.record(at, true, false);
    }
    assert_eq!(shared.state(at), BreakerState::Open);
}

fn race<T: Send + 'static>(threads: usize, f: impl Fn() -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn racing_failures_trip_exactly_once() {
    for _ in 0..50 {
        let shared = Arc::new(Shared::new(config()));
        let t0 = Instant::now();
        let s = shared.clone();
        race(8, move || {
            for _ in 0..20 {
                s.record(t0, true, false);
            }
        });
        let stats = shared.stats(t0);
        assert_eq!(stats.trips, 1, "one transition per trip");
        assert_eq!(stats.state, BreakerState::Open);
    }
}

#[test]
fn racing_arrivals_get_exactly_n_probes() {
    for _ in 0..50 {
        let shared = Arc::new(Shared::new(config()));
        let t0 = Instant::now();
        trip(&shared, t0);
        let after_break = t0 + S + MS;
        let s = shared.clone();
        let admits = race(8, move || {
            (0..10)
                .map(|_| s.admit(after_break))
                .filter(|a| matches!(a, Admit::Probe { .. }))
                .count()
        });
        assert_eq!(admits.iter().sum::<usize>(), 3, "exactly N probes");
        assert_eq!(testing::probes(shared.load()), 3);
        assert_eq!(shared.state(after_break), BreakerState::HalfOpen);
    }
}

#[test]
fn racing_probe_successes_end_the_probation_once() {
    for _ in 0..50 {
        let shared = Arc::new(Shared::new(config()));
        let t0 = Instant::now();
        trip(&shared, t0);
        let at = t0 + S + MS;
        let episodes: Vec<u64> = (0..3)
            .filter_map(|_| match shared.admit(at) {
                Admit::Probe { episode } => Some(episode),
                _ => None,
            })
            .collect();
        assert_eq!(episodes.len(), 3);
        let s = shared.clone();
        let episode = episodes[0];
        race(3, move || s.probe_done(episode, at, false));
        // Ramping (half-open), one step up the ladder, window fresh.
        let word = shared.load();
        assert_eq!(testing::step(word), 1);
        assert_eq!(testing::successes(word), 0);
        assert_eq!(shared.stats(at).trips, 1);
        assert_eq!(shared.state(at + S), BreakerState::Closed, "the ramp ends");
    }
}

#[test]
fn a_stale_report_changes_nothing() {
    let shared = Shared::new(config());
    let t0 = Instant::now();
    trip(&shared, t0);
    let at = t0 + S + MS;
    let Admit::Probe { episode } = shared.admit(at) else {
        panic!("a probe is due")
    };
    // Another episode's probe (one ms earlier) reports: ignored.
    shared.probe_done(episode - 1, at, true);
    shared.release_probe(episode - 1);
    assert_eq!(testing::probes(shared.load()), 1);
    assert_eq!(shared.state(at), BreakerState::HalfOpen);
}

#[test]
fn the_break_ladder_climbs_and_restarts_after_a_healthy_window() {
    let shared = Shared::new(BreakerConfig {
        ramp: Duration::ZERO,
        half_open_probes: 1,
        break_duration: S,
        max_break_duration: Duration::from_secs(30),
        ..config()
    });
    let mut t = Instant::now();
    trip(&shared, t);
    let mut breaks = Vec::new();
    for _ in 0..6 {
        let Admit::Reject(why) = shared.admit(t) else {
            panic!("open")
        };
        let until = why.until.unwrap();
        breaks.push((until - t).as_millis());
        t = until;
        let Admit::Probe { episode } = shared.admit(t) else {
            panic!("probe due")
        };
        shared.probe_done(episode, t, true);
        let Admit::Reject(why) = shared.admit(t) else {
            panic!("reopened")
        };
        assert_eq!(why.reason, TripReason::ProbeFailed);
    }
    assert_eq!(breaks, [1000, 2000, 4000, 8000, 16000, 30000]);
    // A success closes (no ramp); a trip within a window keeps climbing...
    t += Duration::from_secs(30);
    let Admit::Probe { episode } = shared.admit(t) else {
        panic!("probe due")
    };
    shared.probe_done(episode, t, false);
    assert_eq!(shared.state(t), BreakerState::Closed);
    trip(&shared, t + S);
    let Admit::Reject(why) = shared.admit(t + S) else {
        panic!("open")
    };
    assert_eq!(why.until.unwrap() - (t + S), Duration::from_secs(30));
    // ...but after a whole window closed, the ladder starts over.
    let t = t + S + Duration::from_secs(30);
    let Admit::Probe { episode } = shared.admit(t) else {
        panic!("probe due")
    };
    shared.probe_done(episode, t, false);
    let later = t + Duration::from_secs(10);
    trip(&shared, later);
    let Admit::Reject(why) = shared.admit(later) else {
        panic!("open")
    };
    assert_eq!(why.until.unwrap() - later, S);
}

#[test]
fn the_ramp_admits_a_rising_share_without_randomness() {
    let shared = Shared::new(BreakerConfig {
        half_open_probes: 1,
        ramp_start_share: 0.1,
        break_duration: S,
        ramp: S,
        ..config()
    });
    let t0 = Instant::now();
    trip(&shared, t0);
    let at = t0 + S + MS;
    let Admit::Probe { episode } = shared.admit(at) else {
        panic!("probe due")
    };
    shared.probe_done(episode, at, false);
    let share = |from: Instant| {
        (0..1000)
            .filter(|_| shared.admit(from) == Admit::Pass)
            .count()
    };
    // 10% at the start, 55% halfway, all once the ramp is over.
    assert_eq!(share(at), 100);
    assert_eq!(share(at + S / 2), 550);
    assert_eq!(share(at + S), 1000);
    assert_eq!(shared.state(at + S), BreakerState::Closed);
}

#[test]
fn a_probe_failing_after_a_sibling_succeeded_frees_its_slot_without_reopening() {
    let shared = Shared::new(config());
    let t0 = Instant::now();
    trip(&shared, t0);
    let at = t0 + S + MS;
    let episodes: Vec<u64> = (0..3)
        .map(|_| match shared.admit(at) {
            Admit::Probe { episode } => episode,
            _ => panic!("three probes are admitted"),
        })
        .collect();
    assert!(matches!(shared.admit(at), Admit::Reject(_)), "no fourth");
    // The first answers good, the second raced the healing and fails: still half-open, and
    // its slot goes to a new probe.
    shared.probe_done(episodes[0], at, false);
    shared.probe_done(episodes[1], at, true);
    assert_eq!(shared.state(at), BreakerState::HalfOpen);
    let Admit::Probe { episode } = shared.admit(at) else {
        panic!("the freed slot takes a new probe")
    };
    // Three successes in all end the episode.
    shared.probe_done(episodes[2], at, false);
    assert_eq!(shared.state(at), BreakerState::HalfOpen);
    shared.probe_done(episode, at, false);
    // The ramp began (it reads as half-open while it runs) and ends on time.
    assert_eq!(shared.stats(at).trips, 1, "never reopened");
    assert_eq!(shared.state(at + S), BreakerState::Closed);
}
