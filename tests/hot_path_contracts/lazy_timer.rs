//! The lazily built deadline timers still fire on time, and `grpc-timeout` is still the minimum.

use super::*;
use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service, ServiceExt};

/// A future that never completes and is woken every 10 ms by its own ticker (spurious
/// wake-ups: the layer is polled again and again while pending).
struct Restless {
    tick: Pin<Box<tokio::time::Sleep>>,
    polls: Arc<Mutex<usize>>,
}

impl Future for Restless {
    type Output = Result<http::Response<Full<Bytes>>, std::io::Error>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        *self.polls.lock().unwrap() += 1;
        if self.tick.as_mut().poll(cx).is_ready() {
            let next = tokio::time::Instant::now() + Duration::from_millis(10);
            self.tick.as_mut().reset(next);
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[derive(Clone)]
struct Svc(Arc<Mutex<usize>>);

impl Service<Request<()>> for Svc {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = Restless;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<()>) -> Restless {
        Restless {
            tick: Box::pin(tokio::time::sleep(Duration::from_millis(10))),
            polls: self.0.clone(),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn deadlines_fire_on_time_while_the_inner_future_is_polled_again_and_again() {
    for (total, attempt, expect) in [
        (Duration::from_millis(105), Duration::MAX, 105u64),
        (Duration::from_millis(300), Duration::from_millis(55), 55),
        (Duration::MAX, Duration::from_millis(77), 77),
        (Duration::from_millis(33), Duration::from_millis(500), 33),
    ] {
        let polls = Arc::new(Mutex::new(0));
        let svc = DeadlineLayer::new(total)
            .layer(AttemptTimeoutLayer::new(attempt).layer(Svc(polls.clone())));
        let start = Instant::now();
        let err = svc.oneshot(Request::new(())).await.unwrap_err();
        let took = start.elapsed();
        assert_eq!(
            took,
            Duration::from_millis(expect),
            "{total:?}/{attempt:?}: {err}"
        );
        assert!(
            *polls.lock().unwrap() > 2,
            "the inner future was polled repeatedly"
        );
    }
}

/// A caller's `grpc-timeout` larger than everything and Duration::MAX settings: the
/// outgoing value is the least, and nothing panics.
#[tokio::test(start_paused = true)]
async fn grpc_timeout_min_with_max_settings() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let inner = tower::service_fn(move |req: Request<()>| {
        s2.lock().unwrap().push(
            req.headers()
                .get("grpc-timeout")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
        );
        async { Ok::<_, std::io::Error>(http::Response::new(Full::<Bytes>::default())) }
    });
    for (total, attempt, caller) in [
        (Duration::MAX, Duration::MAX, "99999999H"),
        (Duration::MAX, Duration::from_millis(20), "99999999H"),
        (Duration::from_millis(20), Duration::MAX, "99999999H"),
        (Duration::MAX, Duration::MAX, "5m"),
    ] {
        let svc =
            DeadlineLayer::new(total).layer(AttemptTimeoutLayer::new(attempt).layer(inner.clone()));
        let req = Request::post("/x")
            .header("content-type", "application/grpc")
            .header("grpc-timeout", caller)
            .body(())
            .unwrap();
        svc.oneshot(req).await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let nanos: Vec<u128> = seen.iter().map(|v| grpc_nanos(v)).collect();
    assert!(nanos[0] <= grpc_nanos("99999999H"), "{seen:?}");
    assert!(nanos[1] <= 20_000_000, "{seen:?}");
    assert!(nanos[2] <= 20_000_000, "{seen:?}");
    assert!(nanos[3] <= 5_000_000, "{seen:?}");
}
