//! The hedge layer's counters (always kept) and metric handles (when metrics are on).

use super::delay::Delay;
use crate::observe::{
    HEDGE_DELAY_SECONDS, HEDGES_REFUSED_TOTAL, HEDGES_TOTAL, HEDGES_WON_TOTAL, REASON, Settings,
};
use metrics::{Counter, Gauge, Label};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Why a hedge was not sent.
///
/// ```
/// use meshless::hedge::Refusal;
/// assert_eq!(Refusal::ExtraLoad.as_str(), "extra_load");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The retry budget (shared with retries) had no token.
    Budget,
    /// The extra-load cap was reached.
    ExtraLoad,
    /// Too little time was left before the request's deadline.
    Deadline,
    /// The request is not safe to repeat.
    NotIdempotent,
    /// The body could not be replayed yet: still streaming, or larger than the replay cap.
    Body,
}

impl Refusal {
    const ALL: [Refusal; 5] = [
        Refusal::Budget,
        Refusal::ExtraLoad,
        Refusal::Deadline,
        Refusal::NotIdempotent,
        Refusal::Body,
    ];

    /// The `reason` label's value.
    ///
    /// ```
    /// assert_eq!(meshless::hedge::Refusal::NotIdempotent.as_str(), "not_idempotent");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Budget => "budget",
            Refusal::ExtraLoad => "extra_load",
            Refusal::Deadline => "deadline",
            Refusal::NotIdempotent => "not_idempotent",
            Refusal::Body => "body",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the hedge layer did, shared by every service one [`HedgeLayer`](super::HedgeLayer)
/// builds, and the delay it hedges after.
///
/// ```
/// use meshless::hedge::{HedgeLayer, Refusal};
/// let stats = HedgeLayer::new(meshless::budget::Budget::default()).stats();
/// assert_eq!((stats.requests(), stats.hedges(), stats.won()), (0, 0, 0));
/// assert_eq!(stats.refused(Refusal::Budget), 0);
/// assert_eq!(stats.delay(), None); // the p95 needs 100 answers first
/// ```
pub struct HedgeStats {
    requests: AtomicU64,
    hedges: AtomicU64,
    won: AtomicU64,
    attempt_timeouts: AtomicU64,
    refused: [AtomicU64; 5],
    pub(super) delay: Delay,
}

impl HedgeStats {
    pub(super) fn new(delay: Delay) -> Self {
        HedgeStats {
            requests: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            won: AtomicU64::new(0),
            attempt_timeouts: AtomicU64::new(0),
            refused: Default::default(),
            delay,
        }
    }

    /// Requests through the layer.
    ///
    /// ```
    /// # let stats = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default()).stats();
    /// assert_eq!(stats.requests(), 0);
    /// ```
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Hedges sent.
    ///
    /// ```
    /// # let stats = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default()).stats();
    /// assert_eq!(stats.hedges(), 0);
    /// ```
    pub fn hedges(&self) -> u64 {
        self.hedges.load(Ordering::Relaxed)
    }

    /// Requests whose answer came from a hedge.
    ///
    /// ```
    /// # let stats = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default()).stats();
    /// assert_eq!(stats.won(), 0);
    /// ```
    pub fn won(&self) -> u64 {
        self.won.load(Ordering::Relaxed)
    }

    /// Attempts of hedged requests (first attempts or hedges) cut by the attempt timeout while
    /// another attempt of theirs ran on: the layer above never sees those errors, so they are
    /// counted here (`http::Client`'s `attempt_timeouts` adds them; so does
    /// `meshless_attempt_timeouts_total`).
    ///
    /// ```
    /// # let stats = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default()).stats();
    /// assert_eq!(stats.attempt_timeouts(), 0);
    /// ```
    pub fn attempt_timeouts(&self) -> u64 {
        self.attempt_timeouts.load(Ordering::Relaxed)
    }

