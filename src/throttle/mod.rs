//! Client-side adaptive throttling (Google SRE book, "Handling Overload"): when the upstream
//! refuses more and more requests for overload, the client refuses some of them itself, before
//! they cost the upstream anything.
//!
//! Over a sliding window (default 2 minutes) the throttle counts the `requests` the caller made
//! and the `accepts` the upstream gave, and refuses a request with probability
//!
//! ```text
//! p = max(0, (requests − in_flight − K·accepts) / (requests + 1))   capped at max_probability
//! ```
//!
//! where `in_flight` are the requests sent whose answer has not arrived (the SRE book's
//! formula, with the requests of unknown outcome left out of the numerator: see below).
//!
//! so that the client sends about K times (default 2) what the upstream accepts. The cap
//! (default 0.8, Envoy admission control's) keeps some traffic flowing, so recovery shows.
//! A refusal is [`Kind::Throttled`](crate::error::Kind::Throttled) from
//! [`Layer::Throttle`](crate::error::Layer::Throttle): nothing was sent.
//!
//! # What is counted, and when
//!
//! - **A request is counted when it is made**, at admission, before the answer: a count taken
//!   when requests finish (go-zero#5011) lags the load by the latency. Requests the throttle
//!   itself refuses are counted too, as the SRE book counts them: that is what keeps the
//!   client at K times the accepts. The window must be far longer than the worst latency.
//! - **A request in flight is neither accepted nor refused** until its answer arrives: it is in
//!   `requests` (the denominator) but left out of the numerator. Without this, `n` requests
//!   sent at once before any answer (a burst at start, or after an idle window) would give the
//!   `n`-th a probability `n / (n + 1)` of refusal from an upstream that accepts everything.
//!   An upstream that refuses everything still drives `p` to the formula's value, and to the
//!   cap, as its refusals arrive. The cost: a hung upstream shows only when its requests end
//!   (their deadline or attempt timeout); a slow-call rate is the breaker's to watch.
//! - **An accept is counted when the answer arrives**, in a bucket no older than its request's,
//!   so an accept never leaves the window before its request.
//! - **Accepted** means the upstream answered without refusing for overload. The rule reads the
//!   shared classification (a [`Classified`](crate::classify::Classified) verdict on a failed
//!   response, else the layer's [`Classify`](crate::classify::Classify)):
//!
//! | outcome | accepted |
//! |---|---|
//! | a success, and any answer of the application: 404, 500 for a bad input, gRPC `INVALID_ARGUMENT`… | yes |
//! | HTTP 429, 503, 504; gRPC `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, `DEADLINE_EXCEEDED` | no |
//! | an error: connection refused or failed, reset, timeout, no ready endpoint | no |
//! | a refusal by a layer below ([`Kind::is_shed`](crate::error::Kind::is_shed)) | neither: the request is taken back, nothing was sent |
//! | cancelled by the caller (the future dropped before the answer), or not sent for the caller's fault ([`Kind::InvalidRequest`](crate::error::Kind::InvalidRequest): its body failed) | neither: the request is taken back |
//!
//! A cancelled request's outcome is unknown: counting it as accepted would hide an overload
//! whose callers give up, counting it as refused would throttle callers that merely lost
//! interest; taking it out of the requests leaves the ratio as the known outcomes give it.
//!
//! # Where it goes, and what it costs
//!
//! Outside the retry layer, like the breaker, so that a refused request spends no retry
//! budget and a request's retries count once. Off by default in
//! [`http::Client`](crate::http::Client) (the breaker handles outages); a disabled layer costs a
//! branch per request. Enabled, a request costs one clock read, a few atomics on the two
//! ledgers and, only while `p > 0`, one random draw (an atomic add).
//!
//! ```
//! use meshless::throttle::ThrottleLayer;
//! use tower::{ServiceBuilder, service_fn};
//!
//! let throttle = ThrottleLayer::new().service_name("payments");
//! let handle = throttle.handle();
//! let svc = ServiceBuilder::new().layer(throttle).service(service_fn(|_: http::Request<()>| async {
//!     Ok::<_, std::io::Error>(http::Response::new(()))
//! }));
//! assert_eq!(handle.probability(), 0.0);
//! ```

mod config;
mod future;
mod layer;
mod state;
mod telemetry;

pub use self::config::{DEFAULT_K, DEFAULT_MAX_PROBABILITY, DEFAULT_WINDOW, ThrottleConfig};
pub use self::future::ResponseFuture;
pub use self::layer::{Throttle, ThrottleHandle, ThrottleLayer};
pub use self::state::ThrottleCounts;

#[cfg(test)]
mod tests;
