//! What a request's route says, as the layers read it: the policy a client's router attached
//! to the request (an extension), and the switch that tells a layer whether to look. Here on
//! the floor, so that the deadline, retry and hedge layers read it without importing the
//! router above them (`crate::route`), which builds it.

use http::Request;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether any client in the process has turned routing on: until one does, the layers below
/// a router read nothing more per request than this flag.
static ANY_ROUTED: AtomicBool = AtomicBool::new(false);

/// Called by a router that turns on: from then on the layers of routed clients look for a
/// route.
pub(crate) fn turn_routing_on() {
    ANY_ROUTED.store(true, Ordering::Release);
}

/// Tells a layer whether requests may carry a route. A plain flag rather than a handle on the
/// client's routing: the client clones its stack for every request, and a shared handle
/// would cost two atomic operations each time. It is on for a client's layers; a request
/// finds a route only if its client put one there, so a client without routes in a process
/// where another has some pays one extension lookup per layer, and no more.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Switch(bool);

impl Switch {
    /// The switch of a client's layers.
    pub(crate) fn client() -> Switch {
        Switch(true)
    }

    /// Whether a request may carry a [`RouteExt`]. Never turns off once on: a request routed
    /// while it was on is read as routed.
    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.0 && ANY_ROUTED.load(Ordering::Relaxed)
    }

    /// The request's route, when routing is on and it has one.
    #[inline]
    pub(crate) fn route<'a, B>(&self, req: &'a Request<B>) -> Option<&'a RouteExt> {
        if self.on() { lookup(req) } else { None }
    }
}

/// Out of line: inlined, the lookup makes the layers' `call`s large enough that the compiler
/// stops inlining their own lookups (callgrind: 34 more instructions a request, with
/// routing off).
#[inline(never)]
fn lookup<B>(req: &Request<B>) -> Option<&RouteExt> {
    req.extensions().get::<RouteExt>()
}

/// A request's hedging, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HedgePlan {
    pub(crate) enabled: bool,
    pub(crate) max_hedges: u32,
    /// A fixed delay of the route's own; `None`: the hedge layer's delay.
    pub(crate) delay: Option<Duration>,
}

/// What the layers below the router read of a request's route.
#[derive(Debug, PartialEq)]
pub(crate) struct RoutePolicy {
    pub(crate) deadline: Duration,
    pub(crate) attempt_timeout: Duration,
    /// Neither the route nor the client set the attempt timeout: it is the deadline shared by
    /// the attempts, under the derived timeout's rules (a retry runs to the deadline; it
    /// stands aside while attempts often run past it).
    pub(crate) attempt_derived: bool,
    pub(crate) max_retries: u32,
    pub(crate) idempotent: Option<bool>,
    pub(crate) hedge: HedgePlan,
}

/// A request's route, as an extension: the policy of the snapshot it was matched in, kept
/// by the request whatever reload comes after.
#[derive(Debug, Clone)]
pub(crate) struct RouteExt(pub(crate) Arc<RoutePolicy>);
