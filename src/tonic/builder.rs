//! Configuring a [`Channel`].

use super::channel::{Channel, EndpointChannel};
use crate::backoff::Backoff;
use crate::balance::{Balance, BalanceBuilder, Change};
use crate::breaker::BreakerConfig;
use crate::budget::Budget;
use crate::classify::Classifier;
use crate::error::ConfigError;
use crate::hedge::HedgeConfig;
use crate::limit::LimitConfig;
use crate::outlier::OutlierConfig;
use crate::retry::Idempotency;
use crate::stack::Policies;
use crate::throttle::ThrottleConfig;
use ::tonic::transport::Endpoint;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Decides from a method's full path (`/pkg.Service/Method`) whether it is idempotent.
type MethodRule = dyn Fn(&str) -> bool + Send + Sync;

/// Configures a [`Channel`]. Every setting has a default; only the endpoints are required.
///
/// | setting | default | source |
/// |---|---|---|
/// | deadline per call | 10 s, or the call's own timeout (`grpc-timeout`) when shorter | ours, gRPC |
/// | attempt timeout | deadline ÷ (max retries + 1), standing aside while more than a tenth of recent attempts ran past it; sent to the server as `grpc-timeout` | ours |
/// | idempotent methods | none: every gRPC call is a POST, retried only when never sent | gRPC A6 |
/// | retries, budget, backoff | 2 retries, 20% over 10 s, full jitter 25–250 ms; see [`RetryLayer`](crate::retry::RetryLayer) | Finagle, linkerd |
/// | balancing, outlier ejection | P2C over peak-EWMA; see [`BalanceBuilder`], [`OutlierConfig`] | linkerd, Envoy |
/// | circuit breaker | on: 50% failures over 10 s, ≥ 20 calls; see [`BreakerConfig`] | resilience4j |
/// | concurrency limit | none; see [`LimitConfig`] | linkerd |
/// | client-side throttling | off; see [`ThrottleConfig`] | |
/// | hedging | off; only idempotent methods when on; see [`HedgeConfig`] | gRPC A6 |
/// | connection settings (TLS, keepalive, connect timeout) | each [`Endpoint`]'s own | tonic |
///
/// ```
/// use meshless::tonic::Channel;
/// use std::time::Duration;
/// use tonic::transport::Endpoint;
///
/// # tokio_test::block_on(async {
/// let channel = Channel::builder()
///     .endpoints(["http://10.0.0.1:50051", "http://10.0.0.2:50051"].map(Endpoint::from_static))
///     .deadline(Duration::from_secs(2))
///     .attempt_timeout(Duration::from_millis(500))
///     .idempotent_method("/helloworld.Greeter/SayHello")
///     .idempotent_methods_where(|path| path.starts_with("/catalog.Query/"))
///     .build()?;
/// # Ok::<(), meshless::ConfigError>(())
/// # });
/// ```
#[derive(Clone)]
pub struct ChannelBuilder {
    endpoints: Vec<Endpoint>,
    idempotent_methods: Vec<String>,
    method_rules: Vec<Arc<MethodRule>>,
    /// The policies of the layers, shared with the other clients; their idempotency is made
    /// from the methods and rules above when the channel is built.
    policies: Policies,
}

impl Default for ChannelBuilder {
    fn default() -> Self {
        ChannelBuilder {
            endpoints: Vec::new(),
            idempotent_methods: Vec::new(),
            method_rules: Vec::new(),
            policies: Policies {
                // The caller's `grpc-timeout` is its own deadline, not an inbound one to
                // distrust.
                honor_inbound: true,
                ..Policies::default()
            },
        }
    }
}

impl std::fmt::Debug for ChannelBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uris: Vec<_> = self.endpoints.iter().map(Endpoint::uri).collect();
        f.debug_struct("ChannelBuilder")
            .field("endpoints", &uris)
            .field("deadline", &self.policies.deadline)
            .field("attempt_timeout", &self.policies.attempt_timeout)
            .field("max_retries", &self.policies.max_retries)
            .field("idempotent_methods", &self.idempotent_methods)
            .field("method_rules", &self.method_rules.len())
            .field("hedge", &self.policies.hedge.is_some())
            .field("service_name", &self.policies.service_name)
            .finish_non_exhaustive()
    }
}

