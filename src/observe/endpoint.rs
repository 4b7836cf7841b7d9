//! The metrics and events of a balancer and its endpoints.

use super::labels::Settings;
use super::{
    BALANCER_ENDPOINTS, BALANCER_FAIL_FAST_TOTAL, ENDPOINT, ENDPOINT_CANCELLED_TOTAL,
    ENDPOINT_EJECTIONS_TOTAL, ENDPOINT_FAILURES_TOTAL, ENDPOINT_LATENCY_SECONDS,
    ENDPOINT_REQUESTS_TOTAL, ENDPOINT_RTT_EWMA_SECONDS, ENDPOINT_STATE, REASON, STATE,
};
use crate::outlier::EjectReason;
use metrics::{Counter, Gauge, Histogram, Label, SharedString};
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
    const ALL: [State; 3] = [State::Active, State::Ejected, State::Probation];

    fn index(self) -> usize {
        match self {
            State::Active => 0,
            State::Ejected => 1,
            State::Probation => 2,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Ejected => "ejected",
            State::Probation => "probation",
        }
    }
}

/// One balancer's handles: its endpoints by state, and its fail-fast counter.
pub(crate) struct BalancerMetrics {
    settings: Settings,
    by_state: Arc<[Gauge; 3]>,
    fail_fast: Counter,
}

impl BalancerMetrics {
    /// Registers the handles, or `None` when the settings turn metrics off.
    pub(crate) fn register(settings: &Settings) -> Option<Self> {
        if !settings.metrics {
            return None;
        }
        super::describe();
        let service = settings.service_label();
        let by_state = State::ALL.map(|state| {
            let labels = vec![
                service.clone(),
                Label::from_static_parts(STATE, state.as_str()),
            ];
            metrics::gauge!(BALANCER_ENDPOINTS, labels)
        });
        Some(BalancerMetrics {
            settings: settings.clone(),
            by_state: Arc::new(by_state),
            fail_fast: metrics::counter!(BALANCER_FAIL_FAST_TOTAL, vec![service]),
        })
    }

    /// A request failed for want of a ready endpoint.
    pub(crate) fn failed_fast(&self) {
        self.fail_fast.increment(1);
    }

    /// Registers the handles of the endpoint labelled `endpoint`.
    pub(crate) fn endpoint(&self, endpoint: &Arc<str>) -> EndpointMetrics {
        let labels = endpoint_labels(&self.settings, endpoint);
        EndpointMetrics {
            requests: metrics::counter!(ENDPOINT_REQUESTS_TOTAL, labels.clone()),
            failures: metrics::counter!(ENDPOINT_FAILURES_TOTAL, labels.clone()),
            cancelled: metrics::counter!(ENDPOINT_CANCELLED_TOTAL, labels.clone()),
            latency: metrics::histogram!(ENDPOINT_LATENCY_SECONDS, labels.clone()),
            rtt: metrics::gauge!(ENDPOINT_RTT_EWMA_SECONDS, labels),
        }
    }
}

impl fmt::Debug for BalancerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancerMetrics")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn endpoint_labels(settings: &Settings, endpoint: &Arc<str>) -> Vec<Label> {
    vec![
        settings.service_label(),
        Label::new(ENDPOINT, SharedString::from(endpoint.clone())),
    ]
}

/// One endpoint's request handles, kept in the balancer's meter for the endpoint.
pub(crate) struct EndpointMetrics {
    requests: Counter,
    failures: Counter,
    cancelled: Counter,
    latency: Histogram,
    rtt: Gauge,
}

impl EndpointMetrics {
    /// A request finished after `latency`.
    pub(crate) fn finished(&self, failure: bool, latency: Duration) {
        self.requests.increment(1);
        if failure {
            self.failures.increment(1);
        }
        self.latency.record(latency.as_secs_f64());
    }

    /// A request's caller gave up on it while at the endpoint.
    pub(crate) fn cancelled(&self) {
        self.cancelled.increment(1);
    }

    /// Publishes the endpoint's peak-EWMA estimate, `rtt_nanos`.
    ///
    /// Not on every request: the balancer publishes it when it jumps (a failure's penalty, a
    /// probe's fresh start) and for every endpoint at each outlier sweep (every 10 s by
    /// default). Between those it only drifts, and a gauge operation per request would cost
    /// more than the drift is worth.
    pub(crate) fn rtt(&self, rtt_nanos: f64) {
        self.rtt.set(rtt_nanos / 1e9);
    }
}

impl fmt::Debug for EndpointMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointMetrics").finish_non_exhaustive()
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
    /// The balancer's endpoints by state.
    fleet: Arc<[Gauge; 3]>,
}

impl HealthObserver {
    /// An observer that only emits events, for an endpoint with no name: a detector used
    /// without a balancer.
    pub(crate) fn unnamed() -> Self {
        HealthObserver {
            endpoint: Arc::from("unnamed"),
            service: SharedString::const_str(super::DEFAULT_SERVICE),
            metrics: None,
        }
    }

    /// The observer of the endpoint labelled `endpoint`, in a balancer with `balancer`'s
    /// metrics (`None` when they are off).
    pub(crate) fn new(
        settings: &Settings,
        endpoint: Arc<str>,
        balancer: Option<&BalancerMetrics>,
    ) -> Self {
        let metrics = balancer.map(|balancer| HealthMetrics {
            state: State::ALL.map(|state| {
                let mut labels = endpoint_labels(settings, &endpoint);
                labels.push(Label::from_static_parts(STATE, state.as_str()));
                metrics::gauge!(ENDPOINT_STATE, labels)
            }),
            fleet: balancer.by_state.clone(),
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
            m.fleet[state.index()].increment(1.0);
        }
    }

    fn leave(&self, state: State) {
        if let Some(m) = &self.metrics {
            m.state[state.index()].decrement(1.0);
            m.fleet[state.index()].decrement(1.0);
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
                Label::new(super::SERVICE, self.service.clone()),
                Label::new(ENDPOINT, SharedString::from(self.endpoint.clone())),
                Label::from_static_parts(REASON, reason.as_str()),
            ];
            metrics::counter!(ENDPOINT_EJECTIONS_TOTAL, labels).increment(1);
        }
        super::trace::ejected(&self.service, &self.endpoint, reason, length, probe_failed);
    }

    /// The ejection is over and the probe request was admitted.
    pub(crate) fn probing(&self) {
        self.leave(State::Ejected);
        self.enter(State::Probation);
        super::trace::probation(&self.service, &self.endpoint);
    }

    /// The probe succeeded: the endpoint is active again.
    pub(crate) fn returned(&self) {
        self.leave(State::Probation);
        self.enter(State::Active);
        super::trace::returned(&self.service, &self.endpoint);
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
