//! A service that will refuse the next request without sending it says so to the layer
//! polling it ready, within that poll.
//!
//! The concurrency limit sits above the circuit breaker (a permit per logical request, shed
//! before retries are spent). When the limit is full it queues a request for a permit, and a
//! request the open breaker would refuse at once waited there first, up to the limit's
//! `max_wait`, then failed late, or as the limit's refusal. The breaker finds its refusal
//! when it is polled ready; it marks it here, and the limit, whose `poll_ready` called it,
//! takes the mark and lets that request through without a permit, to be refused at once.
//!
//! The mark lives for one synchronous `poll_ready` pass on one thread: the limit clears it
//! before it polls the service below and takes it right after.

use std::cell::Cell;

thread_local! {
    static REFUSING: Cell<bool> = const { Cell::new(false) };
}

/// Called by a service that, polled ready, has found it will refuse the next request.
pub(crate) fn mark() {
    REFUSING.with(|r| r.set(true));
}

/// Clears the mark before polling the service below.
pub(crate) fn clear() {
    REFUSING.with(|r| r.set(false));
}

/// Whether the service just polled ready marked a refusal; clears the mark.
pub(crate) fn take() -> bool {
    REFUSING.with(|r| r.replace(false))
}
