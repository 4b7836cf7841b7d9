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

/// A retry (it carries the retry layer's token) is cut like a first attempt: each allowed
/// attempt gets its share of the deadline, so that a request whose first attempt and retry
/// both hang (a gray failure) still has a last one. In a brownout the overruns counted make
/// every attempt run on, the retry included (see `overrun`).
#[tokio::test(start_paused = true)]
async fn a_retry_is_cut_like_a_first_attempt() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    let budget = crate::budget::Budget::default();
    let withdrawal = budget.withdraw().expect("a fresh budget has a token");
    let mut retry = taking(150);
    retry
        .extensions_mut()
        .insert(crate::budget::UnsentRetry::new(withdrawal));
    let start = Instant::now();
    let result = layer.layer(sleeper()).oneshot(retry).await;
    assert_eq!(
        result.map_err(|e| e.kind()).map(|_| ()),
        Err(Kind::AttemptTimedOut)
    );
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_is_cut_by_a_derived_timeout_like_a_first_attempt() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    let budget = crate::budget::Budget::default();
    let withdrawal = budget.withdraw().expect("a fresh budget has a token");
    let mut hedge = taking(150);
    hedge
        .extensions_mut()
        .insert(crate::budget::UnsentRetry::new(withdrawal));
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

// ---- hostile review: the re-decision when the timer fires ----

/// A route's own attempt timeout (asked for, `attempt_derived: false`) under a client whose
/// default is derived: "A route's own attempt timeout is always kept". The re-decision at
/// the timer must not let it run.
#[tokio::test(start_paused = true)]
async fn a_routes_own_attempt_timeout_cuts_even_while_overruns_are_frequent() {
    use crate::primitives::route_policy::{self, HedgePlan, RouteExt, RoutePolicy, Switch};
    route_policy::turn_routing_on();
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100))
        .routes(Switch::client())
        .derived();
    // Ten overruns: the upstream looks slow as a whole.
    for _ in 0..10 {
        assert_eq!(attempt(&layer, 150).await.0, Err(Kind::AttemptTimedOut));
    }
    let route = RouteExt(Arc::new(RoutePolicy {
        deadline: Duration::from_secs(10),
        attempt_timeout: Duration::from_millis(100),
        attempt_derived: false,
        max_retries: 2,
        idempotent: None,
        hedge: HedgePlan {
            enabled: false,
            max_hedges: 0,
            delay: None,
        },
    }));
    let mut req = taking(150);
    req.extensions_mut().insert(route);
    let start = Instant::now();
    let result = layer
        .layer(sleeper())
        .oneshot(req)
        .await
        .map(drop)
        .map_err(|e| e.kind());
    assert_eq!(
        (result, start.elapsed()),
        (Err(Kind::AttemptTimedOut), Duration::from_millis(100)),
        "a route's own attempt timeout was let run"
    );
}

/// An attempt let run by the re-decision has already told the server it had only the
/// attempt's time (grpc-timeout), and the layers below it the attempt's end
/// (RequestDeadline): a gRPC server gives up at 100 ms anyway.
#[tokio::test(start_paused = true)]
async fn an_attempt_that_told_the_server_its_limit_is_not_let_run_past_it() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    let grpc = |ms: u64| {
        let mut req = taking(ms);
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            "application/grpc".parse().unwrap(),
        );
        req.extensions_mut()
            .insert(RequestDeadline(Instant::now() + Duration::from_secs(1)));
        req
    };
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let svc = layer.layer(sleeper());
            let req = grpc(150);
            tokio::spawn(async move {
                let start = Instant::now();
                let r = svc.oneshot(req).await.map_err(|e| e.kind());
                (r, start.elapsed())
            })
        })
        .collect();
    for t in tasks {
        let (r, took) = t.await.unwrap();
        // An attempt that answered was never let run past the limit its server was told: a
        // gRPC server would have given up there (DEADLINE_EXCEEDED) anyway.
        if let Ok(headers) = r {
            let told = headers
                .get("grpc-timeout")
                .and_then(crate::deadline::grpc_timeout::parse);
            assert!(
                told.is_none_or(|told| told >= took),
                "told the server {told:?}, then let the attempt run {took:?}"
            );
        }
    }
}

/// Under the total deadline the client stacks above, an attempt let run still ends at the
/// deadline, with DeadlineExceeded.
#[tokio::test(start_paused = true)]
async fn an_attempt_let_run_ends_at_the_deadline_above() {
    use crate::deadline::DeadlineLayer;
    let hang = tower::service_fn(|_req: Request<()>| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, BoxError>(http::Response::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
        ))
    });
    let attempt_layer = AttemptTimeoutLayer::new(Duration::from_millis(100)).derived();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let tasks: Vec<_> = (0..30)
                .map(|_| {
                    let svc = tower::ServiceBuilder::new()
                        .layer(DeadlineLayer::new(Duration::from_millis(400)))
                        .layer(attempt_layer.clone())
                        .service(hang);
                    tokio::task::spawn_local(async move {
                        let start = Instant::now();
                        let r = svc.oneshot(Request::new(())).await;
                        (r.map(drop).map_err(|e| e.kind()), start.elapsed())
                    })
                })
                .collect();
            let mut ends = Vec::new();
            for t in tasks {
                ends.push(t.await.unwrap());
            }
            let cut = ends
                .iter()
                .filter(|e| **e == (Err(Kind::AttemptTimedOut), Duration::from_millis(100)))
                .count();
            let at_deadline = ends
                .iter()
                .filter(|e| **e == (Err(Kind::DeadlineExceeded), Duration::from_millis(400)))
                .count();
            assert_eq!((cut, at_deadline), (10, 20), "{ends:?}");
        })
        .await;
}

/// A timeout asked for always cuts, attempts concurrent or not.
#[tokio::test(start_paused = true)]
async fn an_explicit_timeout_cuts_every_attempt_under_way() {
    let layer = AttemptTimeoutLayer::new(Duration::from_millis(100));
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let layer = layer.clone();
            tokio::spawn(async move { attempt(&layer, 150).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            (Err(Kind::AttemptTimedOut), Duration::from_millis(100))
        );
    }
}
