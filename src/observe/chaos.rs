//! Names of fault injection's metrics ([`crate::chaos`]).

use metrics::Unit;

/// Faults injected by a [`ChaosLayer`](crate::chaos::ChaosLayer). Labels: `service`, `fault`
/// (`delay`, `error`, `reset`, `refused`). A delayed request that also fails counts once for
/// the delay and once for the failure.
///
/// ```
/// assert_eq!(meshless::observe::CHAOS_INJECTED_TOTAL, "meshless_chaos_injected_total");
/// ```
pub const CHAOS_INJECTED_TOTAL: &str = "meshless_chaos_injected_total";

/// The label naming the kind of an injected fault.
///
/// ```
/// assert_eq!(meshless::observe::FAULT, "fault");
/// ```
pub const FAULT: &str = "fault";

/// HELP text and unit of the family above.
pub(crate) fn describe() {
    metrics::describe_counter!(
        CHAOS_INJECTED_TOTAL,
        Unit::Count,
        "Faults injected by the fault injection layer, by kind (delay, error, reset, refused)."
    );
}
