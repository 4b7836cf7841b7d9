//! Configuring a [`Client`]: the endpoints, and the policies of meshless's layers.

use super::client::Client;
use super::endpoint::Endpoint;
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
use std::sync::Arc;
use std::time::Duration;

/// Configures a [`Client`] around your `reqwest::Client`. Only the endpoints are required;
/// every policy has the default of [`crate::http::ClientBuilder`] (the table there gives each
/// one's source):
///
/// | setting | default |
/// |---|---|
/// | deadline per request, body included | 10 s |
/// | attempt timeout | deadline ÷ (max retries + 1), standing aside while more than a tenth of recent attempts ran past it |
/// | retries | 2 per request, under a 20% budget, full-jitter backoff 25–250 ms, 64 KiB replay |
/// | which requests retry | idempotent methods, `Idempotency-Key`, marks; any request that never left |
/// | balancing | P2C over peak-EWMA, fail fast after 3 s without a ready endpoint |
/// | outlier ejection | see [`OutlierConfig`] |
/// | circuit breaker | on: 50% failures over 10 s, ≥ 20 requests |
/// | concurrency limit, throttling, hedging | off |
///
/// The connection settings (TLS, proxies, pool, cookies, HTTP/2) are your `reqwest::Client`'s.
/// Turn reqwest's own retries off, so that retries do not multiply:
/// `reqwest::Client::builder().retry(reqwest::retry::never())`. Its default retries only
/// HTTP/2 refusals that nothing reached, which is harmless; a policy of your own
/// (`retry::for_host`) would repeat every meshless attempt.
///
/// ```
/// use meshless::reqwest::Client;
/// use std::time::Duration;
///
/// let http = reqwest::Client::builder()
///     .retry(reqwest::retry::never())
///     .build()
///     .expect("reqwest client");
/// let client = Client::builder(http)
///     .endpoints(["http://10.0.0.1:8080", "http://10.0.0.2:8080"])
///     .deadline(Duration::from_millis(800))
///     .max_retries(3)
///     .build()?;
/// # Ok::<(), meshless::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    client: ::reqwest::Client,
    endpoints: Vec<(String, Option<::reqwest::Client>)>,
    /// The policies of the layers, shared with the other clients.
    policies: Policies,
}

impl ClientBuilder {
    pub(crate) fn new(client: ::reqwest::Client) -> Self {
        ClientBuilder {
            client,
            endpoints: Vec::new(),
            policies: Policies::default(),
        }
    }

