//! Latency ejection: an endpoint that stays much slower than its peers for a whole interval.

use super::Window;
use crate::error::ConfigError;
use crate::primitives::clock;
use std::time::Duration;

/// Ejects endpoints whose median latency over an interval is above `factor ×` the median of
/// their peers' medians. Only endpoints with at least `request_volume` requests in the interval
/// count, and only when at least `minimum_hosts` of them do. No anchor has this policy: Envoy's
/// outlier detection ignores latency (envoyproxy/envoy#288).
///
/// Defaults (ours): `factor` 3.0, `minimum_hosts` 3, `request_volume` 20, `floor` 1 ms.
///
/// - **The median, not the mean.** A median above the bar means at least half of the
///   endpoint's requests over the whole interval were slow: the endpoint *stays* slow, which
///   one sample or a handful of timeouts (a GC pause, one cold cache) cannot fake. A mean is
///   dragged up by a single 30 s timeout among a hundred 10 ms answers.
/// - **Compared with its peers, not an absolute bar**, so one setting fits a 2 ms cache and a
///   2 s batch API. The peers' median excludes the endpoint itself, so one slow endpoint
///   cannot raise its own bar, and the median of medians ignores a minority of slow peers.
/// - **3×.** Healthy replicas of one service differ in median latency by well under 2×
///   (hardware generations, noisy neighbours, uneven request mixes); 3× is beyond that spread
///   and still catches the degraded endpoint (a swapping, throttled or failing host) long
///   before its requests time out. Moderately slow endpoints are the balancer's job: a
///   latency-aware P2C already sends them less.
/// - **The floor** counts peers' medians below it as the floor, so that microsecond-scale
///   noise (3 µs against 1 µs) never ejects anything.
/// - **3 endpoints**, the fewest where "the peers" is more than one other endpoint.
///
/// ```
/// use meshless::outlier::{LatencyPolicy, OutlierConfig};
/// use std::time::Duration;
///
/// let policy = LatencyPolicy::default().factor(5.0).floor(Duration::from_millis(10));
/// let config = OutlierConfig::builder().latency(Some(policy)).build()?;
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct LatencyPolicy {
    factor: f64,
    minimum_hosts: usize,
    request_volume: u64,
    #[cfg_attr(feature = "serde", serde(with = "crate::policy::duration"))]
    floor: Duration,
}

impl Default for LatencyPolicy {
    fn default() -> Self {
        LatencyPolicy {
            factor: 3.0,
            minimum_hosts: 3,
            request_volume: 20,
            floor: Duration::from_millis(1),
        }
    }
}

impl LatencyPolicy {
    /// How many times slower than its peers an endpoint must be (default 3.0). Above 1, at
    /// most 1000.
    ///
    /// ```
    /// let p = meshless::outlier::LatencyPolicy::default().factor(4.0);
    /// ```
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Endpoints that must qualify for the policy to judge any (default 3). At least 2.
    ///
    /// ```
    /// let p = meshless::outlier::LatencyPolicy::default().minimum_hosts(5);
    /// ```
    pub fn minimum_hosts(mut self, hosts: usize) -> Self {
        self.minimum_hosts = hosts;
        self
    }

    /// Requests in the interval that qualify an endpoint (default 20). At least 1.
    ///
    /// ```
    /// let p = meshless::outlier::LatencyPolicy::default().request_volume(100);
    /// ```
    pub fn request_volume(mut self, requests: u64) -> Self {
        self.request_volume = requests;
        self
    }

