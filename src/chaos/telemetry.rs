//! Fault injection's metrics: one counter per kind of fault.

use super::plan::Fault;
use crate::observe::{Settings, chaos::CHAOS_INJECTED_TOTAL, chaos::FAULT};
use metrics::{Counter, Label};
use std::fmt;

/// The handles, registered when the layer builds its first service.
pub(crate) struct Telemetry {
    delay: Counter,
    error: Counter,
    reset: Counter,
    refused: Counter,
}

impl Telemetry {
    /// The handles, or `None` when the settings turn metrics off.
    pub(crate) fn register(settings: &Settings) -> Option<Self> {
        if !settings.metrics {
            return None;
        }
        crate::observe::describe();
        let counter = |fault: Fault| {
            let labels = vec![settings.service_label(), Label::new(FAULT, fault.as_str())];
            metrics::counter!(CHAOS_INJECTED_TOTAL, labels)
        };
        Some(Telemetry {
            delay: counter(Fault::Delay),
            error: counter(Fault::Error),
            reset: counter(Fault::Reset),
            refused: counter(Fault::Refused),
        })
    }

    pub(crate) fn injected(&self, fault: Fault) {
        match fault {
            Fault::Delay => &self.delay,
            Fault::Error => &self.error,
            Fault::Reset => &self.reset,
            Fault::Refused => &self.refused,
        }
        .increment(1);
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}
