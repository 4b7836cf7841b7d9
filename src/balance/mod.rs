//! Latency-aware load balancing over a changing set of endpoints.
//!
//! [`Balance`] sends each request to one endpoint chosen by the power of two choices: draw two
//! at random, take the one with the lower cost, where cost is the endpoint's peak-EWMA
//! round-trip time × (requests in flight + 1), divided by its weight. The round trip runs to
//! the end of the response body, and failures (5xx, 429, connection errors, timeouts) count as
//! a penalty latency, so an endpoint that fails fast does not attract traffic as tower's
//! `PeakEwma` would let it.
//!
//! Each endpoint has an [outlier](crate::outlier) gate: an ejected endpoint is *not ready* —
//! never removed — and comes back through one probe and a slow start. When no endpoint can take a
//! request, it waits at most the fail-fast timeout (3 s, as linkerd) and then fails with
//! [`Kind::NoReadyEndpoint`](crate::error::Kind::NoReadyEndpoint): the balancer never hangs.
//!
//! Endpoints come from a static list, from [`Balance::apply`] (any batch of
//! [`Change`]s, as `tower::discover` yields them) or from a [`Discover`] stream driven by
//! [`Balance::discover`]. A removed endpoint finishes the requests it already has.
//!
//! ```
//! use meshless::balance::Balance;
//! use tower::{ServiceExt, service_fn};
//!
//! # tokio_test::block_on(async {
//! let endpoint = |name: &'static str| service_fn(move |_req: http::Request<()>| async move {
//!     Ok::<_, std::io::Error>(http::Response::new(name.to_string()))
//! });
//! let balance = Balance::builder().build();
//! balance.insert("a", endpoint("a"));
//! balance.insert("b", endpoint("b"));
//! let res = balance.clone().oneshot(http::Request::new(())).await?;
//! assert_eq!(res.status(), 200);
//! # Ok::<_, meshless::Error>(()) });
//! ```

mod body;
mod config;
mod endpoint;
mod ewma;
mod future;
mod p2c;
mod quiet;
mod telemetry;

pub use self::body::ResponseBody;
pub use self::config::BalanceConfig;
pub use self::future::ResponseFuture;
pub use tower::discover::{Change, Discover};

use self::endpoint::{Endpoint, Meter};
use self::ewma::PeakEwma;
use self::telemetry::BalancerMetrics;
use crate::classify::{Classifier, Classify};
use crate::error::{BoxError, ConfigError, Error};
use crate::observe::Settings;
use crate::outlier::HealthObserver;
use crate::outlier::{Detector, OutlierConfig, Status};
use http::Request;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::Service;

/// Balances requests over endpoints by latency and load, ejecting outliers.
///
/// Cheap to clone: clones share the endpoints and their measurements. `poll_ready` is always
/// ready; choosing an endpoint (and waiting for one) happens in the response future, so that a
/// deadline set by an outer layer bounds the wait.
///
/// ```
/// use meshless::balance::Balance;
/// use tower::service_fn;
/// let balance = Balance::builder().build();
/// balance.insert("127.0.0.1:8080", service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::io::Error>(http::Response::new(()))
/// }));
/// assert_eq!(balance.len(), 1);
/// ```
pub struct Balance<K, S> {
    shared: Arc<Shared<K, S>>,
}

impl<K, S> Clone for Balance<K, S> {
    fn clone(&self) -> Self {
        Balance {
            shared: self.shared.clone(),
        }
    }
}

/// An immutable view of the endpoint set: requests pick from it without holding any lock.
type Snapshot<K, S> = Arc<Endpoints<K, S>>;

/// The endpoint set, in two parallel arrays: `candidates[i]` is what a pick compares of
/// `all[i]`. A pick reaches each candidate's meter and gate one pointer away from this
/// contiguous array, instead of hopping through the endpoint first; `all` is read for the
/// endpoint it takes.
pub(crate) struct Endpoints<K, S> {
    pub(crate) candidates: Box<[Candidate]>,
    pub(crate) all: Box<[Arc<Endpoint<K, S>>]>,
}

