//! The service-level circuit breaker: stop sending to an upstream that is failing as a whole,
//! probe it, and bring traffic back gradually.
//!
//! Per-endpoint [ejection](crate::outlier) cannot help when every endpoint is sick. The
//! breaker watches the outcome of each request (the one its retries ended with, taken at the
//! response head: see below) and, when the upstream fails as a whole,
//! refuses requests at once with [`Kind::CircuitOpen`](crate::error::Kind::CircuitOpen)
//! instead of sending them:
//!
//! ```text
//!  closed ──trip──▶ open ──break over──▶ half-open: N probes ──N successes──▶ ramp ──▶ closed
//!    ▲                ▲                        │ a probe fails                 │ trip
//!    │                └────────────────────────┴───────────────────────────────┘
//!    └── reset()            isolate() ──▶ isolated (open until reset())
//! ```
//!
//! - **trips**: the failure rate over a sliding time window reaches its threshold with at
//!   least a minimum of calls in the window; or the slow-call rate does (calls slower than a
//!   threshold, off by default); or N failures come in a row (off by default);
//! - **open**: every request is refused until the break ends; each trip that follows the last
//!   close by less than one window lengthens the break (the doubling ladder, jittered);
//! - **half-open**: a few probes at once (never a stampede), the rest refused; one failed probe
//!   reopens with the next, longer break; enough successes start the ramp;
//! - **ramp**: the admitted share of traffic rises linearly from a small share to 100%, then
//!   the circuit is closed. Refusals during the ramp say `HalfOpen` and
//!   [`ramping`](Rejected::ramping);
//! - **shadow mode** computes and reports everything but never refuses.
//!
//! # What counts
//!
//! The verdict is the shared [classifier](crate::classify)'s: a response carrying
//! [`Classified`](crate::classify::Classified) (the balancer attaches it to failures, the
//! retry layer passes it up) is taken as it is; any other response and any
//! [`Kind::Service`](crate::error::Kind::Service) error is classified with the layer's
//! classifier. The retry layer's refusals (budget or retries exhausted, body too large,
//! pushback), timeouts and the balancer's failing fast count as failures of the upstream. The
//! client's own load shedding ([`Kind::is_shed`](crate::error::Kind::is_shed)), invalid
//! requests, `https` refused without TLS and a request refused because every endpoint is
//! pushing back (the balancer already keeps the servers' word) count nothing. A request whose
//! caller dropped it counts nothing (a probe's slot is freed), even past its deadline; one
//! that meshless's own deadline timer dropped is a timeout, a failure. A deadline that is the caller's rather than the client's own (an
//! inbound `grpc-timeout` or an earlier `RequestDeadline` shorter than the
//! [`DeadlineLayer`](crate::deadline::DeadlineLayer)'s) counts nothing when it passes, like a
//! cancellation: one impatient caller must not open the circuit for every other.
//!
//! The outcome is taken at the response head: a failure raised later by the body (a reset
//! mid-stream, gRPC status in trailers) is not seen by the breaker. A gRPC response whose
//! status is only known from its trailers counts as a success (its server answered).
//!
//! # Per route
//!
//! [`BreakerLayer::per_route`] gives each route a user function names a breaker of its own (up
//! to [`BreakerConfig::max_routes`]); requests of further routes share the client-wide one.
//!
//! # Cost
//!
//! A closed breaker admits a request with one atomic load; at the response head it reads the
//! clock once (the window's bucket) and counts the outcome with one compare-and-swap on that
//! bucket. No lock, no allocation (`tests/breaker/hot_path.rs` counts them). A failure also
//! reads the ten buckets to compare the rate with its threshold; timing slow calls adds a
//! clock read when the request starts. Per-route breakers add the route function and a read
//! lock on the route map.
//!
//! It belongs *outside* the retry layer: an open circuit then spends no retry budget, and the
//! breaker sees outcomes after retries, which is what its defaults
//! ([`BreakerConfig`]) are chosen for.
//!
//! ```
//! use meshless::breaker::{BreakerLayer, BreakerState};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio_test::block_on(async {
//! let layer = BreakerLayer::new().service_name("payments");
//! let handle = layer.handle();
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_: http::Request<()>| async {
//!     Ok::<_, std::io::Error>(http::Response::new(()))
//! }));
//! svc.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(handle.state(), BreakerState::Closed);
//! # });
//! ```

mod config;
mod future;
mod layer;
mod machine;
mod route;
mod telemetry;

pub use self::config::{BreakerConfig, MAX_HALF_OPEN_PROBES};
pub use self::future::ResponseFuture;
pub use self::layer::{Breaker, BreakerHandle, BreakerLayer};

use std::fmt;
use tokio::time::Instant;

/// The state of a circuit breaker.
///
/// ```
/// use meshless::breaker::BreakerState;
/// assert_eq!(BreakerState::HalfOpen.as_str(), "half-open");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Every request goes through; outcomes are counted.
    Closed,
    /// Every request is refused until the break ends.
    Open,
    /// A few probes go through, or (once they succeeded) a share of traffic that rises to all.
    HalfOpen,
    /// Opened by hand ([`BreakerHandle::isolate`]): every request is refused until
    /// [`BreakerHandle::reset`].
    Isolated,
}

