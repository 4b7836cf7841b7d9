//! Names of the protection layers' metrics: the circuit breaker, the concurrency limits and
//! client-side throttling. Kept apart from the request and endpoint families so that each list
//! stays short; [`describe`](super::describe) covers both.

use metrics::Unit;

/// The circuit breaker's state. Labels: `service`, `route` (empty for the whole client),
/// `state` (`closed`, `open`, `half-open`, `isolated`): 1 for the current state, 0 for the
/// others.
///
/// ```
/// assert_eq!(meshless::observe::BREAKER_STATE, "meshless_breaker_state");
/// ```
pub const BREAKER_STATE: &str = "meshless_breaker_state";

/// Transitions of the circuit breaker, by the state entered. Labels: `service`, `route`,
/// `state`.
///
/// ```
/// assert_eq!(
///     meshless::observe::BREAKER_TRANSITIONS_TOTAL,
///     "meshless_breaker_transitions_total"
/// );
/// ```
pub const BREAKER_TRANSITIONS_TOTAL: &str = "meshless_breaker_transitions_total";

/// Requests the circuit breaker refused (or, in shadow mode, would have refused). Labels:
/// `service`, `route`, `state` (the state that refused it), `mode` (`enforce`, `shadow`).
///
/// ```
/// assert_eq!(
///     meshless::observe::BREAKER_REJECTED_TOTAL,
///     "meshless_breaker_rejected_total"
/// );
/// ```
pub const BREAKER_REJECTED_TOTAL: &str = "meshless_breaker_rejected_total";

/// The concurrency limit in force: the fixed limit, or the adaptive limit's current value.
/// Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::CONCURRENCY_LIMIT, "meshless_concurrency_limit");
/// ```
pub const CONCURRENCY_LIMIT: &str = "meshless_concurrency_limit";

/// Requests holding a concurrency permit (from admission to the end of the response body).
/// Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::CONCURRENCY_IN_FLIGHT, "meshless_concurrency_in_flight");
/// ```
pub const CONCURRENCY_IN_FLIGHT: &str = "meshless_concurrency_in_flight";

/// Requests the concurrency limit refused. Labels: `service`.
///
/// ```
/// assert_eq!(
///     meshless::observe::CONCURRENCY_REJECTED_TOTAL,
///     "meshless_concurrency_rejected_total"
/// );
/// ```
pub const CONCURRENCY_REJECTED_TOTAL: &str = "meshless_concurrency_rejected_total";

/// Requests client-side throttling refused. Labels: `service`.
///
/// ```
/// assert_eq!(
///     meshless::observe::THROTTLE_REJECTED_TOTAL,
///     "meshless_throttle_rejected_total"
/// );
/// ```
pub const THROTTLE_REJECTED_TOTAL: &str = "meshless_throttle_rejected_total";

/// The probability with which throttling refuses a request now, from 0 to its cap. Labels:
/// `service`.
///
/// ```
/// assert_eq!(
///     meshless::observe::THROTTLE_PROBABILITY,
///     "meshless_throttle_probability"
/// );
/// ```
pub const THROTTLE_PROBABILITY: &str = "meshless_throttle_probability";

/// The route label of a per-route breaker: the route's name, empty for the whole client.
///
/// ```
/// assert_eq!(meshless::observe::ROUTE, "route");
/// ```
pub const ROUTE: &str = "route";

/// The mode label of breaker rejections: `enforce` or `shadow`.
///
/// ```
/// assert_eq!(meshless::observe::MODE, "mode");
/// ```
pub const MODE: &str = "mode";

/// HELP texts and units of the families above.
pub(super) fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        BREAKER_STATE,
        Unit::Count,
        "1 for the circuit breaker's state (closed, open, half-open, isolated), 0 for the others."
    );
    describe_counter!(
        BREAKER_TRANSITIONS_TOTAL,
        Unit::Count,
        "Circuit breaker transitions, by the state entered."
    );
    describe_counter!(
        BREAKER_REJECTED_TOTAL,
        Unit::Count,
        "Requests the circuit breaker refused, or would have refused in shadow mode."
    );
    describe_gauge!(
        CONCURRENCY_LIMIT,
        Unit::Count,
        "The concurrency limit in force (fixed, or the adaptive limit's current value)."
    );
    describe_gauge!(
        CONCURRENCY_IN_FLIGHT,
        Unit::Count,
        "Requests holding a concurrency permit, until their response body ends."
    );
    describe_counter!(
        CONCURRENCY_REJECTED_TOTAL,
        Unit::Count,
        "Requests refused because the concurrency limit was full."
    );
    describe_counter!(
        THROTTLE_REJECTED_TOTAL,
        Unit::Count,
        "Requests refused by client-side adaptive throttling."
    );
    describe_gauge!(
        THROTTLE_PROBABILITY,
        Unit::Count,
        "The probability with which client-side throttling refuses a request now."
    );
}