/// One endpoint as a pick sees it: its meter, and its gate (the same as `meter.health`, held
/// here so that the pick reads the gate word without going through the meter's cold line).
pub(crate) struct Candidate {
    pub(crate) meter: Arc<Meter>,
    pub(crate) gate: crate::outlier::Health,
}

impl<K, S> Endpoints<K, S> {
    fn new(all: Vec<Arc<Endpoint<K, S>>>) -> Self {
        Endpoints {
            candidates: all
                .iter()
                .map(|e| Candidate {
                    meter: e.meter.clone(),
                    gate: e.meter.health.clone(),
                })
                .collect(),
            all: all.into_boxed_slice(),
        }
    }
}

pub(crate) struct Shared<K, S> {
    endpoints: RwLock<Snapshot<K, S>>,
    /// Where every endpoint's clock starts: their times are nanoseconds since it, so that a
    /// pick converts `now` once for all the endpoints it looks at.
    origin: Instant,
    pub(crate) detector: Detector,
    pub(crate) classifier: Arc<dyn Classify>,
    pub(crate) config: BalanceBuilder,
    pub(crate) fail_fast_events: AtomicU64,
    /// `None` when metrics are off.
    pub(crate) metrics: Option<BalancerMetrics>,
}

impl<K, S> Shared<K, S> {
    pub(crate) fn snapshot(&self) -> Snapshot<K, S> {
        // Writers only swap the pointer, so a poisoned lock still holds a whole snapshot.
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes every endpoint's EWMA gauge: run once per outlier sweep.
    fn publish_rtt(&self, now: Instant) {
        if self.metrics.is_none() {
            return;
        }
        for endpoint in self.snapshot().all.iter() {
            if let Some(metrics) = &endpoint.meter.metrics {
                metrics.rtt(endpoint.meter.rtt.get(now));
            }
        }
    }
}

/// Configures a [`Balance`].
///
/// | setting | default | source |
/// |---|---|---|
/// | default RTT of a new endpoint | 30 ms | linkerd |
/// | EWMA decay | 10 s | linkerd |
/// | fail-fast timeout | 3 s | linkerd |
/// | failure penalty | 1 s | ours: a failure must look dearer than any healthy answer |
/// | longest pushback kept per endpoint | 10 s | ours, as the retry layer's longest pushback |
/// | RTT measured to | end of response body | ours (tower stops at headers) |
///
/// ```
/// use meshless::balance::Balance;
/// use std::time::Duration;
/// let balance = Balance::builder()
///     .fail_fast(Duration::from_secs(1))
///     .default_rtt(Duration::from_millis(5))
///     .build::<std::net::SocketAddr, ()>();
/// ```
#[derive(Clone)]
pub struct BalanceBuilder {
    pub(crate) default_rtt: Duration,
    pub(crate) decay: Duration,
    pub(crate) fail_fast: Duration,
    pub(crate) penalty: Duration,
    pub(crate) max_pushback: Duration,
    pub(crate) rtt_at_headers: bool,
    outlier: OutlierConfig,
    classifier: Arc<dyn Classify>,
    observe: Settings,
}

impl fmt::Debug for BalanceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceBuilder")
            .field("default_rtt", &self.default_rtt)
            .field("decay", &self.decay)
            .field("fail_fast", &self.fail_fast)
            .field("penalty", &self.penalty)
            .field("max_pushback", &self.max_pushback)
            .field("rtt_at_headers", &self.rtt_at_headers)
            .field("observe", &self.observe)
            .finish_non_exhaustive()
    }
}

impl Default for BalanceBuilder {
    fn default() -> Self {
        BalanceBuilder {
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
            fail_fast: Duration::from_secs(3),
            penalty: Duration::from_secs(1),
            max_pushback: Duration::from_secs(10),
            rtt_at_headers: false,
            outlier: OutlierConfig::default(),
            classifier: Arc::new(Classifier::default()),
            observe: Settings::default(),
        }
    }
}

