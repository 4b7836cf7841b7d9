//! Per-route policies: a request's method and path (or its gRPC service and method) pick the
//! deadline, attempt timeout, retries, idempotency and hedging it runs with.
//!
//! A [`Route`] is plain data: a [`RouteMatch`] and the policies it overrides, every one
//! optional (missing = the client's own). A client holds a list of them; the first whose match
//! fits a request wins, and a request no route fits runs with the client's settings. The
//! match is made once per request, at the top of the stack, and the layers below read its
//! answer: no route is looked up twice, and a client with no routes pays one branch.
//!
//! | policy | overrides | notes |
//! |---|---|---|
//! | `timeout` | the total deadline | a caller's own, earlier deadline still wins |
//! | `attempt_timeout` | the limit on each attempt | default: the route's deadline ÷ its attempts |
//! | `max_retries` | retries per request | 0 sends the request once |
//! | `idempotent` | whether the request is safe to repeat | as an [`Idempotent`](crate::retry::Idempotent) mark; a mark the request carries itself wins |
//! | `hedge` | hedging on or off, its count and a fixed delay | see [`RouteHedge`] |
//!
//! Naming follows Envoy's route `timeout` and `retry_policy.num_retries`, linkerd's
//! `timeout.linkerd.io/request` and `retry.linkerd.io/limit`, and gRPC's service config
//! `methodConfig[].name[]` (`service`, `method`).
//!
//! ```
//! use meshless::http::Client;
//! use meshless::route::{Route, RouteHedge};
//! use std::time::Duration;
//!
//! let client = Client::builder()
//!     .endpoints(["127.0.0.1:8080"])
//!     .route(Route::path_prefix("/v1/reports").timeout(Duration::from_secs(30)).max_retries(0))
//!     .route(Route::path_prefix("/v1/orders").method(http::Method::POST).idempotent(true))
//!     .route(Route::grpc_method("shop.Catalog", "Search").hedge(RouteHedge::on().delay(Duration::from_millis(20))))
//!     .build()?;
//! # Ok::<(), meshless::ConfigError>(())
//! ```

use crate::error::ConfigError;
use crate::hedge::MAX_HEDGES;
use std::time::Duration;

/// The methods RFC 9110 and RFC 5789 define, all upper-case.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

mod layer;
mod path;
mod table;

/// What is wrong with `method` as a method to match requests with, if anything: not an HTTP
/// method, or a standard one in the wrong case (methods are case-sensitive: `post` would be a
/// method of its own, which no request uses, and the rule would silently never fit).
pub(crate) fn method_problem(method: &str) -> Option<String> {
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Some(format!("{method:?} is not an HTTP method"));
    }
    let upper = method.to_ascii_uppercase();
    if upper != method && STANDARD_METHODS.contains(&upper.as_str()) {
        return Some(format!(
            "{method:?}: methods are case-sensitive; write {upper:?}"
        ));
    }
    None
}

pub(crate) use self::layer::Routing;
pub(crate) use self::table::Defaults;

/// Which requests a [`Route`] applies to. Every field given must fit; an empty match fits
/// every request.
///
/// | field | fits | example |
/// |---|---|---|
/// | `methods` | one of these HTTP methods (empty: any) | `["POST", "PUT"]` |
/// | `path_prefix` | a path equal to it or under it, segment by segment (`/v1` fits `/v1` and `/v1/x`, not `/v1x`), as Gateway API's `PathPrefix` | `"/v1/orders"` |
/// | `service` | a gRPC call to this service (the path `/<service>/...`) | `"shop.Catalog"` |
/// | `method` | with `service`, that method only (the path `/<service>/<method>`) | `"Search"` |
///
/// `path_prefix` and `service` are either/or; `methods` stays empty with `service` (every
/// gRPC call is a POST).
///
/// ```
/// use meshless::route::RouteMatch;
/// let grpc = RouteMatch::default().service("shop.Catalog").method("Search");
/// assert!(grpc.validate().is_ok());
/// let http = RouteMatch::default().path_prefix("/v1").methods(["GET"]);
/// assert!(http.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct RouteMatch {
    /// HTTP methods, any of which fits (empty: every method).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub methods: Vec<String>,
    /// A path prefix, matched segment by segment.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub path_prefix: Option<String>,
    /// A gRPC service, fully qualified (`package.Service`).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub service: Option<String>,
    /// A gRPC method of `service`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub method: Option<String>,
}

