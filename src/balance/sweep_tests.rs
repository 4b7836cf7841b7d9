//! A handle asks the outlier detector for a sweep only once one may be due: the sweeps still
//! run once per interval, whichever handle serves the requests.

use super::Balance;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use std::convert::Infallible;
use std::time::Duration;
use tower::ServiceExt;

async fn ok(_: Request<Empty<Bytes>>) -> Result<Response<Empty<Bytes>>, Infallible> {
    Ok(Response::new(Empty::new()))
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn sweeps_run_once_per_interval_through_any_handle() {
    let balance = Balance::builder().build();
    let sweeps = |b: &Balance<&str, _>| b.shared.detector.stats().sweeps;
    // Called before any endpoint joined, the handle has no sweep to wait for: it must look
    // again once one is armed.
    let mut a = balance.clone();
    let _ = (&mut a).oneshot(Request::new(Empty::new())).await;
    a.insert("x", tower::service_fn(ok));
    // The default interval is 10 s, armed when the endpoint joined.
    tokio::time::advance(9 * SEC).await;
    (&mut a).oneshot(Request::new(Empty::new())).await.unwrap();
    assert_eq!(sweeps(&a), 0);
    tokio::time::advance(SEC).await;
    (&mut a).oneshot(Request::new(Empty::new())).await.unwrap();
    assert_eq!(
        sweeps(&a),
        1,
        "due at 10 s, through the handle that waited for it"
    );
    // Another handle, cloned before that sweep with an earlier hint, runs the next one: the
    // first handle's hint is then early, and its next look finds nothing due.
    let mut b = balance.clone();
    tokio::time::advance(10 * SEC).await;
    (&mut b).oneshot(Request::new(Empty::new())).await.unwrap();
    assert_eq!(sweeps(&b), 2);
    (&mut a).oneshot(Request::new(Empty::new())).await.unwrap();
    assert_eq!(sweeps(&a), 2, "nothing due until 30 s");
    tokio::time::advance(10 * SEC).await;
    // A fresh clone of a handle that never looked: it looks, and runs the one due.
    balance
        .clone()
        .oneshot(Request::new(Empty::new()))
        .await
        .unwrap();
    (&mut a).oneshot(Request::new(Empty::new())).await.unwrap();
    assert_eq!(
        sweeps(&a),
        3,
        "one sweep at 30 s, however many handles look"
    );
}