impl BalanceBuilder {
    /// The RTT assumed for an endpoint before its first answer (default 30 ms).
    /// `Duration::ZERO` assumes a new endpoint is instant: P2C picks it by its requests in
    /// flight alone until it answers ([`validate`](Self::validate) refuses it).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::balance::Balance::builder().default_rtt(Duration::from_millis(10));
    /// ```
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt = rtt;
        self
    }

    /// How fast the EWMA forgets (default 10 s). `Duration::MAX` never forgets.
    /// `Duration::ZERO` forgets at once: every latency reads as gone a nanosecond later, so P2C
    /// picks by requests in flight alone ([`validate`](Self::validate) refuses it).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::balance::Balance::builder().decay(Duration::from_secs(5));
    /// ```
    pub fn decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    /// The longest a request waits for an endpoint before failing (default 3 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::balance::Balance::builder().fail_fast(Duration::from_millis(500));
    /// ```
    pub fn fail_fast(mut self, timeout: Duration) -> Self {
        self.fail_fast = timeout;
        self
    }

    /// The latency recorded for a failure that gives no pushback (default 1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::balance::Balance::builder().failure_penalty(Duration::from_millis(250));
    /// ```
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.penalty = penalty;
        self
    }

    /// The longest quiet an endpoint gets when its server pushes back (`Retry-After` on a
    /// 429 or 503, `grpc-retry-pushback-ms`; default 10 s). Until the time the server named,
    /// clamped by this, the endpoint gets no request from this balancer: P2C picks among the
    /// others. When every endpoint is pushing back, a request waits for the first to be free
    /// if that is before its deadline ([`RequestDeadline`](crate::deadline::RequestDeadline),
    /// which an [`AttemptTimeout`](crate::deadline::AttemptTimeout) above shortens to the
    /// attempt's), and otherwise fails at once with
    /// [`Kind::EndpointsPushingBack`](crate::error::Kind::EndpointsPushingBack), whose source
    /// is a [`QuietUntil`](crate::error::QuietUntil): a retry layer above waits until then and
    /// sends the request again if its own deadline allows (nothing was sent, so it costs no
    /// retry).
    /// `Duration::ZERO` ignores pushback; `Duration::MAX` honours any.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::balance::Balance::builder().max_pushback(Duration::from_secs(30));
    /// ```
    pub fn max_pushback(mut self, max: Duration) -> Self {
        self.max_pushback = max;
        self
    }

    /// Measures RTT to the response head instead of the end of its body (default `false`).
    ///
    /// ```
    /// let b = meshless::balance::Balance::builder().rtt_at_headers(true);
    /// ```
    pub fn rtt_at_headers(mut self, at_headers: bool) -> Self {
        self.rtt_at_headers = at_headers;
        self
    }

    /// Outlier ejection settings (see [`crate::outlier`]).
    ///
    /// ```
    /// use meshless::outlier::OutlierConfig;
    /// let b = meshless::balance::Balance::builder().outlier(OutlierConfig::default());
    /// ```
    pub fn outlier(mut self, config: OutlierConfig) -> Self {
        self.outlier = config;
        self
    }

    /// The classifier that decides which answers are failures (default [`Classifier`]).
    ///
    /// ```
    /// use meshless::classify::Classifier;
    /// let b = meshless::balance::Balance::builder().classifier(Classifier::new());
    /// ```
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// The `service` label of this balancer's metrics and events (default `"default"`). See
    /// [`crate::observe`].
    ///
    /// ```
    /// let b = meshless::balance::Balance::builder().service_name("payments");
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.observe.set_service(name);
        self
    }

    /// Records metrics through the [`metrics`] facade (default `true`); `false` turns them off
    /// for this balancer. [`Balance::stats`] and tracing events are not affected.
    ///
    /// The balancer registers its handles when it is built and each endpoint's when it is
    /// inserted: install the recorder before that.
    ///
    /// ```
    /// let b = meshless::balance::Balance::builder().metrics(false);
    /// ```
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.observe.metrics = enabled;
        self
    }

    /// Drops the metric series of every endpoint removed, through `recorder` (see
    /// [`ForgetSeries`](crate::observe::ForgetSeries)): once discovery removed an endpoint and
    /// its last request finished, each of its per-endpoint series is forgotten. Without it the
    /// series stay in the recorder (the `metrics` facade cannot unregister one); with an
    /// exporter that cannot drop series, set its idle timeout instead (see
    /// [`observe`](crate::observe)).
    ///
    /// ```
    /// use meshless::balance::Balance;
    /// use meshless::observe::ForgetSeries;
    /// use metrics::Key;
    /// use metrics_util::registry::{AtomicStorage, Registry};
    /// use std::sync::Arc;
    ///
    /// struct Dropping(Arc<Registry<Key, AtomicStorage>>);
    /// impl ForgetSeries for Dropping {
    ///     fn forget_counter(&self, key: &Key) { self.0.delete_counter(key); }
    ///     fn forget_gauge(&self, key: &Key) { self.0.delete_gauge(key); }
    ///     fn forget_histogram(&self, key: &Key) { self.0.delete_histogram(key); }
    /// }
    ///
    /// let registry = Arc::new(Registry::atomic());
    /// let b = Balance::builder().forget_series(Dropping(registry.clone()));
    /// ```
    pub fn forget_series(mut self, recorder: impl crate::observe::ForgetSeries) -> Self {
        self.observe.forget = Some(crate::observe::Forgetter::new(Arc::new(recorder)));
        self
    }

    /// Checks the settings with [`BalanceConfig::validate`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = meshless::balance::Balance::builder().decay(Duration::ZERO);
    /// assert_eq!(b.validate().unwrap_err().setting(), "balance.decay");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.config().validate()
    }

    /// Builds an empty balancer; add endpoints with [`Balance::insert`] or discovery. It cannot
    /// fail, so it takes every value as given (no setting falls back to its default): call
    /// [`validate`](Self::validate) first, or start from [`from_config`](Self::from_config),
    /// to refuse the zero `decay` and `default_rtt` that the setters give a meaning to.
    ///
    /// ```
    /// let balance = meshless::balance::Balance::builder().build::<&str, ()>();
    /// assert!(balance.is_empty());
    /// ```
    pub fn build<K, S>(self) -> Balance<K, S> {
        Balance {
            shared: Arc::new(Shared {
                endpoints: RwLock::new(Arc::new(Endpoints::new(Vec::new()))),
                origin: Instant::now(),
                detector: Detector::new(self.outlier.clone()),
                classifier: self.classifier.clone(),
                metrics: BalancerMetrics::register(&self.observe),
                config: self,
                fail_fast_events: AtomicU64::new(0),
            }),
        }
    }
}

