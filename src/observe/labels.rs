//! Label values, and the handles of families labelled by an outcome's reason.

use super::forget::Forgetter;
use super::{DEFAULT_SERVICE, ENDPOINT, REASON, SERVICE};
use metrics::{Counter, Label, SharedString};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// What a layer labels its metrics with, and whether it records them at all.
#[derive(Clone)]
pub(crate) struct Settings {
    /// The `service` label; shared, so that cloning it for a label never allocates.
    pub(crate) service: SharedString,
    pub(crate) metrics: bool,
    /// Told the series of every endpoint removed, when set.
    pub(crate) forget: Option<Forgetter>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            service: SharedString::const_str(DEFAULT_SERVICE),
            metrics: true,
            forget: None,
        }
    }
}

impl Settings {
    pub(crate) fn set_service(&mut self, name: impl Into<String>) {
        let name: Arc<str> = Arc::from(name.into());
        self.service = SharedString::from(name);
    }

    /// The `service` label alone.
    pub(crate) fn service_label(&self) -> Label {
        Label::new(SERVICE, self.service.clone())
    }

    /// The labels of the endpoint labelled `endpoint`: `service` and `endpoint`.
    pub(crate) fn endpoint_labels(&self, endpoint: &Arc<str>) -> Vec<Label> {
        vec![
            self.service_label(),
            Label::new(ENDPOINT, SharedString::from(endpoint.clone())),
        ]
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("service", &&*self.service)
            .field("metrics", &self.metrics)
            .finish()
    }
}

/// Every value the `reason` label of an outcome can take: the labels of
/// [`Reason::as_str`](crate::classify::Reason::as_str), then `cancelled`.
const REASONS: [&str; 32] = [
    "success",
    "http_408",
    "http_429",
    "http_5xx",
    "http_4xx",
    "http_other",
    "grpc_ok",
    "grpc_cancelled",
    "grpc_unknown",
    "grpc_invalid_argument",
    "grpc_deadline_exceeded",
    "grpc_not_found",
    "grpc_already_exists",
    "grpc_permission_denied",
    "grpc_resource_exhausted",
    "grpc_failed_precondition",
    "grpc_aborted",
    "grpc_out_of_range",
    "grpc_unimplemented",
    "grpc_internal",
    "grpc_unavailable",
    "grpc_data_loss",
    "grpc_unauthenticated",
    "connect",
    "refused",
    "reset",
    "stale_connection",
    "timeout",
    "body",
    "no_endpoint",
    "other",
    CANCELLED,
];

/// The reason of a request its caller dropped before its deadline.
pub(crate) const CANCELLED: &str = "cancelled";

/// A counter family labelled by an outcome's reason, on top of fixed labels (`service`, …).
///
/// Each reason's handle is registered the first time that reason occurs, then kept: a reason
/// that never happens never shows up as a zero series, and no label is built after the first
/// time. A reason outside the table (a new classifier reason) counts as `other`.
pub(crate) struct ReasonCounters {
    name: &'static str,
    labels: Vec<Label>,
    slots: [OnceLock<Counter>; REASONS.len()],
}

impl ReasonCounters {
    pub(crate) fn new(name: &'static str, labels: Vec<Label>) -> Self {
        ReasonCounters {
            name,
            labels,
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The counter for `reason` (a label from the table above).
    pub(crate) fn get(&self, reason: &'static str) -> &Counter {
        // A linear scan of 32 short strings: this runs on failure paths only.
        let (slot, label) = match REASONS.iter().position(|r| *r == reason) {
            Some(i) => (i, reason),
            None => (REASONS.len() - 2, "other"),
        };
        self.slots[slot].get_or_init(|| {
            let mut labels = self.labels.clone();
            labels.push(Label::from_static_parts(REASON, label));
            metrics::counter!(self.name, labels)
        })
    }
}

impl fmt::Debug for ReasonCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReasonCounters")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Code, Reason};

    #[test]
    fn every_reason_label_has_a_slot() {
        let mut reasons = vec![
            Reason::Success,
            Reason::Status(408),
            Reason::Status(429),
            Reason::Status(503),
            Reason::Status(404),
            Reason::Status(302),
            Reason::Connect,
            Reason::Refused,
            Reason::Reset,
            Reason::StaleConnection,
            Reason::Timeout,
            Reason::Body,
            Reason::NoEndpoint,
            Reason::Other,
        ];
        reasons.extend((0..17).map(|n| Reason::Grpc(Code::from_i32(n))));
        for reason in reasons {
            assert!(REASONS.contains(&reason.as_str()), "{reason:?}");
        }
        assert_eq!(REASONS[REASONS.len() - 2], "other");
    }
}
