//! Routes resolved into what the layers read: one policy per route, every value filled in
//! from the client's, and the matcher that picks one for a request.

use super::{Route, RouteMatch};
use crate::primitives::clock::NO_LIMIT;
use crate::primitives::route_policy::{HedgePlan, RoutePolicy};
use http::Method;
use std::sync::Arc;
use std::time::Duration;

/// The client's own settings of what a route may override.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Defaults {
    pub(crate) deadline: Duration,
    /// Set explicitly; `None`: the deadline shared by the attempts allowed.
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) max_retries: u32,
    pub(crate) hedge: HedgePlan,
}

/// `route`'s policies over `defaults`, the attempt timeout worked out as the client's is.
fn resolve(route: Option<&Route>, defaults: &Defaults) -> RoutePolicy {
    let deadline = route
        .and_then(|r| r.timeout)
        .unwrap_or(defaults.deadline)
        .min(NO_LIMIT);
    let max_retries = route
        .and_then(|r| r.max_retries)
        .unwrap_or(defaults.max_retries);
    let attempts = max_retries.saturating_add(1);
    let set = route
        .and_then(|r| r.attempt_timeout)
        .or(defaults.attempt_timeout);
    let attempt_timeout = set.unwrap_or(deadline / attempts).min(NO_LIMIT);
    let hedge = match route.and_then(|r| r.hedge) {
        None => defaults.hedge,
        Some(h) => {
            let max_hedges = h.max_hedges.unwrap_or(defaults.hedge.max_hedges.max(1));
            HedgePlan {
                enabled: h.enabled && max_hedges > 0,
                max_hedges,
                delay: h.delay.or(defaults.hedge.delay),
            }
        }
    };
    RoutePolicy {
        deadline,
        attempt_timeout,
        attempt_derived: set.is_none(),
        max_retries,
        idempotent: route.and_then(|r| r.idempotent),
        hedge,
    }
}

/// Which paths a route fits.
#[derive(Debug)]
enum PathRule {
    Any,
    /// Equal, or followed by a `/` (a prefix ending in `/` needs nothing more).
    Prefix(Box<str>),
    Exact(Box<str>),
}

impl PathRule {
    fn fits(&self, path: &str) -> bool {
        match self {
            PathRule::Any => true,
            PathRule::Exact(want) => path == &**want,
            PathRule::Prefix(prefix) => super::path::under_prefix(path, prefix),
        }
    }
}

#[derive(Debug)]
struct Matcher {
    methods: Vec<Method>,
    path: PathRule,
}

impl Matcher {
    /// The matcher of a checked match.
    fn new(m: &RouteMatch) -> Matcher {
        let methods = m
            .methods
            .iter()
            .filter_map(|text| Method::from_bytes(text.as_bytes()).ok())
            .collect();
        let path = match (&m.path_prefix, &m.service, &m.method) {
            (Some(prefix), _, _) => PathRule::Prefix(prefix.as_str().into()),
            (None, Some(service), Some(method)) => {
                PathRule::Exact(format!("/{service}/{method}").into())
            }
            (None, Some(service), None) => PathRule::Prefix(format!("/{service}/").into()),
            (None, None, _) => PathRule::Any,
        };
        Matcher { methods, path }
    }

    fn fits(&self, method: &Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method)) && self.path.fits(path)
    }
}

/// A client's routes, resolved: the snapshot a reload swaps whole.
#[derive(Debug)]
pub(crate) struct Table {
    routes: Vec<(Matcher, Arc<RoutePolicy>)>,
    fallback: Arc<RoutePolicy>,
    /// What the routes were resolved over, for a reload of the routes alone.
    pub(crate) defaults: Defaults,
}

impl Table {
    /// The table of checked `routes` over `defaults`.
    pub(crate) fn new(routes: &[Route], defaults: &Defaults) -> Table {
        Table {
            routes: routes
                .iter()
                .map(|r| {
                    (
                        Matcher::new(&r.matches),
                        Arc::new(resolve(Some(r), defaults)),
                    )
                })
                .collect(),
            fallback: Arc::new(resolve(None, defaults)),
            defaults: *defaults,
        }
    }

    /// The first route that fits, else the client's defaults. The path is matched as a
    /// server resolves it (see [`normalized`](super::path::normalized)).
    pub(crate) fn pick(&self, method: &Method, path: &str) -> &Arc<RoutePolicy> {
        let Some(path) = super::path::normalized(path) else {
            return &self.fallback;
        };
        self.routes
            .iter()
            .find(|(m, _)| m.fits(method, &path))
            .map_or(&self.fallback, |(_, policy)| policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::RouteHedge;

    fn defaults() -> Defaults {
        Defaults {
            deadline: Duration::from_secs(10),
            attempt_timeout: None,
            max_retries: 2,
            hedge: HedgePlan {
                enabled: false,
                max_hedges: 1,
                delay: None,
            },
        }
    }

    #[test]
    fn prefixes_match_by_segment_and_grpc_names_by_path() {
        let rule = PathRule::Prefix("/v1".into());
        assert!(rule.fits("/v1") && rule.fits("/v1/x"));
        assert!(!rule.fits("/v1x") && !rule.fits("/v"));
        let slash = PathRule::Prefix("/v1/".into());
        assert!(slash.fits("/v1/x") && !slash.fits("/v1"));
        let service = Matcher::new(&RouteMatch::default().service("a.S"));
        assert!(service.fits(&Method::POST, "/a.S/M"));
        assert!(!service.fits(&Method::POST, "/a.Sx/M"));
        let method = Matcher::new(&RouteMatch::default().service("a.S").method("M"));
        assert!(method.fits(&Method::POST, "/a.S/M"));
        assert!(!method.fits(&Method::POST, "/a.S/M2"));
        let get = Matcher::new(&RouteMatch::default().methods(["GET"]));
        assert!(get.fits(&Method::GET, "/") && !get.fits(&Method::POST, "/"));
    }

    #[test]
    fn the_first_route_that_fits_wins_and_the_rest_take_the_defaults() {
        let routes = [
            Route::path_prefix("/a").max_retries(0),
            Route::path_prefix("/a/b").max_retries(5),
        ];
        let table = Table::new(&routes, &defaults());
        assert_eq!(table.pick(&Method::GET, "/a/b").max_retries, 0);
        let other = table.pick(&Method::GET, "/c");
        assert_eq!(other.max_retries, 2);
        assert_eq!(other.attempt_timeout, Duration::from_secs(10) / 3);
        // Worked out as the client's: under the derived timeout's rules.
        assert!(other.attempt_derived);
    }

    #[test]
    fn a_route_resolves_its_attempt_timeout_and_hedging_from_its_own_values() {
        let route = Route::any()
            .timeout(Duration::from_secs(4))
            .max_retries(1)
            .hedge(RouteHedge::on().delay(Duration::from_millis(5)));
        let policy = resolve(Some(&route), &defaults());
        assert_eq!(policy.attempt_timeout, Duration::from_secs(2));
        assert!(policy.attempt_derived);
        let own = resolve(
            Some(&Route::any().attempt_timeout(Duration::from_millis(300))),
            &defaults(),
        );
        assert_eq!(own.attempt_timeout, Duration::from_millis(300));
        assert!(!own.attempt_derived, "a timeout asked for always cuts");
        assert_eq!(
            policy.hedge,
            HedgePlan {
                enabled: true,
                max_hedges: 1,
                delay: Some(Duration::from_millis(5))
            }
        );
        let off = resolve(Some(&Route::any().hedge(RouteHedge::off())), &defaults());
        assert!(!off.hedge.enabled);
    }
}