    /// The endpoints, each a base URL `http://host[:port]` or `https://host[:port]`, reached
    /// through the client the builder was given. Requests are balanced over them.
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoints(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]);
    /// ```
    pub fn endpoints<I, S>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let endpoints = endpoints.into_iter().map(|e| (e.into(), None));
        self.endpoints.extend(endpoints);
        self
    }

    /// One more endpoint, reached through a client of its own: for instance one built with
    /// `reqwest::ClientBuilder::resolve`, so that an `https://svc.example` endpoint connects
    /// to one given address while its certificate still names `svc.example`.
    ///
    /// ```
    /// let one = reqwest::Client::builder()
    ///     .resolve("svc.example", "10.0.0.1:8443".parse().unwrap())
    ///     .build()
    ///     .unwrap();
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .endpoint_with_client("https://svc.example:8443", one);
    /// ```
    pub fn endpoint_with_client(
        mut self,
        endpoint: impl Into<String>,
        client: ::reqwest::Client,
    ) -> Self {
        self.endpoints.push((endpoint.into(), Some(client)));
        self
    }

    /// The total time a request may take, retries and the response body included (default
    /// 10 s). [`Duration::MAX`] means no limit.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new()).deadline(Duration::from_secs(1));
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.policies.deadline = deadline;
        self
    }

    /// The longest one attempt may take, until its response head (default: `deadline /
    /// (max_retries + 1)`). reqwest's own `timeout`, if set, caps each attempt as well.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .attempt_timeout(Duration::from_millis(300));
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.policies.attempt_timeout = Some(timeout);
        self
    }

    /// Fails a response body that sends nothing for `timeout` (default: none; the deadline
    /// still covers the body; a stream's default is the length of its deadline). See [`DeadlineLayer::body_idle_timeout`](crate::deadline::DeadlineLayer::body_idle_timeout).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .body_idle_timeout(Duration::from_secs(30));
    /// ```
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.policies.body_idle_timeout = Some(timeout);
        self
    }

    /// The retry budget (default [`Budget::default`]: 20% over 10 s, 10 retries/s reserve).
    /// Clones of one budget cap several clients' retries together.
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .budget(meshless::budget::Budget::default());
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
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .route(Route::path_prefix("/v1/reports").max_retries(0));
    /// ```
    pub fn route(mut self, route: crate::route::Route) -> Self {
        self.policies.routes.push(route);
        self
    }

    /// Retries per request (default 2); 0 turns retries off.
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new()).max_retries(0);
    /// ```
    pub fn max_retries(mut self, max: u32) -> Self {
        self.policies.max_retries = max;
        self
    }

    /// The backoff between attempts (default full jitter, 25 ms to 250 ms).
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .backoff(meshless::backoff::Backoff::none());
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policies.backoff = backoff;
        self
    }

    /// Which requests are safe to repeat (default: by method, `Idempotency-Key`, marks).
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .idempotency(meshless::retry::Idempotency::default().all(true));
    /// ```
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.policies.idempotency = idempotency;
        self
    }

    /// The classifier shared by retries, balancing, ejection and the breaker (default
    /// [`Classifier`]).
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .classifier(meshless::classify::Classifier::new());
    /// ```
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.policies.classifier = classifier;
        self
    }

    /// Balancer settings (fail-fast timeout, EWMA, misses).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .balance(meshless::balance::Balance::builder().fail_fast(Duration::from_millis(500)));
    /// ```
    pub fn balance(mut self, balance: BalanceBuilder) -> Self {
        self.policies.balance = balance;
        self
    }

    /// Outlier ejection settings.
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .outlier(meshless::outlier::OutlierConfig::default());
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
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new()).breaker(breaker);
    /// ```
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.policies.breaker = config;
        self
    }

    /// The concurrency limit (default none). Checked by [`build`](Self::build)
    /// (`limit.<field>`).
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .limit(meshless::limit::LimitConfig::default());
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
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new()).throttle(throttle);
    /// ```
    pub fn throttle(mut self, config: ThrottleConfig) -> Self {
        self.policies.throttle = config;
        self
    }

    /// Hedged requests (default off): an idempotent request still unanswered after the p95
    /// of recent answers gets a second attempt at another endpoint, within the retry budget.
    /// Checked by [`build`](Self::build) (`hedge.<field>`).
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new())
    ///     .hedge(meshless::hedge::HedgeConfig::default());
    /// ```
    pub fn hedge(mut self, config: HedgeConfig) -> Self {
        self.policies.hedge = Some(config);
        self
    }

    /// Whether a request made while serving a request its caller retries leaves the retries
    /// to the caller (default `true`). See [`CallerRetries`](crate::retry::CallerRetries).
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new()).defer_to_caller(false);
    /// ```
    pub fn defer_to_caller(mut self, defer: bool) -> Self {
        self.policies.defer_to_caller = defer;
        self
    }

    /// The `service` label of metrics and spans (default `"default"`).
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new()).service_name("payments");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.policies.service_name = name.into();
        self
    }

    /// Records metrics through the [`metrics`] facade (default `true`).
    ///
    /// ```
    /// let b = meshless::reqwest::Client::builder(reqwest::Client::new()).metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.policies.metrics = enabled;
        self
    }

    /// Checks the configuration and builds the client. Needs no runtime.
    ///
    /// ```
    /// let b = || meshless::reqwest::Client::builder(reqwest::Client::new());
    /// assert_eq!(b().build().unwrap_err().setting(), "endpoints");
    /// assert_eq!(b().endpoints(["10.0.0.1:80"]).build().unwrap_err().setting(), "endpoints");
    /// assert!(b().endpoints(["http://10.0.0.1:80"]).build().is_ok());
    /// ```
    pub fn build(self) -> Result<Client, ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::new("endpoints", "give at least one base URL"));
        }
        self.policies.check_timeouts()?;
        self.policies.balance.validate()?;
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for (i, (base, client)) in self.endpoints.iter().enumerate() {
            let client = client.clone().unwrap_or_else(|| self.client.clone());
            endpoints.push(Endpoint::new(client, base).map_err(|e| e.at_index(i))?);
        }
        let cleartext = endpoints.iter().any(|e| e.base().starts_with("http:"));

        let protection = self.policies.protection()?;
        let balance: Balance<Arc<str>, Endpoint> = self.policies.balance();
        balance.apply(endpoints.into_iter().map(|e| Change::Insert(e.key(), e)));
        let (stack, layers) = self.policies.stack(protection, balance.clone())?;
        let handles = super::client::Handles {
            balance,
            retry: layers.retry,
            breaker: layers.breaker,
            limit: layers.limit,
            throttle: layers.throttle,
            hedge: layers.hedge,
            cleartext,
            routing: layers.routing,
        };
        Ok(Client {
            stack,
            handles: Arc::new(handles),
        })
    }
}
