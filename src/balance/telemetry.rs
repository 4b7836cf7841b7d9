//! The metrics and span fields of a balancer and its endpoints.

use crate::observe::{
    self, BALANCER_FAIL_FAST_TOTAL, ENDPOINT_CANCELLED_TOTAL, ENDPOINT_FAILURES_TOTAL,
    ENDPOINT_LATENCY_SECONDS, ENDPOINT_REQUESTS_TOTAL, ENDPOINT_RTT_EWMA_SECONDS, Settings,
};
use crate::observe::{
    ENDPOINT_EJECTIONS_TOTAL, ENDPOINT_STATE, REASON, STATE, SeriesGuard, SeriesKind,
};
use crate::outlier::{EjectReason, FleetGauges, State};
use metrics::{Counter, Gauge, Histogram, Key, Label};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tracing::field::Value;

/// One balancer's handles: its endpoints by state, and its fail-fast counter.
pub(crate) struct BalancerMetrics {
    settings: Settings,
    by_state: FleetGauges,
    fail_fast: Counter,
}

impl BalancerMetrics {
    /// Registers the handles, or `None` when the settings turn metrics off.
    pub(crate) fn register(settings: &Settings) -> Option<Self> {
        if !settings.metrics {
            return None;
        }
        observe::describe();
        Some(BalancerMetrics {
            settings: settings.clone(),
            by_state: FleetGauges::register(settings),
            fail_fast: metrics::counter!(BALANCER_FAIL_FAST_TOTAL, vec![settings.service_label()]),
        })
    }

    /// The balancer's endpoints by state, which each endpoint's health observer moves.
    pub(crate) fn by_state(&self) -> &FleetGauges {
        &self.by_state
    }

    /// A request failed for want of a ready endpoint.
    pub(crate) fn failed_fast(&self) {
        self.fail_fast.increment(1);
    }

    /// Registers the handles of the endpoint labelled `endpoint`: those every request's end
    /// records, and the rest.
    pub(crate) fn endpoint(&self, endpoint: &Arc<str>) -> (RequestHandles, EndpointMetrics) {
        let labels = self.settings.endpoint_labels(endpoint);
        let forget = self
            .settings
            .forget
            .as_ref()
            .map(|forgetter| forgetter.hold(labels.clone(), series(&labels)));
        let each = RequestHandles {
            requests: metrics::counter!(ENDPOINT_REQUESTS_TOTAL, labels.clone()),
            latency: metrics::histogram!(ENDPOINT_LATENCY_SECONDS, labels.clone()),
        };
        let rest = EndpointMetrics {
            _forget: forget,
            failures: metrics::counter!(ENDPOINT_FAILURES_TOTAL, labels.clone()),
            cancelled: metrics::counter!(ENDPOINT_CANCELLED_TOTAL, labels.clone()),
            rtt: metrics::gauge!(ENDPOINT_RTT_EWMA_SECONDS, labels),
        };
        (each, rest)
    }
}

impl fmt::Debug for BalancerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancerMetrics")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Every series an endpoint labelled `labels` can have, those written by its health observer
/// included; the ones never written (an ejection reason that never happened) are forgotten
/// too, harmlessly.
fn series(labels: &[Label]) -> Vec<(SeriesKind, Key)> {
    let key = |name: &'static str, extra: Option<Label>| {
        Key::from_parts(
            name,
            labels.iter().cloned().chain(extra).collect::<Vec<_>>(),
        )
    };
    let mut all = vec![
        (SeriesKind::Counter, key(ENDPOINT_REQUESTS_TOTAL, None)),
        (SeriesKind::Counter, key(ENDPOINT_FAILURES_TOTAL, None)),
        (SeriesKind::Counter, key(ENDPOINT_CANCELLED_TOTAL, None)),
        (SeriesKind::Histogram, key(ENDPOINT_LATENCY_SECONDS, None)),
        (SeriesKind::Gauge, key(ENDPOINT_RTT_EWMA_SECONDS, None)),
    ];
    for state in State::ALL {
        let label = Label::from_static_parts(STATE, state.as_str());
        all.push((SeriesKind::Gauge, key(ENDPOINT_STATE, Some(label))));
    }
    for reason in EjectReason::ALL {
        let label = Label::from_static_parts(REASON, reason.as_str());
        all.push((
            SeriesKind::Counter,
            key(ENDPOINT_EJECTIONS_TOTAL, Some(label)),
        ));
    }
    all
}

/// The two handles the end of every request records, kept in the line of the endpoint's meter
/// that the end of a request writes anyway. No-op handles when metrics are off: a branch each,
/// on a line already at hand.
pub(crate) struct RequestHandles {
    requests: Counter,
    latency: Histogram,
}

impl RequestHandles {
    /// Handles that record nothing.
    pub(crate) fn off() -> Self {
        RequestHandles {
            requests: Counter::noop(),
            latency: Histogram::noop(),
        }
    }

    /// A request finished after `latency`.
    #[inline]
    pub(crate) fn finished(&self, latency: Duration) {
        self.requests.increment(1);
        self.latency.record(latency.as_secs_f64());
    }
}

impl fmt::Debug for RequestHandles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHandles").finish_non_exhaustive()
    }
}

/// One endpoint's other handles, kept in the balancer's meter for the endpoint: dropped with
/// the meter, once the endpoint is removed and its last request finished.
pub(crate) struct EndpointMetrics {
    /// Forgets the endpoint's series when dropped (with [`ForgetSeries`] configured).
    ///
    /// [`ForgetSeries`]: crate::observe::ForgetSeries
    _forget: Option<SeriesGuard>,
    failures: Counter,
    cancelled: Counter,
    rtt: Gauge,
}

impl EndpointMetrics {
    /// A request failed (besides [`RequestHandles::finished`]).
    pub(crate) fn failed(&self) {
        self.failures.increment(1);
    }

    /// A request's caller gave up on it while at the endpoint.
    pub(crate) fn cancelled(&self) {
        self.cancelled.increment(1);
    }

    /// Publishes the endpoint's peak-EWMA estimate, `rtt_nanos`.
    ///
    /// Not on every request: the balancer publishes it when it jumps (a failure's miss, a
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

/// Records the endpoint the balancer picked in the current span: the attempt's span when the
/// balancer runs under a retry layer (a span without an `endpoint` field ignores it).
///
/// This is what `Span::current().record("endpoint", …)` does, without making a handle to the
/// current span: with a real subscriber that saves cloning and closing it on every request.
/// The label is read only then: otherwise the endpoint's record is not touched for it.
pub(crate) fn record_endpoint(endpoint: &Arc<str>) {
    // Attempt spans are DEBUG: nothing to do unless they can exist.
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return;
    }
    let endpoint: &str = endpoint;
    tracing::dispatcher::get_default(|dispatch| {
        let Some((id, metadata)) = dispatch.current_span().into_inner() else {
            return;
        };
        let fields = metadata.fields();
        let Some(field) = fields.field("endpoint") else {
            return;
        };
        let values = [(&field, Some(&endpoint as &dyn Value))];
        dispatch.record(&id, &tracing::span::Record::new(&fields.value_set(&values)));
    });
}
