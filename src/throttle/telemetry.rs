//! Throttling's metrics: the refusal probability (a gauge) and the refusals (a counter).

use crate::observe::{Settings, THROTTLE_PROBABILITY, THROTTLE_REJECTED_TOTAL};
use metrics::{Counter, Gauge};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The handles, registered when the layer builds its first service.
pub(crate) struct Telemetry {
    rejected: Counter,
    probability: Gauge,
    /// The bits of the probability last set: the gauge is set only when it changes, which it
    /// rarely does while the upstream is healthy (it stays 0).
    last: AtomicU64,
}

impl Telemetry {
    /// The handles, or `None` when the settings turn metrics off.
    pub(crate) fn register(settings: &Settings) -> Option<Self> {
        if !settings.metrics {
            return None;
        }
        crate::observe::describe();
        let labels = vec![settings.service_label()];
        let probability = metrics::gauge!(THROTTLE_PROBABILITY, labels.clone());
        probability.set(0.0);
        Some(Telemetry {
            rejected: metrics::counter!(THROTTLE_REJECTED_TOTAL, labels),
            probability,
            last: AtomicU64::new(0f64.to_bits()),
        })
    }

    pub(crate) fn probability(&self, p: f64) {
        let bits = p.to_bits();
        // A load first: while the upstream is healthy the probability stays 0 and nothing is
        // written. Racing writers may set the gauge twice; it ends at one of their values.
        if self.last.load(Ordering::Relaxed) != bits {
            self.last.store(bits, Ordering::Relaxed);
            self.probability.set(p);
        }
    }

    pub(crate) fn rejected(&self) {
        self.rejected.increment(1);
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}
