//! Hedged requests: when a request that is safe to repeat has no answer after a delay, send
//! another attempt to another endpoint, and take the first good answer.
//!
//! Retries cannot cut the latency tail: they wait for a failure. A hedge does not wait: Dean
//! and Barroso ("The Tail at Scale", CACM 2013) cut Bigtable's p99.9 from 1,800 ms to 74 ms
//! with a backup request after 10 ms, for 2% more requests. [`Hedge`] sits between the
//! [retry layer](crate::retry) and the per-attempt timeout:
//!
//! - the delay is the p95 of how long recent first attempts waited (a 30 s sliding window,
//!   after 100 of them; raised to fit nine tenths of the extra-load cap), or fixed
//!   ([`HedgeDelay`]); a request sent before it is known is hedged once it is;
//! - only requests safe to repeat are hedged (the retry layer's [idempotency
//!   rules](crate::retry::Idempotency)), and only once their body is in the replay buffer;
//! - hedges draw on the retry [budget](crate::budget::Budget) (give both layers clones of one)
//!   and on an extra-load cap of their own (Finagle's `maxExtraLoad`, 5%, over a reserve of
//!   10/s);
//! - a hedge needs at least the delay left before the request's deadline;
//! - the first good answer wins; 502, 503, 504, failures the balancer classified as retryable
//!   and errors let the other attempts run on; the losers are dropped, which the balancer
//!   counts as cancelled, never as a failure of their endpoint (but what a first attempt
//!   waited before a hedge outran it raises its endpoint's latency estimate, so that a slow
//!   endpoint whose answers are all outrun does not look idle);
//! - each hedge goes to an endpoint the other attempts did not go to, when the
//!   [balancer](crate::balance::Balance) has a ready one ([`AvoidEndpoints`](crate::balance::AvoidEndpoints)).
//!
//! ```
//! use meshless::{budget::Budget, hedge::HedgeLayer, retry::{ReplayBody, RetryLayer}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio_test::block_on(async {
//! let budget = Budget::default();
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(budget.clone()))
//!     .layer(HedgeLayer::new(budget))
//!     .service(service_fn(|_req: http::Request<ReplayBody<String>>| async {
//!         Ok::<_, std::io::Error>(http::Response::new(String::from("hello")))
//!     }));
//! let res = svc.oneshot(http::Request::new(String::new())).await.unwrap();
//! assert_eq!(res.body().get_ref(), "hello");
//! # });
//! ```

mod config;
mod delay;
mod future;
mod head;
mod layer;
mod telemetry;

pub use self::config::{HedgeConfig, HedgeDelay, MAX_HEDGES};
pub use self::future::ResponseFuture;
pub use self::layer::{Hedge, HedgeLayer};
pub use self::telemetry::{HedgeStats, Refusal};
