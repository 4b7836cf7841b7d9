//! Tracing: the spans of a request and its attempts.
//!
//! Span names are literals because `tracing` keeps them in static metadata; they equal
//! [`REQUEST_SPAN`](crate::observe::REQUEST_SPAN) and
//! [`ATTEMPT_SPAN`](crate::observe::ATTEMPT_SPAN), as
//! `tests/tracing.rs` checks.

use std::sync::OnceLock;
use std::time::Duration;
use tracing::Span;
use tracing::field::{Empty, Field, Value};

/// The spans of one logical request: its own, and that of the attempt in flight.
///
/// Boxed in the retry future, and only when a subscriber enables the request span, so that
/// without one the future grows by a pointer and no span is built.
pub(crate) struct Trace {
    pub(crate) request: Span,
    pub(crate) attempt: Span,
}

impl Trace {
    /// The span of a request of `service` to `method` `path`, or `None` when no subscriber
    /// wants it.
    pub(crate) fn start(service: &str, method: &http::Method, path: &str) -> Option<Box<Trace>> {
        let request = tracing::info_span!(
            "meshless.request",
            service,
            method = %method,
            path,
            attempts = Empty,
            class = Empty,
            reason = Empty,
        );
        if request.is_disabled() {
            return None;
        }
        Some(Box::new(Trace {
            request,
            attempt: Span::none(),
        }))
    }
}

/// The span of attempt number `attempt` of `request`, sent after waiting `backoff`.
pub(crate) fn attempt_span(request: &Span, attempt: u32, backoff: Duration) -> Span {
    let backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
    tracing::debug_span!(
        parent: request,
        "meshless.attempt",
        attempt,
        backoff_ms,
        endpoint = Empty,
        outcome = Empty,
    )
}

/// Records how an attempt ended: the classifier's reason.
pub(crate) fn attempt_ended(attempt: &Span, reason: &'static str) {
    let Some(metadata) = attempt.metadata() else {
        return;
    };
    static OUTCOME: OnceLock<Option<Field>> = OnceLock::new();
    let Some(outcome) = late_fields(&OUTCOME, || metadata.fields().field("outcome")) else {
        return;
    };
    let values = [(outcome, Some(&reason as &dyn Value))];
    attempt.record_all(&metadata.fields().value_set(&values));
}

/// Records how a request ended, in one call to the subscriber (one `record` per field would
/// make three).
pub(crate) fn request_finished(
    request: &Span,
    attempts: u32,
    class: &'static str,
    reason: &'static str,
) {
    let Some(metadata) = request.metadata() else {
        return;
    };
    static ENDING: OnceLock<Option<[Field; 3]>> = OnceLock::new();
    let fields = metadata.fields();
    let Some([f_attempts, f_class, f_reason]) = late_fields(&ENDING, || {
        Some([
            fields.field("attempts")?,
            fields.field("class")?,
            fields.field("reason")?,
        ])
    }) else {
        return;
    };
    let values = [
        (f_attempts, Some(&attempts as &dyn Value)),
        (f_class, Some(&class as &dyn Value)),
        (f_reason, Some(&reason as &dyn Value)),
    ];
    request.record_all(&fields.value_set(&values));
}

/// The handles of fields recorded after a span's creation, looked up by name once.
///
/// `Span::record` finds its field by comparing names on every call, which is most of what
/// recording costs. Every request span comes from the one callsite in [`Trace::start`] and
/// every attempt span from the one in [`attempt_span`], so their field handles never change:
/// they are looked up on first use and kept.
fn late_fields<T>(
    cell: &'static OnceLock<Option<T>>,
    lookup: impl FnOnce() -> Option<T>,
) -> Option<&'static T> {
    cell.get_or_init(lookup).as_ref()
}

/// A retry was refused because the budget was empty.
pub(crate) fn budget_exhausted(attempts: u32, reason: &'static str) {
    tracing::info!(attempts, reason, "retry budget exhausted: not retrying");
}
