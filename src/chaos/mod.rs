//! Fault injection for your own resilience tests: delays, error responses and aborts at given
//! rates, per route if you like, replayable from a seed.
//!
//! [`ChaosLayer`] wraps any `Service<http::Request<B>>` that answers `http::Response<RB>`. For
//! each request it draws, at the rates of its [`Faults`]:
//!
//! - a **delay** (`delay` plus a uniform share of `delay_jitter`), waited before the inner
//!   service's future is first polled;
//! - at most one of an **error response** (the configured status and headers, e.g. 503 with
//!   `retry-after`; for a gRPC request — `content-type: application/grpc…` — a trailers-only
//!   answer, HTTP 200 with the configured `grpc-status`, 14 `UNAVAILABLE` by default), a
//!   **reset** (an [`InjectedFault`] error whose source is an [`std::io::Error`] of kind
//!   `ConnectionReset`: classified exactly as a real reset, retried only for idempotent
//!   requests) or a **refusal** (`ConnectionRefused`: never sent, retried for any request).
//!   These requests never reach the inner service. Injected responses carry
//!   `x-meshless-chaos: error` ([`CHAOS_HEADER`]).
//!
//! The faults of a request are those of the first [`ChaosRule`] that matches its method and
//! path prefix, or the layer's default [`Faults`] when none does.
//!
//! # Determinism
//!
//! The draws come from a seeded hash of the seed and the request's position in call order:
//! the same seed and the same sequence of requests (as the rules see them) inject the same
//! faults, whatever their answers and timings. Every service a layer builds shares one
//! sequence, so with concurrent callers a request's faults depend on the order in which
//! `call` ran: to replay a run exactly, replay its calls in the same order (one task, or
//! requests issued one at a time). Requests whose faults are all off draw nothing and do not
//! shift the sequence. Without a seed the layer draws a random one
//! ([`ChaosLayer::seed_in_use`] tells which).
//!
//! # Where it goes
//!
//! - **Around a whole client** (`ChaosLayer::new()....layer(client)`, with
//!   [`http::Client`](crate::http::Client) or any other): your application sees the faults as
//!   the client's answers, after every retry. Use it to test what your code does when its
//!   dependency fails.
//! - **Below the retry layer**, around the transport or each endpoint (`RetryLayer` over
//!   `ChaosLayer` over the connection, or a [`Balance`](crate::balance::Balance) over `Chaos`
//!   endpoint services): the client's own layers see the faults as an upstream's, and
//!   retries, budgets, ejection and breakers act on them. Use it to test the client's
//!   settings. Endpoints wrapped by one layer share its faults and sequence (a flaky fleet);
//!   an endpoint wrapped by a layer of its own is one flaky endpoint, which the balancer
//!   learns to avoid.
//!
//! # The response body
//!
//! The layer answers `http::Response<`[`ChaosBody<RB>`]`>`: the inner body passed through, or
//! an empty one for an injected response. Wrapping rather than requiring `RB: Default` is what
//! lets the layer sit on hyper's `Incoming`, which no one outside hyper can build.
//!
//! # Cost
//!
//! Off (the default config, `enabled: false`, or every rate 0) a request costs one branch, and
//! the response a move into [`ChaosBody`]. On, a request costs the rule match (a method compare
//! and a prefix compare per rule tried), one atomic add and two or three hashes; an injected
//! delay allocates its timer, an injected error response its headers.
//!
//! ```
//! use meshless::chaos::{ChaosLayer, Faults};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio_test::block_on(async {
//! let chaos = ChaosLayer::new().seed(1).faults(Faults::none().reset(1.0));
//! let handle = chaos.handle();
//! let svc = ServiceBuilder::new().layer(chaos).service(service_fn(|_: http::Request<()>| async {
//!     Ok::<_, std::io::Error>(http::Response::new(()))
//! }));
//! let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
//! assert!(err.to_string().contains("service error"));
//! assert_eq!(handle.counts().resets, 1);
//! # });
//! ```

mod config;
mod future;
mod layer;
mod plan;
mod telemetry;

pub use self::config::{
    ChaosConfig, ChaosRule, DEFAULT_ERROR_STATUS, DEFAULT_GRPC_CODE, Faults, MAX_DELAY,
};
pub use self::future::{CHAOS_HEADER, ChaosBody, InjectedFault, ResponseFuture};
pub use self::layer::{Chaos, ChaosHandle, ChaosLayer};
pub use self::plan::{ChaosCounts, Fault};

#[cfg(test)]
mod tests;
