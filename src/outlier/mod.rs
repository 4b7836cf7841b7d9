//! Outlier ejection: stop sending traffic to the endpoints that fail or crawl, for a while.
//!
//! Every [`Balance`](crate::balance::Balance) (and so every
//! [`http::Client`](crate::http::Client)) gates each of its endpoints with outlier ejection.
//! Configure it with an [`OutlierConfig`] ([`BalanceBuilder::outlier`], or
//! [`ClientBuilder::outlier`]), and read where each endpoint stands, as a [`Status`], in
//! [`Balance::endpoints`] or [`Balance::stats`].
//!
//! Ejected means *not ready*: an endpoint is never removed from the balancer by ejection (unlike
//! tower's `ReadyCache`, where one `poll_ready` error evicts an endpoint for good). Only discovery
//! removes endpoints.
//!
//! [`BalanceBuilder::outlier`]: crate::balance::BalanceBuilder::outlier
//! [`ClientBuilder::outlier`]: crate::http::ClientBuilder::outlier
//! [`Balance::endpoints`]: crate::balance::Balance::endpoints
//! [`Balance::stats`]: crate::balance::Balance::stats
//!
//! ```
//! use meshless::balance::Balance;
//! use meshless::outlier::{EjectReason, OutlierConfig, Status};
//! use tower::{ServiceExt, service_fn};
//!
//! # // Paused time, so that the ejection (a second or more) cannot end while this runs.
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Eject after three failures in a row (the default is five).
//! let config = OutlierConfig::builder().consecutive_failures(Some(3)).build()?;
//! let balance = Balance::builder().outlier(config).build();
//! let failing = || service_fn(|_req: http::Request<()>| async {
//!     let mut res = http::Response::new(String::new());
//!     *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
//!     Ok::<_, std::io::Error>(res)
//! });
//! balance.insert("a", failing());
//! balance.insert("b", failing());
//!
//! // Within five requests one endpoint fails three times in a row and is ejected; the max
//! // ejected share (half the fleet) keeps the other one serving, failures and all.
//! for _ in 0..6 {
//!     let res = balance.clone().oneshot(http::Request::new(())).await?;
//!     assert_eq!(res.status(), 503);
//! }
//! let statuses: Vec<Status> = balance.endpoints().iter().map(|e| e.status).collect();
//! assert!(statuses.contains(&Status::Active));
//! assert!(statuses.iter().any(|s| matches!(
//!     s,
//!     Status::Ejected { reason: EjectReason::ConsecutiveFailures, .. }
//! )));
//! assert_eq!(balance.stats().ejected, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Life of an endpoint
//!
//! ```text
//!            ejection (a policy fires, within the max ejected share)
//!   Active ─────────────────────────────────────────────▶ Ejected { until }
//!     ▲  ▲                                                   │ until passes
//!     │  │ probe succeeds (slow start ramp)                  ▼
//!     │  └──────────────────────────────────────────────── Probation ── one probe request
//!     │                                                      │ probe fails
//!     │                                                      ▼
//!     │                                                   Ejected again, next backoff step
//!     └─ the backoff ladder restarts once the endpoint stays Active for `max_ejection_time`
//! ```
//!
//! # Policies
//!
//! Each policy is optional; all four are on by default and combine freely.
//!
//! - **Consecutive failures** (per endpoint, on every report): the n-th failure in a row ejects.
//! - **Success rate** ([`SuccessRatePolicy`], every `interval`): among endpoints with enough
//!   requests, those whose success rate is below `mean − stdev_factor × σ` of the fleet.
//! - **Failure percentage** ([`FailurePercentagePolicy`], every `interval`): endpoints whose
//!   share of failures reaches a fixed threshold.
//! - **Latency** ([`LatencyPolicy`], every `interval`): endpoints whose median latency over the
//!   interval is above `factor ×` the median of their peers' medians. Envoy has no latency
//!   ejection (envoyproxy/envoy#288); a balancer that is only latency-*aware* keeps sending
//!   a pathologically slow endpoint the requests that P2C pairs it with an idle peer for.
//!
//! The interval policies judge only endpoints that were `Active` for the sweep (an ejected
//! endpoint receives no traffic to judge), and run worst-first in the order failure
//! percentage, success rate, latency, so that when the max ejected share leaves room for only
//! some ejections, the most clearly broken endpoints go first.
//!
//! # Defaults and where they come from
//!
//! | setting | default | source |
//! |---|---|---|
//! | analysis interval | 10 s | Envoy, gRPC A50 |
//! | consecutive failures | 5 | Envoy `consecutive_5xx`; linkerd uses 7. We react two failures sooner: with the max ejected share and a one-request probation, a false ejection costs about a second of one endpoint's share |
//! | ejection time | 1 s, doubling per consecutive ejection, up to 60 s | linkerd failure accrual (Envoy: 30 s × n up to 300 s, too long for a 1-request probe) |
//! | ejection jitter | ±50%, kept within [1 s, 60 s] | linkerd's jitter 0.5 (linkerd jitters upwards only) |
//! | probation | one request; success returns the endpoint, failure re-ejects for the next step | linkerd |
//! | lost probe | another probe after 10 s without a report | ours: a cancelled probe must not strand the endpoint |
//! | backoff ladder reset | after `max_ejection_time` (60 s) active without an ejection | ours |
//! | success rate | below mean − 1.9 σ; ≥ 5 endpoints with ≥ 100 requests in the interval | Envoy, gRPC A50 |
//! | failure percentage | ≥ 85% failures; ≥ 5 endpoints with ≥ 50 requests | Envoy, gRPC A50 (Envoy computes it but enforces 0% by default; we enforce it: 85% is an endpoint that is down) |
//! | latency | median > 3 × peers' median (peers' median counted as at least 1 ms); ≥ 3 endpoints with ≥ 20 requests | ours: see [`LatencyPolicy`] |
//! | max ejected share | 50% of endpoints, and always at least 1 of ≥ 2 | ours (Envoy and gRPC A50: 10%, which leaves a fleet of fewer than 10 endpoints one ejection; Envoy also always allows one). At 50% the detector alone can never push the fleet into panic |
//! | panic threshold | fail open below 50% available | Envoy `healthy_panic_threshold` |
//! | slow start window | 10 s | ours (Envoy requires a value): one analysis interval, long enough to warm connections and caches, short enough not to idle capacity |
//! | slow start curve | linear from 10% to 100% | Envoy's `min_weight_percent` (10%) and default aggression 1.0 (linear) |
//! | slow start for new endpoints | yes, except those that join in the fleet's first window | ours: ramping the whole first batch is pointless, every endpoint would get the same share (as Envoy's docs note) |

