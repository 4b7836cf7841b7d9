//! The balancer's builder: its settings and the classifier, observe settings and outlier
//! configuration it is built with.

use super::Balance;
use super::endpoints::{Endpoints, Shared};
use super::telemetry::BalancerMetrics;
use crate::classify::{Classifier, Classify};
use crate::error::ConfigError;
use crate::observe::Settings;
use crate::outlier::{Detector, OutlierConfig};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// Configures a [`Balance`].
///
/// | setting | default | source |
/// |---|---|---|
/// | default RTT of a new endpoint | 30 ms | linkerd |
/// | EWMA decay | 10 s | linkerd |
/// | fail-fast timeout | 3 s | linkerd |
/// | miss weight | 0.25 | ours: cost = latency ÷ (1 − share of recent attempts without an answer), as gRPC's weighted round robin (A58) charges errors in proportion to their rate |
/// | miss wait | 12.5 ms | the mean first wait of the default retry backoff (Envoy's 25 ms base, full jitter) |
/// | longest pushback kept per endpoint | 300 s | Envoy (`rate_limited_retry_back_off` max interval) |
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
    pub(crate) miss_weight: f64,
    pub(crate) miss_wait: Duration,
    pub(crate) max_pushback: Duration,
    pub(crate) rtt_at_headers: bool,
    pub(super) outlier: OutlierConfig,
    pub(super) classifier: Arc<dyn Classify>,
    pub(super) observe: Settings,
}

impl fmt::Debug for BalanceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceBuilder")
            .field("default_rtt", &self.default_rtt)
            .field("decay", &self.decay)
            .field("fail_fast", &self.fail_fast)
            .field("miss_weight", &self.miss_weight)
            .field("miss_wait", &self.miss_wait)
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
            miss_weight: 0.25,
            miss_wait: Duration::from_micros(12_500),
            max_pushback: Duration::from_secs(300),
            rtt_at_headers: false,
            outlier: OutlierConfig::default(),
            classifier: Arc::new(Classifier::default()),
            observe: Settings::default(),
        }
    }
}

impl BalanceBuilder {
    /// The RTT assumed for an endpoint before its first answer (default 30 ms). An endpoint
    /// added to a balancer whose endpoints are faster starts at the lowest of their
    /// estimates instead, so that it is tried: at 30 ms beside endpoints measured at 1 ms, it
    /// would get a request only when they had 30 in flight each. Its first slower answer
    /// raises it at once (a peak).
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

    /// How far one attempt moves an endpoint's *miss share* (default 0.25): the share of its
    /// recent attempts that gave no answer — failures, and first attempts a hedge outran.
    /// P2C divides an endpoint's latency by the share that answers, `1 − misses`: the
    /// expected time to an answer when each miss costs another try. So an endpoint that fails
    /// 30% of its requests in 3 ms (about 4.3 ms) stays preferred to one that answers in
    /// 150 ms, and one that fails every time costs up to a thousand times its latency. Each
    /// miss moves the share this fraction of the way to 1, each answer this fraction of the
    /// way to 0; without attempts it fades e-fold every second. A miss never lowers the
    /// latency estimate, so an endpoint that fails fast never looks fast.
    ///
    /// 0 leaves the cost to latency and load alone (failures still count for outlier
    /// ejection); 1 makes one miss cost the full thousandfold until the next answer.
    /// [`validate`](Self::validate) refuses values outside 0..=1 (and NaN); `build` clamps them.
    ///
    /// ```
    /// let b = meshless::balance::Balance::builder().miss_weight(0.1);
    /// assert!(b.validate().is_ok());
    /// assert!(meshless::balance::Balance::builder().miss_weight(1.5).validate().is_err());
    /// ```
    pub fn miss_weight(mut self, weight: f64) -> Self {
        self.miss_weight = weight;
        self
    }

    /// What a miss costs the caller besides another attempt: the wait before a retry
    /// (default 12.5 ms, the mean first wait of the default [retry
    /// backoff](crate::backoff::Backoff), full jitter up to 25 ms). With a share `m` of misses
    /// an endpoint costs `(latency + m × wait) / (1 − m)`, the expected time to an answer: an
    /// endpoint that fails 30% of its requests in 3 ms then costs about 9.6 ms, three times
    /// a healthy one, rather than 4.3 ms. Set it to the mean wait of your own backoff (0 when
    /// nothing above retries).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = meshless::balance::Balance::builder().miss_wait(Duration::from_millis(50));
    /// ```
    pub fn miss_wait(mut self, wait: Duration) -> Self {
        self.miss_wait = wait;
        self
    }

    /// The cost model every meter of the balancer reads with.
    pub(crate) fn cost_model(&self) -> super::ewma::CostModel {
        super::ewma::CostModel::new(self.decay, self.miss_wait)
    }

    /// What every meter of a balancer built at `origin` reads at the end of a request.
    fn meter_settings(&self, origin: Instant) -> super::endpoint::MeterSettings {
        super::endpoint::MeterSettings {
            clock: crate::primitives::clock::Clock::new(origin),
            model: self.cost_model(),
            // Clamped, so that no value makes a share outside 0..=1 (a NaN reads as 0).
            miss_weight: if self.miss_weight.is_nan() {
                0.0
            } else {
                self.miss_weight.clamp(0.0, 1.0)
            },
            max_quiet: self.max_pushback,
        }
    }

    /// The longest quiet an endpoint gets when its server pushes back (`Retry-After` on a
    /// 429 or 503, `grpc-retry-pushback-ms`; default 5 minutes, Envoy's longest rate-limited
    /// back-off: long enough for any pushback a server means, short enough that a nonsense
    /// value does not take the endpoint away for good). Until the time the server named,
    /// clamped by this, the endpoint gets no request from this balancer (P2C picks among the
    /// others) but for one probe a second once the first second has passed, which P2C sends
    /// only when it costs less than the other endpoints: an answer that is not pushback ends
    /// the quiet (a `Retry-After` is often a canned figure, not the server's knowledge of when
    /// it recovers). When every endpoint is pushing back, a request waits for the first to be free
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

    /// Checks the settings with [`BalanceConfig::validate`](super::BalanceConfig::validate).
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
        let origin = Instant::now();
        let empty = Endpoints::new(
            Vec::new(),
            crate::primitives::clock::Clock::new(origin),
            self.cost_model(),
        );
        Balance {
            cached: std::sync::Weak::new(),
            generation: 0,
            sweep_hint: origin,
            shared: Arc::new(Shared {
                endpoints: RwLock::new(Arc::new(empty)),
                generation: AtomicU64::new(0),
                origin,
                detector: Detector::new(self.outlier.clone()),
                classifier: self.classifier.clone(),
                metrics: BalancerMetrics::register(&self.observe),
                meters: Arc::new(self.meter_settings(origin)),
                config: self,
                fail_fast_events: AtomicU64::new(0),
            }),
        }
    }
}