impl RouteMatch {
    /// Adds HTTP methods to those that fit.
    ///
    /// ```
    /// let m = meshless::route::RouteMatch::default().methods(["GET", "HEAD"]);
    /// assert_eq!(m.methods.len(), 2);
    /// ```
    pub fn methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.methods.extend(methods.into_iter().map(Into::into));
        self
    }

    /// Fits paths equal to `prefix` or under it.
    ///
    /// ```
    /// let m = meshless::route::RouteMatch::default().path_prefix("/v1/orders");
    /// ```
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Fits gRPC calls to `service`.
    ///
    /// ```
    /// let m = meshless::route::RouteMatch::default().service("shop.Catalog");
    /// ```
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Fits gRPC calls to this method of the service.
    ///
    /// ```
    /// let m = meshless::route::RouteMatch::default().service("shop.Catalog").method("Search");
    /// ```
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Checks the match, naming the bad field (`match.path_prefix`, `match.methods[1]`).
    ///
    /// ```
    /// let err = meshless::route::RouteMatch::default().path_prefix("v1").validate().unwrap_err();
    /// assert_eq!(err.path(), "match.path_prefix");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, problem: String| {
            ConfigError::new("routes", problem).placed(format!("match.{field}"))
        };
        for (i, method) in self.methods.iter().enumerate() {
            if let Some(problem) = method_problem(method) {
                return Err(bad(&format!("methods[{i}]"), problem));
            }
        }
        if let Some(prefix) = &self.path_prefix {
            if path::normalized(prefix).as_deref() != Some(prefix.as_str()) {
                return Err(bad(
                    "path_prefix",
                    format!(
                        "{prefix:?}: write the path as a server resolves it (no '.' or '..' \
                         segments, no escaped unreserved character or '/')"
                    ),
                ));
            }
            if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
                // A request's path is visible ASCII, non-ASCII and spaces percent-encoded: a
                // prefix with anything else would never fit one.
                return Err(bad(
                    "path_prefix",
                    format!(
                        "{prefix:?}: write the path as it goes on the wire, spaces, control \
                         and non-ASCII characters percent-encoded (%20, %C3%A9)"
                    ),
                ));
            }
            if !prefix.starts_with('/') || prefix.contains(['?', '#']) {
                return Err(bad(
                    "path_prefix",
                    format!("{prefix:?}: a path starts with '/' and holds no query or fragment"),
                ));
            }
            if self.service.is_some() {
                return Err(bad(
                    "service",
                    "give either path_prefix or service, not both".into(),
                ));
            }
        }
        if let Some(service) = &self.service {
            if !grpc_name(service) {
                return Err(bad(
                    "service",
                    format!("{service:?}: a gRPC service name (package.Service), without '/'"),
                ));
            }
            if !self.methods.is_empty() {
                return Err(bad(
                    "methods",
                    "a gRPC route fits POSTs only: leave methods out".into(),
                ));
            }
        }
        if let Some(method) = &self.method {
            if self.service.is_none() {
                return Err(bad(
                    "method",
                    "names a gRPC method and needs `service`; HTTP methods go in `methods`".into(),
                ));
            }
            if !grpc_name(method) {
                return Err(bad(
                    "method",
                    format!("{method:?}: a gRPC method name, without '/'"),
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn grpc_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic())
        && !name.contains(['/', '?', '#'])
}

/// A route's hedging: off, or on with its own count and a fixed delay. What it leaves out is
/// the client's ([`HedgeConfig`](crate::hedge::HedgeConfig)): its delay (a percentile, shared
/// by every route), its count (1 when the client does not hedge), its extra-load cap. Only
/// requests safe to repeat are hedged, whatever the route says.
///
/// In a file: `hedge = "off"`, or a table `hedge = { max_hedges = 2, delay = "20ms" }`.
///
/// ```
/// use meshless::route::RouteHedge;
/// use std::time::Duration;
/// let hedge = RouteHedge::on().max_hedges(2).delay(Duration::from_millis(20));
/// assert!(hedge.enabled);
/// assert!(!RouteHedge::off().enabled);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct RouteHedge {
    /// Whether the route's requests are hedged.
    pub enabled: bool,
    /// The most hedges per request (at most 4); `None`: the client's.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub max_hedges: Option<u32>,
    /// A fixed delay before each hedge; `None`: the client's delay.
    #[cfg_attr(
        feature = "serde",
        serde(
            skip_serializing_if = "Option::is_none",
            with = "crate::policy::duration::some"
        )
    )]
    pub delay: Option<Duration>,
}

