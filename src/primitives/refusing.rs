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
use std::task::{Context, Poll, ready};

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

/// Spends one unit of the task's cooperative budget on a refusal, as a socket read does: with
/// the budget spent the task yields (`Pending`, woken at once) before it is refused.
///
/// A refusal answers at once, with no I/O. A caller that sends its next request as soon as one
/// fails (a closed loop of workers, a retry loop of its own) would otherwise never yield, and
/// starve the requests in flight on its thread: the very ones whose answers end the refusals
/// (the limit grows with them, the breaker's probe is one of them). With it, such a caller
/// yields every 128 refusals or so.
pub(crate) fn poll_budget(cx: &mut Context<'_>) -> Poll<()> {
    let coop = ready!(tokio::task::coop::poll_proceed(cx));
    coop.made_progress();
    Poll::Ready(())
}