    /// Hedges not sent for this reason.
    ///
    /// ```
    /// # let stats = meshless::hedge::HedgeLayer::new(meshless::budget::Budget::default()).stats();
    /// assert_eq!(stats.refused(meshless::hedge::Refusal::Deadline), 0);
    /// ```
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused[reason.index()].load(Ordering::Relaxed)
    }

    /// The delay in force: the fixed delay, or the percentile of the window; `None` while the
    /// window holds fewer samples than the minimum (requests sent then are hedged once it is
    /// known).
    ///
    /// ```
    /// use meshless::hedge::{HedgeConfig, HedgeDelay, HedgeLayer};
    /// use std::time::Duration;
    /// let mut config = HedgeConfig::default();
    /// config.delay = HedgeDelay::Fixed(Duration::from_millis(50));
    /// let layer = HedgeLayer::from_config(meshless::budget::Budget::default(), &config)?;
    /// assert_eq!(layer.stats().delay(), Some(Duration::from_millis(50)));
    /// # Ok::<(), meshless::ConfigError>(())
    /// ```
    pub fn delay(&self) -> Option<Duration> {
        self.delay.get()
    }
}

impl fmt::Debug for HedgeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeStats")
            .field("requests", &self.requests())
            .field("hedges", &self.hedges())
            .field("won", &self.won())
            .field("delay", &self.delay())
            .finish_non_exhaustive()
    }
}

/// The counters and, when metrics are on, their handles.
pub(super) struct Telemetry {
    pub(super) stats: std::sync::Arc<HedgeStats>,
    metrics: Option<Metrics>,
}

struct Metrics {
    hedges: Counter,
    won: Counter,
    attempt_timeouts: Counter,
    refused: [Counter; 5],
    delay: Gauge,
}

impl Telemetry {
    pub(super) fn new(stats: std::sync::Arc<HedgeStats>, settings: &Settings) -> Self {
        let metrics = settings.metrics.then(|| {
            crate::observe::describe();
            let labels = vec![settings.service_label()];
            let refused = Refusal::ALL.map(|reason| {
                let mut labels: Vec<Label> = labels.clone();
                labels.push(Label::new(REASON, reason.as_str()));
                metrics::counter!(HEDGES_REFUSED_TOTAL, labels)
            });
            let delay = metrics::gauge!(HEDGE_DELAY_SECONDS, labels.clone());
            delay.set(stats.delay().map_or(0.0, |d| d.as_secs_f64()));
            Metrics {
                hedges: metrics::counter!(HEDGES_TOTAL, labels.clone()),
                won: metrics::counter!(HEDGES_WON_TOTAL, labels.clone()),
                // The retry layer's series: the same name and labels add up.
                attempt_timeouts: metrics::counter!(crate::observe::ATTEMPT_TIMEOUTS_TOTAL, labels),
                refused,
                delay,
            }
        });
        Telemetry { stats, metrics }
    }

    #[inline]
    pub(super) fn request(&self) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn hedge(&self) {
        self.stats.hedges.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.hedges.increment(1);
        }
    }

    pub(super) fn won(&self) {
        self.stats.won.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.won.increment(1);
        }
    }

    /// `n` attempts of one race were cut by the attempt timeout and will not reach the layer
    /// above.
    pub(super) fn attempts_timed_out(&self, n: u64) {
        self.stats.attempt_timeouts.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.attempt_timeouts.increment(n);
        }
    }

    pub(super) fn refused(&self, reason: Refusal) {
        self.stats.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.refused[reason.index()].increment(1);
        }
    }

    /// Times a first attempt's wait for the percentile, updating the gauge when the delay
    /// moves.
    #[inline]
    pub(super) fn waited(&self, now: Instant, latency: Duration) {
        if let Some(changed) = self.stats.delay.record(now, latency) {
            if let Some(m) = &self.metrics {
                m.delay.set(changed.map_or(0.0, |d| d.as_secs_f64()));
            }
        }
    }
}
