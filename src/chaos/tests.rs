//! Unit tests of the compiled plan: draws, thresholds, clamping and matching.

use super::config::{ChaosConfig, ChaosRule, Faults, MAX_DELAY};
use super::plan::{Outcome, Plan};
use std::time::Duration;

fn config(faults: Faults) -> ChaosConfig {
    ChaosConfig {
        enabled: true,
        seed: Some(1),
        faults,
        rules: Vec::new(),
    }
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(path).body(()).unwrap()
}

#[test]
fn an_inactive_config_compiles_to_no_plan() {
    assert!(Plan::new(&ChaosConfig::default(), 1).is_none());
    assert!(Plan::new(&config(Faults::none()), 1).is_none());
    let mut off = config(Faults::none().reset(1.0));
    off.enabled = false;
    assert!(Plan::new(&off, 1).is_none());
    // A rule alone makes the layer active.
    let mut ruled = config(Faults::none());
    ruled
        .rules
        .push(ChaosRule::new().faults(Faults::none().refuse(0.5)));
    assert!(Plan::new(&ruled, 1).is_some());
}

#[test]
fn rates_of_one_always_inject_and_of_zero_never() {
    let plan = Plan::new(&config(Faults::none().reset(1.0)), 3).unwrap();
    for _ in 0..1000 {
        let d = plan.decide(&get("/")).unwrap();
        assert_eq!((d.outcome, d.delay), (Outcome::Reset, None));
    }
    let plan = Plan::new(&config(Faults::none().delay(1.0, Duration::ZERO)), 3).unwrap();
    for _ in 0..1000 {
        let d = plan.decide(&get("/")).unwrap();
        assert_eq!((d.outcome, d.delay), (Outcome::Pass, Some(Duration::ZERO)));
    }
    assert_eq!(plan.counts().delays, 1000);
}

#[test]
fn the_outcome_draw_splits_between_the_three_faults() {
    let faults = Faults::none().error(0.25, 503).reset(0.25).refuse(0.5);
    let plan = Plan::new(&config(faults), 11).unwrap();
    let mut seen = [0u32; 4];
    for _ in 0..4000 {
        let i = match plan.decide(&get("/")).unwrap().outcome {
            Outcome::Error => 0,
            Outcome::Reset => 1,
            Outcome::Refused => 2,
            Outcome::Pass => 3,
        };
        seen[i] += 1;
    }
    assert_eq!(
        seen[3], 0,
        "the rates add up to 1: every request gets a fault"
    );
    // 4 standard deviations of a binomial over 4000 draws: about 110 at p = 0.25, 126 at 0.5.
    assert!(
        seen[0].abs_diff(1000) < 110 && seen[1].abs_diff(1000) < 110,
        "{seen:?}"
    );
    assert!(seen[2].abs_diff(2000) < 127, "{seen:?}");
}

#[test]
fn out_of_range_builder_values_are_clamped_not_panicked_on() {
    let faults = Faults {
        delay_rate: f64::NAN,
        delay: Duration::MAX,
        delay_jitter: Duration::MAX,
        error_rate: 7.0,
        error_status: 42,
        error_grpc_code: -3,
        error_headers: vec![("bad name".into(), "x".into()), ("ok".into(), "\n".into())],
        reset_rate: -1.0,
        refuse_rate: f64::INFINITY,
    };
    let plan = Plan::new(&config(faults), 5).unwrap();
    let d = plan.decide(&get("/")).unwrap();
    // An error rate of 7 reads as 1; the default status and code stand in for bad ones.
    assert_eq!(d.outcome, Outcome::Error);
    assert_eq!(d.delay, None, "a NaN rate reads as 0");
    assert_eq!(d.faults.status, 503);
    assert_eq!(d.faults.grpc_code, "14");
    assert!(d.faults.headers.is_empty(), "bad headers are dropped");
    let faults = Faults::none()
        .delay(1.0, Duration::MAX)
        .delay_jitter(Duration::MAX);
    let plan = Plan::new(&config(faults), 5).unwrap();
    assert!(plan.decide(&get("/")).unwrap().delay.unwrap() <= MAX_DELAY);
}

#[test]
fn rules_are_tried_in_order_before_the_default_faults() {
    let mut cfg = config(Faults::none().error(1.0, 500));
    cfg.rules = vec![
        ChaosRule::new()
            .method("GET")
            .path_prefix("/a")
            .faults(Faults::none().reset(1.0)),
        ChaosRule::new()
            .path_prefix("/a")
            .faults(Faults::none().refuse(1.0)),
        // Matches but injects nothing: its requests draw nothing.
        ChaosRule::new().path_prefix("/quiet"),
    ];
    let plan = Plan::new(&cfg, 9).unwrap();
    let outcome = |req: http::Request<()>| plan.decide(&req).map(|d| d.outcome);
    assert_eq!(outcome(get("/a/b")), Some(Outcome::Reset));
    let post = http::Request::post("/a/b").body(()).unwrap();
    assert_eq!(outcome(post), Some(Outcome::Refused));
    assert_eq!(outcome(get("/b")), Some(Outcome::Error));
    assert_eq!(outcome(get("/quiet/x")), None);
    assert_eq!(plan.counts().requests, 3);
}

#[test]
fn draws_depend_on_the_seed_and_the_position_only() {
    let faults = Faults::none().error(0.5, 503);
    let sequence = |seed| {
        let plan = Plan::new(&config(faults.clone()), seed).unwrap();
        (0..256)
            .map(|_| plan.decide(&get("/")).unwrap().outcome)
            .collect::<Vec<_>>()
    };
    assert_eq!(sequence(77), sequence(77));
    assert_ne!(sequence(77), sequence(78));
}