impl ChannelBuilder {
    /// Adds an endpoint: a tonic [`Endpoint`], with its own TLS, keepalive and timeout
    /// settings. It is connected on first use.
    ///
    /// ```
    /// use tonic::transport::Endpoint;
    /// let b = meshless::tonic::Channel::builder()
    ///     .endpoint(Endpoint::from_static("http://10.0.0.1:50051").tcp_nodelay(true));
    /// ```
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Adds several endpoints (see [`endpoint`](Self::endpoint)).
    ///
    /// ```
    /// use tonic::transport::Endpoint;
    /// let b = meshless::tonic::Channel::builder()
    ///     .endpoints(["http://10.0.0.1:50051", "http://10.0.0.2:50051"].map(Endpoint::from_static));
    /// ```
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        self.endpoints.extend(endpoints);
        self
    }

    /// The longest a call may take, retries and the whole response body included (default
    /// 10 s). A call's own timeout (`tonic::Request::set_timeout`, sent as `grpc-timeout`)
    /// shortens it, never lengthens it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::tonic::Channel::builder().deadline(Duration::from_secs(1));
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.policies.deadline = deadline;
        self
    }

    /// The longest one attempt may take (default: `deadline / (max_retries + 1)`). Each
    /// attempt tells its server the smallest of this, the time left and the caller's own
    /// `grpc-timeout`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::tonic::Channel::builder().attempt_timeout(Duration::from_millis(300));
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.policies.attempt_timeout = Some(timeout);
        self
    }

    /// Fails a response stream that sends nothing for `timeout` (default: none; the deadline
    /// still covers the whole stream).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::tonic::Channel::builder().body_idle_timeout(Duration::from_secs(30));
    /// ```
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.policies.body_idle_timeout = Some(timeout);
        self
    }

    /// The retry budget (default [`Budget::default`]: 20% over 10 s, 10 retries/s reserve).
    /// Retries and hedges draw on it together.
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder().budget(meshless::budget::Budget::default());
    /// ```
    pub fn budget(mut self, budget: Budget) -> Self {
        self.policies.budget = Some(budget);
        self
    }

    /// Adds a per-route policy (see [`crate::route`]): the first route that fits a request,
    /// in the order added, gives its deadline, attempt timeout, retries, idempotency and
    /// hedging. Checked when built, errors naming `routes[i].<field>`.
    ///
    /// ```
    /// use meshless::route::Route;
    /// let b = meshless::tonic::Channel::builder()
    ///     .route(Route::grpc_method("shop.Catalog", "Search").max_retries(0));
    /// ```
    pub fn route(mut self, route: crate::route::Route) -> Self {
        self.policies.routes.push(route);
        self
    }

    /// Retries per call (default 2); 0 turns retries off.
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder().max_retries(0);
    /// ```
    pub fn max_retries(mut self, max: u32) -> Self {
        self.policies.max_retries = max;
        self
    }

    /// The backoff between attempts (default full jitter, 25 ms to 250 ms).
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder().backoff(meshless::backoff::Backoff::none());
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policies.backoff = backoff;
        self
    }

    /// Declares a method idempotent by its full path, `/package.Service/Method`: what
    /// `option idempotency_level = IDEMPOTENT;` (or `NO_SIDE_EFFECTS`) says in the proto. Its
    /// failures the server may have acted on (`UNAVAILABLE`, a reset, a timeout) are retried,
    /// and it may be hedged. Other methods are retried only when they never reached the
    /// server. A path that is not `/service/method` is refused by [`build`](Self::build)
    /// (`idempotent_method`). One call can be marked too, whatever its method:
    /// `request.extensions_mut().insert(meshless::retry::Idempotent(true))` on the
    /// `tonic::Request` (or `false`, never to repeat it).
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder()
    ///     .idempotent_method("/catalog.Catalog/GetItem")
    ///     .idempotent_method("/catalog.Catalog/ListItems");
    /// ```
    pub fn idempotent_method(mut self, path: impl Into<String>) -> Self {
        self.idempotent_methods.push(path.into());
        self
    }

    /// Declares idempotent every method whose full path `rule` accepts, for rules a list
    /// cannot say (a whole read-only service, say).
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder()
    ///     .idempotent_methods_where(|path| path.starts_with("/catalog.Query/"));
    /// ```
    pub fn idempotent_methods_where<F>(mut self, rule: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.method_rules.push(Arc::new(rule));
        self
    }

    /// The classifier shared by retries, balancing, ejection and the breaker (default
    /// [`Classifier`], which reads `grpc-status` in the head and in the trailers).
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder().classifier(meshless::classify::Classifier::new());
    /// ```
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.policies.classifier = classifier;
        self
    }

    /// Balancer settings (fail-fast timeout, EWMA, misses).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::tonic::Channel::builder()
    ///     .balance(meshless::balance::Balance::builder().fail_fast(Duration::from_millis(500)));
    /// ```
    pub fn balance(mut self, balance: BalanceBuilder) -> Self {
        self.policies.balance = balance;
        self
    }

    /// Outlier ejection settings.
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder().outlier(meshless::outlier::OutlierConfig::default());
    /// ```
    pub fn outlier(mut self, config: OutlierConfig) -> Self {
        self.policies.balance = self.policies.balance.outlier(config);
        self
    }

    /// The circuit breaker (default on, [`BreakerConfig::default`]); `enabled = false` turns
    /// it off. Checked by [`build`](Self::build) (`breaker.<field>`).
    ///
    /// ```
    /// let mut breaker = meshless::breaker::BreakerConfig::default();
    /// breaker.enabled = false;
    /// let b = meshless::tonic::Channel::builder().breaker(breaker);
    /// ```
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.policies.breaker = config;
        self
    }

    /// The concurrency limit (default none). Checked by [`build`](Self::build)
    /// (`limit.<field>`).
    ///
    /// ```
    /// use meshless::limit::{Algorithm, GradientConfig, LimitConfig};
    /// let mut limit = LimitConfig::default();
    /// limit.algorithm = Algorithm::Gradient(GradientConfig::default());
    /// let b = meshless::tonic::Channel::builder().limit(limit);
    /// ```
    pub fn limit(mut self, config: LimitConfig) -> Self {
        self.policies.limit = config;
        self
    }

    /// Client-side adaptive throttling (default off). Checked by [`build`](Self::build)
    /// (`throttle.<field>`).
    ///
    /// ```
    /// let mut throttle = meshless::throttle::ThrottleConfig::default();
    /// throttle.enabled = true;
    /// let b = meshless::tonic::Channel::builder().throttle(throttle);
    /// ```
    pub fn throttle(mut self, config: ThrottleConfig) -> Self {
        self.policies.throttle = config;
        self
    }

    /// Hedged calls (default off): a call to an idempotent method with no answer after the
    /// recent p95 gets a second attempt at another endpoint. Calls to other methods are never
    /// hedged. Checked by [`build`](Self::build) (`hedge.<field>`).
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder()
    ///     .idempotent_method("/catalog.Catalog/GetItem")
    ///     .hedge(meshless::hedge::HedgeConfig::default());
    /// ```
    pub fn hedge(mut self, config: HedgeConfig) -> Self {
        self.policies.hedge = Some(config);
        self
    }

    /// Whether a call made while serving a call its caller retries makes only the retries
    /// that are always safe (default `true`). See [`CallerRetries`](crate::retry::CallerRetries).
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder().defer_to_caller(false);
    /// ```
    pub fn defer_to_caller(mut self, defer: bool) -> Self {
        self.policies.defer_to_caller = defer;
        self
    }

    /// The `service` label of the channel's metrics and spans (default `"default"`).
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder().service_name("catalog");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.policies.service_name = name.into();
        self
    }

    /// Records metrics through the [`metrics`] facade (default `true`).
    ///
    /// ```
    /// let b = meshless::tonic::Channel::builder().metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.policies.metrics = enabled;
        self
    }

    /// Checks the configuration and builds the channel. Needs a tokio runtime (tonic's
    /// channels spawn a task each); connects nothing yet.
    ///
    /// ```
    /// use tonic::transport::Endpoint;
    /// # tokio_test::block_on(async {
    /// let err = meshless::tonic::Channel::builder().build().unwrap_err();
    /// assert_eq!(err.setting(), "endpoints");
    /// let err = meshless::tonic::Channel::builder()
    ///     .endpoint(Endpoint::from_static("http://10.0.0.1:50051"))
    ///     .idempotent_method("GetItem")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.setting(), "idempotent_method");
    /// # });
    /// ```
    pub fn build(mut self) -> Result<Channel, ConfigError> {
        self.policies.balance.validate()?;
        if self.endpoints.is_empty() {
            return Err(ConfigError::new("endpoints", "give at least one endpoint"));
        }
        self.policies.check_timeouts()?;
        self.policies.idempotency = idempotency(self.idempotent_methods, self.method_rules)?;
        // Every call is gRPC: an answer without gRPC's content type is judged by gRPC's rules
        // (a 200 without a `grpc-status` is INTERNAL), not booked as an HTTP success.
        self.policies.classifier = self.policies.classifier.grpc_only();
        let protection = self.policies.protection()?;

        let mut changes = Vec::with_capacity(self.endpoints.len());
        let mut seen = HashSet::new();
        for (i, endpoint) in self.endpoints.into_iter().enumerate() {
            let (uri, channel) = EndpointChannel::connect_lazy(endpoint)?;
            if !seen.insert(uri.clone()) {
                return Err(ConfigError::at(
                    "endpoints",
                    i,
                    format!("{uri} is given twice"),
                ));
            }
            changes.push(Change::Insert(uri, channel));
        }
        let balance: Balance<http::Uri, EndpointChannel> = self.policies.balance();
        balance.apply(changes);

        let (stack, handles) = self.policies.stack(protection, balance.clone())?;
        Ok(Channel {
            stack,
            balance,
            retry: handles.retry,
            breaker: handles.breaker,
            limit: handles.limit,
            throttle: handles.throttle,
            hedge: handles.hedge,
            routing: handles.routing,
        })
    }
}

