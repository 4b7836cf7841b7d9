//! The snapshot of a client: what it has done since it was built, and its endpoints.

use crate::balance::EndpointStats;
use crate::observe::RecentStats;
use std::net::SocketAddr;

/// A snapshot of a [`Client`](crate::http::Client): what it has done since it was built, how it
/// did over the last minute, and where each endpoint stands. Cheap: a few atomic loads, and one
/// look at each endpoint.
///
/// ```
/// let client = meshless::http::Client::builder()
///     .endpoints(["127.0.0.1:1"])
///     .service_name("payments")
///     .build()?;
/// let stats = client.stats();
/// assert_eq!(stats.service, "payments");
/// assert_eq!(stats.requests, 0);
/// assert_eq!(stats.endpoints.len(), 1);
/// assert_eq!(stats.success_rate(), None);
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientStats {
    /// The `service` name the client labels its metrics with.
    pub service: String,
    /// Logical requests that reached the retry layer since the client was built (the ones
    /// the client shed are counted apart, below).
    pub requests: u64,
    /// Of which succeeded: a success head whose body ended well, or was dropped by its caller
    /// before its end (a body that fails makes the request a failure).
    pub successes: u64,
    /// Of which failed (a failure answer, an error, the client's deadline timer ended them, or
    /// their body failed: a reset, the deadline, a gRPC status in the trailers).
    pub failures: u64,
    /// Of which their caller dropped before they finished.
    pub cancelled: u64,
    /// Retries sent. Every attempt made is `requests + retries + stale_resends`
    /// (`RetryStats::attempts` and `meshless_attempts_total` leave the resends out).
    pub retries: u64,
    /// Idempotent attempts sent again at once, at no retry cost, because the server had closed
    /// the reused keep-alive connection they met before answering (at most 3 per request).
    pub stale_resends: u64,
    /// Retries refused because the retry budget was empty.
    pub budget_exhausted: u64,
    /// Attempts cut by the per-attempt timeout (hedges and the first attempts they raced
    /// included).
    pub attempt_timeouts: u64,
    /// Requests that failed fast because no endpoint was ready.
    pub fail_fast_events: u64,
    /// Requests the circuit breaker refused (not in `requests`: nothing was sent).
    pub circuit_open: u64,
    /// Requests the concurrency limit refused (not in `requests`: nothing was sent).
    pub concurrency_limited: u64,
    /// Requests client-side throttling refused (not in `requests`: nothing was sent).
    pub throttled: u64,
    /// The last minute: success rate and latency percentiles.
    pub recent: RecentStats,
    /// Every endpoint: requests, failures, ejections, in-flight count, peak-EWMA RTT, status.
    pub endpoints: Vec<EndpointStats<SocketAddr>>,
}

impl ClientStats {
    /// The success rate over the last minute (see [`RecentStats::success_rate`]).
    ///
    /// ```
    /// let client = meshless::http::Client::builder().endpoints(["127.0.0.1:1"]).build()?;
    /// assert_eq!(client.stats().success_rate(), None);
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn success_rate(&self) -> Option<f64> {
        self.recent.success_rate()
    }
}