/// What the balancer knows of one endpoint, from [`Balance::endpoints`].
///
/// ```
/// use meshless::balance::Balance;
/// # use tower::service_fn;
/// let balance = Balance::builder().build();
/// balance.insert("a", service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
/// let stats = &balance.endpoints()[0];
/// assert_eq!(stats.key, "a");
/// assert_eq!(stats.requests, 0);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointStats<K> {
    /// The endpoint's key.
    pub key: K,
    /// Requests finished.
    pub requests: u64,
    /// Of which failures.
    pub failures: u64,
    /// Requests its caller gave up on before they finished: not in `requests`, never failures.
    pub cancelled: u64,
    /// Times it was ejected.
    pub ejections: u64,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Its current peak-EWMA round-trip time.
    pub rtt: Duration,
    /// Its outlier status now.
    pub status: Status,
}

impl Balance<(), ()> {
    /// Starts a configuration with the defaults; [`BalanceBuilder::build`] picks the key and
    /// service types.
    ///
    /// ```
    /// use meshless::balance::Balance;
    /// # use tower::service_fn;
    /// let balance = Balance::builder().build();
    /// balance.insert("a", service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(String::new()))
    /// }));
    /// ```
    pub fn builder() -> BalanceBuilder {
        BalanceBuilder::default()
    }
}

impl<K, S> Balance<K, S> {
    /// The number of endpoints.
    ///
    /// ```
    /// assert_eq!(meshless::balance::Balance::builder().build::<&str, ()>().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.snapshot().all.len()
    }

    /// True when there is no endpoint.
    ///
    /// ```
    /// assert!(meshless::balance::Balance::builder().build::<&str, ()>().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests that failed fast because no endpoint was ready.
    ///
    /// ```
    /// assert_eq!(meshless::balance::Balance::builder().build::<&str, ()>().fail_fast_events(), 0);
    /// ```
    pub fn fail_fast_events(&self) -> u64 {
        self.shared.fail_fast_events.load(Ordering::Relaxed)
    }
}

