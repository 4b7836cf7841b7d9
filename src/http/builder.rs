//! Configuring a [`Client`].

use super::client::{AbortOnDrop, Client, Stack};
use super::dns;
use super::endpoint::{EndpointService, Hyper};
use crate::backoff::Backoff;
use crate::balance::{Balance, BalanceBuilder};
use crate::budget::Budget;
use crate::classify::Classifier;
use crate::deadline::{AttemptTimeoutLayer, DeadlineLayer};
use crate::error::ConfigError;
use crate::outlier::OutlierConfig;
use crate::retry::{Idempotency, RetryLayer};
use http::uri::Authority;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

/// Configures a [`Client`]. Every setting has a default; only the endpoints are required.
///
/// | setting | default | source |
/// |---|---|---|
/// | deadline per request | 10 s | ours; set it to your SLA |
/// | attempt timeout | deadline ÷ (max retries + 1) | ours: every allowed attempt fits in the deadline |
/// | connect timeout | 1 s | ours; linkerd uses 1 s too |
/// | DNS refresh | 5 s | ours |
/// | HTTP version | HTTP/1.1 (HTTP/2 with prior knowledge on request) | hyper |
/// | retries, budget, backoff, replay | see [`RetryLayer`] | Finagle, linkerd, Envoy |
/// | balancing, fail fast | see [`BalanceBuilder`] | linkerd |
/// | outlier ejection | see [`OutlierConfig`] | Envoy, gRPC A50 |
/// | `service` label of metrics and spans | `"default"` | see [`crate::observe`] |
/// | metrics | on (no-ops until a recorder is installed) | see [`crate::observe`] |
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
    http2: bool,
    connect_timeout: Duration,
    deadline: Duration,
    attempt_timeout: Option<Duration>,
    body_idle_timeout: Option<Duration>,
    budget: Option<Budget>,
    max_retries: u32,
    backoff: Backoff,
    idempotency: Idempotency,
    classifier: Classifier,
    balance: BalanceBuilder,
    service_name: String,
    metrics: bool,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoints: Vec::new(),
            dns: None,
            dns_refresh: Duration::from_secs(5),
            http2: false,
            connect_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
            attempt_timeout: None,
            body_idle_timeout: None,
            budget: None,
            max_retries: crate::retry::DEFAULT_MAX_RETRIES,
            backoff: Backoff::default(),
            idempotency: Idempotency::default(),
            classifier: Classifier::default(),
            balance: BalanceBuilder::default(),
            service_name: crate::observe::DEFAULT_SERVICE.to_string(),
            metrics: true,
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
        self.deadline = deadline;
        self
    }

    /// The longest one attempt may take (default: the deadline shared by the attempts
    /// allowed, `deadline / (max_retries + 1)`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().attempt_timeout(Duration::from_millis(300));
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Fails a response body that sends nothing for `timeout` (default: none; the deadline
    /// still covers the body). The only limit on the body of a
    /// [`Streaming`](crate::deadline::Streaming) response. See
    /// [`DeadlineLayer::body_idle_timeout`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::http::Client::builder().body_idle_timeout(Duration::from_secs(30));
    /// ```
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.body_idle_timeout = Some(timeout);
        self
    }

    /// The retry budget (default [`Budget::default`]: 20% over 10 s, 10 retries/s reserve).
    /// Hand several clients clones of one budget to cap their retries together.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().budget(meshless::budget::Budget::default());
    /// ```
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Retries per request (default 2); 0 turns retries off.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().max_retries(0);
    /// ```
    pub fn max_retries(mut self, max: u32) -> Self {
        self.max_retries = max;
        self
    }

    /// The backoff between attempts (default full jitter, 25 ms to 250 ms).
    ///
    /// ```
    /// let b = meshless::http::Client::builder().backoff(meshless::backoff::Backoff::none());
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Which requests are safe to repeat (default: by method, `Idempotency-Key`, marks).
    ///
    /// ```
    /// let b = meshless::http::Client::builder().idempotency(meshless::retry::Idempotency::default().all(true));
    /// ```
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = idempotency;
        self
    }

    /// The classifier shared by retries, balancing and ejection (default [`Classifier`]).
    ///
    /// ```
    /// let b = meshless::http::Client::builder().classifier(meshless::classify::Classifier::new());
    /// ```
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// Balancer settings (fail-fast timeout, EWMA, penalty).
    ///
    /// ```
    /// # use std::time::Duration;
    /// use meshless::balance::Balance;
    /// let b = meshless::http::Client::builder()
    ///     .balance(Balance::builder().fail_fast(Duration::from_millis(500)));
    /// ```
    pub fn balance(mut self, balance: BalanceBuilder) -> Self {
        self.balance = balance;
        self
    }

    /// Outlier ejection settings.
    ///
    /// ```
    /// let b = meshless::http::Client::builder().outlier(meshless::outlier::OutlierConfig::default());
    /// ```
    pub fn outlier(mut self, config: OutlierConfig) -> Self {
        self.balance = self.balance.outlier(config);
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
        self.service_name = name.into();
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
        self.metrics = enabled;
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
        self.balance.validate()?;
        if self.endpoints.is_empty() && self.dns.is_none() {
            return Err(ConfigError::new(
                "endpoints",
                "give at least one endpoint or a DNS name",
            ));
        }
        if self.deadline.is_zero() {
            return Err(ConfigError::new("deadline", "must be greater than zero"));
        }
        if self.attempt_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "attempt_timeout",
                "must be greater than zero",
            ));
        }
        if self.dns.is_some() && self.dns_refresh.is_zero() {
            return Err(ConfigError::new("dns_refresh", "must be greater than zero"));
        }
        let mut addrs = Vec::with_capacity(self.endpoints.len());
        for text in &self.endpoints {
            let addr: SocketAddr = text.trim().parse().map_err(|_| {
                ConfigError::new(
                    "endpoints",
                    format!("{text:?} is not IP:port (use .dns() for names)"),
                )
            })?;
            addrs.push(addr);
        }

        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        let hyper: Hyper = HyperClient::builder(TokioExecutor::new())
            .http2_only(self.http2)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);

        let balance: Balance<SocketAddr, EndpointService> = self
            .balance
            .clone()
            .classifier(self.classifier.clone())
            .service_name(self.service_name.clone())
            .metrics(self.metrics)
            .build();
        balance.apply(addrs.iter().filter_map(|addr| {
            let authority: Authority = addr.to_string().parse().ok()?;
            Some(crate::balance::Change::Insert(
                *addr,
                EndpointService::new(hyper.clone(), authority),
            ))
        }));
        let dns = match &self.dns {
            None => None,
            Some(name) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(ConfigError::new(
                        "dns",
                        "DNS discovery needs a tokio runtime: build the client inside one",
                    ));
                }
                let task = dns::spawn(
                    name.clone(),
                    self.dns_refresh,
                    hyper.clone(),
                    balance.clone(),
                );
                Some(Arc::new(AbortOnDrop(task)))
            }
        };

        let attempts = self.max_retries.saturating_add(1);
        let attempt_timeout = self.attempt_timeout.unwrap_or(self.deadline / attempts);
        let retry = RetryLayer::new(self.budget.unwrap_or_default())
            .max_retries(self.max_retries)
            .backoff(self.backoff)
            .idempotency(self.idempotency)
            // With peers to go to, a pushback keeps its endpoint away rather than the request.
            .pushback_per_endpoint(addrs.len() >= 2)
            .service_name(self.service_name.clone())
            .metrics(self.metrics)
            .classifier(self.classifier);
        let retry_stats = retry.stats();
        let mut deadline = DeadlineLayer::new(self.deadline);
        if let Some(idle) = self.body_idle_timeout {
            deadline = deadline.body_idle_timeout(idle);
        }
        let stack: Stack = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(deadline)
                .layer(retry)
                .layer(AttemptTimeoutLayer::new(attempt_timeout))
                .service(balance.clone()),
        );
        Ok(Client {
            stack,
            balance,
            retry: retry_stats,
            service: Arc::from(self.service_name),
            _dns: dns,
        })
    }
}
