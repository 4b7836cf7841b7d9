//! The lab's hedging verdict (`examples/lab/hedge_verdict.rs`, included as is): the issue's
//! acceptance — p99.9 cut at least 6×, at most 5% extra attempts, no lost request — at its
//! bounds and just past each.

#[path = "../examples/lab/hedge_verdict.rs"]
mod hedge_verdict;

use hedge_verdict::{MAX_EXTRA_PCT, MIN_CUT, Tail, cut, judge};

fn tail(label: &str, requests: u64, attempts: u64, lost: u64, p999_ms: f64) -> Tail {
    Tail {
        label: label.to_string(),
        requests,
        attempts,
        lost,
        p999_ms,
    }
}

fn baseline() -> Tail {
    tail("meshless", 20_000, 20_000, 0, 102.0)
}

#[test]
fn passes_exactly_at_the_bounds() {
    // 102 / 17 = 6×, 1000 extra attempts for 20 000 requests = 5%, nothing lost.
    let hedged = tail("meshless + hedging", 20_000, 21_000, 0, 17.0);
    assert_eq!(cut(&baseline(), &hedged), MIN_CUT);
    assert_eq!(hedged.extra_pct(), MAX_EXTRA_PCT);
    let (pass, text) = judge(&baseline(), &hedged);
    assert!(pass, "{text}");
    assert!(text.contains("6.0×"), "{text}");
    assert!(text.contains("5.00%"), "{text}");
    assert!(text.contains("21000 attempts for 20000 requests"), "{text}");
}

#[test]
fn each_bound_fails_on_its_own() {
    // The p99.9 cut just short of 6×.
    let (pass, text) = judge(
        &baseline(),
        &tail("meshless + hedging", 20_000, 20_500, 0, 17.1),
    );
    assert!(!pass, "{text}");
    // One extra attempt too many.
    let (pass, text) = judge(
        &baseline(),
        &tail("meshless + hedging", 20_000, 21_001, 0, 8.0),
    );
    assert!(!pass, "{text}");
    // One request lost.
    let (pass, text) = judge(
        &baseline(),
        &tail("meshless + hedging", 20_000, 20_500, 1, 8.0),
    );
    assert!(!pass, "{text}");
    assert!(text.contains("lost 1 = 0"), "{text}");
}

#[test]
fn empty_runs_fail_without_dividing_by_zero() {
    let empty = tail("meshless + hedging", 0, 0, 0, 0.0);
    assert_eq!(empty.extra_pct(), 0.0);
    assert_eq!(cut(&baseline(), &empty), 0.0);
    assert!(!judge(&baseline(), &empty).0);
    // A good hedged run against an empty baseline proves nothing either.
    let good = tail("meshless + hedging", 20_000, 20_100, 0, 8.0);
    assert!(!judge(&tail("meshless", 0, 0, 0, 0.0), &good).0);
}

#[test]
fn a_client_that_shed_requests_has_no_negative_extra() {
    // Fewer attempts than requests: some were refused before any attempt.
    let shed = tail("meshless + hedging", 20_000, 19_000, 0, 8.0);
    assert_eq!(shed.extra_pct(), 0.0);
    assert!(judge(&baseline(), &shed).0);
}
