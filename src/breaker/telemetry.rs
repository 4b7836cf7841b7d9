//! The breaker's metrics and tracing events: its state gauge, its transitions and its
//! refusals.

use super::{BreakerState, TripReason};
use crate::observe::{
    BREAKER_REJECTED_TOTAL, BREAKER_STATE, BREAKER_TRANSITIONS_TOTAL, MODE, ROUTE, STATE, Settings,
};
use metrics::{Counter, Gauge, Label, SharedString};
use std::fmt;
use std::time::Duration;

/// The `mode` label values, in the order of [`Metrics::rejected`]'s inner arrays.
const MODES: [&str; 2] = ["enforce", "shadow"];

/// The metric handles of one breaker, registered when its layer builds a service.
struct Metrics {
    state: [Gauge; 4],
    transitions: [Counter; 4],
    /// By the refusing state (indexed like [`BreakerState::index`]; a closed breaker refuses
    /// nothing, so its row stays unused) and mode.
    rejected: [[Counter; 2]; 4],
}

/// The breaker's reporting: its service name for events and its metric handles (`None` with
/// metrics off).
pub(crate) struct Telemetry {
    service: SharedString,
    route: SharedString,
    metrics: Option<Metrics>,
}

impl Telemetry {
    /// Registers the handles of the breaker of the service `settings` names, for the route
    /// `route` (empty: the whole client), in state `now`.
    pub(crate) fn register(settings: &Settings, route: SharedString, now: BreakerState) -> Self {
        let metrics = settings.metrics.then(|| {
            crate::observe::describe();
            let labels = |state: BreakerState| {
                vec![
                    settings.service_label(),
                    Label::new(ROUTE, route.clone()),
                    Label::from_static_parts(STATE, state.as_str()),
                ]
            };
            Metrics {
                state: BreakerState::ALL.map(|s| metrics::gauge!(BREAKER_STATE, labels(s))),
                transitions: BreakerState::ALL
                    .map(|s| metrics::counter!(BREAKER_TRANSITIONS_TOTAL, labels(s))),
                rejected: BreakerState::ALL.map(|s| {
                    MODES.map(|mode| {
                        let mut labels = labels(s);
                        labels.push(Label::from_static_parts(MODE, mode));
                        metrics::counter!(BREAKER_REJECTED_TOTAL, labels)
                    })
                }),
            }
        });
        let telemetry = Telemetry {
            service: settings.service.clone(),
            route,
            metrics,
        };
        telemetry.publish(now);
        telemetry
    }

    /// Sets the state gauge: 1 for `state`, 0 for the others.
    pub(crate) fn publish(&self, state: BreakerState) {
        if let Some(m) = &self.metrics {
            for (gauge, s) in m.state.iter().zip(BreakerState::ALL) {
                gauge.set(if s == state { 1.0 } else { 0.0 });
            }
        }
    }

    /// A request was refused by `state` (`shadow`: it would have been, and went through).
    pub(crate) fn rejected(&self, state: BreakerState, shadow: bool) {
        if let Some(m) = &self.metrics {
            m.rejected[state.index()][usize::from(shadow)].increment(1);
        }
    }

    /// The breaker went from `from` to `to`; `break_left` is the break ahead when it opened.
    pub(crate) fn transition(
        &self,
        from: BreakerState,
        to: BreakerState,
        why: TripReason,
        break_left: Option<Duration>,
    ) {
        if let Some(m) = &self.metrics {
            m.transitions[to.index()].increment(1);
        }
        Self::trace(
            Some((&self.service, &self.route)),
            from,
            to,
            why,
            break_left,
        );
    }

    /// The tracing event of a transition: a warning when the circuit opens, information when
    /// it closes or starts probing.
    pub(crate) fn trace(
        service: Option<(&str, &str)>,
        from: BreakerState,
        to: BreakerState,
        why: TripReason,
        break_left: Option<Duration>,
    ) {
        let (service, route) = service.unwrap_or((crate::observe::DEFAULT_SERVICE, ""));
        let (from, reason) = (from.as_str(), why.as_str());
        match to {
            BreakerState::Open => tracing::warn!(
                service,
                route,
                from,
                reason,
                break_ms = break_left.map_or(0, |d| d.as_millis() as u64),
                "circuit breaker opened"
            ),
            BreakerState::Isolated => {
                tracing::warn!(service, route, from, "circuit breaker isolated")
            }
            BreakerState::HalfOpen => {
                tracing::info!(service, route, from, "circuit breaker half-open")
            }
            BreakerState::Closed => tracing::info!(service, route, from, "circuit breaker closed"),
        }
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("service", &&*self.service)
            .field("route", &&*self.route)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}
