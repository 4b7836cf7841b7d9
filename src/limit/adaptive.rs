//! The two adaptive algorithms: what each does with a sample.

use super::config::{AimdConfig, GradientConfig};
use crate::primitives::clock::{Clock, whole_nanos};
use crate::primitives::histogram::Histogram;
use rand::RngExt as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::Duration;
use tokio::time::Instant;

/// What one request tells the algorithm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sample {
    /// A success, with its round trip from admission to the response head.
    Rtt(Duration),
    /// A drop: a timeout or the upstream's overload answer.
    Drop,
}

/// How far each recalculation of the baseline is moved at random, as Envoy's 15%, so that
/// clients started together do not all probe at once.
const JITTER: f64 = 0.15;
/// The weight of a window in the baseline while the limit was not busy: the latency of an
/// upstream we do not load is its own, so the baseline follows it within a few windows.
const IDLE_WEIGHT: f64 = 0.25;

/// The gradient algorithm: a window of samples, its median against a long-term baseline.
pub(crate) struct Gradient {
    config: GradientConfig,
    clock: Clock,
    rtts: Histogram,
    samples: AtomicU32,
    /// The most requests in flight seen at a sample in this window.
    peak: AtomicU32,
    /// When the window ends, in nanoseconds of `clock`.
    window_end: AtomicU64,
    window: u64,
    /// The baseline in microseconds, readable without the lock (0 before the first window).
    baseline: AtomicU64,
    /// While the baseline is measured: when the probe began (nanoseconds of `clock`), so that
    /// requests admitted before it, at a higher concurrency, give no sample. `u64::MAX` else.
    probe_since: AtomicU64,
    /// The limit during slow start, grown by one per success that found it at least half
    /// used; 0 once slow start is over.
    slow: AtomicU32,
    /// Slow start ends at the window's close, which comes at once: a drop was seen, or a run
    /// of late successes.
    slow_over: AtomicBool,
    /// Consecutive successes slower than tolerance² × the baseline during slow start.
    late_run: AtomicU32,
    /// Successes counted by slow start, one in two of which grows the limit.
    acks: AtomicU32,
    /// The fastest success seen during slow start, in microseconds (`u64::MAX` before one).
    fastest: AtomicU64,
    /// The last success of slow start that found the limit less than half used, in
    /// microseconds (0 before one): the upstream's own latency, no queue of ours in it.
    unloaded: AtomicU64,
    /// Successes of slow start in a row slower than `tolerance` × the baseline (or × the
    /// fastest success, before there is a baseline): `min_samples` of them, and the upstream
    /// may be starting to queue (one alone may be a new connection's handshake).
    late: AtomicU32,
    state: Mutex<GradientState>,
}

struct GradientState {
    estimate: f64,
    /// The baseline median RTT, in microseconds.
    long: f64,
    /// When the next recalculation of the baseline may start, in nanoseconds of `clock`.
    next_probe: u64,
    /// Consecutive busy windows of slow start slower than `tolerance` × the baseline.
    queued: u32,
    /// The successes per microsecond of the window that ended slow start, to set the limit
    /// from once the baseline is measured again.
    resume: Option<f64>,
}

impl Gradient {
    pub(crate) fn new(config: GradientConfig, now: Instant) -> Self {
        let window = whole_nanos(config.window);
        Gradient {
            clock: Clock::new(now),
            rtts: Histogram::new(true),
            samples: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            window_end: AtomicU64::new(window),
            window,
            baseline: AtomicU64::new(0),
            probe_since: AtomicU64::new(u64::MAX),
            slow: AtomicU32::new(config.initial.max(1)),
            slow_over: AtomicBool::new(false),
            late_run: AtomicU32::new(0),
            acks: AtomicU32::new(0),
            fastest: AtomicU64::new(u64::MAX),
            unloaded: AtomicU64::new(0),
            late: AtomicU32::new(0),
            state: Mutex::new(GradientState {
                estimate: f64::from(config.initial),
                long: 0.0,
                next_probe: u64::MAX,
                queued: 0,
                resume: None,
            }),
            config,
        }
    }

