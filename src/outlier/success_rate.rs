//! Success-rate ejection: an endpoint that succeeds far less often than its peers.

use super::Window;
use crate::error::ConfigError;

/// Ejects endpoints whose success rate over an interval is below `mean − stdev_factor × σ` of
/// the fleet's, as Envoy and gRPC (A50) do. Only endpoints with at least `request_volume`
/// requests in the interval count, and only when at least `minimum_hosts` of them do: with
/// fewer, the mean and σ say little.
///
/// Defaults (Envoy, gRPC A50): `stdev_factor` 1.9, `minimum_hosts` 5, `request_volume` 100.
///
/// Because σ includes the outlier itself, one bad endpoint among `n` can stand at most
/// `√(n−1)` σ below the mean: with the default factor 1.9, that needs `n ≥ 5`, hence the
/// minimum of five endpoints.
///
/// ```
/// use meshless::outlier::{OutlierConfig, SuccessRatePolicy};
///
/// let policy = SuccessRatePolicy::default()
///     .stdev_factor(1.5)     // stricter
///     .minimum_hosts(10)
///     .request_volume(200);
/// let config = OutlierConfig::builder().success_rate(Some(policy)).build()?;
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct SuccessRatePolicy {
    stdev_factor: f64,
    minimum_hosts: usize,
    request_volume: u64,
}

impl Default for SuccessRatePolicy {
    fn default() -> Self {
        SuccessRatePolicy {
            stdev_factor: 1.9,
            minimum_hosts: 5,
            request_volume: 100,
        }
    }
}

impl SuccessRatePolicy {
    /// How many standard deviations below the mean ejects (default 1.9). Above 0, at most 100.
    ///
    /// ```
    /// let p = meshless::outlier::SuccessRatePolicy::default().stdev_factor(2.5);
    /// ```
    pub fn stdev_factor(mut self, factor: f64) -> Self {
        self.stdev_factor = factor;
        self
    }

    /// Endpoints that must qualify for the policy to judge any (default 5). At least 2.
    ///
    /// ```
    /// let p = meshless::outlier::SuccessRatePolicy::default().minimum_hosts(3);
    /// ```
    pub fn minimum_hosts(mut self, hosts: usize) -> Self {
        self.minimum_hosts = hosts;
        self
    }

    /// Requests in the interval that qualify an endpoint (default 100). At least 1.
    ///
    /// ```
    /// let p = meshless::outlier::SuccessRatePolicy::default().request_volume(50);
    /// ```
    pub fn request_volume(mut self, requests: u64) -> Self {
        self.request_volume = requests;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.stdev_factor > 0.0 && self.stdev_factor <= 100.0) {
            return Err(ConfigError::new(
                "outlier.success_rate.stdev_factor",
                format!("{} is outside (0, 100]", self.stdev_factor),
            ));
        }
        if self.minimum_hosts < 2 {
            return Err(ConfigError::new(
                "outlier.success_rate.minimum_hosts",
                "must be at least 2: a success rate is judged against its peers",
            ));
        }
        if self.request_volume == 0 {
            return Err(ConfigError::new(
                "outlier.success_rate.request_volume",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The indices of the outliers among `windows`, worst first.
    pub(crate) fn outliers(&self, windows: &[Window]) -> Vec<usize> {
        let rates: Vec<(usize, f64)> = windows
            .iter()
            .enumerate()
            .filter(|(_, w)| w.requests >= self.request_volume)
            .map(|(i, w)| {
                let successes = w.requests.saturating_sub(w.failures);
                (i, successes as f64 / w.requests as f64)
            })
            .collect();
        if rates.len() < self.minimum_hosts || rates.is_empty() {
            return Vec::new();
        }
        let n = rates.len() as f64;
        let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / n;
        let variance = rates.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / n;
        let threshold = mean - self.stdev_factor * variance.sqrt();
        // Identical rates can still leave a σ of a few ulps from rounding; the margin keeps
        // rounding from ejecting an endpoint exactly at the mean.
        let mut out: Vec<(usize, f64)> = rates
            .into_iter()
            .filter(|(_, r)| *r < threshold - 1e-12)
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out.into_iter().map(|(i, _)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(requests: u64, failures: u64) -> Window {
        Window {
            requests,
            failures,
            median_micros: None,
        }
    }

    #[test]
    fn the_one_bad_endpoint_among_six_is_ejected() {
        let mut windows = vec![window(200, 2); 5];
        windows.push(window(200, 100));
        assert_eq!(SuccessRatePolicy::default().outliers(&windows), vec![5]);
    }

    #[test]
    fn nothing_is_judged_with_fewer_than_minimum_hosts() {
        let mut windows = vec![window(200, 0); 3];
        windows.push(window(200, 200));
        assert!(SuccessRatePolicy::default().outliers(&windows).is_empty());
        // Endpoints below the request volume do not count towards the minimum.
        windows.push(window(99, 0));
        windows.push(window(10, 0));
        assert!(SuccessRatePolicy::default().outliers(&windows).is_empty());
    }

    #[test]
    fn a_uniform_fleet_has_no_outliers() {
        for failures in [0, 1, 10, 100, 200] {
            let windows = vec![window(300, failures); 7];
            assert!(SuccessRatePolicy::default().outliers(&windows).is_empty());
        }
        let windows = vec![window(100, 30); 10];
        assert!(SuccessRatePolicy::default().outliers(&windows).is_empty());
    }

    #[test]
    fn outliers_come_worst_first() {
        let mut windows = vec![window(1000, 0); 20];
        windows[3] = window(1000, 500);
        windows[7] = window(1000, 700);
        assert_eq!(SuccessRatePolicy::default().outliers(&windows), vec![7, 3]);
    }

    #[test]
    fn low_volume_endpoints_are_never_judged() {
        let mut windows = vec![window(200, 0); 6];
        windows.push(window(50, 50));
        assert!(SuccessRatePolicy::default().outliers(&windows).is_empty());
    }
}
