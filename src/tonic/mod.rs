//! `meshless::tonic::Channel`: meshless's layers for tonic's generated clients (feature
//! `tonic`).
//!
//! ```
//! use meshless::tonic::Channel;
//! use std::time::Duration;
//! use tonic::transport::Endpoint;
//!
//! # tokio_test::block_on(async {
//! let channel = Channel::builder()
//!     .endpoints(["http://10.0.0.1:50051", "http://10.0.0.2:50051"].map(Endpoint::from_static))
//!     .deadline(Duration::from_secs(2))
//!     .idempotent_method("/helloworld.Greeter/SayHello")
//!     .build()?;
//! // Wherever a generated client takes a channel: `GreeterClient::new(channel)`.
//! let client = tonic::client::Grpc::new(channel);
//! # Ok::<(), meshless::ConfigError>(())
//! # });
//! ```
//!
//! Each endpoint is a `tonic::transport::Channel` of its own, connected lazily with the
//! settings of the [`Endpoint`](::tonic::transport::Endpoint) it came from (TLS, keepalive,
//! connect timeout), so one failing endpoint is seen, avoided and ejected rather than hidden
//! inside tonic's balancer. The layers, outermost first, as in [`crate::http::Client`]:
//!
//! ```text
//! Deadline (the channel's, or the call's own grpc-timeout when shorter)
//!   → Limit → Breaker → Throttle
//!   → Retry (budget; a call that never reached a server always, others only for methods
//!            declared idempotent)
//!   → Hedge (off by default; idempotent methods only)
//!   → AttemptTimeout (rewrites grpc-timeout for each attempt)
//!   → Balance (P2C over peak-EWMA, outlier ejection) → one tonic Channel per endpoint
//! ```
//!
//! A status the server sends is classified where it arrives: in the head of a trailers-only
//! answer (retried, when the method allows it) or in the trailers after a streamed body
//! (charged to its endpoint; too late to retry). Failures of meshless's own reach the caller
//! as a [`Status`](::tonic::Status) with a fitting code; see [`ResponseFuture`].
//!
//! Not yet: per-method deadlines or retry policies (the gRPC service config), DNS or other
//! discovery of endpoints (use [`Channel::insert`] and [`Channel::remove`]), breaking a
//! circuit on statuses that arrive in trailers (the breaker judges the head), and retrying or
//! hedging calls whose request streams outgrow the replay buffer.

mod builder;
mod channel;

pub use self::builder::ChannelBuilder;
pub use self::channel::{Channel, ResponseBody, ResponseFuture};