    /// The limit to start with: `initial`, from which slow start grows.
    pub(crate) fn starting_limit(&self) -> u32 {
        self.config.initial
    }

    /// Whether the limit is still in slow start: it has seen no queueing and no drop, so it
    /// is a guess that grows as fast as it is used, not a finding.
    /// Not once successes come late: a queue may be forming, and waiting in front of it would
    /// add to it.
    pub(crate) fn learning(&self) -> bool {
        self.slow.load(Ordering::Relaxed) != 0
            && !self.slow_over.load(Ordering::Relaxed)
            && self.late.load(Ordering::Relaxed) < self.config.min_samples
    }

    /// The baseline round trip: how long a request takes when nothing queues.
    pub(crate) fn baseline(&self) -> Duration {
        Duration::from_micros(self.baseline.load(Ordering::Relaxed))
    }

    /// Records a sample taken at `now` with `in_flight` requests holding permits; returns the
    /// new limit when this sample closed a window.
    pub(crate) fn on_sample(&self, sample: Sample, now: Instant, in_flight: u32) -> Option<u32> {
        // Drops give no RTT: a fast 503 says nothing of the latency of a good answer.
        let Sample::Rtt(rtt) = sample else {
            if self.slow.load(Ordering::Relaxed) != 0 {
                self.slow_over.store(true, Ordering::Relaxed);
            }
            return None;
        };
        if self.slow.load(Ordering::Relaxed) != 0 {
            self.note_lateness(rtt, in_flight);
        }
        let grown = self.slow_grow(in_flight, rtt);
        let now = self.clock.nanos(now);
        let probe_since = self.probe_since.load(Ordering::Relaxed);
        if probe_since != u64::MAX && now.saturating_sub(whole_nanos(rtt)) < probe_since {
            return None;
        }
        self.rtts.record(rtt);
        self.samples.fetch_add(1, Ordering::Relaxed);
        if in_flight > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(in_flight, Ordering::Relaxed);
        }
        let end = self.window_end.load(Ordering::Relaxed);
        let over = self.slow_late(rtt, in_flight);
        if (now < end && !over) || self.samples.load(Ordering::Relaxed) < self.config.min_samples {
            return grown;
        }
        // One thread recalculates; the others never wait for it.
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return grown,
        };
        if self.window_end.load(Ordering::Relaxed) != end {
            return grown;
        }
        self.window_end
            .store(now.saturating_add(self.window), Ordering::Relaxed);
        let count = self.samples.swap(0, Ordering::Relaxed);
        // Successes per microsecond over the window (it may have been extended).
        let since = end.saturating_sub(self.window);
        let rate = f64::from(count) / (now.saturating_sub(since).max(1) as f64 / 1_000.0);
        let peak = self.peak.swap(0, Ordering::Relaxed);
        let Some(short) = self.rtts.take_median() else {
            return grown;
        };
        Some(self.update(&mut state, short.max(1.0), peak, rate, now))
    }

    /// Records whether a success of slow start came late: slower than `tolerance` × the
    /// baseline; before there is one, × the upstream's own latency (the last success that
    /// found the limit less than half used), or the fastest success when every one found it
    /// busy. Only successes that found the limit at least half used count (below that, the
    /// limit is not what their latency depends on), and for good once `min_samples` came late
    /// in a row: the limit has learnt.
    fn note_lateness(&self, rtt: Duration, in_flight: u32) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        let fastest = self
            .fastest
            .fetch_min(micros, Ordering::Relaxed)
            .min(micros);
        if in_flight.saturating_mul(2) < self.slow.load(Ordering::Relaxed) {
            self.unloaded.store(micros, Ordering::Relaxed);
            return;
        }
        if self.late.load(Ordering::Relaxed) >= self.config.min_samples {
            return;
        }
        let baseline = self.baseline.load(Ordering::Relaxed);
        let unloaded = self.unloaded.load(Ordering::Relaxed);
        let reference = match (baseline, unloaded) {
            (0, 0) => fastest,
            (0, unloaded) => unloaded,
            (baseline, _) => baseline,
        };
        if micros as f64 > self.config.tolerance * reference as f64 {
            self.late.fetch_add(1, Ordering::Relaxed);
        } else {
            self.late.store(0, Ordering::Relaxed);
        }
    }

    /// Whether slow start must end now: `2 × min_samples` successes in a row slower than
    /// tolerance² × the baseline (a healthy upstream's tail gives no such run; a queue does,
    /// a window sooner than its median would).
    fn slow_late(&self, rtt: Duration, in_flight: u32) -> bool {
        let limit = self.slow.load(Ordering::Relaxed);
        if limit == 0 {
            return false;
        }
        // A limit not half used is not the cause of its latency: the upstream is just slower.
        if in_flight.saturating_mul(2) < limit {
            self.late_run.store(0, Ordering::Relaxed);
            return self.slow_over.load(Ordering::Relaxed);
        }
        let baseline = self.baseline.load(Ordering::Relaxed) as f64;
        let tolerance = self.config.tolerance;
        if baseline == 0.0 || rtt.as_micros() as f64 <= tolerance * tolerance * baseline {
            self.late_run.store(0, Ordering::Relaxed);
            return self.slow_over.load(Ordering::Relaxed);
        }
        let run = self.late_run.fetch_add(1, Ordering::Relaxed) + 1;
        if run >= self.config.min_samples.saturating_mul(2) {
            self.slow_over.store(true, Ordering::Relaxed);
        }
        self.slow_over.load(Ordering::Relaxed)
    }

    /// Slow start, as TCP's: while no queueing has been seen, each success that found the
    /// limit more than half used adds one (so it stops at twice the demand, Netflix's
    /// app-limited rule), so a limit in demand doubles every round trip
    /// rather than growing by √limit a window. Returns the new limit when it grew.
    fn slow_grow(&self, in_flight: u32, rtt: Duration) -> Option<u32> {
        if self.slow.load(Ordering::Relaxed) == 0 {
            return None;
        }
        // As HyStart's delay increase: a success slower than tolerance × the baseline may be
        // the start of a queue, and growing on it overshoots by the window it takes to see.
        let baseline = self.baseline.load(Ordering::Relaxed) as f64;
        if baseline > 0.0 && rtt.as_micros() as f64 > self.config.tolerance * baseline {
            return None;
        }
        // One more per two successes: ×1.5 per round trip, so that the overshoot past the
        // upstream's capacity, before the first queued answer shows it, is half the limit.
        if self.late_run.load(Ordering::Relaxed) == 0
            && self.acks.fetch_add(1, Ordering::Relaxed) % 2 == 0
        {
            return None;
        }
        let max = self.config.max;
        self.slow
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |limit| {
                (limit != 0 && limit < max && in_flight.saturating_mul(2) > limit)
                    .then(|| limit + 1)
            })
            .ok()
            .map(|old| old + 1)
    }

    /// The close of a window during slow start: the baseline is the lowest busy window median
    /// so far (no window is spent at `min` to measure it); two busy windows in a row slower
    /// than `tolerance` × the baseline, or a drop, end slow start at half the limit reached,
    /// and the baseline is then measured again at `min` (the recalculation). An idle window's latency is the upstream's own: the
    /// baseline follows it, as after slow start.
    fn slow_window(
        &self,
        state: &mut GradientState,
        short: f64,
        peak: u32,
        rate: f64,
        now: u64,
    ) -> Option<u32> {
        let limit = self.slow.load(Ordering::Relaxed);
        if limit == 0 {
            return None;
        }
        let c = &self.config;
        let first = state.long == 0.0;
        if first {
            state.next_probe = self.next_probe(now);
        }
        let busy = peak.saturating_mul(2) >= limit;
        let queueing = !first && busy && short > c.tolerance * state.long;
        let severe = queueing && short > c.tolerance * c.tolerance * state.long;
        state.queued = if queueing { state.queued + 1 } else { 0 };
        // One mildly slow window may be noise (a median moves by a histogram bucket, 22%, at
        // times): slow start ends at the second in a row, at once when the window is slower
        // than tolerance² × the baseline (every window of overshoot queues more), or on a drop.
        let dropped = self.slow_over.load(Ordering::Relaxed);
        if state.queued == 1 && !severe && !dropped {
            return Some(limit);
        }
        if !queueing && !dropped {
            state.long = if first {
                short
            } else if busy {
                state.long.min(short)
            } else {
                state.long + (short - state.long) * IDLE_WEIGHT
            };
            state.estimate = f64::from(limit);
            self.baseline.store(state.long as u64, Ordering::Relaxed);
            return Some(limit);
        }
        self.slow.store(0, Ordering::Relaxed);
        if first {
            state.long = short;
            self.baseline.store(short as u64, Ordering::Relaxed);
        }
        state.estimate = (f64::from(limit) / 2.0).clamp(f64::from(c.min), f64::from(c.max));
        // The baseline was learnt at `initial` or above, where a saturated upstream already
        // queues: the recalculation measures it now rather than `recalculation` from now.
        if !c.recalculation.is_zero() && state.estimate > f64::from(c.min) {
            self.probe_since.store(now, Ordering::Relaxed);
            state.resume = Some(rate);
            return Some(c.min);
        }
        Some(state.estimate as u32)
    }

    fn update(&self, state: &mut GradientState, short: f64, peak: u32, rate: f64, now: u64) -> u32 {
        let c = &self.config;
        if let Some(limit) = self.slow_window(state, short, peak, rate, now) {
            return limit;
        }
        if self.probe_since.load(Ordering::Relaxed) != u64::MAX {
            // The probe's window: its median, at the minimum concurrency, is the baseline.
            self.probe_since.store(u64::MAX, Ordering::Relaxed);
            state.long = short;
            state.next_probe = self.next_probe(now);
            self.baseline.store(short as u64, Ordering::Relaxed);
            // After slow start: the window that ended it saw the upstream saturated, so its
            // rate of successes is the upstream's capacity, and by Little's law capacity ×
            // baseline is the concurrency it serves without queueing; `tolerance` times that,
            // never above half the limit reached.
            if let Some(rate) = state.resume.take() {
                state.estimate = (c.tolerance * rate * short)
                    .clamp(f64::from(c.min), state.estimate.max(f64::from(c.min)));
            }
            return state.estimate as u32;
        }
        // Netflix's app-limited rule: a window that used less than half the limit says nothing
        // about the limit, and its latency is the upstream's own, not queueing we caused.
        let busy = f64::from(peak) >= state.estimate / 2.0;
        let weight = if busy {
            2.0 / (f64::from(c.long_window) + 1.0)
        } else {
            IDLE_WEIGHT
        };
        state.long += (short - state.long) * weight;
        // A baseline twice the latency now is stale (the upstream got faster): Gradient2 lets
        // it fall quickly rather than over the whole long window.
        if state.long > 2.0 * short {
            state.long *= 0.95;
        }
        self.baseline.store(state.long as u64, Ordering::Relaxed);
        if !busy {
            return state.estimate as u32;
        }
        let gradient = (c.tolerance * state.long / short).clamp(0.5, 1.0);
        let target = state.estimate * gradient + state.estimate.sqrt();
        state.estimate = (state.estimate * (1.0 - c.smoothing) + target * c.smoothing)
            .clamp(f64::from(c.min), f64::from(c.max));
        // Envoy's periodic recalculation, only while the limit is cutting: the baseline may
        // have crept up with the queue (the long average learns from busy windows too), and
        // one window at the minimum concurrency measures it again. An upstream that is not
        // queueing never sees a probe.
        if gradient < 1.0 && now >= state.next_probe && state.estimate > f64::from(c.min) {
            self.probe_since.store(now, Ordering::Relaxed);
            return c.min;
        }
        state.estimate as u32
    }

    /// When the baseline may be measured again: `recalculation` from now, ± 15%.
    fn next_probe(&self, now: u64) -> u64 {
        let every = self.config.recalculation;
        if every.is_zero() {
            return u64::MAX;
        }
        let factor = 1.0 + JITTER * rand::rng().random_range(-1.0..=1.0);
        now.saturating_add(whole_nanos(every.mul_f64(factor)))
    }
}

