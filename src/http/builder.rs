//! Configuring a [`Client`].

use super::client::{AbortOnDrop, Client};
use super::connect::ConnectSettings;
use super::dns;
use super::endpoint::{EndpointService, Endpoints};
use crate::backoff::Backoff;
use crate::balance::{Balance, BalanceBuilder};
use crate::budget::Budget;
use crate::classify::Classifier;
use crate::error::ConfigError;
use crate::outlier::OutlierConfig;
use crate::retry::Idempotency;
use crate::route::Route;
use crate::stack::{LayerConfigs, NO_LIMIT, Policies};
use http::uri::{Authority, Scheme};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

#[cfg(feature = "serde")]
mod from_config;
mod protect;
mod settings;

/// `None` for "no limit".
fn limit(d: Duration) -> Option<Duration> {
    (d < NO_LIMIT).then_some(d)
}

/// Configures a [`Client`]. Every setting has a default; only the endpoints are required.
///
/// | setting | default | source |
/// |---|---|---|
/// | deadline per request | 10 s | ours; set it to your SLA |
/// | attempt timeout | deadline ÷ (max retries + 1), standing aside while more than a quarter of recent attempts ran past it | ours: every allowed attempt fits in the deadline, and a slow upstream is not cut into failures |
/// | connect timeout (TCP and TLS handshake) | 1 s | ours; linkerd uses 1 s too |
/// | DNS refresh | 5 s | ours |
/// | HTTP version | HTTP/1.1; HTTP/2 when the TLS server picks it in ALPN, or with prior knowledge on request | hyper |
/// | TLS (`https`) | rustls with `ring`, webpki roots, ALPN `h2` + `http/1.1`, name checked against the URI's host | feature `tls`, on by default |
/// | scheme and authority of relative URIs | `http`, the DNS name or else the endpoint's address | ours |
/// | TCP keepalive | probes after 10 s idle, every 10 s | linkerd (`LINKERD2_PROXY_OUTBOUND_CONNECT_KEEPALIVE=10000ms`) |
/// | HTTP/2 keepalive | PING after 20 s without a frame, even when idle; 20 s for the answer | timeout as gRPC's keepalive (A8) and hyper; interval ours |
/// | pool idle timeout | 4 s | ours: below Node's 5 s and Apache's 5 s server keep-alive |
/// | pool max idle per endpoint | 128 connections | ours |
/// | retry of a request that never left a closed pooled connection | on, transparent | hyper-util |
/// | retries, budget, backoff, replay | see [`RetryLayer`](crate::retry::RetryLayer) | Finagle, linkerd, Envoy |
/// | balancing, fail fast | see [`BalanceBuilder`] | linkerd |
/// | outlier ejection | see [`OutlierConfig`] | Envoy, gRPC A50 |
/// | circuit breaker | on: 90% failures over 10 s, ≥ 20 requests; see [`BreakerConfig`](crate::breaker::BreakerConfig) | resilience4j, linkerd, Polly |
/// | concurrency limit | none; see [`LimitConfig`](crate::limit::LimitConfig) for the adaptive one | linkerd (none) |
/// | client-side throttling | off; see [`ThrottleConfig`](crate::throttle::ThrottleConfig) | the breaker covers outages |
/// | hedging | off; when on, see [`HedgeConfig`](crate::hedge::HedgeConfig) | Finagle, Tail at Scale, gRPC A6 |
/// | defer to a retrying caller | on | one retry layer per call chain (envoy#31597) |
/// | `service` label of metrics and spans | `"default"` | see [`crate::observe`] |
/// | metrics | on (no-ops until a recorder is installed) | see [`crate::observe`] |
///
/// Every duration accepts [`Duration::MAX`] without panicking; for the deadline, the attempt
/// timeout, the connect timeout, the pool idle timeout, the DNS refresh and the HTTP/2
/// keepalive it means "no limit" (or "never").
///
/// ```
/// use meshless::http::Client;
/// use std::time::Duration;
///
/// let client = Client::builder()
///     .endpoints(["127.0.0.1:8080", "127.0.0.1:8081"])
///     .deadline(Duration::from_millis(800))
///     .attempt_timeout(Duration::from_millis(250))
///     .max_retries(3)
///     .build()?;
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    dns: Option<String>,
    dns_refresh: Duration,
    /// An endpoint source started at build (Kubernetes), instead of DNS.
    discovery: Option<Discovery>,
    http2: bool,
    connect_timeout: Duration,
    /// The policies of the layers, shared with the other clients.
    policies: Policies,
    authority: Option<String>,
    https: bool,
    tcp_keepalive: Option<Duration>,
    http2_keepalive: Option<Duration>,
    http2_keepalive_timeout: Duration,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: usize,
    #[cfg(feature = "tls")]
    tls: super::tls::TlsSettings,
    /// The configuration the builder was made from, which a reload is compared with.
    #[cfg(feature = "serde")]
    config: Option<crate::policy::ClientConfig>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoints: Vec::new(),
            dns: None,
            dns_refresh: Duration::from_secs(5),
            discovery: None,
            http2: false,
            connect_timeout: Duration::from_secs(1),
            policies: Policies {
                layer_configs: Some(LayerConfigs::default()),
                ..Policies::default()
            },
            authority: None,
            https: false,
            tcp_keepalive: Some(Duration::from_secs(10)),
            http2_keepalive: Some(Duration::from_secs(20)),
            http2_keepalive_timeout: Duration::from_secs(20),
            pool_idle_timeout: Some(Duration::from_secs(4)),
            pool_max_idle_per_host: 128,
            #[cfg(feature = "tls")]
            tls: super::tls::TlsSettings::default(),
            #[cfg(feature = "serde")]
            config: None,
        }
    }
}

