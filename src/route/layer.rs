//! The router at the top of a client's stack, and the snapshot a reload swaps.

use super::table::{Defaults, RouteExt, Table};
use super::{Route, validate_all};
use crate::error::ConfigError;
use crate::retry::Idempotent;
use http::Request;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use tower::Service;

/// Tells the layers below the router whether requests may carry a route: off until a client
/// has routes or is reloaded, so that one without routes reads nothing more per request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Switch(Option<Arc<AtomicBool>>);

impl Switch {
    /// Whether a request may carry a [`RouteExt`]. Never turns off once on: a request routed
    /// while it was on is read as routed.
    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.0.as_ref().is_some_and(|on| on.load(Ordering::Relaxed))
    }

    /// The request's route, when routing is on and it has one.
    #[inline]
    pub(crate) fn route<'a, B>(&self, req: &'a Request<B>) -> Option<&'a RouteExt> {
        if self.on() {
            req.extensions().get::<RouteExt>()
        } else {
            None
        }
    }
}

/// A client's routes and defaults: one snapshot, read once per request, swapped whole.
///
/// A `RwLock` rather than a lock-free swap: it is taken only once routing is on, for the
/// time of a match and one reference count, and a reload (rare) is the only writer.
#[derive(Debug)]
pub(crate) struct Routing {
    on: Arc<AtomicBool>,
    table: RwLock<Arc<Table>>,
}

impl Routing {
    /// The routing of a client with `routes` over `defaults`, on if there are routes.
    pub(crate) fn new(routes: &[Route], defaults: &Defaults) -> Result<Routing, ConfigError> {
        validate_all(routes)?;
        Ok(Routing {
            on: Arc::new(AtomicBool::new(!routes.is_empty())),
            table: RwLock::new(Arc::new(Table::new(routes, defaults))),
        })
    }

    /// What the layers below read to know whether to look for a route.
    pub(crate) fn switch(&self) -> Switch {
        Switch(Some(self.on.clone()))
    }

    /// Swaps in new routes and defaults for the requests sent from now on, once checked;
    /// requests in flight keep the policies they were matched with.
    pub(crate) fn reload(&self, routes: &[Route], defaults: &Defaults) -> Result<(), ConfigError> {
        validate_all(routes)?;
        let table = Arc::new(Table::new(routes, defaults));
        // A poisoned lock only says a reader panicked: the table it guards is whole.
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
        // After the table: a request that sees the switch on finds the new table.
        self.on.store(true, Ordering::Release);
        Ok(())
    }

    fn route<B>(&self, req: &mut Request<B>) {
        let policy = {
            let table = self.table.read().unwrap_or_else(|e| e.into_inner());
            table.pick(req.method(), req.uri().path()).clone()
        };
        let extensions = req.extensions_mut();
        if let Some(idempotent) = policy.idempotent {
            // A mark the caller put on the request is more specific than the route's.
            if extensions.get::<Idempotent>().is_none() {
                extensions.insert(Idempotent(idempotent));
            }
        }
        extensions.insert(RouteExt(policy));
    }
}

/// Matches each request to its route once, before any other layer, and hands the layers
/// below its policy as a request extension.
#[derive(Debug, Clone)]
pub(crate) struct Routed<S> {
    inner: S,
    routing: Arc<Routing>,
}

impl<S> Routed<S> {
    pub(crate) fn new(inner: S, routing: Arc<Routing>) -> Self {
        Routed { inner, routing }
    }
}

impl<S, B> Service<Request<B>> for Routed<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if self.routing.on.load(Ordering::Acquire) {
            self.routing.route(&mut req);
        }
        self.inner.call(req)
    }
}