/// A snapshot of a [`Balance`]: its endpoints, how many are in each state, and how often it
/// failed fast.
///
/// ```
/// use meshless::balance::Balance;
/// # use tower::service_fn;
/// let balance = Balance::builder().build();
/// balance.insert("a", service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
/// let stats = balance.stats();
/// assert_eq!((stats.active, stats.ejected, stats.probation), (1, 0, 0));
/// assert_eq!(stats.endpoints[0].key, "a");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BalanceStats<K> {
    /// Every endpoint's measurements, as [`Balance::endpoints`] gives them.
    pub endpoints: Vec<EndpointStats<K>>,
    /// Endpoints serving traffic.
    pub active: usize,
    /// Endpoints ejected, whose ejection has not ended.
    pub ejected: usize,
    /// Endpoints whose ejection has ended, waiting for or serving their probe.
    pub probation: usize,
    /// Requests that failed fast because no endpoint was ready.
    pub fail_fast_events: u64,
}

impl<K, S> Balance<K, S>
where
    K: Clone + Eq + Hash + fmt::Display,
{
    /// Adds an endpoint, or replaces the service of the one with the same key, which keeps
    /// its measurements and outlier state.
    ///
    /// ```
    /// # use tower::service_fn;
    /// let balance = meshless::balance::Balance::builder().build();
    /// balance.insert(1, service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
    /// ```
    pub fn insert(&self, key: K, service: S) {
        self.apply([Change::Insert(key, service)]);
    }

    /// Adds an endpoint with a static weight: it gets about `weight` times the traffic of a
    /// weight-1 endpoint of the same latency. Weights that are not finite and positive count
    /// as 1.
    ///
    /// ```
    /// # use tower::service_fn;
    /// let balance = meshless::balance::Balance::builder().build();
    /// balance.insert_weighted("big", service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }), 4.0);
    /// ```
    pub fn insert_weighted(&self, key: K, service: S, weight: f64) {
        let weight = if weight.is_finite() && weight > 0.0 {
            weight
        } else {
            1.0
        };
        self.apply_weighted([(Change::Insert(key, service), weight)]);
    }

    /// Removes an endpoint. Requests already sent to it finish normally.
    ///
    /// ```
    /// # use tower::service_fn;
    /// let balance = meshless::balance::Balance::builder().build();
    /// balance.insert(1, service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }));
    /// balance.remove(&1);
    /// assert!(balance.is_empty());
    /// ```
    pub fn remove(&self, key: &K) {
        self.apply([Change::Remove(key.clone())]);
    }

    /// Applies a batch of changes at once: one new snapshot of the endpoint set, however many
    /// changes.
    ///
    /// ```
    /// use meshless::balance::{Balance, Change};
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let balance = Balance::builder().build();
    /// balance.apply([Change::Insert(1, svc.clone()), Change::Insert(2, svc), Change::Remove(1)]);
    /// assert_eq!(balance.len(), 1);
    /// ```
    pub fn apply(&self, changes: impl IntoIterator<Item = Change<K, S>>) {
        self.apply_weighted(changes.into_iter().map(|c| (c, 1.0)));
    }

    fn apply_weighted(&self, changes: impl IntoIterator<Item = (Change<K, S>, f64)>) {
        let shared = &*self.shared;
        let now = Instant::now();
        let mut slot = shared.endpoints.write().unwrap_or_else(|e| e.into_inner());
        let mut by_key: HashMap<K, Arc<Endpoint<K, S>>> = slot
            .all
            .iter()
            .map(|e| (e.key.clone(), e.clone()))
            .collect();
        let mut order: Vec<K> = slot.all.iter().map(|e| e.key.clone()).collect();
        for (change, weight) in changes {
            match change {
                Change::Insert(key, service) => {
                    // An endpoint inserted again (a discovery refresh, a new connection
                    // handle) keeps its measurements, ejection and quiet: only the service
                    // and the weight are new. Forgetting them would hand an ejected endpoint
                    // its traffic back.
                    let (meter, label) = match by_key.get(&key) {
                        Some(old) => {
                            old.meter.weight.store(weight.to_bits(), Ordering::Relaxed);
                            (old.meter.clone(), old.label.clone())
                        }
                        None => {
                            order.push(key.clone());
                            // The endpoint's label in metrics and spans, written once.
                            let label: Arc<str> = Arc::from(key.to_string());
                            (Arc::new(self.meter(now, weight, &label)), label)
                        }
                    };
                    let endpoint = Arc::new(Endpoint {
                        meter,
                        key: key.clone(),
                        service,
                        label,
                    });
                    by_key.insert(key, endpoint);
                }
                Change::Remove(key) => {
                    if let Some(old) = by_key.remove(&key) {
                        old.meter.health.retire();
                    }
                }
            }
        }
        // Taken out as they are listed, so that a key removed and inserted again in one batch
        // is listed once.
        let next: Vec<_> = order.iter().filter_map(|k| by_key.remove(k)).collect();
        *slot = Arc::new(Endpoints::new(next));
    }

    fn meter(&self, now: Instant, weight: f64, label: &Arc<str>) -> Meter {
        let shared = &*self.shared;
        let config = &shared.config;
        // The request handles first: they hold the label's series (see `forget_series`), so
        // that a removed namesake cannot drop them after the observer registered its own.
        let metrics = shared.metrics.as_ref().map(|m| {
            let metrics = m.endpoint(label);
            metrics.rtt(config.default_rtt.as_nanos() as f64);
            metrics
        });
        let observer = HealthObserver::new(
            &config.observe,
            label.clone(),
            shared.metrics.as_ref().map(BalancerMetrics::by_state),
        );
        Meter {
            rtt: PeakEwma::new(config.default_rtt, config.decay, shared.origin, now),
            in_flight: AtomicU32::new(0),
            health: shared.detector.register_observed(now, observer),
            weight: AtomicU64::new(weight.to_bits()),
            penalty: config.penalty,
            quiet: quiet::Quiet::new(),
            max_quiet: config.max_pushback,
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            metrics,
        }
    }
}

