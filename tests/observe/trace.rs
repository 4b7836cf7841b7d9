//! Trace context passes through every attempt.

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn traceparent_reaches_every_attempt_unchanged() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let script = Script::new([Step::Status(503), Step::Status(502), Step::Status(200)]);
    let balance = Balance::builder().build();
    balance.insert("solo", serve(script.clone()));
    let mut req = get();
    req.headers_mut()
        .insert("traceparent", TRACEPARENT.parse().unwrap());
    req.headers_mut()
        .insert("tracestate", TRACESTATE.parse().unwrap());
    let res = stack(balance, RetryLayer::new(Budget::default()))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = script.seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "two retries");
    for headers in seen.iter() {
        assert_eq!(headers.get_all("traceparent").iter().count(), 1);
        assert_eq!(headers["traceparent"], TRACEPARENT);
        assert_eq!(headers["tracestate"], TRACESTATE);
    }
}