impl ClientBuilder {
    /// A static list of endpoints, each `IP:port`.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().endpoints(["127.0.0.1:8080"]);
    /// ```
    pub fn endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints.extend(endpoints.into_iter().map(Into::into));
        self
    }

    /// A DNS name, `host:port`, re-resolved every [`dns_refresh`](Self::dns_refresh); every
    /// address it resolves to is an endpoint. Needs a tokio runtime when built.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().dns("payments.internal:8080");
    /// ```
    pub fn dns(mut self, name: impl Into<String>) -> Self {
        self.dns = Some(name.into());
        self
    }

    /// How often the DNS name is resolved again (default 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().dns_refresh(Duration::from_secs(30));
    /// ```
    pub fn dns_refresh(mut self, every: Duration) -> Self {
        self.dns_refresh = every;
        self
    }

    /// Speaks HTTP/2 with prior knowledge (as gRPC does) instead of HTTP/1.1.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().http2_prior_knowledge(true);
    /// ```
    pub fn http2_prior_knowledge(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// The longest a TCP connect may take (default 1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().connect_timeout(Duration::from_millis(200));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The total time a request may take, retries included (default 10 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().deadline(Duration::from_secs(1));
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.policies.deadline = deadline;
        self
    }

    /// The longest one attempt may take (default: the deadline shared by the attempts
    /// allowed, `deadline / (max_retries + 1)`), until its answer's head: once the caller
    /// has an answer it cannot be retried, and its body is bounded by the deadline (and
    /// [`body_idle_timeout`](Self::body_idle_timeout)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().attempt_timeout(Duration::from_millis(300));
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.policies.attempt_timeout = Some(timeout);
        self
    }

    /// Fails a response body that sends nothing for `timeout` (default: none; the deadline
    /// still covers the body). The only limit on the body of a
    /// [`Streaming`](crate::deadline::Streaming) response, whose default is the length of the
    /// request's deadline. See
    /// [`DeadlineLayer::body_idle_timeout`](crate::deadline::DeadlineLayer::body_idle_timeout).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().body_idle_timeout(Duration::from_secs(30));
    /// ```
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.policies.body_idle_timeout = Some(timeout);
        self
    }

    /// The retry budget (default [`Budget::default`]: 20% over 10 s, 10 retries/s reserve).
    /// Hand several clients clones of one budget to cap their retries together.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().budget(meshless::budget::Budget::default());
    /// ```
    pub fn budget(mut self, budget: Budget) -> Self {
        self.policies.budget = Some(budget);
        self
    }

    /// Retries per request (default 2); 0 turns retries off.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().max_retries(0);
    /// ```
    pub fn max_retries(mut self, max: u32) -> Self {
        self.policies.max_retries = max;
        self
    }

    /// The backoff between attempts (default full jitter, 25 ms to 250 ms).
    ///
    /// ```
    /// let b = meshless::http::Client::builder().backoff(meshless::backoff::Backoff::none());
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policies.backoff = backoff;
        self
    }

    /// Which requests are safe to repeat (default: by method, `Idempotency-Key`, marks).
    ///
    /// ```
    /// let b = meshless::http::Client::builder().idempotency(meshless::retry::Idempotency::default().all(true));
    /// ```
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.policies.idempotency = idempotency;
        self
    }

    /// The classifier shared by retries, balancing and ejection (default [`Classifier`]).
    ///
    /// ```
    /// let b = meshless::http::Client::builder().classifier(meshless::classify::Classifier::new());
    /// ```
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.policies.classifier = classifier;
        self
    }

    /// Balancer settings (fail-fast timeout, EWMA, misses).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use meshless::balance::Balance;
    /// let b = meshless::http::Client::builder()
    ///     .balance(Balance::builder().fail_fast(Duration::from_millis(500)));
    /// ```
    pub fn balance(mut self, balance: BalanceBuilder) -> Self {
        self.policies.balance = balance;
        self
    }

    /// Outlier ejection settings.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().outlier(meshless::outlier::OutlierConfig::default());
    /// ```
    pub fn outlier(mut self, config: OutlierConfig) -> Self {
        self.policies.balance = self.policies.balance.outlier(config);
        self
    }

    /// The `service` label of the client's metrics and spans (default `"default"`): name the
    /// service the client talks to, so that several clients in one process can be told apart.
    /// See [`crate::observe`].
    ///
    /// ```
    /// let b = meshless::http::Client::builder().service_name("payments");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.policies.service_name = name.into();
        self
    }

    /// Records metrics through the [`metrics`] facade (default `true`); `false` turns them off
    /// for the retry layer and the balancer alike. [`Client::stats`] and tracing are not
    /// affected.
    ///
    /// The client registers its metric handles when it is built: install the recorder first.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.policies.metrics = enabled;
        self
    }

    /// Adds a per-route policy (see [`crate::route`]): the first route that fits a request,
    /// in the order added, gives its deadline, attempt timeout, retries, idempotency and
    /// hedging; a request no route fits runs with the client's. Checked by
    /// [`build`](Self::build), errors naming `routes[i].<field>`.
    ///
    /// ```
    /// use meshless::route::Route;
    /// use std::time::Duration;
    /// let client = meshless::http::Client::builder()
    ///     .endpoints(["127.0.0.1:8080"])
    ///     .route(Route::path_prefix("/v1/reports").timeout(Duration::from_secs(30)))
    ///     .build()?;
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn route(mut self, route: Route) -> Self {
        self.policies.routes.push(route);
        self
    }

    /// Adds several per-route policies, in order (see [`route`](Self::route)).
    ///
    /// ```
    /// use meshless::route::Route;
    /// let err = meshless::http::Client::builder()
    ///     .endpoints(["127.0.0.1:8080"])
    ///     .routes([Route::path_prefix("/a"), Route::path_prefix("b")])
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.path(), "routes[1].match.path_prefix");
    /// ```
    pub fn routes(mut self, routes: impl IntoIterator<Item = Route>) -> Self {
        self.policies.routes.extend(routes);
        self
    }

    /// Checks the configuration and builds the client.
    ///
    /// ```
    /// let err = meshless::http::Client::builder().endpoints(["not an address"]).build();
    /// assert!(err.is_err());
    /// let err = meshless::http::Client::builder().build();
    /// assert!(err.is_err(), "no endpoints");
    /// ```
    pub fn build(self) -> Result<Client, ConfigError> {
        self.policies.balance.validate()?;
        let protection = self.policies.protection()?;
        if self.endpoints.is_empty() && self.dns.is_none() && self.discovery.is_none() {
            return Err(ConfigError::new(
                "endpoints",
                "give at least one endpoint or a DNS name",
            ));
        }
        if let (Some(_), Some(discovery)) = (&self.dns, &self.discovery) {
            return Err(ConfigError::new(
                discovery.setting,
                "choose DNS or this discovery, not both: they would fight over the endpoints",
            ));
        }
        self.policies.check_timeouts()?;
        if self.dns.is_some() && self.dns_refresh.is_zero() {
            return Err(ConfigError::new("dns_refresh", "must be greater than zero"));
        }
        if let Some(name) = &self.dns {
            check_dns(name)?;
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "connect_timeout",
                "must be greater than zero: 0ns would fail every connection",
            ));
        }
        let mut addrs = Vec::with_capacity(self.endpoints.len());
        for (i, text) in self.endpoints.iter().enumerate() {
            addrs.push(check_endpoint(i, text)?);
        }

        let endpoints = self.endpoints_factory()?;
        let balance: Balance<SocketAddr, EndpointService> = self.policies.balance();
        balance.apply(addrs.iter().filter_map(|addr| {
            Some(crate::balance::Change::Insert(
                *addr,
                endpoints.endpoint(*addr)?,
            ))
        }));
        let dns = match (&self.dns, &self.discovery) {
            (None, None) => None,
            (None, Some(discovery)) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(ConfigError::new(
                        discovery.setting,
                        "discovery needs a tokio runtime: build the client inside one",
                    ));
                }
                let task = (discovery.start)(endpoints.clone(), balance.clone())?;
                Some(Arc::new(AbortOnDrop(task)))
            }
            (Some(name), _) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(ConfigError::new(
                        "dns",
                        "DNS discovery needs a tokio runtime: build the client inside one",
                    ));
                }
                let task = dns::spawn(
                    name.trim().to_string(),
                    self.dns_refresh.min(NO_LIMIT),
                    endpoints.clone(),
                    balance.clone(),
                );
                Some(Arc::new(AbortOnDrop(task)))
            }
        };

        let service = Arc::from(self.policies.service_name.as_str());
        let routes = self.policies.routes.clone();
        let (stack, handles) = self.policies.stack(protection, balance.clone())?;
        let reload = super::reload::Reload::new(handles.routing, routes);
        #[cfg(feature = "serde")]
        let reload = reload.compared_with(self.config);
        Ok(Client {
            stack,
            balance,
            retry: handles.retry,
            breaker: handles.breaker,
            limit: handles.limit,
            throttle: handles.throttle,
            hedge: handles.hedge,
            reload: Arc::new(reload),
            service,
            _dns: dns,
        })
    }

    /// Plugs in an endpoint source other than static addresses and DNS: `start` is called by
    /// [`build`](Self::build) with what opens an endpoint and the balancer to feed, and returns
    /// the task feeding it, stopped with the client. `setting` names it in `ConfigError`s.
    #[cfg_attr(not(feature = "kube"), allow(dead_code))]
    pub(crate) fn discovery<F>(mut self, setting: &'static str, start: F) -> Self
    where
        F: Fn(
                Endpoints,
                Balance<SocketAddr, EndpointService>,
            ) -> Result<JoinHandle<()>, ConfigError>
            + Send
            + Sync
            + 'static,
    {
        self.discovery = Some(Discovery {
            setting,
            start: Arc::new(start),
        });
        self
    }

    /// The per-endpoint client settings, the TLS configuration and the logical authority.
    fn endpoints_factory(&self) -> Result<Endpoints, ConfigError> {
        let authority = match (&self.authority, &self.dns) {
            (Some(text), _) => Some(parse_authority("authority", text)?),
            (None, Some(name)) => Some(parse_authority("dns", name)?),
            (None, None) => None,
        };
        let scheme = if self.https {
            #[cfg(not(feature = "tls"))]
            return Err(ConfigError::new(
                "https",
                "TLS is compiled out: enable the `tls` feature",
            ));
            #[cfg(feature = "tls")]
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let connect = ConnectSettings {
            connect_timeout: limit(self.connect_timeout),
            tcp_keepalive: self.tcp_keepalive,
            http2_only: self.http2,
            #[cfg(feature = "tls")]
            tls: self.tls.build(self.http2)?,
        };
        let mut hyper = HyperClient::builder(TokioExecutor::new());
        hyper
            .http2_only(self.http2)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout.and_then(limit))
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .http2_keep_alive_interval(self.http2_keepalive.and_then(limit))
            .http2_keep_alive_timeout(self.http2_keepalive_timeout.min(NO_LIMIT))
            .http2_keep_alive_while_idle(true)
            // Said out loud although it is hyper-util's default: a request that never left a
            // pooled connection the server had closed is sent again on a fresh one.
            .retry_canceled_requests(true)
            .set_host(true);
        Ok(Endpoints {
            hyper,
            connect: Arc::new(connect),
            scheme,
            authority,
            http2_only: self.http2,
        })
    }
}