impl<K, S> Balance<K, S>
where
    K: Clone + Eq + Hash,
{
    /// A snapshot of every endpoint's measurements.
    ///
    /// ```
    /// let balance = meshless::balance::Balance::builder().build::<&str, ()>();
    /// assert!(balance.endpoints().is_empty());
    /// ```
    pub fn endpoints(&self) -> Vec<EndpointStats<K>> {
        let now = Instant::now();
        self.shared
            .snapshot()
            .all
            .iter()
            .map(|e| EndpointStats {
                key: e.key.clone(),
                requests: e.meter.requests.load(Ordering::Relaxed),
                failures: e.meter.failures.load(Ordering::Relaxed),
                cancelled: e.meter.cancelled.load(Ordering::Relaxed),
                ejections: e.meter.health.ejections(),
                in_flight: e.meter.in_flight.load(Ordering::Relaxed),
                rtt: Duration::from_nanos(e.meter.rtt.get(now) as u64),
                status: e.meter.health.status(now),
            })
            .collect()
    }

    /// The endpoints, how many are in each state, and the fail-fast count. Walks every
    /// endpoint: for dashboards and tests, not for the request path.
    ///
    /// ```
    /// let balance = meshless::balance::Balance::builder().build::<&str, ()>();
    /// let stats = balance.stats();
    /// assert!(stats.endpoints.is_empty());
    /// assert_eq!(stats.fail_fast_events, 0);
    /// ```
    pub fn stats(&self) -> BalanceStats<K> {
        let endpoints = self.endpoints();
        let count =
            |wanted: fn(&Status) -> bool| endpoints.iter().filter(|e| wanted(&e.status)).count();
        BalanceStats {
            active: count(|s| matches!(s, Status::Active)),
            ejected: count(|s| matches!(s, Status::Ejected { .. })),
            probation: count(|s| matches!(s, Status::Probation)),
            fail_fast_events: self.fail_fast_events(),
            endpoints,
        }
    }
}

