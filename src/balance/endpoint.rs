//! One endpoint: its service, and what the balancer knows of it.

use super::ewma::{CostModel, PeakEwma};
use super::quiet::{Quiet, QuietProbes};
use super::telemetry::{EndpointMetrics, RequestHandles};
use crate::classify::{Class, Pushback};
use crate::outlier::{EndpointHealth, Tracked};
use crate::primitives::clock::Clock;
use crate::primitives::step;
use std::sync::Arc;
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
    /// meter, so that naming the chosen endpoint in the request's span (only when such spans
    /// can exist) reads the line the pick already touched for its service.
    pub(crate) label: std::sync::Arc<str>,
}

/// The load and health of one endpoint, updated by every request it serves. Not generic, so
/// that response bodies can carry it without naming the endpoint's service type.
///
/// Laid out by cache line (`repr(C)`, in this order, aligned to a line), for a pick that reads
/// two endpoints drawn at random out of possibly thousands, and the end of a request that
/// writes one:
///
/// 1. Everything a pick reads: load, quiet, the RTT estimate, and the outlier gate word (the
///    first word of `health`, which lives here rather than in an allocation of its own). A
///    candidate that is not taken costs this one line.
/// 2. The rest of what a health report touches: the interval's outcomes, the failure run, the
///    latency histogram (the rest of `health`).
/// 3. What the end of every request writes or reads besides (see [`Finish`]): the request
///    count, the two metric handles, and the balancer's settings, which every meter of the
///    balancer shares through one pointer (their line is touched by every request, whichever
///    endpoint it goes to, so it stays in cache); the failure and cancellation counts close it.
///
/// The rest (the health's transition state, the weight, the metrics a request's end updates
/// only on a failure or a probe) is not touched by a successful request. With the latency
/// policy on, a report also writes one line of the histogram's buckets, an allocation of
/// their own.
///
/// The reference counts sit on a line of their own before these (an `Arc`'s header, padded
/// by the alignment): only the chosen endpoint's is touched, once when its request starts and
/// once when it ends.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Meter {
    pub(crate) in_flight: AtomicU32,
    /// Until when the server asked to be left alone.
    pub(crate) quiet: Quiet,
    pub(crate) rtt: PeakEwma,
    /// The outlier gate, its word closing the first line.
    pub(crate) health: EndpointHealth,
    finish: Finish,
    /// Static weight (the bits of an `f64`): the cost is divided by it. Read when a snapshot
    /// of the endpoint set is made, which holds it beside the meter for the pick; atomic, so
    /// that an endpoint inserted again with a new weight keeps everything else it has learnt.
    pub(crate) weight: AtomicU64,
    /// The probes of a long quiet: read only while the endpoint is quiet.
    pub(crate) quiet_probes: QuietProbes,
    /// `None` when the balancer's metrics are off. Read at the end of a request only when it
    /// failed or was a probe (or was cancelled).
    pub(crate) metrics: Option<EndpointMetrics>,
}

/// The line of a [`Meter`] after its health: what the end of every request writes or reads
/// besides the load, the estimate and the health.
#[derive(Debug)]
#[repr(C, align(64))]
struct Finish {
    requests: AtomicU64,
    /// The balancer's settings, the same for all its meters.
    settings: Arc<MeterSettings>,
    metrics: RequestHandles,
    failures: AtomicU64,
    /// Requests their caller gave up on: neither successes nor failures.
    cancelled: AtomicU64,
}

/// What every meter of a balancer reads at the end of a request, the same for all of them:
/// one copy per balancer, which stays in cache however many endpoints its requests spread
/// over.
#[derive(Debug)]
pub(crate) struct MeterSettings {
    /// The meters' clock: their times are nanoseconds since the balancer's origin.
    pub(crate) clock: Clock,
    /// The balancer's cost model, for the estimates the end of a request writes (a pick reads
    /// the snapshot's copy).
    pub(crate) model: CostModel,
    /// How far one attempt moves the miss share (see `PeakEwma`).
    pub(crate) miss_weight: f64,
    /// The longest quiet honoured.
    pub(crate) max_quiet: Duration,
}

/// What a new meter starts from.
pub(crate) struct MeterConfig {
    pub(crate) rtt: PeakEwma,
    pub(crate) health: EndpointHealth,
    pub(crate) weight: f64,
    pub(crate) metrics: Option<(RequestHandles, EndpointMetrics)>,
    pub(crate) settings: Arc<MeterSettings>,
}

impl Meter {
    pub(crate) fn new(config: MeterConfig) -> Self {
        let (each, metrics) = match config.metrics {
            Some((each, rest)) => (each, Some(rest)),
            None => (RequestHandles::off(), None),
        };
        Meter {
            in_flight: AtomicU32::new(0),
            quiet: Quiet::new(),
            quiet_probes: QuietProbes::default(),
            rtt: config.rtt,
            health: config.health,
            finish: Finish {
                requests: AtomicU64::new(0),
                settings: config.settings,
                metrics: each,
                failures: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
            },
            weight: AtomicU64::new(config.weight.to_bits()),
            metrics,
        }
    }

