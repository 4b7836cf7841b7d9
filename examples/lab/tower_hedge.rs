//! tower's own hedging: `tower::hedge::Hedge` around loadgen's tower client (`--mode tower`:
//! deadline, retries under a budget, attempt timeout, p2c over peak EWMA), set up the way its
//! documentation describes the knobs: a latency percentile, a minimum number of data points,
//! and the period of its rotating histogram.
//!
//! - Percentile p95 and 100 data points at least: the same as meshless' defaults (Finagle's
//!   and "The Tail at Scale"'s p95), so that the two differ in how, not in what they aim at.
//! - Period 500 ms: tower takes the percentile from the previous full period, and does not
//!   hedge at all during the first one; 500 ms holds about 500 answers at the lab's 1000
//!   requests per second, five times the minimum.
//! - Only requests safe to repeat (the idempotent methods, as the retry policy of loadgen's
//!   tower mode) get a hedge; tower hedges at most once per request, and has no budget nor
//!   extra-load cap of its own: every request slower than the percentile gets its hedge.
//! - The hedge wraps the whole tower client, so each hedge is a logical request of its own to
//!   the client inside (its own retries and attempt timeout); an outer timeout keeps the
//!   request to the lab's deadline. `Hedge` is not `Clone`: the requests share it behind a
//!   lock held only to start the call, as loadgen's tower mode shares its balancer.

use super::cli::Args;
use super::common::{EndpointReport, Outcome, Spec};
use super::tower_mode::Tower;
use http::Method;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::hedge::{Hedge, Policy};
use tower::{Service, ServiceExt};

/// tower's hedge settings: percentile, minimum data points, histogram period.
pub const PERCENTILE: f32 = 0.95;
pub const MIN_DATA_POINTS: u64 = 100;
pub const PERIOD: Duration = Duration::from_millis(500);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One call into the tower client: the request, and whether it is the hedge.
struct Call {
    spec: Arc<Spec>,
    hedge: bool,
}

/// Hedges sent, and requests a hedge answered.
#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    won: AtomicU64,
}

/// The tower client as the service that `Hedge` calls: once for the request, once more for
/// its hedge.
#[derive(Clone)]
struct Inner {
    tower: Arc<Tower>,
    counts: Arc<Counts>,
}

impl Service<Call> for Inner {
    type Response = (Outcome, bool);
    type Error = Infallible;
    type Future = BoxFuture<Result<(Outcome, bool), Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        // `Hedge` calls for the hedge only once its delay has passed and the first call has
        // not answered yet: this is a hedge sent.
        if call.hedge {
            self.counts.sent.fetch_add(1, Ordering::Relaxed);
        }
        let tower = self.tower.clone();
        Box::pin(async move { Ok((tower.send(&call.spec).await, call.hedge)) })
    }
}

/// Hedges the requests safe to repeat.
#[derive(Clone, Copy)]
struct Idempotent;

impl Policy<Call> for Idempotent {
    fn clone_request(&self, call: &Call) -> Option<Call> {
        let safe = matches!(
            call.spec.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        safe.then(|| Call {
            spec: call.spec.clone(),
            hedge: true,
        })
    }

    fn can_retry(&self, _call: &Call) -> bool {
        true
    }
}

pub struct TowerHedge {
    tower: Arc<Tower>,
    hedge: tokio::sync::Mutex<Hedge<Inner, Idempotent>>,
    counts: Arc<Counts>,
}

impl TowerHedge {
    pub fn new(addrs: &[SocketAddr], args: &Args) -> Self {
        let tower = Arc::new(Tower::new(addrs, args));
        let counts = Arc::new(Counts::default());
        let inner = Inner {
            tower: tower.clone(),
            counts: counts.clone(),
        };
        let hedge = Hedge::new::<Call>(inner, Idempotent, MIN_DATA_POINTS, PERCENTILE, PERIOD);
        TowerHedge {
            tower,
            hedge: tokio::sync::Mutex::new(hedge),
            counts,
        }
    }

    pub async fn send(&self, spec: &Spec) -> Outcome {
        let call = Call {
            spec: Arc::new(spec.clone()),
            hedge: false,
        };
        let answer = tokio::time::timeout(spec.timeout, async {
            let future = {
                let mut hedge = self.hedge.lock().await;
                match hedge.ready().await {
                    Ok(hedge) => hedge.call(call),
                    // Nothing inside fails to get ready; should it, the request has no answer.
                    Err(_) => return Outcome::Failed("other"),
                }
            };
            match future.await {
                Ok((outcome, hedge)) => {
                    if hedge {
                        self.counts.won.fetch_add(1, Ordering::Relaxed);
                    }
                    outcome
                }
                Err(_) => Outcome::Failed("other"),
            }
        })
        .await;
        answer.unwrap_or(Outcome::Failed("timeout"))
    }

    /// Attempts, as loadgen's tower client counts them (hedges included: each is a request to
    /// it).
    pub fn attempts(&self) -> u64 {
        self.tower.attempts()
    }

    pub fn endpoints(&self) -> Vec<EndpointReport> {
        self.tower.endpoints()
    }

    /// Hedges sent, and requests a hedge answered.
    pub fn hedges(&self) -> (u64, u64) {
        (
            self.counts.sent.load(Ordering::Relaxed),
            self.counts.won.load(Ordering::Relaxed),
        )
    }
}
