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

    /// Publishes the gauge without moving it: another layer with the same labels may have
    /// requests in flight.
    pub(crate) fn in_flight_touch(&self) {
        self.in_flight.increment(0.0);
    }

    /// One more in flight. Moved by steps rather than set to a count read earlier, so that
    /// threads racing to publish cannot leave a stale value behind.
    pub(crate) fn in_flight_up(&self) {
        self.in_flight.increment(1.0);
    }

    /// One fewer in flight.
    pub(crate) fn in_flight_down(&self) {
        self.in_flight.decrement(1.0);
    }

    pub(crate) fn rejected(&self) {
        self.rejected.increment(1);
    }
}