impl BreakerState {
    /// Every state, in the order of the metrics' handles.
    pub(crate) const ALL: [BreakerState; 4] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
        BreakerState::Isolated,
    ];

    /// The `state` label: `closed`, `open`, `half-open` or `isolated`.
    ///
    /// ```
    /// assert_eq!(meshless::breaker::BreakerState::Open.as_str(), "open");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
            BreakerState::Isolated => "isolated",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
            BreakerState::Isolated => 3,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the circuit last opened.
///
/// ```
/// use meshless::breaker::TripReason;
/// assert_eq!(TripReason::FailureRate.as_str(), "failure_rate");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TripReason {
    /// The failure rate over the window reached its threshold.
    FailureRate,
    /// The slow-call rate over the window reached its threshold.
    SlowCallRate,
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// A half-open probe failed.
    ProbeFailed,
    /// The half-open probes did not all answer within the probe timeout.
    ProbeTimedOut,
    /// Opened by hand ([`BreakerHandle::isolate`]).
    Isolated,
}

impl TripReason {
    const ALL: [TripReason; 6] = [
        TripReason::FailureRate,
        TripReason::SlowCallRate,
        TripReason::ConsecutiveFailures,
        TripReason::ProbeFailed,
        TripReason::ProbeTimedOut,
        TripReason::Isolated,
    ];

    /// A short, stable name for logs.
    ///
    /// ```
    /// assert_eq!(meshless::breaker::TripReason::ProbeFailed.as_str(), "probe_failed");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            TripReason::FailureRate => "failure_rate",
            TripReason::SlowCallRate => "slow_call_rate",
            TripReason::ConsecutiveFailures => "consecutive_failures",
            TripReason::ProbeFailed => "probe_failed",
            TripReason::ProbeTimedOut => "probe_timed_out",
            TripReason::Isolated => "isolated",
        }
    }

    pub(crate) fn code(self) -> u64 {
        match self {
            TripReason::FailureRate => 0,
            TripReason::SlowCallRate => 1,
            TripReason::ConsecutiveFailures => 2,
            TripReason::ProbeFailed => 3,
            TripReason::ProbeTimedOut => 4,
            TripReason::Isolated => 5,
        }
    }

    pub(crate) fn from_code(code: u64) -> Self {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(TripReason::FailureRate)
    }
}

impl fmt::Display for TripReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TripReason::FailureRate => "the failure rate reached its threshold",
            TripReason::SlowCallRate => "the slow-call rate reached its threshold",
            TripReason::ConsecutiveFailures => "too many failures in a row",
            TripReason::ProbeFailed => "a half-open probe failed",
            TripReason::ProbeTimedOut => "the half-open probes timed out",
            TripReason::Isolated => "isolated by hand",
        })
    }
}

/// The source of a [`Kind::CircuitOpen`](crate::error::Kind::CircuitOpen) error: the breaker
/// refused the request, and nothing was sent. Says in which state, why the circuit opened, and
/// until when.
///
/// ```
/// use meshless::breaker::{BreakerLayer, BreakerState, Rejected};
/// use meshless::error::{Kind, Layer};
/// use std::error::Error as _;
/// use tower::{ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let layer = BreakerLayer::new();
/// layer.handle().isolate();
/// let svc = tower::Layer::layer(&layer, service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::io::Error>(http::Response::new(()))
/// }));
/// let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
/// assert_eq!((err.kind(), err.layer()), (Kind::CircuitOpen, Layer::Breaker));
/// let why = err.source().unwrap().downcast_ref::<Rejected>().unwrap();
/// assert_eq!(why.state, BreakerState::Isolated);
/// assert_eq!(why.until, None);
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejected {
    /// The state that refused the request: `Open`, `HalfOpen` (probes all out, or ramping) or
    /// `Isolated`.
    pub state: BreakerState,
    /// Why the circuit last opened.
    pub reason: TripReason,
    /// Refused by the ramp after the probes succeeded (state `HalfOpen`).
    pub ramping: bool,
    /// When the circuit lets requests through again: the end of the break (`Open`), the end
    /// of the ramp (ramping); `None` when it depends on probes in flight or on a reset.
    pub until: Option<Instant>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.ramping) {
            (BreakerState::HalfOpen, true) => f.write_str("circuit breaker ramping up")?,
            (BreakerState::HalfOpen, false) => {
                f.write_str("circuit breaker half-open, its probes all in flight")?
            }
            (state, _) => write!(f, "circuit breaker {state}")?,
        }
        write!(f, " ({})", self.reason)?;
        if let Some(until) = self.until {
            let left = until.saturating_duration_since(Instant::now());
            write!(f, "; admits again in {left:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// A snapshot of a breaker: its state, what its window holds, and its counters since it was
/// built.
///
/// ```
/// let stats = meshless::breaker::BreakerLayer::new().handle().stats();
/// assert_eq!(stats.calls, 0);
/// assert_eq!(stats.trips, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// The state now.
    pub state: BreakerState,
    /// Calls counted in the window (cleared at each transition).
    pub calls: u64,
    /// Of which failures.
    pub failures: u64,
    /// Of which slow calls.
    pub slow_calls: u64,
    /// Times the circuit opened (a failed probe reopening it included).
    pub trips: u64,
    /// Requests refused (nothing was sent).
    pub rejected: u64,
    /// Requests shadow mode would have refused, and sent.
    pub shadow_rejected: u64,
}

#[cfg(test)]
mod tests;
