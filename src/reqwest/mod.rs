//! meshless's layers around your `reqwest::Client` (feature `reqwest`).
//!
//! Keep the `reqwest::Client` you built (TLS, proxies, cookies, default headers, pool) and
//! gain what [`crate::http::Client`] gives a hyper-util client: a deadline that covers the
//! response body, retries under a budget with body replay, P2C balancing over several
//! endpoints (base URLs), outlier ejection, the circuit breaker, and hedging of idempotent
//! requests. The layers, outermost first:
//!
//! ```text
//! Deadline → Limit → Breaker → Throttle → Retry → Hedge → AttemptTimeout → Balance
//!          → Endpoint (your reqwest::Client, aimed at one base URL)
//! ```
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! let http = reqwest::Client::builder()
//!     .retry(reqwest::retry::never()) // one retry layer: meshless's
//!     .build()?;
//! let client = meshless::reqwest::Client::builder(http.clone())
//!     .endpoints(["http://10.0.0.1:8080", "http://10.0.0.2:8080"])
//!     .deadline(Duration::from_secs(2))
//!     .build()?;
//! let res = client.send(http.get("http://quotes/v1/quote?ccy=EUR")).await?;
//! println!("{}: {}", res.status(), res.text().await?);
//! # Ok(()) }
//! ```
//!
//! # What is retried
//!
//! reqwest's errors keep their meaning: a connect error (`is_connect()`: refused, DNS, TLS
//! handshake, connect timeout) reached no server, so any request is sent again, a POST too;
//! a reset or early close after the request left is retried only for idempotent requests;
//! reqwest's own `timeout` ends one attempt ([`Kind::AttemptTimedOut`](crate::error::Kind)).
//! Responses are classified as by the http client (503, 429 and `Retry-After`, gRPC status).
//! See [`Endpoint`].
//!
//! # One retry layer
//!
//! reqwest 0.12.23 and later retry too. Their default retries only HTTP/2 refusals that
//! nothing reached (harmless), but a policy of yours (`reqwest::retry::for_host(…)`) would
//! repeat each of meshless's attempts: build the client with
//! `.retry(reqwest::retry::never())`. reqwest's `timeout` bounds each attempt, not the
//! request: prefer [`ClientBuilder::deadline`] and [`ClientBuilder::attempt_timeout`].
//! Redirects are followed inside one attempt, as reqwest's policy says. The answer at the end
//! of redirects is the target's: it proves nothing about the request as first sent (a POST
//! answered `303` was acted on), so a `429` or a `Retry-After` from a redirect's target lets
//! only idempotent requests be retried, and quiets no endpoint. Every request body reaches
//! reqwest as a stream, which reqwest does not send twice: a `307` or `308` to a request with
//! a body comes back to the caller instead of being followed.
//!
//! The reqwest client owns its connections: the `http` client's detection of keep-alive
//! connections the server had closed ([`Reason::StaleConnection`](crate::classify::Reason))
//! does not apply, and such a failure is an endpoint's failure, retried from the budget.
//!
//! # Where requests go
//!
//! The endpoint chosen for an attempt replaces the URL's scheme and authority; the path and
//! query stay. So `Host` names the endpoint. For `https` to several addresses of one
//! certificate name, give each endpoint a client built with `resolve`
//! ([`ClientBuilder::endpoint_with_client`]). An `https` request is never sent to an `http`
//! endpoint.

mod builder;
mod client;
mod endpoint;

pub use self::builder::ClientBuilder;
pub use self::client::{Client, ExecuteFuture, ResponseBody, ResponseFuture};
pub use self::endpoint::{Endpoint, EndpointFuture};
