//! The router at the top of a client's stack, and the snapshot a reload swaps.

use super::table::{Defaults, Table};
use super::{Route, validate_all};
use crate::error::ConfigError;
use crate::primitives::route_policy::{RouteExt, turn_routing_on};
use crate::retry::Idempotent;
use http::Request;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// A client's routes and defaults: one snapshot, read once per request, swapped whole.
///
/// A `RwLock` rather than a lock-free swap: it is taken only once routing is on, for the
/// time of a match and one reference count, and a reload (rare) is the only writer.
#[derive(Debug)]
pub(crate) struct Routing {
    on: AtomicBool,
    table: RwLock<Arc<Table>>,
}

impl Routing {
    /// The routing of a client with `routes` over `defaults`, on if there are routes.
    pub(crate) fn new(routes: &[Route], defaults: &Defaults) -> Result<Routing, ConfigError> {
        validate_all(routes)?;
        let routing = Routing {
            on: AtomicBool::new(false),
            table: RwLock::new(Arc::new(Table::new(routes, defaults))),
        };
        if !routes.is_empty() {
            routing.turn_on();
        }
        Ok(routing)
    }

    fn turn_on(&self) {
        turn_routing_on();
        self.on.store(true, Ordering::Release);
    }

    /// Swaps in new routes and defaults for the requests sent from now on, once checked;
    /// requests in flight keep the policies they were matched with.
    pub(crate) fn reload(&self, routes: &[Route], defaults: &Defaults) -> Result<(), ConfigError> {
        validate_all(routes)?;
        let table = Arc::new(Table::new(routes, defaults));
        // A poisoned lock only says a reader panicked: the table it guards is whole.
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
        // After the table: a request that sees the switch on finds the new table.
        self.turn_on();
        Ok(())
    }

    /// Swaps in new routes over the defaults in force (see [`reload`](Self::reload)).
    pub(crate) fn reload_routes(&self, routes: &[Route]) -> Result<(), ConfigError> {
        let defaults = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .defaults;
        self.reload(routes, &defaults)
    }

    /// Matches `req` to its route and marks it with the route's policy, once the client has
    /// routes or was reloaded; before that, one load and a branch. Called by each client
    /// before its stack, from `&self`: nothing is cloned for it.
    #[inline]
    pub(crate) fn apply<B>(&self, req: &mut Request<B>) {
        if self.on.load(Ordering::Acquire) {
            self.route(req);
        }
    }

    #[inline(never)]
    fn route<B>(&self, req: &mut Request<B>) {
        let policy = {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            table.pick(req.method(), req.uri().path()).clone()
        };
        let extensions = req.extensions_mut();
        if let Some(idempotent) = policy.idempotent {
            // A mark the caller put on the request is more specific than the route's: put
            // back. Not asked with `get` first: one more caller of that lookup makes the
            // compiler stop inlining it in the retry layer (callgrind: 34 instructions a
            // request, routes or not).
            if let Some(own) = extensions.insert(Idempotent(idempotent)) {
                extensions.insert(own);
            }
        }
        extensions.insert(RouteExt(policy));
    }
}
