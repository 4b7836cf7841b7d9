//! The metrics of logical requests and their attempts, recorded by the retry layer.

use crate::classify::{Class, Reason};
use crate::error::Kind;
use crate::observe::{
    ATTEMPT_TIMEOUTS_TOTAL, ATTEMPTS_TOTAL, BACKOFF_SECONDS, CANCELLED, CLASS, REASON,
    REPLAY_OVERFLOWS_TOTAL, REQUEST_DURATION_SECONDS, REQUESTS_COMPLETED_TOTAL, REQUESTS_TOTAL,
    RETRIES_REFUSED_TOTAL, RETRIES_TOTAL, ReasonCounters, Settings,
};
use metrics::{Counter, Histogram, Label};
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

/// The outcome class of a logical request, as the `class` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    Cancelled,
}

impl Outcome {
    pub(crate) fn of(class: &Class) -> Self {
        if class.is_success() {
            Outcome::Success
        } else {
            Outcome::Failure
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Cancelled => CANCELLED,
        }
    }
}

/// The reasons a retry is refused, in the order of [`RequestMetrics::refused`]'s handles.
const REFUSALS: [&str; 6] = [
    "budget_exhausted",
    "retries_exhausted",
    "body_too_large",
    "pushback",
    "deadline",
    "caller_retries",
];

/// Handles for one retry layer's metrics, registered when the layer builds its service.
///
/// The families that every request touches, and the few refusal reasons, are registered up
/// front; the ones labelled by an outcome's reason are registered on first use.
pub(crate) struct RequestMetrics {
    requests: Counter,
    attempts: Counter,
    succeeded: Counter,
    failed: ReasonCounters,
    cancelled: OnceLock<Counter>,
    duration_success: Histogram,
    duration_failure: Histogram,
    duration_cancelled: OnceLock<Histogram>,
    retries: ReasonCounters,
    refused: [Counter; REFUSALS.len()],
    replay_overflows: Counter,
    attempt_timeouts: Counter,
    backoff: Histogram,
    service: Label,
}

impl RequestMetrics {
    /// Registers the handles, or `None` when the settings turn metrics off.
    pub(crate) fn register(settings: &Settings) -> Option<Self> {
        if !settings.metrics {
            return None;
        }
        crate::observe::describe();
        let service = settings.service_label();
        let only_service = || vec![service.clone()];
        let with_class = |class: Outcome| {
            vec![
                service.clone(),
                Label::from_static_parts(CLASS, class.as_str()),
            ]
        };
        let mut completed_success = with_class(Outcome::Success);
        completed_success.push(Label::from_static_parts(REASON, "success"));
        Some(RequestMetrics {
            requests: metrics::counter!(REQUESTS_TOTAL, only_service()),
            attempts: metrics::counter!(ATTEMPTS_TOTAL, only_service()),
            succeeded: metrics::counter!(REQUESTS_COMPLETED_TOTAL, completed_success),
            failed: ReasonCounters::new(REQUESTS_COMPLETED_TOTAL, with_class(Outcome::Failure)),
            cancelled: OnceLock::new(),
            duration_success: metrics::histogram!(
                REQUEST_DURATION_SECONDS,
                with_class(Outcome::Success)
            ),
            duration_failure: metrics::histogram!(
                REQUEST_DURATION_SECONDS,
                with_class(Outcome::Failure)
            ),
            duration_cancelled: OnceLock::new(),
            retries: ReasonCounters::new(RETRIES_TOTAL, only_service()),
            refused: REFUSALS.map(|reason| {
                let labels = vec![service.clone(), Label::from_static_parts(REASON, reason)];
                metrics::counter!(RETRIES_REFUSED_TOTAL, labels)
            }),
            replay_overflows: metrics::counter!(REPLAY_OVERFLOWS_TOTAL, only_service()),
            attempt_timeouts: metrics::counter!(ATTEMPT_TIMEOUTS_TOTAL, only_service()),
            backoff: metrics::histogram!(BACKOFF_SECONDS, only_service()),
            service,
        })
    }

    /// A logical request arrived and its first attempt is sent.
    pub(crate) fn started(&self) {
        self.requests.increment(1);
        self.attempts.increment(1);
    }

    /// A retry is sent, after `waited` in backoff, because the attempt before failed for
    /// `reason`.
    pub(crate) fn retried(&self, reason: &'static str, waited: Duration) {
        self.attempts.increment(1);
        self.retries.get(reason).increment(1);
        self.backoff.record(waited.as_secs_f64());
    }

    /// An attempt ended with `kind` as its error.
    pub(crate) fn attempt_failed(&self, kind: Kind) {
        if kind == Kind::AttemptTimedOut {
            self.attempt_timeouts.increment(1);
        }
    }

    /// A retry was called for but refused with `kind`.
    pub(crate) fn refused(&self, kind: Kind) {
        let index = match kind {
            Kind::BudgetExhausted => 0,
            Kind::RetriesExhausted => 1,
            Kind::BodyTooLarge => 2,
            Kind::Pushback => 3,
            _ => 4, // DeadlineExceeded: the only other refusal
        };
        self.refused[index].increment(1);
    }

    /// A retry was left to the caller, which retries the request itself.
    pub(crate) fn refused_caller_retries(&self) {
        self.refused[5].increment(1);
    }

    /// The request's body outgrew the replay buffer.
    pub(crate) fn replay_overflowed(&self) {
        self.replay_overflows.increment(1);
    }

    /// The request finished as `class` after `took`.
    pub(crate) fn finished(&self, class: &Class, took: Duration) {
        let seconds = took.as_secs_f64();
        if class.is_success() {
            self.succeeded.increment(1);
            self.duration_success.record(seconds);
        } else {
            self.failed.get(class.reason().as_str()).increment(1);
            self.duration_failure.record(seconds);
        }
    }

    /// The request's future was dropped unfinished after `took`: when its deadline had
    /// passed, that is a timeout (the deadline layer gave up on it); otherwise its caller
    /// cancelled it.
    pub(crate) fn dropped(&self, deadline_passed: bool, took: Duration) {
        let seconds = took.as_secs_f64();
        if deadline_passed {
            self.failed.get(Reason::Timeout.as_str()).increment(1);
            self.duration_failure.record(seconds);
            return;
        }
        self.cancelled
            .get_or_init(|| {
                let labels = vec![
                    self.service.clone(),
                    Label::from_static_parts(CLASS, CANCELLED),
                    Label::from_static_parts(REASON, CANCELLED),
                ];
                metrics::counter!(REQUESTS_COMPLETED_TOTAL, labels)
            })
            .increment(1);
        self.duration_cancelled
            .get_or_init(|| {
                let labels = vec![
                    self.service.clone(),
                    Label::from_static_parts(CLASS, CANCELLED),
                ];
                metrics::histogram!(REQUEST_DURATION_SECONDS, labels)
            })
            .record(seconds);
    }
}

impl fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("service", &self.service.value())
            .finish_non_exhaustive()
    }
}
