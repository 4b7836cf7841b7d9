//! Snapshots for programs, dashboards and tests.

use crate::balance::EndpointStats;
use std::net::SocketAddr;
use std::time::Duration;

/// Outcomes and latency percentiles of the logical requests that finished in the last minute
/// (between 50 and 60 seconds: the window moves in 10-second steps).
///
/// Latencies run from the call to the answer, retries included, for successes and failures
/// alike; requests their caller cancelled are left out. Percentiles are the middle of a
/// quarter-octave bucket: within 12.5% of the true value.
///
/// ```
/// use meshless::{budget::Budget, retry::RetryLayer};
/// let layer = RetryLayer::new(Budget::default());
/// let recent = layer.stats().recent();
/// assert_eq!(recent.requests(), 0);
/// assert_eq!(recent.success_rate(), None);
/// assert_eq!(recent.p99, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct RecentStats {
    /// The stretch of time the figures cover, up to the snapshot.
    pub window: Duration,
    /// Requests that succeeded.
    pub successes: u64,
    /// Requests that failed (a failure answer, an error, or their deadline passed).
    pub failures: u64,
    /// The median latency, or `None` with no request in the window.
    pub p50: Option<Duration>,
    /// The 90th-percentile latency.
    pub p90: Option<Duration>,
    /// The 99th-percentile latency.
    pub p99: Option<Duration>,
}

impl RecentStats {
    /// Requests finished in the window: successes and failures.
    ///
    /// ```
    /// let recent = meshless::observe::RecentStats::default();
    /// assert_eq!(recent.requests(), 0);
    /// ```
    pub fn requests(&self) -> u64 {
        self.successes + self.failures
    }

    /// The share of requests that succeeded, in `[0, 1]`; `None` with no request in the
    /// window.
    ///
    /// ```
    /// let recent = meshless::observe::RecentStats::default();
    /// assert_eq!(recent.success_rate(), None);
    /// ```
    pub fn success_rate(&self) -> Option<f64> {
        let requests = self.requests();
        (requests > 0).then(|| self.successes as f64 / requests as f64)
    }
}

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
    /// Logical requests sent since the client was built.
    pub requests: u64,
    /// Of which succeeded.
    pub successes: u64,
    /// Of which failed (a failure answer, an error, or their deadline passed).
    pub failures: u64,
    /// Of which their caller dropped before they finished.
    pub cancelled: u64,
    /// Retries sent. Attempts in total are `requests + retries`.
    pub retries: u64,
    /// Retries refused because the retry budget was empty.
    pub budget_exhausted: u64,
    /// Attempts cut by the per-attempt timeout.
    pub attempt_timeouts: u64,
    /// Requests that failed fast because no endpoint was ready.
    pub fail_fast_events: u64,
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
