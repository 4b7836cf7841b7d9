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
    /// The key as `Display` writes it: its label in metrics and spans. Here rather than in the
    /// meter, so that naming the chosen endpoint in the request's span reads the line the pick
    /// already touched for its service.
    pub(crate) label: std::sync::Arc<str>,
}

/// The load and health of one endpoint, updated by every request it serves. Not generic, so
/// that response bodies can carry it without naming the endpoint's service type.
///
/// Laid out for the pick, which reads two endpoints drawn at random out of possibly thousands
/// (`repr(C)`: in this order). The first 64 bytes hold everything it compares but the gate:
/// load, weight, quiet and the RTT estimate's hot words, right after the reference counts, so a
/// candidate costs a line or two here and its gate word (reached from the snapshot, see
/// `Candidate`), whatever the number of endpoints. What the end of a request writes (the rest
/// of the estimate, the clock's origin, the counters) follows. Not aligned to a cache line on
/// purpose: that put the reference counts, which every request touches, on a line of their own,
/// and measured slower at 10,000 endpoints than this.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Meter {
    pub(crate) in_flight: AtomicU32,
    /// Static weight (the bits of an `f64`): the cost is divided by it. Atomic, so that an
    /// endpoint inserted again with a new weight keeps everything else it has learnt.
    pub(crate) weight: AtomicU64,
    /// Until when the server asked to be left alone.
    pub(crate) quiet: Quiet,
    /// Its hot words close the first 64 bytes; the rest of it, the clock's origin included (the
    /// balancer's: every time here is in nanoseconds since it), opens the second.
    pub(crate) rtt: PeakEwma,
    pub(crate) requests: AtomicU64,
    pub(crate) failures: AtomicU64,
    /// Requests their caller gave up on: neither successes nor failures.
    pub(crate) cancelled: AtomicU64,
    /// The outlier gate; the snapshot holds a clone for the pick.
    pub(crate) health: Health,
    /// `None` when the balancer's metrics are off.
    pub(crate) metrics: Option<EndpointMetrics>,
    /// The latency recorded for a failure.
    pub(crate) penalty: Duration,
    /// The longest quiet honoured.
    pub(crate) max_quiet: Duration,
}

impl Meter {
    /// `now` as the meter's clock counts: nanoseconds since the balancer's origin.
    #[inline]
    pub(crate) fn since_origin(&self, now: Instant) -> u64 {
        self.rtt.since_origin(now)
    }

    /// The balancer's origin, where this meter's clock starts.
    pub(crate) fn origin(&self) -> Instant {
        self.rtt.clock().origin()
    }

    /// The cost P2C compares: peak-EWMA RTT × (requests in flight + 1), divided by the weight
    /// and by the slow-start factor of `gate`, this endpoint's (an endpoint back from ejection
    /// looks dearer while it warms). `now` is the same instant twice: as an `Instant` for the
    /// gate, and in nanoseconds since the origin for the rest.
    #[inline]
    pub(crate) fn cost(&self, gate: &Health, now: Instant, now_nanos: u64) -> f64 {
        let pending = f64::from(self.in_flight.load(Ordering::Relaxed)) + 1.0;
        let weight = f64::from_bits(self.weight.load(Ordering::Relaxed));
        let share = weight * gate.slow_start_factor(now);
        // A zero RTT (an idle estimate decayed to nothing) still orders by load.
        (self.rtt.get_at(now_nanos).max(1.0) * pending) / share.max(f64::MIN_POSITIVE)
    }

