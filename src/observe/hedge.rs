//! Names of the hedge layer's metrics. [`describe`](super::describe) covers them.

use metrics::Unit;

/// Hedges sent: extra attempts of a request that had no answer after the hedge delay.
/// Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::HEDGES_TOTAL, "meshless_hedges_total");
/// ```
pub const HEDGES_TOTAL: &str = "meshless_hedges_total";

/// Hedges whose answer won: the request got its answer from a hedge, not from the first
/// attempt. Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::HEDGES_WON_TOTAL, "meshless_hedges_won_total");
/// ```
pub const HEDGES_WON_TOTAL: &str = "meshless_hedges_won_total";

/// Hedges not sent when their delay passed. Labels: `service`, `reason`: `budget` (the retry
/// budget, shared with retries, had no token), `extra_load` (the extra-load cap), `deadline`
/// (too little time left to finish), `not_idempotent` (the request is not safe to repeat;
/// counted when the request starts, once the layer has a delay), `body` (the body could not be
/// replayed yet: still streaming, or too large).
///
/// ```
/// assert_eq!(meshless::observe::HEDGES_REFUSED_TOTAL, "meshless_hedges_refused_total");
/// ```
pub const HEDGES_REFUSED_TOTAL: &str = "meshless_hedges_refused_total";

/// The hedge delay in force, in seconds: the latency percentile (or the fixed delay); absent
/// until the percentile has its minimum number of samples. Labels: `service`.
///
/// ```
/// assert_eq!(meshless::observe::HEDGE_DELAY_SECONDS, "meshless_hedge_delay_seconds");
/// ```
pub const HEDGE_DELAY_SECONDS: &str = "meshless_hedge_delay_seconds";

pub(super) fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(HEDGES_TOTAL, Unit::Count, "Hedges sent.");
    describe_counter!(
        HEDGES_WON_TOTAL,
        Unit::Count,
        "Requests whose answer came from a hedge."
    );
    describe_counter!(
        HEDGES_REFUSED_TOTAL,
        Unit::Count,
        "Hedges not sent, by reason: budget, extra_load, deadline, not_idempotent, body."
    );
    describe_gauge!(
        HEDGE_DELAY_SECONDS,
        Unit::Seconds,
        "The hedge delay in force: the latency percentile or the fixed delay."
    );
}
