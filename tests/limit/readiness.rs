//! A request that waited for a permit is sent by a service made ready again after the wait:
//! readiness decided before the wait (a breaker's verdict, say) may be stale by then.

use meshless::error::Kind;
use meshless::limit::{LimitHandle, LimitLayer};
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceExt};

type Res = http::Response<http_body_util::Empty<bytes::Bytes>>;

/// Decides at `poll_ready` whether it will refuse (while `closed` is false), as a breaker
/// does, or stays pending (while `pending` is true); `call` replays the stored verdict.
#[derive(Clone, Default)]
struct Gate {
    closed: Arc<AtomicBool>,
    pending: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    verdict: Option<bool>,
}

impl Service<http::Request<oneshot::Receiver<()>>> for Gate {
    type Response = Res;
    type Error = meshless::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Res, meshless::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.pending.load(Ordering::SeqCst) {
            // Never ready again: only the limit's own timer wakes the waiter.
            return Poll::Pending;
        }
        self.verdict = Some(self.closed.load(Ordering::SeqCst));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<oneshot::Receiver<()>>) -> Self::Future {
        if self.verdict.take() != Some(true) {
            let refused: Ready<_> = ready(Err(meshless::Error::new(Kind::CircuitOpen)));
            return Box::pin(refused);
        }
        self.sent.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let _ = req.into_body().await;
            Ok::<_, Infallible>(Res::new(http_body_util::Empty::new()))
                .map_err(meshless::Error::from_service)
        })
    }
}

fn limited(gate: &Gate, max_wait: Duration) -> (meshless::limit::Limit<Gate>, LimitHandle) {
    let layer = LimitLayer::fixed(1).max_wait(max_wait);
    let handle = layer.handle();
    (layer.layer(gate.clone()), handle)
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_sent_by_a_service_made_ready_after_the_wait() {
    let gate = Gate::default();
    gate.closed.store(true, Ordering::SeqCst);
    let (svc, handle) = limited(&gate, Duration::from_secs(10));
    let (release, held) = oneshot::channel();
    let holder = tokio::spawn(svc.clone().oneshot(http::Request::new(held)));
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 1);
    // The waiter's service is made ready while the gate refuses…
    gate.closed.store(false, Ordering::SeqCst);
    let (_answer, body) = oneshot::channel();
    let queued = tokio::spawn(svc.clone().oneshot(http::Request::new(body)));
    tokio::task::yield_now().await;
    assert_eq!(handle.waiting(), 1);
    // …and the gate lets requests through again before the permit comes.
    gate.closed.store(true, Ordering::SeqCst);
    let _ = release.send(());
    holder.await.unwrap().unwrap();
    drop(_answer);
    let outcome = queued.await.unwrap();
    assert!(outcome.is_ok(), "{:?}", outcome.err().map(|e| e.kind()));
    assert_eq!(gate.sent.load(Ordering::SeqCst), 2);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_service_not_ready_after_the_wait_is_refused_at_max_wait_and_the_permit_comes_back() {
    let gate = Gate::default();
    gate.closed.store(true, Ordering::SeqCst);
    let (svc, handle) = limited(&gate, Duration::from_millis(100));
    let (release, held) = oneshot::channel();
    let holder = tokio::spawn(svc.clone().oneshot(http::Request::new(held)));
    tokio::task::yield_now().await;
    let (_answer, body) = oneshot::channel();
    let queued = tokio::spawn(svc.clone().oneshot(http::Request::new(body)));
    tokio::task::yield_now().await;
    assert_eq!(handle.waiting(), 1);
    gate.pending.store(true, Ordering::SeqCst);
    let _ = release.send(());
    holder.await.unwrap().unwrap();
    let start = tokio::time::Instant::now();
    let err = queued.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), Kind::ConcurrencyLimited);
    assert!(
        start.elapsed() <= Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        gate.sent.load(Ordering::SeqCst),
        1,
        "the waiter was never sent"
    );
    assert_eq!(handle.in_flight(), 0, "the permit came back");
    assert_eq!(handle.rejected(), 1);
}
