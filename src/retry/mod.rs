//! Retries under a budget, with backoff, pushback, idempotency rules and body replay.
//!
//! [`Retry`] sends a request again when an attempt fails in a way the [classifier](crate::classify)
//! calls retryable, and only when every rule agrees:
//!
//! - the request may be repeated: GET, HEAD, OPTIONS, PUT, DELETE and TRACE always; POST and PATCH
//!   only when the failure shows the server did not act (a refused connection or stream, 429,
//!   503, gRPC UNAVAILABLE), unless the caller marked them idempotent ([`Idempotency`]);
//! - the request has retries left ([`RetryLayer::max_retries`], default 2);
//! - the [budget](crate::budget::Budget) has a token: retries never add more than its ratio of load;
//! - the server's pushback allows it: never earlier than `Retry-After` or
//!   `grpc-retry-pushback-ms`, never when it asks for no retry or longer than the deadline.
//!   Behind a balancer that keeps pushback per endpoint ([`RetryLayer::pushback_per_endpoint`],
//!   as the clients set it), the wait is the balancer's: the endpoint that asked gets no
//!   request for that long, but for one probe a second after the first second of a longer
//!   quiet (see [`balance`](crate::balance)), and another endpoint may take the retry at once;
//! - the request's deadline leaves time for the backoff and another attempt;
//! - the body could be kept for replay (up to 64 KiB in 1024 frames by default; larger bodies
//!   are sent once);
//! - the caller of the request being served does not retry it itself: one retry layer per call
//!   chain (see below).
//!
//! # One retry layer per call chain
//!
//! When service A retries B and B retries C, one failure at C becomes several attempts there.
//! Every attempt of a request that may be retried carries its number to the upstream
//! (`x-meshless-attempt: N`, from 1; on gRPC retries also `grpc-previous-rpc-attempts: N − 1`),
//! and a service whose caller retries makes no retries of its own but the transparent ones of
//! attempts that never left: wrap the server in [`CallerRetriesLayer`], and its handlers'
//! meshless clients defer to the caller ([`CallerRetries`]; on by default,
//! [`RetryLayer::defer_to_caller`]). A retry left to the caller is counted as
//! `caller_retries` in `meshless_retries_refused_total` and [`RetryStats::caller_retries`].
//!
//! A request is counted (in [`RetryStats`] and the metrics) when its outcome is known: a success
//! head whose body is still to come, when that body ends ([`ResponseBody`]).
//!
//! Every request deposits into the budget; every retry withdraws. The request type never needs
//! `Clone`: the head is copied and the body replayed from a [`ReplayBody`].
//!
//! ```
//! use meshless::{budget::Budget, retry::RetryLayer};
//! use tower::{ServiceBuilder, service_fn};
//!
//! let retry = RetryLayer::new(Budget::default()).max_retries(3);
//! let svc = ServiceBuilder::new().layer(retry).service(service_fn(
//!     |_req: http::Request<meshless::retry::ReplayBody<String>>| async {
//!         Ok::<_, std::io::Error>(http::Response::new(()))
//!     },
//! ));
//! ```

mod config;
mod decide;
mod future;
mod head;
pub(crate) mod hops;
mod layer;
mod policy;
mod settle;
// The replay body lives in the floor (hedging needs it too); `super::replay` still names it.
use crate::primitives::replay;
mod state;
mod telemetry;
pub(crate) mod trace;

pub use self::config::RetryConfig;
pub use self::future::ResponseFuture;
pub use self::hops::{
    ATTEMPT_HEADER, CallerRetries, CallerRetriesLayer, CallerRetriesService, GRPC_PREVIOUS_ATTEMPTS,
};
pub use self::layer::{DEFAULT_MAX_PUSHBACK, DEFAULT_MAX_RETRIES, Retry, RetryLayer};
pub use self::policy::{Idempotency, Idempotent, RetryStats};
pub use self::replay::{DEFAULT_REPLAY_CAP, DEFAULT_REPLAY_FRAMES, ReplayBody, ReplayError};
pub use self::settle::ResponseBody;
