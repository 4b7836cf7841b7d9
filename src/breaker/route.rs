//! Per-route breakers: a breaker of its own for each route a user function names, up to a
//! bound; requests of further routes (and of no route) share the client-wide breaker.

use super::config::BreakerConfig;
use super::machine::Shared;
use super::telemetry::Telemetry;
use crate::observe::Settings;
use http::{HeaderMap, Method, Uri};
use metrics::SharedString;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};
use tokio::time::Instant;

/// Names the route of a request, or `None` for the client-wide breaker.
pub(crate) type RouteFn =
    dyn Fn(&Method, &Uri, &HeaderMap) -> Option<Cow<'static, str>> + Send + Sync;

/// The routes' breakers of one layer, shared by every service it builds and by its handles.
pub(crate) struct Routes {
    name: Box<RouteFn>,
    config: BreakerConfig,
    /// The settings of the layer's first service: the labels of each route's metrics.
    pub(crate) observe: OnceLock<Settings>,
    breakers: RwLock<HashMap<Arc<str>, Arc<Shared>>>,
}

impl Routes {
    pub(crate) fn new(name: Box<RouteFn>, config: BreakerConfig) -> Self {
        Routes {
            name,
            config,
            observe: OnceLock::new(),
            breakers: RwLock::default(),
        }
    }

    /// The breaker of the request's route: `None` for the client-wide one (no route, or the
    /// bound reached). A read lock when the route is known; the write lock once per route.
    pub(crate) fn lookup(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Option<Arc<Shared>> {
        let name = (self.name)(method, uri, headers)?;
        if let Some(shared) = self.get(&name) {
            return Some(shared);
        }
        let mut breakers = self.breakers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = breakers.get(&*name) {
            return Some(shared.clone());
        }
        if breakers.len() >= self.config.max_routes as usize {
            return None;
        }
        let shared = Arc::new(Shared::new(self.config.clone()));
        let route: Arc<str> = Arc::from(name.into_owned());
        if let Some(observe) = self.observe.get() {
            let label = SharedString::from(route.clone());
            let telemetry = Telemetry::register(observe, label, shared.state(Instant::now()));
            let _ = shared.telemetry.set(telemetry);
        }
        breakers.insert(route, shared.clone());
        Some(shared)
    }

    /// The breaker of `route`, if it has one.
    pub(crate) fn get(&self, route: &str) -> Option<Arc<Shared>> {
        let breakers = self.breakers.read().unwrap_or_else(|e| e.into_inner());
        breakers.get(route).cloned()
    }

    /// The requests the routes' breakers refused, all routes together (routes are never
    /// dropped, so none is lost).
    pub(crate) fn rejected(&self) -> u64 {
        let breakers = self.breakers.read().unwrap_or_else(|e| e.into_inner());
        breakers.values().map(|shared| shared.rejected()).sum()
    }

    /// The routes with a breaker of their own, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let breakers = self.breakers.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = breakers.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("max_routes", &self.config.max_routes)
            .field("routes", &self.names())
            .finish_non_exhaustive()
    }
}
