//! Failure-percentage ejection: an endpoint whose failures pass a fixed share.

use super::Window;
use crate::error::ConfigError;

/// Ejects endpoints whose failures reach `threshold` percent of their requests over an
/// interval, as Envoy and gRPC (A50) do. Unlike the success-rate policy it needs no healthy
/// majority to compare against, so it still works when many endpoints fail at once (the max
/// ejected share then decides how many go). Only endpoints with at least `request_volume`
/// requests count, and only when at least `minimum_hosts` of them do.
///
/// Defaults (Envoy, gRPC A50): `threshold` 85%, `minimum_hosts` 5, `request_volume` 50.
///
/// ```
/// use meshless::outlier::{FailurePercentagePolicy, OutlierConfig};
///
/// let policy = FailurePercentagePolicy::default().threshold(50).minimum_hosts(3);
/// let config = OutlierConfig::builder().failure_percentage(Some(policy)).build()?;
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct FailurePercentagePolicy {
    threshold: u32,
    minimum_hosts: usize,
    request_volume: u64,
}

impl Default for FailurePercentagePolicy {
    fn default() -> Self {
        FailurePercentagePolicy {
            threshold: 85,
            minimum_hosts: 5,
            request_volume: 50,
        }
    }
}

impl FailurePercentagePolicy {
    /// The percentage of failed requests that ejects (default 85). Between 1 and 100.
    ///
    /// ```
    /// let p = meshless::outlier::FailurePercentagePolicy::default().threshold(95);
    /// ```
    pub fn threshold(mut self, percent: u32) -> Self {
        self.threshold = percent;
        self
    }

    /// Endpoints that must qualify for the policy to judge any (default 5). At least 1.
    ///
    /// ```
    /// let p = meshless::outlier::FailurePercentagePolicy::default().minimum_hosts(2);
    /// ```
    pub fn minimum_hosts(mut self, hosts: usize) -> Self {
        self.minimum_hosts = hosts;
        self
    }

    /// Requests in the interval that qualify an endpoint (default 50). At least 1.
    ///
    /// ```
    /// let p = meshless::outlier::FailurePercentagePolicy::default().request_volume(20);
    /// ```
    pub fn request_volume(mut self, requests: u64) -> Self {
        self.request_volume = requests;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.threshold) {
            return Err(ConfigError::new(
                "outlier.failure_percentage.threshold",
                format!("{} is outside 1..=100", self.threshold),
            ));
        }
        if self.minimum_hosts == 0 {
            return Err(ConfigError::new(
                "outlier.failure_percentage.minimum_hosts",
                "must be at least 1",
            ));
        }
        if self.request_volume == 0 {
            return Err(ConfigError::new(
                "outlier.failure_percentage.request_volume",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The indices of the outliers among `windows`, worst first.
    pub(crate) fn outliers(&self, windows: &[Window]) -> Vec<usize> {
        let qualifying: Vec<(usize, &Window)> = windows
            .iter()
            .enumerate()
            .filter(|(_, w)| w.requests >= self.request_volume)
            .collect();
        if qualifying.len() < self.minimum_hosts {
            return Vec::new();
        }
        // Integer arithmetic, so that exactly 85% is 85%.
        let threshold = u128::from(self.threshold);
        let mut out: Vec<(usize, f64)> = qualifying
            .into_iter()
            .filter(|(_, w)| u128::from(w.failures) * 100 >= threshold * u128::from(w.requests))
            .map(|(i, w)| (i, w.failures as f64 / w.requests as f64))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
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
    fn endpoints_at_or_above_the_threshold_are_ejected_worst_first() {
        let windows = vec![
            window(100, 0),
            window(100, 85), // exactly at the threshold
            window(100, 84),
            window(100, 100),
            window(100, 10),
        ];
        assert_eq!(
            FailurePercentagePolicy::default().outliers(&windows),
            vec![3, 1]
        );
    }

    #[test]
    fn it_needs_minimum_hosts_with_request_volume() {
        let mut windows = vec![window(100, 100); 4];
        windows.push(window(49, 0));
        assert!(
            FailurePercentagePolicy::default()
                .outliers(&windows)
                .is_empty()
        );
        windows.push(window(50, 0));
        assert_eq!(
            FailurePercentagePolicy::default().outliers(&windows).len(),
            4
        );
    }

    #[test]
    fn a_whole_failing_fleet_is_reported() {
        // Unlike success rate, nothing needs a healthy majority; the share caps the ejections.
        let windows = vec![window(100, 95); 8];
        assert_eq!(
            FailurePercentagePolicy::default().outliers(&windows).len(),
            8
        );
    }
}