mod config;
mod consecutive;
mod detector;
mod failure_percent;
mod health;
mod latency;
mod slow_start;
mod success_rate;
mod telemetry;

pub use self::config::{OutlierConfig, OutlierConfigBuilder};
pub(crate) use self::detector::Detector;
#[cfg(test)]
pub(crate) use self::detector::EjectionCounts;
pub use self::failure_percent::FailurePercentagePolicy;
#[cfg(test)]
pub(crate) use self::health::Health;
pub(crate) use self::health::{Endpoint as EndpointHealth, Tracked};
pub use self::latency::LatencyPolicy;
pub use self::success_rate::SuccessRatePolicy;
pub(crate) use self::telemetry::{FleetGauges, HealthObserver, State};

use std::fmt;
use tokio::time::Instant;

/// Whether a request may go to an endpoint, from [`EndpointHealth::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Admit {
    /// The endpoint is active: send as usual.
    Yes,
    /// The endpoint's ejection is over and this request is its single probation request. Send
    /// it and report its outcome: success returns the endpoint, failure ejects it again.
    Probe,
    /// The endpoint is ejected, or its probe is already in flight.
    No,
}

#[cfg(test)]
impl Admit {
    /// True for [`Admit::Yes`] and [`Admit::Probe`]: the request may be sent.
    pub(crate) fn allows(self) -> bool {
        !matches!(self, Admit::No)
    }
}

/// Where an endpoint stands: [`EndpointStats::status`](crate::balance::EndpointStats::status)
/// in [`Balance::endpoints`](crate::balance::Balance::endpoints) and
/// [`Balance::stats`](crate::balance::Balance::stats).
///
/// ```
/// use meshless::balance::Balance;
/// use meshless::outlier::Status;
/// # use tower::service_fn;
///
/// let balance = Balance::builder().build();
/// balance.insert("a", service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::io::Error>(http::Response::new(()))
/// }));
/// assert_eq!(balance.endpoints()[0].status, Status::Active);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Serving traffic (possibly still ramping up over the slow-start window, with a smaller
    /// share of the requests).
    Active,
    /// Not ready until `until`, ejected for `reason`.
    Ejected {
        /// When the ejection ends and the endpoint may be probed.
        until: Instant,
        /// Why it was ejected (a re-ejection after a failed probe keeps the first reason).
        reason: EjectReason,
    },
    /// The ejection is over: the endpoint waits for, or is serving, its one probe request.
    Probation,
    /// Removed by discovery: no longer gated or counted.
    Retired,
}

/// Why an endpoint was ejected. Bounded, so it is safe as a metric label.
///
/// ```
/// use meshless::outlier::EjectReason;
/// assert_eq!(EjectReason::SuccessRate.as_str(), "success_rate");
/// assert_eq!(EjectReason::ALL.len(), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EjectReason {
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// Success rate far below the fleet's.
    SuccessRate,
    /// Share of failures above the fixed threshold.
    FailurePercentage,
    /// Median latency far above the fleet's.
    Latency,
}

impl EjectReason {
    /// Every reason, for labelled metrics.
    ///
    /// ```
    /// for reason in meshless::outlier::EjectReason::ALL {
    ///     assert!(!reason.as_str().is_empty());
    /// }
    /// ```
    pub const ALL: [EjectReason; 4] = [
        EjectReason::ConsecutiveFailures,
        EjectReason::SuccessRate,
        EjectReason::FailurePercentage,
        EjectReason::Latency,
    ];

    /// A short, stable, lower-case name for logs and metric labels.
    ///
    /// ```
    /// use meshless::outlier::EjectReason;
    /// assert_eq!(EjectReason::ConsecutiveFailures.as_str(), "consecutive_failures");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::ConsecutiveFailures => "consecutive_failures",
            EjectReason::SuccessRate => "success_rate",
            EjectReason::FailurePercentage => "failure_percentage",
            EjectReason::Latency => "latency",
        }
    }

    /// Two bits, to travel inside an endpoint's state word.
    pub(crate) fn bits(self) -> u64 {
        match self {
            EjectReason::ConsecutiveFailures => 0,
            EjectReason::SuccessRate => 1,
            EjectReason::FailurePercentage => 2,
            EjectReason::Latency => 3,
        }
    }

    pub(crate) fn from_bits(bits: u64) -> Self {
        match bits & 3 {
            0 => EjectReason::ConsecutiveFailures,
            1 => EjectReason::SuccessRate,
            2 => EjectReason::FailurePercentage,
            _ => EjectReason::Latency,
        }
    }
}

impl fmt::Display for EjectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one endpoint did during one analysis interval: the input of the interval policies.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Window {
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    /// The median latency in microseconds, when the latency policy records latencies.
    pub(crate) median_micros: Option<f64>,
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod api_tests;

#[cfg(test)]
mod duration_limits_tests;
