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
    ends_at_the_deadline(call, start + Duration::from_millis(100)).await;
}

/// Awaits `call` (a second at most, so that a deadline that never fires fails the test rather
/// than hanging it) and checks it failed with `DeadlineExceeded` at exactly `deadline`.
async fn ends_at_the_deadline<T: std::fmt::Debug>(
    call: impl Future<Output = Result<T, Error>>,
    deadline: Instant,
) {
    let err = tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .expect("the deadline ends the request")
        .unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded);
    assert_eq!(Instant::now(), deadline);
}

/// Polls `timer` once per poll (arming it), and is never ready: a future below the deadline
/// whose timer reports itself to the watch.
struct Timed {
    timer: Option<Pin<Box<crate::deadline::timer::LazySleep>>>,
    // Dropped in the poll that armed it, after reporting: the report must not count.
    drop_after_poll: bool,
}

impl Future for Timed {
    type Output = Result<http::Response<Empty>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(timer) = self.timer.as_mut() {
            let _ = timer.as_mut().poll_end(cx);
        }
        if self.drop_after_poll {
            self.timer = None;
        }
        Poll::Pending
    }
}

/// A deadline of 100 ms over `Timed` with a timer ending `after` the request starts; returns
/// whether the deadline armed its own timer on the first poll, and checks the request ends
/// exactly at the deadline.
async fn deadline_over_a_timer(after: Duration, drop_after_poll: bool) -> bool {
    let start = Instant::now();
    let end = start + after;
    let inner = tower::service_fn(move |_: Request<()>| Timed {
        timer: Some(Box::pin(crate::deadline::timer::LazySleep::new(Some(end)))),
        drop_after_poll,
    });
    let mut svc = DeadlineLayer::new(Duration::from_millis(100)).layer(inner);
    let mut future = std::pin::pin!(svc.call(Request::new(())));
    let polled = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    assert!(polled.is_pending());
    let armed = future.timer.is_armed();
    ends_at_the_deadline(future, start + Duration::from_millis(100)).await;
    armed
}

#[tokio::test(start_paused = true)]
async fn a_timer_below_that_ends_sooner_stands_in() {
    assert!(!deadline_over_a_timer(Duration::from_millis(50), false).await);
}

#[tokio::test(start_paused = true)]
async fn a_timer_below_that_ends_later_does_not() {
    assert!(deadline_over_a_timer(Duration::from_millis(150), false).await);
}

#[tokio::test(start_paused = true)]
async fn a_timer_dropped_in_the_poll_that_armed_it_does_not() {
    assert!(deadline_over_a_timer(Duration::from_millis(50), true).await);
}
