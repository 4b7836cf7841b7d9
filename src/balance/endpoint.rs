//! One endpoint: its service, and what the balancer knows of it.

use super::ewma::PeakEwma;
use super::quiet::Quiet;
use super::telemetry::EndpointMetrics;
use crate::classify::{Class, Pushback};
use crate::outlier::Health;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// An endpoint in the balancer's set.
#[derive(Debug)]
pub(crate) struct Endpoint<K, S> {
    pub(crate) key: K,
    pub(crate) service: S,
    pub(crate) meter: std::sync::Arc<Meter>,
}

/// The load and health of one endpoint, updated by every request it serves. Not generic, so
/// that response bodies can carry it without naming the endpoint's service type.
#[derive(Debug)]
pub(crate) struct Meter {
    pub(crate) rtt: PeakEwma,
    pub(crate) in_flight: AtomicU32,
    pub(crate) health: Health,
    /// Static weight (the bits of an `f64`): the cost is divided by it. Atomic, so that an
    /// endpoint inserted again with a new weight keeps everything else it has learnt.
    pub(crate) weight: AtomicU64,
    /// The latency recorded for a failure.
    pub(crate) penalty: Duration,
    /// Until when the server asked to be left alone, and the longest such request honoured.
    pub(crate) quiet: Quiet,
    pub(crate) max_quiet: Duration,
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// Requests their caller gave up on: neither successes nor failures.
    pub(crate) cancelled: AtomicU64,
    /// The endpoint's key as `Display` writes it: its label in metrics and spans.
    pub(crate) label: std::sync::Arc<str>,
    /// `None` when the balancer's metrics are off.
    pub(crate) metrics: Option<EndpointMetrics>,
}

impl Meter {
    /// The cost P2C compares: peak-EWMA RTT × (requests in flight + 1), divided by the weight
    /// and by the slow-start factor (an endpoint back from ejection looks dearer while it warms).
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let pending = f64::from(self.in_flight.load(Ordering::Relaxed)) + 1.0;
        let weight = f64::from_bits(self.weight.load(Ordering::Relaxed));
        let share = weight * self.health.slow_start_factor(now);
        // A zero RTT (an idle estimate decayed to nothing) still orders by load.
        (self.rtt.get(now).max(1.0) * pending) / share.max(f64::MIN_POSITIVE)
    }

    /// Records the end of one request.
    pub(crate) fn finish(&self, class: &Class, latency: Duration, probe: bool, now: Instant) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        // The new peak-EWMA estimate, in nanoseconds.
        let rtt = if class.is_failure() {
            self.failures.fetch_add(1, Ordering::Relaxed);
            // A failure is as bad as a slow answer: recording it as fast would draw traffic to
            // the endpoint that fails fastest. A server's pushback says how long it wants no
            // request at all: that is kept apart, as quiet, rather than folded into the RTT.
            if let Some(Pushback::After(wait)) = class.pushback() {
                self.quiet.hold(now, wait, self.max_quiet);
            }
            self.rtt.penalize(self.penalty.max(latency), now)
        } else if probe {
            // Back from ejection and proven healthy: start afresh from this sample.
            self.rtt.reset(latency, now)
        } else {
            self.rtt.observe(latency, now)
        };
        if let Some(metrics) = &self.metrics {
            metrics.finished(class.is_failure(), latency);
            // The estimate jumps on a failure and restarts on a probe; between sweeps it only
            // drifts (see `EndpointMetrics::rtt`).
            if class.is_failure() || probe {
                metrics.rtt(rtt);
            }
        }
        self.health.report(now, class, latency);
    }
}

impl Meter {
    /// Records a request its caller gave up on: it leaves the in-flight count and is counted
    /// apart, and says nothing of the endpoint (no failure, no RTT sample, no health report).
    /// A cancelled probe frees the probation for the next request instead of deciding it.
    fn cancel(&self, probe: bool, started: Instant) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.cancelled.fetch_add(1, Ordering::Relaxed);
        if probe {
            self.health.release_probe(started);
        }
        if let Some(metrics) = &self.metrics {
            metrics.cancelled();
        }
    }
}

/// Marks one request in flight on an endpoint; recording its end exactly once.
///
/// Dropped before the end, it asks who dropped it: one of meshless's timers (an attempt
/// timeout, the deadline, a body timeout; see [`crate::deadline::expiry`]) charges the endpoint
/// with a timeout, and anything else is the caller giving up, a cancellation.
#[derive(Debug)]
pub(crate) struct InFlight {
    meter: std::sync::Arc<Meter>,
    started: Instant,
    /// Set for a stream once its head arrived: its RTT sample, whenever the stream ends.
    head_latency: Option<Duration>,
    probe: bool,
    done: bool,
}

impl InFlight {
    pub(crate) fn start(meter: std::sync::Arc<Meter>, probe: bool, now: Instant) -> Self {
        meter.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            meter,
            started: now,
            head_latency: None,
            probe,
            done: false,
        }
    }

    /// Takes the latency now, at the response head, for a stream whose outcome is only known
    /// at its end (gRPC trailers) but whose length says nothing of the endpoint's speed.
    pub(crate) fn latency_at_head(&mut self) {
        self.head_latency = Some(Instant::now().saturating_duration_since(self.started));
    }

    pub(crate) fn finish(mut self, class: &Class) {
        self.record(class);
    }

    fn record(&mut self, class: &Class) {
        if !self.done {
            self.done = true;
            let now = Instant::now();
            let latency = self
                .head_latency
                .unwrap_or_else(|| now.saturating_duration_since(self.started));
            self.meter.finish(class, latency, self.probe, now);
        }
    }
}

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if crate::deadline::expiry::expiring() {
            self.record(&Class::failure(
                crate::classify::Reason::Timeout,
                crate::classify::Retryable::IfIdempotent,
            ));
        } else {
            self.done = true;
            self.meter.cancel(self.probe, self.started);
        }
    }
}