/// Starts an endpoint source: see [`ClientBuilder::discovery`].
type StartDiscovery = dyn Fn(Endpoints, Balance<SocketAddr, EndpointService>) -> Result<JoinHandle<()>, ConfigError>
    + Send
    + Sync;

#[derive(Clone)]
struct Discovery {
    setting: &'static str,
    start: Arc<StartDiscovery>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.setting)
    }
}

/// The authority part of `text` (`host`, `host:port`), without userinfo.
fn parse_authority(setting: &'static str, text: &str) -> Result<Authority, ConfigError> {
    let authority: Authority = text
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(setting, format!("{text:?} is not host[:port]")))?;
    if authority.as_str().contains('@') {
        return Err(ConfigError::new(
            setting,
            "must not carry userinfo: it would leak into Host",
        ));
    }
    Ok(authority)
}

/// Endpoint `i` of a client's list, `IP:port`, or the error naming it (`endpoints[i]`).
pub(crate) fn check_endpoint(i: usize, text: &str) -> Result<SocketAddr, ConfigError> {
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        ConfigError::at(
            "endpoints",
            i,
            format!("{text:?} is not IP:port (use .dns() for names)"),
        )
    })?;
    if addr.port() == 0 {
        return Err(ConfigError::at(
            "endpoints",
            i,
            format!("{text:?}: port 0 cannot be connected to"),
        ));
    }
    Ok(addr)
}

/// A DNS name for the endpoints, `host:port`, or the error naming `dns`.
pub(crate) fn check_dns(name: &str) -> Result<(), ConfigError> {
    // Resolved as given, every refresh: a name that cannot be resolved as it is (no port)
    // would leave the client with no endpoint and nothing said but a log line; nothing
    // listens on port 0.
    match parse_authority("dns", name)?.port_u16() {
        None => Err(ConfigError::new(
            "dns",
            format!("{name:?} has no port: give host:port"),
        )),
        Some(0) => Err(ConfigError::new(
            "dns",
            format!("{name:?}: port 0 cannot be connected to"),
        )),
        Some(_) => Ok(()),
    }
}
