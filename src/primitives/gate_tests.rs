//! Every transition of the gate, and the race the probe is claimed in.

use super::*;
use std::sync::{Arc, Barrier};

const TIMEOUT: i64 = 1_000;

fn ejected_until(until: i64, reason: u64) -> Gate {
    let gate = Gate::new(LONG_AGO);
    assert!(gate.eject(gate.load(), reason, until));
    gate
}

#[test]
fn an_active_gate_passes_everything_and_keeps_its_ramp() {
    let gate = Gate::new(42);
    let word = gate.load();
    assert_eq!((state(word), time(word)), (ACTIVE, 42));
    assert_eq!(gate.claim(word, 0, TIMEOUT), Claim::Pass);
    assert!(!Gate::probe_due(word, i64::MAX, TIMEOUT));
    // Only an ejection leaves it; the probe transitions do not apply.
    assert!(!gate.probe_failed(word, 10));
    assert!(!gate.probe_succeeded(word, 10));
    assert!(!gate.release_probe(42, TIMEOUT));
    assert_eq!(gate.load(), word);
}

#[test]
fn an_ejection_shuts_the_gate_until_it_ends_then_admits_one_probe() {
    let gate = ejected_until(5_000, 2);
    let word = gate.load();
    assert_eq!((state(word), reason(word), time(word)), (EJECTED, 2, 5_000));
    assert_eq!(gate.claim(word, 4_999, TIMEOUT), Claim::Shut);
    assert_eq!(
        gate.claim(word, 5_000, TIMEOUT),
        Claim::Probe { first: true }
    );
    let probing = gate.load();
    assert_eq!(
        (state(probing), reason(probing), time(probing)),
        (PROBING, 2, 5_000)
    );
    // The probe is out: every other caller is shut out until it times out...
    assert_eq!(gate.claim(probing, 5_999, TIMEOUT), Claim::Shut);
    // ...when it is replaced, without a new probation.
    assert_eq!(
        gate.claim(probing, 6_000, TIMEOUT),
        Claim::Probe { first: false }
    );
    assert_eq!(time(gate.load()), 6_000);
    // A stale word acts on nothing.
    assert!(!gate.eject(word, 0, 1));
    assert!(!gate.probe_failed(probing, 1));
}

#[test]
fn a_probe_decides_the_gate() {
    // Failed: ejected again, same reason, new end.
    let gate = ejected_until(10, 3);
    assert!(matches!(
        gate.claim(gate.load(), 10, TIMEOUT),
        Claim::Probe { .. }
    ));
    assert!(gate.probe_failed(gate.load(), 900));
    let word = gate.load();
    assert_eq!((state(word), reason(word), time(word)), (EJECTED, 3, 900));
    // Succeeded: active again, ramping from when it was decided.
    assert!(matches!(
        gate.claim(word, 900, TIMEOUT),
        Claim::Probe { .. }
    ));
    let probing = gate.load();
    assert!(gate.probe_succeeded(probing, 950));
    assert_eq!((state(gate.load()), time(gate.load())), (ACTIVE, 950));
    // The probe's word is gone: deciding it twice does nothing.
    assert!(!gate.probe_failed(probing, 2_000));
    assert!(!gate.probe_succeeded(probing, 2_000));
    assert_eq!(state(gate.load()), ACTIVE);
}

#[test]
fn a_released_probe_is_due_again_at_once() {
    let gate = ejected_until(100, 1);
    assert!(matches!(
        gate.claim(gate.load(), 150, TIMEOUT),
        Claim::Probe { .. }
    ));
    // Only the probe admitted at 150 can be released.
    assert!(!gate.release_probe(149, TIMEOUT));
    assert!(gate.release_probe(150, TIMEOUT));
    let word = gate.load();
    assert_eq!((state(word), reason(word)), (PROBING, 1));
    assert!(Gate::probe_due(word, 150, TIMEOUT));
    assert_eq!(
        gate.claim(word, 151, TIMEOUT),
        Claim::Probe { first: false }
    );
    // Releasing the old one again changes nothing: it was replaced.
    let replaced = gate.load();
    assert!(!gate.release_probe(150, TIMEOUT));
    assert_eq!(gate.load(), replaced);
}

#[test]
fn a_retired_gate_passes_everything_and_says_what_it_left() {
    for gate in [Gate::new(LONG_AGO), ejected_until(7, 1)] {
        let before = gate.load();
        assert_eq!(gate.retire(), before);
        let word = gate.load();
        assert_eq!(state(word), RETIRED);
        assert_eq!(gate.claim(word, 7, TIMEOUT), Claim::Pass);
        assert!(!gate.eject(word, 0, 10));
        assert_eq!(state(gate.retire()), RETIRED, "idempotent");
    }
}

#[test]
fn two_callers_never_both_claim_the_probe() {
    // Every thread claims from the same ejected word at the same instant, released together;
    // whatever the interleaving, one swap wins and every other caller sees the probe out.
    for _ in 0..50 {
        let gate = Arc::new(ejected_until(0, 0));
        let start = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (gate, start) = (Arc::clone(&gate), Arc::clone(&start));
                std::thread::spawn(move || {
                    let word = gate.load();
                    start.wait();
                    gate.claim(word, 10, TIMEOUT)
                })
            })
            .collect();
        let claims: Vec<Claim> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let probes = claims
            .iter()
            .filter(|c| matches!(c, Claim::Probe { .. }))
            .count();
        assert_eq!(probes, 1, "{claims:?}");
        assert!(claims.iter().all(|c| *c != Claim::Pass));
    }
}