    /// Records the end of one request, at `now`: an instant, and the same in nanoseconds since
    /// the origin (`at`).
    pub(crate) fn finish(
        &self,
        class: &Class,
        latency: Duration,
        probe: bool,
        now: Instant,
        at: u64,
    ) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        // The new peak-EWMA estimate, in nanoseconds.
        let rtt = if class.is_failure() {
            self.failures.fetch_add(1, Ordering::Relaxed);
            // A failure is as bad as a slow answer: recording it as fast would draw traffic to
            // the endpoint that fails fastest. A server's pushback says how long it wants no
            // request at all: that is kept apart, as quiet, rather than folded into the RTT.
            if let Some(Pushback::After(wait)) = class.pushback() {
                self.quiet.hold(at, wait, self.max_quiet);
            }
            self.rtt.penalize(self.penalty.max(latency), at)
        } else if probe {
            // Back from ejection and proven healthy: start afresh from this sample.
            self.rtt.reset(latency, at)
        } else {
            self.rtt.observe(latency, at)
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

    /// The instant `nanos` after the origin: exact for any instant the meter was given, all of
    /// which are after the origin (the balancer's creation).
    fn instant(&self, nanos: u64) -> Instant {
        let clock = self.rtt.clock();
        clock.after_nanos(nanos).unwrap_or(clock.origin())
    }
}

impl Meter {
    /// Records a request its caller gave up on: it leaves the in-flight count and is counted
    /// apart, and says nothing of the endpoint (no failure, no RTT sample, no health report).
    /// A cancelled probe frees the probation for the next request instead of deciding it.
    fn cancel(&self, probe: bool, started: u64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.cancelled.fetch_add(1, Ordering::Relaxed);
        if probe {
            self.health.release_probe(self.instant(started));
        }
        if let Some(metrics) = &self.metrics {
            metrics.cancelled();
        }
    }
}

impl Meter {
    /// Takes in what an attempt that lost a hedge race says: the endpoint had not answered
    /// after `started`'s wait. Above the estimate, that wait is the new peak: it is at least
    /// that slow. Below it, what the estimate says the attempt had left to run is added as a
    /// penalty that fades within seconds, as a failure's does (but nothing is counted against
    /// the endpoint): the attempt would have kept it busy that much longer. Without either, an
    /// endpoint whose slow answers are all outrun would look idle, its estimate would decay,
    /// and P2C would send it ever more first attempts (the demo's slow backend got 2 to 4 times
    /// its share of them once hedging was on).
    fn outrun(&self, started: u64) {
        let at = self.since_origin(Instant::now());
        let waited = at.saturating_sub(started);
        // The latency alone: with the penalty in, each outrun would add the last one's again.
        let estimate = self.rtt.latency_at(at);
        if waited as f64 > estimate {
            self.rtt.observe(Duration::from_nanos(waited), at);
        } else {
            self.rtt
                .penalize(Duration::from_nanos(estimate as u64 - waited), at);
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
    /// When the request was sent, in nanoseconds since the meter's origin: the latency at the
    /// end is one subtraction, and the end converts its own instant once for everything.
    started: u64,
    /// Set for a stream once its head arrived: its RTT sample, whenever the stream ends.
    head_latency: Option<Duration>,
    probe: bool,
    done: bool,
}

impl InFlight {
    /// One more request in flight on `meter`, sent at `now` (nanoseconds since its origin).
    pub(crate) fn start(meter: std::sync::Arc<Meter>, probe: bool, now: u64) -> Self {
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
        let now = self.meter.since_origin(Instant::now());
        self.head_latency = Some(Duration::from_nanos(now.saturating_sub(self.started)));
    }

    pub(crate) fn finish(mut self, class: &Class) {
        self.record(class);
    }

    fn record(&mut self, class: &Class) {
        if !self.done {
            self.done = true;
            let now = Instant::now();
            let at = self.meter.since_origin(now);
            let latency = self
                .head_latency
                .unwrap_or_else(|| Duration::from_nanos(at.saturating_sub(self.started)));
            self.meter.finish(class, latency, self.probe, now, at);
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
            if crate::deadline::expiry::outrun() {
                self.meter.outrun(self.started);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ewma::HOT_BYTES;
    use super::*;

    #[test]
    fn what_a_pick_reads_comes_first() {
        assert!(std::mem::offset_of!(Meter, rtt) + HOT_BYTES <= 64);
        for hot in [
            std::mem::offset_of!(Meter, in_flight),
            std::mem::offset_of!(Meter, weight),
            std::mem::offset_of!(Meter, quiet),
        ] {
            assert!(hot + 8 <= 64, "{hot}");
        }
    }
}