/// The idempotency rules of a gRPC channel: declared method paths and rules; nothing by the
/// HTTP method, since every gRPC call is a POST.
fn idempotency(
    mut methods: Vec<String>,
    rules: Vec<Arc<MethodRule>>,
) -> Result<Idempotency, ConfigError> {
    for (i, path) in methods.iter().enumerate() {
        let well_formed = path
            .strip_prefix('/')
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(service, method)| {
                !service.is_empty() && !method.is_empty() && !method.contains('/')
            });
        if !well_formed {
            return Err(ConfigError::at(
                "idempotent_method",
                i,
                format!("{path:?} is not a full method path, /package.Service/Method"),
            ));
        }
    }
    let mut idempotency = Idempotency::default();
    if !methods.is_empty() {
        // Sorted once, searched per decision: no hashing, a few comparisons.
        methods.sort_unstable();
        methods.dedup();
        let methods: Arc<[String]> = methods.into();
        idempotency = idempotency.route(move |_, uri, _| {
            methods
                .binary_search_by(|m| m.as_str().cmp(uri.path()))
                .is_ok()
        });
    }
    for rule in rules {
        idempotency = idempotency.route(move |_, uri, _| rule(uri.path()));
    }
    Ok(idempotency)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str) -> http::Request<()> {
        http::Request::post(format!("http://svc{path}"))
            .body(())
            .expect("a request")
    }

    #[test]
    fn declared_methods_and_rules_are_idempotent_and_nothing_else() {
        let rules: Vec<Arc<MethodRule>> = vec![Arc::new(|p: &str| p.starts_with("/q.Query/"))];
        let idempotency =
            idempotency(vec!["/a.S/Get".into(), "/a.S/List".into()], rules).expect("valid");
        assert!(idempotency.is_idempotent(&post("/a.S/Get")));
        assert!(idempotency.is_idempotent(&post("/a.S/List")));
        assert!(idempotency.is_idempotent(&post("/q.Query/Anything")));
        assert!(!idempotency.is_idempotent(&post("/a.S/Create")));
        assert!(!idempotency.is_idempotent(&post("/a.S/Gets")));
    }

    #[test]
    fn malformed_method_paths_are_refused_by_index() {
        for bad in ["Get", "/a.S", "/a.S/", "//Get", "/a.S/Get/x", "a.S/Get"] {
            let err = idempotency(vec!["/ok.S/M".into(), bad.into()], Vec::new()).unwrap_err();
            assert_eq!(err.setting(), "idempotent_method", "{bad}");
            assert_eq!(err.index(), Some(1), "{bad}");
        }
    }
}
