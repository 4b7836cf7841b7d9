//! A timeout derived from the deadline stands aside while attempts often run past it, and cuts
//! again when they stop.

use super::tests::sleeper;
use super::*;
use tower::ServiceExt;

fn taking(ms: u64) -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut().insert("x-sleep-ms", ms.into());
    req
}

/// How one attempt of `ms` ends under `layer`: `Ok` or the error's kind, and when.
async fn attempt(layer: &AttemptTimeoutLayer, ms: u64) -> (Result<(), Kind>, Duration) {
    let start = Instant::now();
    let result = layer
        .layer(sleeper())
        .oneshot(taking(ms))
        .await
        .map(drop)
        .map_err(|e| e.kind());
    (result, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn an_upstream_slow_as_a_whole_is_let_run_then_cut_again_once_fast() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    // Every attempt takes 150 ms: cut at 100 ms until ten of them say the upstream is slow.
    for _ in 0..10 {
        let (result, took) = attempt(&layer, 150).await;
        assert_eq!(result, Err(Kind::AttemptTimedOut));
        assert_eq!(took, Duration::from_millis(100));
    }
    let (result, took) = attempt(&layer, 150).await;
    assert_eq!(result, Ok(()), "let run: the upstream is slow as a whole");
    assert_eq!(took, Duration::from_millis(150));

    // Two seconds of fast answers later, the overruns have left the window: cut again.
    for _ in 0..200 {
        assert_eq!(attempt(&layer, 10).await.0, Ok(()));
    }
    let (result, took) = attempt(&layer, 150).await;
    assert_eq!(result, Err(Kind::AttemptTimedOut));
    assert_eq!(took, Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_rare_slow_attempt_is_still_cut() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    for round in 0..5 {
        for _ in 0..10 {
            assert_eq!(attempt(&layer, 5).await.0, Ok(()));
        }
        // One in eleven runs long (a hanging endpoint): below a tenth, so it is cut.
        let (result, took) = attempt(&layer, 10_000).await;
        assert_eq!(result, Err(Kind::AttemptTimedOut), "round {round}");
        assert_eq!(took, Duration::from_millis(100));
    }
}

#[tokio::test(start_paused = true)]
async fn a_timeout_asked_for_always_cuts() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100));
    for _ in 0..30 {
        let (result, took) = attempt(&layer, 150).await;
        assert_eq!(result, Err(Kind::AttemptTimedOut));
        assert_eq!(took, Duration::from_millis(100));
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_let_run_count_by_when_they_would_have_been_cut() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    for _ in 0..10 {
        assert_eq!(attempt(&layer, 150).await.0, Err(Kind::AttemptTimedOut));
    }
    // Let run from here: each answer past 100 ms still counts as an overrun, so the layer
    // does not swing back to cutting while the upstream stays slow.
    for _ in 0..50 {
        assert_eq!(attempt(&layer, 150).await.0, Ok(()));
    }
    // A request still running at the deadline is given up by the caller: it counts too.
    let mut req = taking(10_000);
    req.extensions_mut()
        .insert(RequestDeadline(Instant::now() + Duration::from_millis(400)));
    let err = layer.layer(sleeper()).oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(attempt(&layer, 150).await.0, Ok(()));
}

/// A retry carries the retry layer's token: a derived timeout does not cut it, even before the
/// window knows the upstream is slow (cutting it too would only burn the deadline). A first
/// attempt is still cut.
#[tokio::test(start_paused = true)]
async fn a_retry_is_not_cut_by_a_derived_timeout() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    assert_eq!(attempt(&layer, 150).await.0, Err(Kind::AttemptTimedOut));
    let budget = crate::budget::Budget::default();
    let withdrawal = budget.withdraw().expect("a fresh budget has a token");
    let mut retry = taking(150);
    retry
        .extensions_mut()
        .insert(crate::budget::UnsentRetry::new(withdrawal));
    let start = Instant::now();
    let result = layer.layer(sleeper()).oneshot(retry).await;
    assert!(result.is_ok(), "let run to its answer");
    assert_eq!(start.elapsed(), Duration::from_millis(150));
    assert_eq!(attempt(&layer, 150).await.0, Err(Kind::AttemptTimedOut));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_is_cut_by_a_derived_timeout_like_a_first_attempt() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    let budget = crate::budget::Budget::default();
    let withdrawal = budget.withdraw().expect("a fresh budget has a token");
    let mut hedge = taking(150);
    hedge
        .extensions_mut()
        .insert(crate::budget::UnsentRetry::hedge(withdrawal));
    let start = Instant::now();
    let result = layer.layer(sleeper()).oneshot(hedge).await;
    assert_eq!(
        result.map_err(|e| e.kind()).map(|_| ()),
        Err(Kind::AttemptTimedOut)
    );
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_only_once_is_not_cut_by_a_derived_timeout() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    let mut once = taking(150);
    once.extensions_mut().insert(super::SentOnce);
    let start = Instant::now();
    let result = layer.layer(sleeper()).oneshot(once).await;
    assert!(result.is_ok(), "let run to its answer");
    assert_eq!(start.elapsed(), Duration::from_millis(150));
}

#[tokio::test(start_paused = true)]
async fn attempts_under_way_when_the_upstream_slows_are_let_run_once_it_is_known() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    // Thirty attempts begin together, each taking 150 ms: none knew the upstream was slow
    // when it began. At 100 ms the first ten cut say it is; the other twenty run to their
    // answers instead of being cut with them.
    let attempts: Vec<_> = (0..30)
        .map(|_| {
            let layer = layer.clone();
            tokio::spawn(async move { attempt(&layer, 150).await })
        })
        .collect();
    let mut ends = Vec::new();
    for attempt in attempts {
        ends.push(attempt.await.expect("no panic"));
    }
    let cut = ends
        .iter()
        .filter(|(result, took)| {
            *result == Err(Kind::AttemptTimedOut) && *took == Duration::from_millis(100)
        })
        .count();
    let answered = ends
        .iter()
        .filter(|(result, took)| result.is_ok() && *took == Duration::from_millis(150))
        .count();
    assert_eq!((cut, answered), (10, 20), "{ends:?}");
}