    /// Peers' medians below this count as this (default 1 ms). No upper bound: a floor above
    /// any real latency (`Duration::MAX`, say) means the policy ejects nothing.
    ///
    /// ```
    /// use meshless::outlier::{LatencyPolicy, OutlierConfig};
    /// use std::time::Duration;
    /// let p = LatencyPolicy::default().floor(Duration::ZERO);
    /// let config = OutlierConfig::builder()
    ///     .latency(Some(LatencyPolicy::default().floor(Duration::MAX)))
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn floor(mut self, floor: Duration) -> Self {
        self.floor = floor;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.factor > 1.0 && self.factor <= 1000.0) {
            return Err(ConfigError::new(
                "outlier.latency.factor",
                format!("{} is outside (1, 1000]", self.factor),
            ));
        }
        if self.minimum_hosts < 2 {
            return Err(ConfigError::new(
                "outlier.latency.minimum_hosts",
                "must be at least 2: a latency is judged against its peers",
            ));
        }
        if self.request_volume == 0 {
            return Err(ConfigError::new(
                "outlier.latency.request_volume",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The indices of the outliers among `windows`, worst (slowest relative to peers) first.
    pub(crate) fn outliers(&self, windows: &[Window]) -> Vec<usize> {
        let mut medians: Vec<(usize, f64)> = windows
            .iter()
            .enumerate()
            .filter(|(_, w)| w.requests >= self.request_volume)
            .filter_map(|(i, w)| w.median_micros.map(|m| (i, m)))
            .collect();
        if medians.len() < self.minimum_hosts || medians.len() < 2 {
            return Vec::new();
        }
        medians.sort_by(|a, b| a.1.total_cmp(&b.1));
        let sorted: Vec<f64> = medians.iter().map(|(_, m)| *m).collect();
        let floor = clock::micros(self.floor) as f64;
        let mut out: Vec<(usize, f64)> = medians
            .iter()
            .enumerate()
            .filter_map(|(position, (i, median))| {
                let bar = median_without(&sorted, position).max(floor);
                (*median > self.factor * bar).then(|| (*i, median / bar.max(f64::MIN_POSITIVE)))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.into_iter().map(|(i, _)| i).collect()
    }
}

/// The median of `sorted` without the element at `skip` (so `sorted.len() >= 2`).
fn median_without(sorted: &[f64], skip: usize) -> f64 {
    let peers = sorted.len() - 1;
    let nth = |k: usize| {
        let k = if k < skip { k } else { k + 1 };
        sorted.get(k).copied().unwrap_or(0.0)
    };
    if peers % 2 == 1 {
        nth(peers / 2)
    } else {
        (nth(peers / 2 - 1) + nth(peers / 2)) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(requests: u64, median_ms: f64) -> Window {
        Window {
            requests,
            failures: 0,
            median_micros: Some(median_ms * 1000.0),
        }
    }

    #[test]
    fn a_ten_times_slower_endpoint_among_five_is_ejected() {
        let mut windows = vec![
            window(50, 10.0),
            window(50, 12.0),
            window(50, 9.0),
            window(50, 11.0),
        ];
        windows.push(window(50, 100.0));
        assert_eq!(LatencyPolicy::default().outliers(&windows), vec![4]);
    }

    #[test]
    fn a_one_and_a_half_times_slower_endpoint_is_kept() {
        let mut windows = vec![window(50, 10.0); 4];
        windows.push(window(50, 15.0));
        assert!(LatencyPolicy::default().outliers(&windows).is_empty());
    }

    #[test]
    fn it_needs_minimum_hosts_with_request_volume() {
        let windows = vec![window(50, 10.0), window(50, 100.0), window(19, 10.0)];
        assert!(LatencyPolicy::default().outliers(&windows).is_empty());
        let windows = vec![window(50, 10.0), window(50, 100.0), window(20, 10.0)];
        assert_eq!(LatencyPolicy::default().outliers(&windows), vec![1]);
    }

    #[test]
    fn a_slow_majority_ejects_nobody() {
        let windows = vec![window(50, 10.0), window(50, 100.0), window(50, 100.0)];
        assert!(LatencyPolicy::default().outliers(&windows).is_empty());
    }

    #[test]
    fn the_floor_ignores_microsecond_noise() {
        let us = |micros: f64| Window {
            requests: 50,
            failures: 0,
            median_micros: Some(micros),
        };
        let windows = vec![us(50.0), us(60.0), us(40.0), us(500.0)];
        assert!(LatencyPolicy::default().outliers(&windows).is_empty());
        let no_floor = LatencyPolicy::default().floor(Duration::ZERO);
        assert_eq!(no_floor.outliers(&windows), vec![3]);
        let windows = vec![us(50.0), us(60.0), us(40.0), us(5_000.0)];
        assert_eq!(LatencyPolicy::default().outliers(&windows), vec![3]);
    }

    #[test]
    fn outliers_come_slowest_first() {
        let mut windows = vec![window(50, 10.0); 8];
        windows[2] = window(50, 50.0);
        windows[5] = window(50, 200.0);
        assert_eq!(LatencyPolicy::default().outliers(&windows), vec![5, 2]);
    }

    #[test]
    fn the_peer_median_skips_the_endpoint_itself() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(median_without(&sorted, 3), 2.0);
        assert_eq!(median_without(&sorted, 0), 3.0);
        assert_eq!(median_without(&[1.0, 9.0], 1), 1.0);
        assert_eq!(median_without(&[1.0, 9.0, 10.0], 0), 9.5);
    }
}
