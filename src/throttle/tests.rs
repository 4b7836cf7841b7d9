use super::state::{Shared, accepted};
use crate::classify::{Class, Code, Reason, Retryable};
use std::time::Duration;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(120);

#[test]
fn draws_are_uniform_and_replayed_from_the_seed() {
    let a = Shared::new(2.0, WINDOW, 1.0, 7);
    let b = Shared::new(2.0, WINDOW, 1.0, 7);
    let c = Shared::new(2.0, WINDOW, 1.0, 8);
    let first: Vec<f64> = (0..1000).map(|_| a.draw_for_tests()).collect();
    let again: Vec<f64> = (0..1000).map(|_| b.draw_for_tests()).collect();
    let other: Vec<f64> = (0..1000).map(|_| c.draw_for_tests()).collect();
    assert_eq!(first, again);
    assert_ne!(first, other);
    assert!(first.iter().all(|x| (0.0..1.0).contains(x)));
    let below_half = first.iter().filter(|x| **x < 0.5).count();
    assert!((400..600).contains(&below_half), "{below_half}");
}

#[tokio::test(start_paused = true)]
async fn an_accept_counted_without_the_clock_outlives_its_request() {
    let shared = Shared::new(2.0, WINDOW, 1.0, 1);
    let now = Instant::now();
    for _ in 0..10 {
        let epoch = shared.admit(now).unwrap(); // p = 0: nothing was refused
        shared.answered(epoch, true);
    }
    let counts = shared.counts(now);
    assert_eq!((counts.requests, counts.accepts), (10, 10));
    // An accept counted without reading the clock, long after its request's bucket began,
    // still expires no earlier than the request.
    let epoch = shared.admit(now).unwrap().unwrap();
    let later = now + WINDOW / 2;
    shared.answered(None, true);
    let counts = shared.counts(later);
    assert_eq!((counts.requests, counts.accepts), (11, 11));
    assert_eq!(counts.in_flight, 1);
    shared.uncount(epoch);
    assert_eq!(shared.counts(later).requests, 10);
    assert_eq!(shared.counts(later).in_flight, 0);
    assert_eq!(shared.counts(now + WINDOW).requests, 0);
    assert_eq!(shared.counts(now + WINDOW).accepts, 0);
}

#[test]
fn accepted_means_answered_without_overload() {
    let failure = |reason| Class::failure(reason, Retryable::IfIdempotent);
    assert!(accepted(&Class::success(), true));
    for status in [400, 404, 500, 501, 502] {
        assert!(accepted(&failure(Reason::Status(status)), true), "{status}");
    }
    for status in [429, 503, 504] {
        assert!(
            !accepted(&failure(Reason::Status(status)), true),
            "{status}"
        );
    }
    assert!(accepted(
        &failure(Reason::Grpc(Code::InvalidArgument)),
        true
    ));
    assert!(accepted(&failure(Reason::Grpc(Code::Internal)), true));
    for code in [
        Code::ResourceExhausted,
        Code::Unavailable,
        Code::DeadlineExceeded,
    ] {
        assert!(!accepted(&failure(Reason::Grpc(code)), true), "{code:?}");
    }
    for reason in [
        Reason::Connect,
        Reason::Refused,
        Reason::Reset,
        Reason::Timeout,
        Reason::NoEndpoint,
        Reason::Other,
    ] {
        assert!(!accepted(&failure(reason), false), "{reason:?}");
    }
    assert!(accepted(&failure(Reason::Body), false));
    assert!(accepted(&failure(Reason::Other), true));
}