impl<K, S> Balance<K, S>
where
    K: Clone + Eq + Hash + fmt::Display + Send + Sync + 'static,
    S: Send + Sync + 'static,
{
    /// Follows a discovery stream in a background task: changes that arrive together are
    /// applied as one batch. The task ends with the stream, or on its first error.
    ///
    /// ```
    /// use meshless::balance::{Balance, Change};
    /// # use tower::service_fn;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let svc = service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    /// let balance = Balance::builder().build();
    /// let stream = meshless::balance::ChannelDiscover::new(rx);
    /// let task = balance.discover(stream);
    /// tx.send(Change::Insert("a", svc)).unwrap();
    /// drop(tx);
    /// task.await.unwrap();
    /// assert_eq!(balance.len(), 1);
    /// # }
    /// ```
    pub fn discover<D>(&self, discover: D) -> tokio::task::JoinHandle<()>
    where
        D: Discover<Key = K, Service = S> + Send + 'static,
        D::Error: Into<BoxError>,
    {
        let balance = self.clone();
        tokio::spawn(async move {
            let mut discover = Box::pin(discover);
            loop {
                let batch = std::future::poll_fn(|cx| drain(discover.as_mut(), cx)).await;
                let ended = batch.ended;
                balance.apply(batch.changes);
                if ended {
                    return;
                }
            }
        })
    }
}

struct Batch<K, S> {
    changes: Vec<Change<K, S>>,
    ended: bool,
}

/// Everything the stream has ready now; pending only when it has nothing at all.
fn drain<D: Discover>(
    mut discover: Pin<&mut D>,
    cx: &mut Context<'_>,
) -> Poll<Batch<D::Key, D::Service>>
where
    D::Error: Into<BoxError>,
{
    let mut changes = Vec::new();
    loop {
        match discover.as_mut().poll_discover(cx) {
            Poll::Ready(Some(Ok(change))) => changes.push(change),
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                tracing::warn!(error = %e, "discovery failed; keeping the last endpoints");
                return Poll::Ready(Batch {
                    changes,
                    ended: true,
                });
            }
            Poll::Ready(None) => {
                return Poll::Ready(Batch {
                    changes,
                    ended: true,
                });
            }
            Poll::Pending if changes.is_empty() => return Poll::Pending,
            Poll::Pending => {
                return Poll::Ready(Batch {
                    changes,
                    ended: false,
                });
            }
        }
    }
}

/// A discovery stream fed by a channel: send [`Change`]s from anywhere.
///
/// ```
/// use meshless::balance::{ChannelDiscover, Change};
/// let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Change<&str, ()>>();
/// let discover = ChannelDiscover::new(rx);
/// ```
#[derive(Debug)]
pub struct ChannelDiscover<K, S> {
    rx: tokio::sync::mpsc::UnboundedReceiver<Change<K, S>>,
}

impl<K, S> ChannelDiscover<K, S> {
    /// Wraps the receiving end of a channel.
    ///
    /// ```
    /// let (_tx, rx) = tokio::sync::mpsc::unbounded_channel::<meshless::balance::Change<u32, ()>>();
    /// let discover = meshless::balance::ChannelDiscover::new(rx);
    /// ```
    pub fn new(rx: tokio::sync::mpsc::UnboundedReceiver<Change<K, S>>) -> Self {
        ChannelDiscover { rx }
    }
}

impl<K, S> futures_core::Stream for ChannelDiscover<K, S> {
    type Item = Result<Change<K, S>, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl<K, S, B, RB> Service<Request<B>> for Balance<K, S>
where
    S: Service<Request<B>, Response = http::Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    RB: http_body::Body,
{
    type Response = http::Response<ResponseBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<K, S, B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is decided per request, in the response future; see the type's docs.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let now = Instant::now();
        if self.shared.detector.sweep_if_due(now) {
            self.shared.publish_rtt(now);
        }
        ResponseFuture::new(self.shared.clone(), req, now)
    }
}

impl<K: fmt::Debug + Clone + Eq + Hash, S> fmt::Debug for Balance<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<K> = self
            .shared
            .snapshot()
            .all
            .iter()
            .map(|e| e.key.clone())
            .collect();
        f.debug_struct("Balance").field("endpoints", &keys).finish()
    }
}
