//! The metrics and events of endpoint health: state gauges, ejection counters, and the
//! tracing events of each transition.

use super::EjectReason;
use crate::observe::{
    BALANCER_ENDPOINTS, ENDPOINT, ENDPOINT_EJECTIONS_TOTAL, ENDPOINT_STATE, REASON, SERVICE, STATE,
    Settings,
};
use metrics::{Gauge, Label, SharedString};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An endpoint's state as the gauges count it (retired endpoints are not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Active,
    Ejected,
    Probation,
}

impl State {
    pub(crate) const ALL: [State; 3] = [State::Active, State::Ejected, State::Probation];

    fn index(self) -> usize {
        match self {
            State::Active => 0,
            State::Ejected => 1,
            State::Probation => 2,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Ejected => "ejected",
            State::Probation => "probation",
        }
    }
}

/// A fleet's endpoints by state: one gauge per state, moved by every endpoint's
/// [`HealthObserver`] as it changes state.
#[derive(Clone)]
pub(crate) struct FleetGauges(Arc<[Gauge; 3]>);

impl FleetGauges {
    /// Registers the gauges of the fleet of the service `settings` names.
    pub(crate) fn register(settings: &Settings) -> Self {
        let service = settings.service_label();
        FleetGauges(Arc::new(State::ALL.map(|state| {
            let labels = vec![
                service.clone(),
                Label::from_static_parts(STATE, state.as_str()),
            ];
            metrics::gauge!(BALANCER_ENDPOINTS, labels)
        })))
    }
}

/// Reports an endpoint's health transitions: its state gauges, its ejection counters, and the
/// tracing events. The outlier module calls it after each transition it made (each one a
/// successful compare-and-swap, so every transition is reported exactly once).
///
/// Kept small, since every endpoint has one: the ejection counter is looked up when an
/// ejection happens (rare), not held.
pub(crate) struct HealthObserver {
    endpoint: Arc<str>,
    service: SharedString,
    /// `None` when metrics are off, or the endpoint belongs to no balancer.
    metrics: Option<HealthMetrics>,
}

struct HealthMetrics {
    /// This endpoint's state gauges. They are moved up and down rather than set, so that an
    /// endpoint replaced under the same key (the new one joins before the old one retires)
    /// still ends at 1 for the new one's state.
    state: [Gauge; 3],
    /// The fleet's endpoints by state.
    fleet: FleetGauges,
}

impl HealthObserver {
    /// An observer that only emits events, for an endpoint with no name: a detector used
    /// without a balancer, which only tests do.
    #[cfg(test)]
    pub(crate) fn unnamed() -> Self {
        HealthObserver {
            endpoint: Arc::from("unnamed"),
            service: SharedString::const_str(crate::observe::DEFAULT_SERVICE),
            metrics: None,
        }
    }

    /// The observer of the endpoint labelled `endpoint`, in a fleet counted by `fleet`
    /// (`None` when metrics are off).
    pub(crate) fn new(
        settings: &Settings,
        endpoint: Arc<str>,
        fleet: Option<&FleetGauges>,
    ) -> Self {
        let metrics = fleet.map(|fleet| HealthMetrics {
            state: State::ALL.map(|state| {
                let mut labels = settings.endpoint_labels(&endpoint);
                labels.push(Label::from_static_parts(STATE, state.as_str()));
                metrics::gauge!(ENDPOINT_STATE, labels)
            }),
            fleet: fleet.clone(),
        });
        HealthObserver {
            endpoint,
            service: settings.service.clone(),
            metrics,
        }
    }

    fn enter(&self, state: State) {
        if let Some(m) = &self.metrics {
            m.state[state.index()].increment(1.0);
            m.fleet.0[state.index()].increment(1.0);
        }
    }

    fn leave(&self, state: State) {
        if let Some(m) = &self.metrics {
            m.state[state.index()].decrement(1.0);
            m.fleet.0[state.index()].decrement(1.0);
        }
    }

    /// The endpoint joined its fleet, active.
    pub(crate) fn joined(&self) {
        self.enter(State::Active);
    }

    /// The endpoint left its fleet (discovery removed it) from `state`.
    pub(crate) fn left(&self, state: State) {
        self.leave(state);
    }

    /// The endpoint was ejected for `reason`, for `length`: from active, or from probation
    /// when its probe failed.
    pub(crate) fn ejected(&self, reason: EjectReason, length: Duration, probe_failed: bool) {
        self.leave(if probe_failed {
            State::Probation
        } else {
            State::Active
        });
        self.enter(State::Ejected);
        if self.metrics.is_some() {
            let labels = vec![
                Label::new(SERVICE, self.service.clone()),
                Label::new(ENDPOINT, SharedString::from(self.endpoint.clone())),
                Label::from_static_parts(REASON, reason.as_str()),
            ];
            metrics::counter!(ENDPOINT_EJECTIONS_TOTAL, labels).increment(1);
        }
        ejected_event(&self.service, &self.endpoint, reason, length, probe_failed);
    }

    /// The ejection is over and the probe request was admitted.
    pub(crate) fn probing(&self) {
        self.leave(State::Ejected);
        self.enter(State::Probation);
        probation_event(&self.service, &self.endpoint);
    }

    /// The probe succeeded: the endpoint is active again.
    pub(crate) fn returned(&self) {
        self.leave(State::Probation);
        self.enter(State::Active);
        returned_event(&self.service, &self.endpoint);
    }
}

impl fmt::Debug for HealthObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthObserver")
            .field("endpoint", &self.endpoint)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

fn ejected_event(
    service: &str,
    endpoint: &str,
    reason: EjectReason,
    length: Duration,
    probe_failed: bool,
) {
    let ejected_for_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
    tracing::warn!(
        service,
        endpoint,
        reason = reason.as_str(),
        ejected_for_ms,
        probe_failed,
        "endpoint ejected"
    );
}

fn probation_event(service: &str, endpoint: &str) {
    tracing::info!(
        service,
        endpoint,
        "endpoint on probation: sending its probe"
    );
}

fn returned_event(service: &str, endpoint: &str) {
    tracing::info!(service, endpoint, "endpoint returned: its probe succeeded");
}