impl RouteHedge {
    /// Hedging on, with the client's count and delay.
    ///
    /// ```
    /// let hedge = meshless::route::RouteHedge::on();
    /// ```
    pub fn on() -> Self {
        RouteHedge {
            enabled: true,
            max_hedges: None,
            delay: None,
        }
    }

    /// No hedge for the route's requests.
    ///
    /// ```
    /// let hedge = meshless::route::RouteHedge::off();
    /// ```
    pub fn off() -> Self {
        RouteHedge {
            enabled: false,
            ..RouteHedge::on()
        }
    }

    /// The most hedges per request.
    ///
    /// ```
    /// let hedge = meshless::route::RouteHedge::on().max_hedges(2);
    /// ```
    pub fn max_hedges(mut self, max: u32) -> Self {
        self.max_hedges = Some(max);
        self
    }

    /// A fixed delay before each hedge.
    ///
    /// ```
    /// let hedge = meshless::route::RouteHedge::on().delay(std::time::Duration::from_millis(20));
    /// ```
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// A route: which requests ([`RouteMatch`]) and the policies they run with instead of the
/// client's. Every policy left `None` is the client's.
///
/// ```
/// use meshless::route::Route;
/// use std::time::Duration;
///
/// let route = Route::path_prefix("/v1/reports")
///     .name("reports")
///     .timeout(Duration::from_secs(30))
///     .attempt_timeout(Duration::from_secs(10))
///     .max_retries(0);
/// assert!(route.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[non_exhaustive]
pub struct Route {
    /// A name for logs and errors.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub name: Option<String>,
    /// Which requests the route applies to.
    #[cfg_attr(feature = "serde", serde(rename = "match"))]
    pub matches: RouteMatch,
    /// The total deadline of the route's requests.
    #[cfg_attr(
        feature = "serde",
        serde(
            skip_serializing_if = "Option::is_none",
            with = "crate::policy::duration::some"
        )
    )]
    pub timeout: Option<Duration>,
    /// The limit on each attempt.
    #[cfg_attr(
        feature = "serde",
        serde(
            skip_serializing_if = "Option::is_none",
            with = "crate::policy::duration::some"
        )
    )]
    pub attempt_timeout: Option<Duration>,
    /// Retries per request.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub max_retries: Option<u32>,
    /// Whether the route's requests are safe to repeat (an
    /// [`Idempotent`](crate::retry::Idempotent) mark on each).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub idempotent: Option<bool>,
    /// Hedging.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub hedge: Option<RouteHedge>,
}

impl Route {
    /// A route for every request (put it last: the first match wins).
    ///
    /// ```
    /// let route = meshless::route::Route::any().max_retries(1);
    /// ```
    pub fn any() -> Self {
        Route::default()
    }

    /// A route for the paths equal to `prefix` or under it.
    ///
    /// ```
    /// let route = meshless::route::Route::path_prefix("/v1/orders");
    /// ```
    pub fn path_prefix(prefix: impl Into<String>) -> Self {
        Route::with_match(RouteMatch::default().path_prefix(prefix))
    }

