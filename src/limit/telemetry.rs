//! The limit's gauges and its rejection counter.

use crate::observe::{
    self, CONCURRENCY_IN_FLIGHT, CONCURRENCY_LIMIT, CONCURRENCY_REJECTED_TOTAL, Settings,
};
use metrics::{Counter, Gauge};

/// Handles registered once per layer, so that updating them looks nothing up.
pub(crate) struct Telemetry {
    limit: Gauge,
    in_flight: Gauge,
    rejected: Counter,
}

impl Telemetry {
    /// The handles, or `None` when the settings turn metrics off.
    pub(crate) fn register(settings: &Settings) -> Option<Self> {
        if !settings.metrics {
            return None;
        }
        observe::describe();
        let labels = vec![settings.service_label()];
        Some(Telemetry {
            limit: metrics::gauge!(CONCURRENCY_LIMIT, labels.clone()),
            in_flight: metrics::gauge!(CONCURRENCY_IN_FLIGHT, labels.clone()),
            rejected: metrics::counter!(CONCURRENCY_REJECTED_TOTAL, labels),
        })
    }

    pub(crate) fn limit(&self, limit: u32) {
        self.limit.set(f64::from(limit));
    }

    pub(crate) fn in_flight(&self, in_flight: u32) {
        self.in_flight.set(f64::from(in_flight));
    }

    pub(crate) fn rejected(&self) {
        self.rejected.increment(1);
    }
}
