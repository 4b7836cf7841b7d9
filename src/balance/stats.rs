//! What the balancer reports of its endpoints: for dashboards and tests.

use super::Balance;
use crate::outlier::Status;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// What the balancer knows of one endpoint, from [`Balance::endpoints`].
///
/// ```
/// use meshless::balance::Balance;
/// # use tower::service_fn;
/// let balance = Balance::builder().build();
/// balance.insert("a", service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
/// let stats = &balance.endpoints()[0];
/// assert_eq!(stats.key, "a");
/// assert_eq!(stats.requests, 0);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointStats<K> {
    /// The endpoint's key.
    pub key: K,
    /// Requests finished.
    pub requests: u64,
    /// Of which failures.
    pub failures: u64,
    /// Requests its caller gave up on before they finished: not in `requests`, never failures.
    pub cancelled: u64,
    /// Times it was ejected.
    pub ejections: u64,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Its current cost estimate: the peak-EWMA round-trip time, divided by the share of its
    /// recent attempts that answered (with each miss's wait before a retry added); the
    /// round-trip time itself while it has no misses.
    pub rtt: Duration,
    /// Its outlier status now.
    pub status: Status,
}

/// A snapshot of a [`Balance`]: its endpoints, how many are in each state, and how often it
/// failed fast.
///
/// ```
/// use meshless::balance::Balance;
/// # use tower::service_fn;
/// let balance = Balance::builder().build();
/// balance.insert("a", service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
/// let stats = balance.stats();
/// assert_eq!((stats.active, stats.ejected, stats.probation), (1, 0, 0));
/// assert_eq!(stats.endpoints[0].key, "a");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BalanceStats<K> {
    /// Every endpoint's measurements, as [`Balance::endpoints`] gives them.
    pub endpoints: Vec<EndpointStats<K>>,
    /// Endpoints serving traffic.
    pub active: usize,
    /// Endpoints ejected, whose ejection has not ended.
    pub ejected: usize,
    /// Endpoints whose ejection has ended, waiting for or serving their probe.
    pub probation: usize,
    /// Requests that failed fast because no endpoint was ready.
    pub fail_fast_events: u64,
}

impl<K, S> Balance<K, S>
where
    K: Clone + Eq + Hash,
{
    /// A snapshot of every endpoint's measurements.
    ///
    /// ```
    /// let balance = meshless::balance::Balance::builder().build::<&str, ()>();
    /// assert!(balance.endpoints().is_empty());
    /// ```
    pub fn endpoints(&self) -> Vec<EndpointStats<K>> {
        let now = Instant::now();
        self.shared
            .snapshot()
            .all()
            .map(|e| EndpointStats {
                key: e.key.clone(),
                requests: e.meter.requests(),
                failures: e.meter.failures(),
                cancelled: e.meter.cancelled(),
                ejections: e.meter.health.ejections(),
                in_flight: e.meter.in_flight.load(Ordering::Relaxed),
                rtt: Duration::from_nanos(e.meter.rtt(now) as u64),
                status: e.meter.health.status(now),
            })
            .collect()
    }

    /// The endpoints, how many are in each state, and the fail-fast count. Walks every
    /// endpoint: for dashboards and tests, not for the request path.
    ///
    /// ```
    /// let balance = meshless::balance::Balance::builder().build::<&str, ()>();
    /// let stats = balance.stats();
    /// assert!(stats.endpoints.is_empty());
    /// assert_eq!(stats.fail_fast_events, 0);
    /// ```
    pub fn stats(&self) -> BalanceStats<K> {
        let endpoints = self.endpoints();
        let count =
            |wanted: fn(&Status) -> bool| endpoints.iter().filter(|e| wanted(&e.status)).count();
        BalanceStats {
            active: count(|s| matches!(s, Status::Active)),
            ejected: count(|s| matches!(s, Status::Ejected { .. })),
            probation: count(|s| matches!(s, Status::Probation)),
            fail_fast_events: self.fail_fast_events(),
            endpoints,
        }
    }
}
