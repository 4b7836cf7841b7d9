//! Per-route breakers: a failing route opens its own circuit and no other; the number of
//! routes is bounded, and further routes share the client-wide breaker.

use crate::support::*;
use std::borrow::Cow;

/// A breaker per first path segment over an upstream that fails every path under `/bad`.
fn routed(max_routes: u32) -> (Breaker<Inner>, BreakerHandle) {
    let mut config = config();
    config.max_routes = max_routes;
    let layer = BreakerLayer::from_config(&config)
        .unwrap()
        .metrics(false)
        .per_route(|_, uri, _| {
            let segment = uri.path().trim_start_matches('/').split('/').next()?;
            (!segment.is_empty()).then(|| Cow::Owned(segment.to_string()))
        });
    let handle = layer.handle();
    let upstream = BoxCloneService::new(tower::service_fn(|req: Request<()>| async move {
        let status = if req.uri().path().starts_with("/bad") {
            503
        } else {
            200
        };
        let mut res = Response::new(());
        *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok::<_, BoxError>(res)
    }));
    (layer.layer(upstream), handle)
}

async fn get(svc: &Breaker<Inner>, path: &str, n: usize) -> Vec<Result<u16, Rejected>> {
    let mut answers = Vec::new();
    for _ in 0..n {
        let req = Request::get(path).body(()).unwrap();
        answers.push(match svc.clone().oneshot(req).await {
            Ok(res) => Ok(res.status().as_u16()),
            Err(err) => Err(rejected(&err)),
        });
    }
    answers
}

#[tokio::test(start_paused = true)]
async fn a_failing_route_opens_its_own_circuit_only() {
    let (svc, handle) = routed(8);
    assert!(get(&svc, "/bad/1", 20).await.iter().all(|a| *a == Ok(503)));
    let bad = handle.route("bad").expect("a breaker of its own");
    assert_eq!(bad.state(), BreakerState::Open);
    assert!(get(&svc, "/bad/2", 5).await.iter().all(Result::is_err));
    // Other routes, and requests of no route, go on.
    assert!(get(&svc, "/good", 50).await.iter().all(|a| *a == Ok(200)));
    assert!(get(&svc, "/", 5).await.iter().all(|a| *a == Ok(200)));
    assert_eq!(handle.state(), BreakerState::Closed);
    assert_eq!(handle.route("good").unwrap().state(), BreakerState::Closed);
    assert_eq!(handle.routes(), ["bad", "good"]);
    assert_eq!(bad.stats().rejected, 5);
    assert_eq!(
        handle.stats().calls,
        5,
        "the client-wide breaker saw the root only"
    );
}

#[tokio::test(start_paused = true)]
async fn routes_past_the_bound_share_the_client_wide_breaker() {
    let (svc, handle) = routed(1);
    get(&svc, "/good", 1).await;
    // `bad` finds the bound reached: its failures land on the client-wide breaker.
    get(&svc, "/bad", 20).await;
    assert!(handle.route("bad").is_none());
    assert_eq!(handle.routes(), ["good"]);
    assert_eq!(handle.state(), BreakerState::Open);
    assert!(
        get(&svc, "/other", 1).await[0].is_err(),
        "shares the open circuit"
    );
    assert_eq!(
        get(&svc, "/good", 1).await,
        [Ok(200)],
        "its own breaker is closed"
    );
}