/// AIMD: one more per success while busy, `backoff` times fewer per drop.
pub(crate) struct Aimd {
    config: AimdConfig,
    limit: AtomicU32,
    /// A drop was seen: the limit was cut at least once.
    dropped: AtomicBool,
}

impl Aimd {
    pub(crate) fn new(config: AimdConfig) -> Self {
        Aimd {
            limit: AtomicU32::new(config.initial),
            dropped: AtomicBool::new(false),
            config,
        }
    }

    /// Whether no drop was seen yet: the limit has only grown from its initial guess.
    pub(crate) fn learning(&self) -> bool {
        !self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn initial(&self) -> u32 {
        self.config.initial
    }

    /// Applies a sample taken with `in_flight` requests holding permits (this one included);
    /// returns the new limit when it changed.
    pub(crate) fn on_sample(&self, sample: Sample, in_flight: u32) -> Option<u32> {
        let c = &self.config;
        let drop = match sample {
            Sample::Drop => true,
            Sample::Rtt(rtt) => rtt > c.timeout,
        };
        if drop && !self.dropped.load(Ordering::Relaxed) {
            self.dropped.store(true, Ordering::Relaxed);
        }
        let mut old = self.limit.load(Ordering::Relaxed);
        loop {
            let new = if drop {
                ((f64::from(old) * c.backoff) as u32).max(c.min)
            } else if in_flight.saturating_mul(2) >= old {
                // Netflix's rule: grow only when the limit was at least half used.
                old.saturating_add(1).min(c.max)
            } else {
                return None;
            };
            if new == old {
                return None;
            }
            match self
                .limit
                .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(new),
                Err(actual) => old = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn gradient() -> (Gradient, Instant) {
        let now = Instant::now();
        (Gradient::new(GradientConfig::default(), now), now)
    }

    /// Feeds `n` samples of `rtt` at `at` with `in_flight` in flight; the last new limit.
    fn feed(g: &Gradient, rtt: Duration, at: Instant, in_flight: u32, n: u32) -> Option<u32> {
        (0..n).fold(None, |last, _| {
            g.on_sample(Sample::Rtt(rtt), at, in_flight).or(last)
        })
    }

    #[test]
    fn it_starts_at_initial_and_slow_start_grows_a_limit_in_demand() {
        let (g, t0) = gradient();
        assert_eq!(g.starting_limit(), 20, "starts at initial");
        // One in two successes that found the limit more than half used adds one…
        assert_eq!(
            feed(&g, 10 * MS, t0, 20, 20),
            Some(30),
            "×1.5 in a round trip"
        );
        // …none that found it half used or less (Netflix's app-limited rule).
        assert_eq!(feed(&g, 10 * MS, t0, 15, 10), None);
        // The first window learns the baseline without a window at min.
        assert_eq!(feed(&g, 10 * MS, t0 + 100 * MS, 15, 1), Some(30));
        let baseline = g.baseline();
        assert!(baseline > 8 * MS && baseline < 12 * MS, "{baseline:?}");
    }

    #[test]
    fn a_window_needs_min_samples_and_drops_give_no_rtt() {
        let (g, t0) = gradient();
        assert_eq!(g.on_sample(Sample::Drop, t0 + 200 * MS, 20), None);
        assert_eq!(
            feed(&g, 10 * MS, t0 + 200 * MS, 10, 9),
            None,
            "9 < min_samples"
        );
        // The drop ends slow start, at half the limit (here min).
        assert_eq!(feed(&g, 10 * MS, t0 + 200 * MS, 10, 1), Some(20));
        assert_eq!(g.slow.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn slow_start_ends_at_the_second_queueing_window_then_measures_the_baseline_at_min() {
        let (g, t0) = gradient();
        feed(&g, 10 * MS, t0 + 100 * MS, 10, 10);
        // In demand and at the baseline: slow start grows to 50, and the window keeps it.
        assert_eq!(feed(&g, 10 * MS, t0 + 150 * MS, 100, 60), Some(50));
        assert_eq!(feed(&g, 10 * MS, t0 + 200 * MS, 40, 1), Some(50));
        // Queueing (1.4 times the baseline), busy: one window may be noise…
        assert_eq!(feed(&g, 14 * MS, t0 + 300 * MS, 40, 10), Some(50));
        // …the second ends slow start and measures the baseline at min…
        assert_eq!(feed(&g, 14 * MS, t0 + 350 * MS, 40, 400), None, "no growth");
        assert_eq!(feed(&g, 14 * MS, t0 + 400 * MS, 40, 1), Some(20));
        assert_eq!(g.slow.load(Ordering::Relaxed), 0);
        // …then resumes at tolerance × capacity × baseline (4 per ms × 12 ms × 1.25 = 60),
        // never above half the limit reached.
        assert_eq!(feed(&g, 12 * MS, t0 + 500 * MS, 10, 10), Some(25));
        let baseline = g.baseline();
        assert!(baseline > 10 * MS && baseline < 14 * MS, "{baseline:?}");
        // After slow start, the gradient rule: busy and four times the baseline cuts.
        let cut = feed(&g, 48 * MS, t0 + 600 * MS, 25, 10);
        assert!(cut < Some(25), "{cut:?}");
    }

    #[test]
    fn a_run_of_late_successes_ends_slow_start_before_the_window_does() {
        let (g, t0) = gradient();
        feed(&g, 10 * MS, t0 + 100 * MS, 10, 10);
        assert_eq!(feed(&g, 10 * MS, t0 + 150 * MS, 100, 60), Some(50));
        // Twice the baseline, 2 × min_samples in a row, mid-window: slow start ends now.
        assert_eq!(feed(&g, 20 * MS, t0 + 160 * MS, 40, 19), None);
        assert_eq!(
            feed(&g, 20 * MS, t0 + 160 * MS, 40, 1),
            Some(20),
            "the baseline at min"
        );
        assert_eq!(g.slow.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_idle_window_changes_nothing_but_the_baseline() {
        let (g, t0) = gradient();
        feed(&g, 10 * MS, t0 + 100 * MS, 10, 10);
        // 5 in flight, under half the limit: four times slower, the limit stays.
        assert_eq!(feed(&g, 40 * MS, t0 + 200 * MS, 5, 10), Some(20));
        assert_eq!(feed(&g, 40 * MS, t0 + 300 * MS, 5, 10), Some(20));
        assert!(g.baseline() > 15 * MS, "{:?}", g.baseline());
        assert_ne!(g.slow.load(Ordering::Relaxed), 0, "still in slow start");
    }

    fn aimd() -> Aimd {
        Aimd::new(AimdConfig {
            initial: 10,
            min: 5,
            max: 11,
            ..AimdConfig::default()
        })
    }

    #[test]
    fn aimd_steps_within_its_bounds() {
        let a = aimd();
        assert_eq!(a.on_sample(Sample::Rtt(MS), 5), Some(11));
        assert_eq!(a.on_sample(Sample::Rtt(MS), 11), None, "max");
        assert_eq!(a.on_sample(Sample::Drop, 1), Some(9));
        assert_eq!(a.on_sample(Sample::Rtt(MS), 4), None, "under half used");
        assert_eq!(a.on_sample(Sample::Rtt(Duration::from_secs(6)), 9), Some(8));
        for _ in 0..10 {
            a.on_sample(Sample::Drop, 1);
        }
        assert_eq!(a.limit.load(Ordering::Relaxed), 5, "min");
    }
}