    /// A route for every method of a gRPC service.
    ///
    /// ```
    /// let route = meshless::route::Route::grpc_service("shop.Catalog");
    /// ```
    pub fn grpc_service(service: impl Into<String>) -> Self {
        Route::with_match(RouteMatch::default().service(service))
    }

    /// A route for one gRPC method.
    ///
    /// ```
    /// let route = meshless::route::Route::grpc_method("shop.Catalog", "Search");
    /// ```
    pub fn grpc_method(service: impl Into<String>, method: impl Into<String>) -> Self {
        Route::with_match(RouteMatch::default().service(service).method(method))
    }

    /// A route for the requests `matches` fits.
    ///
    /// ```
    /// use meshless::route::{Route, RouteMatch};
    /// let route = Route::with_match(RouteMatch::default().methods(["DELETE"]));
    /// ```
    pub fn with_match(matches: RouteMatch) -> Self {
        Route {
            matches,
            ..Route::default()
        }
    }

    /// Adds an HTTP method the route fits (default: any).
    ///
    /// ```
    /// let route = meshless::route::Route::path_prefix("/v1").method(http::Method::POST);
    /// ```
    pub fn method(mut self, method: http::Method) -> Self {
        self.matches.methods.push(method.as_str().to_string());
        self
    }

    /// Names the route.
    ///
    /// ```
    /// let route = meshless::route::Route::any().name("fallback");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The total deadline of the route's requests.
    ///
    /// ```
    /// let route = meshless::route::Route::any().timeout(std::time::Duration::from_secs(1));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The limit on each attempt.
    ///
    /// ```
    /// let route = meshless::route::Route::any().attempt_timeout(std::time::Duration::from_millis(300));
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Retries per request.
    ///
    /// ```
    /// let route = meshless::route::Route::any().max_retries(0);
    /// ```
    pub fn max_retries(mut self, max: u32) -> Self {
        self.max_retries = Some(max);
        self
    }

    /// Marks the route's requests safe to repeat, or not.
    ///
    /// ```
    /// let route = meshless::route::Route::path_prefix("/v1/orders").idempotent(true);
    /// ```
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// The route's hedging.
    ///
    /// ```
    /// let route = meshless::route::Route::any().hedge(meshless::route::RouteHedge::off());
    /// ```
    pub fn hedge(mut self, hedge: RouteHedge) -> Self {
        self.hedge = Some(hedge);
        self
    }

    /// Checks the route, naming the bad field relative to it (`match.path_prefix`,
    /// `timeout`, `hedge.max_hedges`); a client's list places it at `routes[i]`.
    ///
    /// ```
    /// use meshless::route::Route;
    /// let err = Route::any().timeout(std::time::Duration::ZERO).validate().unwrap_err();
    /// assert_eq!(err.path(), "timeout");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, problem: &str| {
            ConfigError::new("routes", problem.to_string()).placed(field.to_string())
        };
        self.matches.validate()?;
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(bad("timeout", "must be greater than zero"));
        }
        if self.attempt_timeout.is_some_and(|t| t.is_zero()) {
            return Err(bad("attempt_timeout", "must be greater than zero"));
        }
        if let Some(hedge) = &self.hedge {
            if hedge.max_hedges.is_some_and(|n| n > MAX_HEDGES) {
                return Err(bad(
                    "hedge.max_hedges",
                    "at most 4 (gRPC A6: 5 attempts per call)",
                ));
            }
            if hedge.enabled && hedge.max_hedges == Some(0) {
                return Err(bad(
                    "hedge.max_hedges",
                    "0 with hedging on: write hedge = \"off\" to turn it off",
                ));
            }
            if hedge.delay.is_some_and(|d| d.is_zero()) {
                return Err(bad(
                    "hedge.delay",
                    "must be greater than zero: every copy at once is not a hedge",
                ));
            }
        }
        Ok(())
    }
}

/// Checks a client's routes, placing an error at `routes[i].<field>`.
pub(crate) fn validate_all(routes: &[Route]) -> Result<(), ConfigError> {
    for (i, route) in routes.iter().enumerate() {
        route.validate().map_err(|err| {
            let path = format!("routes[{i}].{}", err.path());
            err.placed(path)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
