//! `meshless::http::Client`: the whole stack over hyper-util, in one line.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = meshless::http::Client::builder()
//!     .endpoints(["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"])
//!     .build()?;
//! let res = client.get("/v1/quote?ccy=EUR").await?;
//! # Ok(()) }
//! ```
//!
//! With no other configuration the client already retries safely (GETs and requests the server
//! never saw, under a 20% budget), balances by latency (P2C over peak-EWMA), ejects failing
//! endpoints, and bounds every request by a deadline. The layers, outermost first:
//!
//! ```text
//! Deadline → Retry (budget, backoff, replay) → AttemptTimeout → Balance (P2C, outlier gates)
//!          → the endpoint's own connection pool (hyper-util, HTTP/1.1 or HTTP/2, TLS for https)
//! ```
//!
//! A retry goes through the balancer again, so it goes to a freshly chosen endpoint.
//!
//! Each endpoint has its own pool, whose connector always dials that endpoint's address: the
//! request keeps the URI the caller wrote, so `Host` / `:authority`, SNI and the certificate
//! check name the service (`https://svc.example/…`), never the endpoint's IP. `https` is TLS
//! through rustls (feature `tls`, on by default) or a typed error, never clear text:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = meshless::http::Client::builder()
//!     .endpoints(["10.0.0.1:8443", "10.0.0.2:8443"])
//!     .tls_root_pem(std::fs::read("ca.pem")?)
//!     .build()?;
//! let res = client.get("https://payments.internal/v1/quote").await?;
//! # Ok(()) }
//! ```

pub(crate) mod builder;
mod client;
#[cfg(feature = "reqwest")]
pub(crate) use client::request_scheme;
mod connect;
mod dns;
mod endpoint;
mod framing;
mod reload;
mod stale;
mod stats;
#[cfg(feature = "tls")]
mod tls;

pub use self::builder::ClientBuilder;
pub use self::client::{Client, ResponseBody, ResponseFuture};
pub use self::stats::ClientStats;
