//! The deadline's timer and the attempt timers below it: one timer per waiting request, and the
//! deadline still kept to the instant.

use super::*;
use crate::deadline::AttemptTimeoutLayer;
use std::time::Duration;
use tower::{Layer, ServiceExt};

type Empty = http_body_util::Empty<bytes::Bytes>;

/// An upstream that never answers.
fn silent<B>() -> impl Service<
    Request<B>,
    Response = http::Response<Empty>,
    Error = BoxError,
    Future = impl Future<Output = Result<http::Response<Empty>, BoxError>>,
> + Clone {
    tower::service_fn(|_: Request<B>| std::future::pending())
}

#[tokio::test(start_paused = true)]
async fn an_armed_attempt_timer_stands_in_for_the_deadline_s_own() {
    let start = Instant::now();
    let mut svc = DeadlineLayer::new(Duration::from_millis(100))
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(1)).layer(silent::<Empty>()));
    let mut future = std::pin::pin!(svc.call(Request::new(Empty::new())));
    let polled = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    assert!(polled.is_pending());
    assert!(
        !future.timer.is_armed(),
        "the attempt's timer ends by the deadline: the deadline's own is not built"
    );
    let err = future.await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(Instant::now() - start, Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn without_an_attempt_timer_below_the_deadline_arms_its_own() {
    let mut svc = DeadlineLayer::new(Duration::from_millis(100)).layer(silent::<()>());
    let mut future = std::pin::pin!(svc.call(Request::new(())));
    let polled = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    assert!(polled.is_pending());
    assert!(future.timer.is_armed());
}

/// The attempt's timer covers the deadline only while an attempt waits: once it is gone and
/// something below waits on with no timer of its own, the deadline's timer must be armed and
/// end the request on time.
#[tokio::test(start_paused = true)]
async fn once_no_timer_below_is_armed_the_deadline_arms_its_own() {
    let start = Instant::now();
    let inner = tower::service_fn(|req: Request<Empty>| async move {
        let attempt = AttemptTimeoutLayer::new(Duration::from_millis(60)).layer(silent::<Empty>());
        let timed_out = attempt.oneshot(req).await.unwrap_err();
        assert_eq!(timed_out.kind(), Kind::AttemptTimedOut);
        // Then a wait no timer ends, as a queue with no limit of its own would be.
        std::future::pending::<Result<http::Response<Empty>, BoxError>>().await
    });
    let call = DeadlineLayer::new(Duration::from_millis(100))
        .layer(inner)
        .oneshot(Request::new(Empty::new()));
    let err = tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .expect("the deadline ends the request")
        .unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(Instant::now() - start, Duration::from_millis(100));
}