    /// `now` as the meter's clock counts: nanoseconds since the balancer's origin.
    #[inline]
    pub(crate) fn since_origin(&self, now: Instant) -> u64 {
        self.finish.settings.clock.nanos(now)
    }

    /// Requests finished.
    pub(crate) fn requests(&self) -> u64 {
        self.finish.requests.load(Ordering::Relaxed)
    }

    /// Requests that failed.
    pub(crate) fn failures(&self) -> u64 {
        self.finish.failures.load(Ordering::Relaxed)
    }

    /// Requests their caller gave up on.
    pub(crate) fn cancelled(&self) -> u64 {
        self.finish.cancelled.load(Ordering::Relaxed)
    }

    /// The current cost estimate (latency and misses), in nanoseconds, decayed to `now`.
    pub(crate) fn rtt(&self, now: Instant) -> f64 {
        self.rtt
            .get_at(self.finish.settings.model, self.since_origin(now))
    }

    /// The cost P2C compares: peak-EWMA RTT × (requests in flight + 1), divided by `weight`
    /// and by the slow-start factor of the endpoint's gate (an endpoint back from ejection
    /// looks dearer while it warms). `now` is the same instant twice: as an `Instant` for the
    /// gate, and in nanoseconds since the origin for the rest; `model` is the cost model of
    /// every meter of the balancer. Reads the meter's first line only.
    #[inline]
    pub(crate) fn cost(&self, weight: f64, model: CostModel, now: Instant, now_nanos: u64) -> f64 {
        let pending = f64::from(self.in_flight.load(Ordering::Relaxed)) + 1.0;
        let share = weight * self.health.slow_start_factor(now);
        // A zero RTT (an idle estimate decayed to nothing) still orders by load.
        (self.rtt.get_at(model, now_nanos).max(1.0) * pending) / share.max(f64::MIN_POSITIVE)
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
        started: u64,
    ) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let finish = &self.finish;
        finish.requests.fetch_add(1, Ordering::Relaxed);
        let settings = &*finish.settings;
        let failure = class.is_failure();
        // The probe of a quiet endpoint was answered: the server is back.
        if !failure && self.quiet.is_quiet(at) && self.quiet_probes.probed_by(started) {
            self.quiet.release();
        }
        // The new peak-EWMA estimate, in nanoseconds, where the metrics publish it: after a
        // failure or a probe. A plain success does not work it out.
        let rtt = if failure {
            finish.failures.fetch_add(1, Ordering::Relaxed);
            // A failure is a miss: it makes the endpoint dearer in proportion to how often
            // it fails, and never look faster (recording it as a fast answer would draw
            // traffic to the endpoint that fails fastest). A server's pushback says how long
            // it wants no request at all: that is kept apart, as quiet.
            if let Some(Pushback::After(wait)) = class.pushback() {
                self.quiet
                    .hold(at, wait, settings.max_quiet, &self.quiet_probes);
            }
            Some(
                self.rtt
                    .miss(settings.model, latency, settings.miss_weight, at),
            )
        } else if probe {
            // Back from ejection and proven healthy: start afresh from this sample.
            Some(self.rtt.reset(latency, at))
        } else {
            self.rtt
                .answer(settings.model, latency, settings.miss_weight, at);
            None
        };
        finish.metrics.finished(latency);
        // The estimate jumps on a failure and restarts on a probe; between sweeps it only
        // drifts (see `EndpointMetrics::rtt`). A success that is no probe leaves the rest of
        // the metrics (and their line of the meter) alone.
        if let Some(rtt) = rtt {
            if let Some(metrics) = &self.metrics {
                if failure {
                    metrics.failed();
                }
                metrics.rtt(rtt);
            }
        }
        self.health.report(now, class, latency);
    }

    /// The instant `nanos` after the origin: exact for any instant the meter was given, all of
    /// which are after the origin (the balancer's creation).
    fn instant(&self, nanos: u64) -> Instant {
        let clock = self.finish.settings.clock;
        clock.after_nanos(nanos).unwrap_or(clock.origin())
    }
}

impl Tracked for Meter {
    fn health(&self) -> &EndpointHealth {
        &self.health
    }
}

impl Meter {
    /// Records a request its caller gave up on: it leaves the in-flight count and is counted
    /// apart, and says nothing of the endpoint (no failure, no RTT sample, no health report).
    /// A cancelled probe frees the probation for the next request instead of deciding it.
    fn cancel(&self, probe: bool, started: u64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.finish.cancelled.fetch_add(1, Ordering::Relaxed);
        if probe {
            self.health.release_probe(self.instant(started));
        }
        if let Some(metrics) = &self.metrics {
            metrics.cancelled();
        }
    }
}

