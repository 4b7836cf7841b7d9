//! A request the circuit refuses is held, unsent, until the circuit admits it or its deadline
//! passes: it goes out as a probe or in the ramp, or ends refused at its deadline.

use crate::support::*;
use meshless::deadline::RequestDeadline;

/// A request that must end within `within`.
fn with_deadline(within: Duration) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut().insert(RequestDeadline::after(within));
    req
}

/// Trips the default breaker (no jitter: the break ends 1 s after the trip): 20 failures.
async fn tripped(hold: bool) -> (Upstream, Svc, BreakerHandle) {
    let upstream = Upstream::new();
    let mut c = config();
    c.hold = hold;
    let (svc, handle) = breaker(&c, &upstream);
    upstream.status(503);
    assert_eq!(calls(&svc, 20).await, 0);
    assert_eq!(handle.state(), BreakerState::Open);
    (upstream, svc, handle)
}

#[tokio::test(start_paused = true)]
async fn a_held_request_goes_out_when_the_break_ends_and_the_upstream_answers() {
    let (upstream, svc, handle) = tripped(true).await;
    upstream.status(200);
    let sent = upstream.received();
    let start = Instant::now();
    let res = svc.clone().oneshot(with_deadline(3 * S)).await;
    assert_eq!(res.map(|r| r.status()).ok(), Some(http::StatusCode::OK));
    assert_eq!(
        start.elapsed(),
        S,
        "held until the break ended, then sent as a probe"
    );
    assert_eq!(upstream.received(), sent + 1);
    assert_eq!(handle.stats().rejected, 0, "held, then sent: no refusal");
}

#[tokio::test(start_paused = true)]
async fn a_held_request_is_refused_at_its_deadline_and_nothing_is_sent() {
    let (upstream, svc, handle) = tripped(true).await;
    let sent = upstream.received();
    let start = Instant::now();
    let err = svc
        .clone()
        .oneshot(with_deadline(300 * MS))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::CircuitOpen);
    assert_eq!(
        start.elapsed(),
        300 * MS,
        "refused at its deadline, not before"
    );
    assert_eq!(upstream.received(), sent, "nothing sent while held");
    assert_eq!(handle.stats().rejected, 1, "one refusal, counted once");
}

#[tokio::test(start_paused = true)]
async fn held_requests_beyond_the_probes_wait_for_their_verdict_and_go_out_in_the_ramp() {
    let (upstream, svc, handle) = tripped(true).await;
    upstream.status(200);
    upstream.latency(100 * MS);
    let sent = upstream.received();
    // Ten callers at once, each with 3 s: three are the probes when the break ends, the
    // others wait for their answers, then go out as the ramp admits them.
    let calls: Vec<_> = (0..10)
        .map(|_| tokio::spawn(svc.clone().oneshot(with_deadline(3 * S))))
        .collect();
    for call in calls {
        let res = call.await.unwrap();
        assert_eq!(res.map(|r| r.status()).ok(), Some(http::StatusCode::OK));
    }
    assert_eq!(upstream.received(), sent + 10, "each sent once");
    assert_eq!(handle.stats().rejected, 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_or_with_hold_off_a_refusal_is_at_once() {
    let (upstream, svc, _) = tripped(true).await;
    let sent = upstream.received();
    let start = Instant::now();
    let err = call(&svc).await.unwrap_err();
    assert_eq!(
        (err.kind(), start.elapsed()),
        (Kind::CircuitOpen, Duration::ZERO)
    );
    let (_, svc, _) = tripped(false).await;
    let err = svc.oneshot(with_deadline(3 * S)).await.unwrap_err();
    assert_eq!(
        (err.kind(), start.elapsed()),
        (Kind::CircuitOpen, Duration::ZERO)
    );
    assert_eq!(upstream.received(), sent);
}

#[tokio::test(start_paused = true)]
async fn a_held_request_its_caller_drops_counts_nothing() {
    let (upstream, svc, handle) = tripped(true).await;
    let sent = upstream.received();
    let held = tokio::time::timeout(200 * MS, svc.clone().oneshot(with_deadline(3 * S))).await;
    assert!(held.is_err(), "still held when its caller gave up");
    assert_eq!(handle.stats().rejected, 0);
    assert_eq!(upstream.received(), sent);
    assert_eq!(handle.state(), BreakerState::Open);
}
