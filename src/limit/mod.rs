//! Concurrency limits: a fixed limit, and adaptive limits that find themselves.
//!
//! [`LimitLayer`] admits a request only while fewer than the limit are in flight. Over the
//! limit, a request is refused at once with [`Kind::ConcurrencyLimited`](crate::error::Kind)
//! (nothing sent), or waits its turn for at most [`LimitLayer::max_wait`], never past its
//! deadline. An adaptive limit that is still learning (the gradient's slow start, until a run
//! of successes comes late; AIMD before its first drop) is a guess that grows as fast as it is
//! used, not a finding: a request over it waits its turn (up to its deadline, at most a second
//! without one) instead of being refused, and the requests still waiting when it has learnt
//! are refused. A refusal spends the task's cooperative budget, so that a caller looping on
//! refusals still lets the requests in flight on its thread finish. A request holds its permit
//! until its response body ends; a caller that drops the future or the body gives the permit
//! back at once.
//!
//! The limit is fixed ([`LimitLayer::fixed`]) or adaptive:
//!
//! - **gradient** ([`LimitLayer::adaptive`], the default): each window, the median round trip
//!   of successful requests is compared with a long-term baseline. When requests queue at the
//!   upstream, latency grows with concurrency, the median moves away from the baseline and
//!   the limit falls; while it does not, the limit grows by about √limit per window. A window
//!   that used less than half the limit changes nothing (it says nothing about the limit), and
//!   its latency, being the upstream's own, moves the baseline quickly: a slower upstream that
//!   is not saturated is not mistaken for a queue. It starts at `initial` in **slow start**,
//!   as TCP's: while no queueing has been seen, each success that found the limit more than
//!   half used adds one, so a limit in demand doubles every round trip (up to `max`), and the
//!   baseline is the lowest window median seen. Two busy windows in a row slower than
//!   `tolerance` × the baseline (or a drop) end slow start at half the limit reached; the
//!   baseline, learnt at a concurrency where a saturated upstream may already queue, is then
//!   measured again during one window at the minimum limit, and again (every 60 s ± 15%) only
//!   while the limit is cutting, so that a client started against a saturated upstream does
//!   not take its queue
//!   for its speed. After Netflix's Gradient2 and Envoy's adaptive concurrency filter. At
//!   equilibrium above the upstream's capacity `C` (in concurrent requests), the limit settles
//!   near `tolerance × C + √limit`: latency about 1.25–1.5 times the uncongested one.
//! - **AIMD** ([`LimitLayer::aimd`]): +1 per success while at least half the limit is in use,
//!   × 0.9 per drop (a timeout, a 503 or 429 from the upstream, or a success slower than 5 s).
//!
//! Round trips run from admission to the response head: the head is when the upstream has
//! done its work and left its queue, and a body's length (a download, a stream) says nothing of
//! queueing. That is one clock read at admission and one at the head, and none for the fixed
//! limit, whose hot path is one compare-and-swap to take a permit and one subtraction to give
//! it back (no lock, no allocation). A waiter queue (a mutex and one small allocation per
//! waiter) is used only when waiting is allowed and the limit is full. Requests their caller cancels, and requests refused by layers inside (breaker,
//! throttling: [`Kind::is_shed`](crate::error::Kind::is_shed)), give no sample.
//!
//! ```
//! use meshless::deadline::DeadlineLayer;
//! use meshless::limit::LimitLayer;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, service_fn};
//!
//! let limit = LimitLayer::adaptive().service_name("users");
//! let handle = limit.handle();
//! let svc = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(2)))
//!     .layer(limit)
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::io::Error>(http::Response::new(()))
//!     }));
//! assert_eq!(handle.limit(), 20);
//! ```

mod adaptive;
mod config;
mod future;
mod layer;
mod state;
mod telemetry;

pub use self::config::{AimdConfig, Algorithm, GradientConfig, LimitConfig};
pub use self::future::{ResponseBody, ResponseFuture};
pub use self::layer::{Limit, LimitHandle, LimitLayer};