impl Meter {
    /// Takes in what a first attempt a hedge outran says: the endpoint had not answered after
    /// `started`'s wait, and the caller's answer came from elsewhere. That is a miss (see
    /// `PeakEwma`), with the wait as a lower bound of its latency; nothing is counted against
    /// the endpoint's health. Without it, an endpoint whose slow answers are all outrun would
    /// never finish a request: its estimate would stay at the default and decay, and P2C would
    /// send it ever more first attempts (the demo's slow and hanging backends got two to four
    /// times their share of them once hedging was on).
    fn outrun(&self, started: u64) {
        let at = self.since_origin(Instant::now());
        let waited = Duration::from_nanos(at.saturating_sub(started));
        let settings = &*self.finish.settings;
        self.rtt
            .miss(settings.model, waited, settings.miss_weight, at);
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
    /// The latency to the response head, once a head arrived with a body still to come: the
    /// sample of a body its caller drops before the end.
    head_latency: Option<Duration>,
    /// Whether the head's latency is the sample however the body ends (a stream).
    rtt_at_head: bool,
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
            rtt_at_head: false,
            probe,
            done: false,
        }
    }

    /// Takes the latency now, at the response head, for a stream whose outcome is only known
    /// at its end (gRPC trailers) but whose length says nothing of the endpoint's speed.
    pub(crate) fn latency_at_head(&mut self) {
        let now = self.meter.since_origin(Instant::now());
        self.head_latency = Some(Duration::from_nanos(now.saturating_sub(self.started)));
        self.rtt_at_head = true;
    }

    /// Notes that the head arrived (at the step's reading, which the layers above share), for
    /// a body that may be dropped before its end: however long its caller then holds it is
    /// not the endpoint's latency.
    pub(crate) fn head_arrived(&mut self) {
        if self.head_latency.is_none() {
            let now = self.meter.since_origin(step::now());
            self.head_latency = Some(Duration::from_nanos(now.saturating_sub(self.started)));
        }
    }

    pub(crate) fn finish(mut self, class: &Class) {
        self.record(class, self.rtt_at_head);
    }

    /// Records a request whose caller dropped the body before its end, as `class` (its
    /// head's): its latency is the head's, not the time the caller held the body.
    pub(crate) fn finish_early(mut self, class: &Class) {
        self.record(class, true);
    }

    /// Records a request that ended in `error` (its head's, or its body's): classified, unless
    /// it was its caller's own fault (its request body failed) or met a stale keep-alive
    /// connection, which are cancellations, as when the caller gives up.
    pub(crate) fn fail(
        mut self,
        error: &(dyn std::error::Error + 'static),
        classifier: &dyn crate::classify::Classify,
    ) {
        // Neither the caller's fault nor a keep-alive connection the server had closed
        // while it sat idle says anything about the endpoint.
        if crate::classify::callers_fault(error) || crate::classify::stale_connection(error) {
            self.cancel();
        } else if error
            .downcast_ref::<crate::Error>()
            .is_some_and(crate::Error::is_callers_deadline)
        {
            // A transport's own timer for the caller's deadline (tonic's): as when meshless's
            // fires, the endpoint is not charged but had not answered in that time.
            self.cancel();
            self.meter.outrun(self.started);
        } else {
            self.record(&classifier.classify_error(error), self.rtt_at_head);
        }
    }

    fn record(&mut self, class: &Class, at_head: bool) {
        if !self.done {
            self.done = true;
            let now = step::now();
            let at = self.meter.since_origin(now);
            let latency = match self.head_latency {
                Some(latency) if at_head => latency,
                _ => Duration::from_nanos(at.saturating_sub(self.started)),
            };
            self.meter
                .finish(class, latency, self.probe, now, at, self.started);
        }
    }

    fn cancel(&mut self) {
        self.done = true;
        self.meter.cancel(self.probe, self.started);
    }
}

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if crate::deadline::expiry::charges_endpoint() {
            let timeout = Class::failure(
                crate::classify::Reason::Timeout,
                crate::classify::Retryable::IfIdempotent,
            );
            self.record(&timeout, self.rtt_at_head);
        } else {
            self.cancel();
            // Outrun by a sibling, or out of its caller's patience: the endpoint had not
            // answered in that time, which its latency estimate takes in.
            if crate::deadline::expiry::outrun() || crate::deadline::expiry::callers_deadline() {
                self.meter.outrun(self.started);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ewma::HOT_BYTES;
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn what_a_pick_reads_is_one_line_and_an_end_two_more() {
        // The gate word is `health`'s first: the pick's line ends with it.
        assert_eq!(
            offset_of!(Meter, rtt) + HOT_BYTES,
            offset_of!(Meter, health)
        );
        assert_eq!(offset_of!(Meter, health) + 8, 64);
        assert!(offset_of!(Meter, in_flight) + 4 <= 64);
        assert!(offset_of!(Meter, quiet) + 8 <= 64);
        // What the end of a request writes or reads besides fills one line of its own: the
        // balancer's settings are one pointer in it, the failure and cancellation counts
        // close it.
        assert_eq!(offset_of!(Meter, finish) % 64, 0);
        assert_eq!(size_of::<Finish>(), 64);
        assert_eq!(offset_of!(Finish, cancelled) + 8, 64);
        assert_eq!(std::mem::align_of::<Meter>(), 64);
    }
}
