//! Deadlines: a total time budget for the logical request, and a timeout per attempt.
//!
//! [`Deadline`] (outermost) gives the whole request — every attempt and every backoff — one
//! deadline, and records it in the request's extensions as a [`RequestDeadline`]. Layers inside
//! read it: the retry layer does not start a backoff or an attempt that cannot finish in time,
//! and [`AttemptTimeout`] bounds each attempt by `min(per-attempt timeout, time remaining)`.
//! gRPC requests carry the time remaining to the server as `grpc-timeout`; HTTP requests can
//! opt in to a header of their own. Neither is ever longer than the caller's own.
//!
//! The deadline runs to the last byte of the response: [`DeadlineLayer`] wraps the body in a
//! [`DeadlineBody`], which also enforces an optional idle timeout between frames. Responses
//! marked [`Streaming`] (or of a streaming content type such as `text/event-stream`) are bounded
//! by the idle timeout only once their head has arrived; unset, a stream's idle timeout is the
//! length of the request's deadline, so that every body ends.
//!
//! When one of these timers fires, the endpoint serving the request is charged with a timeout.
//! When the caller gives up first (drops the future or the body), nothing is charged: that is a
//! cancellation, counted apart.
//!
//! ```
//! use meshless::deadline::{AttemptTimeoutLayer, DeadlineLayer};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, service_fn};
//!
//! let svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(2)))
//!     .layer(AttemptTimeoutLayer::new(Duration::from_millis(500)))
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::io::Error>(http::Response::new(()))
//!     }));
//! ```

mod attempt;
mod body;
mod config;
pub(crate) mod expiry;
pub(crate) mod grpc_timeout;
mod held;
mod overrun;
mod streaming;
pub(crate) mod timer;
mod total;

pub(crate) use self::attempt::SentOnce;
pub use self::attempt::{AttemptTimeout, AttemptTimeoutLayer};
pub use self::body::DeadlineBody;
pub use self::config::{AttemptTimeoutConfig, DeadlineConfig};
pub(crate) use self::held::{LimitHeader, lower_limits};
pub use self::streaming::Streaming;
pub(crate) use self::streaming::StreamingRule;
pub use self::total::{Deadline, DeadlineLayer};

use std::time::Duration;
use tokio::time::Instant;

/// A future used by the deadline layers.
pub mod future {
    pub use super::attempt::AttemptFuture;
    pub use super::total::DeadlineFuture;
}

/// The instant by which the logical request must complete, stored in the request's extensions.
///
/// [`Deadline`] inserts it; any layer or service inside can read it. A request that already
/// carries one (set by the application, or by a server layer from an inbound request) keeps
/// the earlier of the two.
///
/// ```
/// use meshless::deadline::RequestDeadline;
/// use std::time::Duration;
///
/// # tokio_test::block_on(async {
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(RequestDeadline::after(Duration::from_secs(1)));
/// let d = req.extensions().get::<RequestDeadline>().unwrap();
/// assert!(d.remaining() <= Duration::from_secs(1));
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestDeadline(pub Instant);

impl RequestDeadline {
    /// A deadline `timeout` from now.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let d = meshless::deadline::RequestDeadline::after(std::time::Duration::from_secs(1));
    /// # });
    /// ```
    pub fn after(timeout: Duration) -> Self {
        RequestDeadline(instant_after(Instant::now(), timeout))
    }

    /// The time left, zero once passed.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use meshless::deadline::RequestDeadline;
    /// use std::time::Duration;
    /// assert_eq!(RequestDeadline::after(Duration::ZERO).remaining(), Duration::ZERO);
    /// # });
    /// ```
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// Stands in for "no deadline" where an instant is needed; far enough never to matter.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + timeout`, where a timeout too long for the clock (`Duration::MAX`) means "never".
#[inline]
pub(crate) fn instant_after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// The limit the caller put in its own request headers, as an instant, recorded by
/// [`Deadline`] so that every attempt sends at most what is left of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallerDeadline(pub(crate) Instant);

/// Set by [`Deadline`] on a request whose deadline is its caller's (an inbound limit or an
/// earlier [`RequestDeadline`]), shorter than the layer's own: when it passes, the caller ran
/// out of patience, which says less about the upstream than this client's own limit would.
/// The breaker then counts such a timeout as it counts a cancellation: not at all.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadlineFromCaller;

/// Set by [`AttemptTimeout`] on an attempt whose end is its caller's own deadline (see
/// [`DeadlineFromCaller`]): a transport below with a timer of its own for the limit it is
/// told (tonic's `grpc-timeout`) reports that timer as the caller's deadline, not as the
/// endpoint's failure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptEndsAtCallersDeadline;

/// The source of a [`Kind::DeadlineExceeded`](crate::error::Kind::DeadlineExceeded) error when
/// the deadline that passed was the caller's own (see [`DeadlineFromCaller`]).
#[derive(Debug)]
pub(crate) struct CallersDeadlinePassed;

impl std::fmt::Display for CallersDeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the caller's own deadline passed")
    }
}

impl std::error::Error for CallersDeadlinePassed {}

/// The error of a `kind` timer that fired: marked when the deadline was the caller's.
pub(crate) fn expired(kind: crate::error::Kind, callers: bool) -> crate::Error {
    if callers && kind == crate::error::Kind::DeadlineExceeded {
        crate::Error::with_source(kind, CallersDeadlinePassed)
    } else {
        crate::Error::new(kind)
    }
}

/// A header that carries the time remaining, in whole milliseconds, on HTTP requests.
///
/// Off by default for HTTP; enable it with [`AttemptTimeoutLayer::deadline_header`] on the
/// client and [`DeadlineLayer::honor_inbound`] on a service that should respect its callers'.
///
/// ```
/// assert_eq!(meshless::deadline::DEADLINE_HEADER, "x-meshless-timeout-ms");
/// ```
pub const DEADLINE_HEADER: &str = "x-meshless-timeout-ms";
