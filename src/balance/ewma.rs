//! Peak-EWMA latency: reacts at once to a slower sample, forgets it smoothly; and the share of
//! recent attempts that gave no answer, which divides it.

#[cfg(test)]
use crate::primitives::clock::Clock;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Duration;
#[cfg(test)]
use tokio::time::Instant;

/// A peak-sensitive exponentially weighted moving average of round-trip time.
///
/// A sample above the estimate replaces it (the peak), so an endpoint that slows down loses
/// traffic immediately; a sample below it is blended in with a weight that grows with the time
/// since the last update (decay time `tau`). Reading the estimate also decays it towards zero,
/// so an endpoint that gets no traffic — because it looked slow — is eventually tried again.
///
/// Beside the latency it keeps the endpoint's *misses*: the share of its recent attempts that
/// gave the caller no answer (failures, and first attempts a hedge outran). What P2C compares
/// is the latency divided by the share that did answer, `latency / (1 − misses)`: the expected
/// time to an answer when every miss costs another try. An endpoint that fails 30% of the time
/// in 3 ms then costs 4.3 ms, and stays preferred to one that answers in 150 ms; one that
/// fails every time costs up to a thousand times its latency. A miss also costs the caller the
/// wait before its retry ([`CostModel`]'s `miss_wait`), so the expected time to an answer is
/// `(latency + misses × wait) / (1 − misses)`. A fixed penalty per failure
/// cannot make both calls: one large enough to keep traffic off a dead endpoint makes a
/// flaky-but-fast one look slower than a slow one (the demo's slow backend got twice its share
/// of first attempts that way). A miss never lowers the latency either, so an endpoint that
/// fails fast does not look fast (tower's `PeakEwma` pitfall).
///
/// Every pick reads two estimates and every response writes one, so reads take no lock: the
/// state is four atomic words behind a sequence number (a seqlock). A writer claims its turn by
/// turning the sequence odd (one compare-and-swap: the whole cost of a write's exclusion), and
/// even again when done; a reader that sees it odd, or changed under it, reads again. Times are
/// the [`Clock`]'s nanoseconds (since the balancer's origin), so that a reader can be handed
/// `now` in those units once per pick instead of converting an `Instant` per endpoint.
///
/// Only the words every pick reads (40 bytes), so that they can share a cache line with the
/// endpoint's other hot numbers (see `Meter`): the clock their times count on, the decay time
/// and a miss's wait, the same for every endpoint of a balancer, are the balancer's, and come
/// with each call (times in the clock's nanoseconds, the rest as a [`CostModel`]).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct PeakEwma {
    /// Even when the words below are whole; odd while a writer is changing them.
    sequence: AtomicU64,
    /// The estimate, in nanoseconds (`f64` bits).
    estimate: AtomicU64,
    /// When the estimate was last updated, in nanoseconds since `origin`.
    updated: AtomicU64,
    /// The share of recent attempts that gave no answer when it was last updated, in [0, 1]
    /// (`f64` bits).
    misses: AtomicU64,
    /// When the share was last updated, in nanoseconds since `origin`: read only when there
    /// are misses.
    missed: AtomicU64,
}

/// A [`PeakEwma`] with the clock its times count on, for the tests (a meter reads its clock
/// from its balancer's settings).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct EwmaTail {
    clock: Clock,
}

/// The balancer's settings every reading of an estimate needs, the same for all its endpoints:
/// a pick reads them from the balancer's snapshot, the end of a request from its meter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CostModel {
    /// The latency's decay time, in nanoseconds, at least 1.
    tau_nanos: f64,
    /// What a miss costs the caller besides another attempt (the wait before a retry), in
    /// nanoseconds.
    miss_wait_nanos: f64,
}

impl CostModel {
    /// The model of a balancer whose latency decays with time constant `decay`, and whose
    /// misses cost `miss_wait` besides another attempt.
    pub(crate) fn new(decay: Duration, miss_wait: Duration) -> Self {
        CostModel {
            tau_nanos: nanos(decay).max(1.0),
            miss_wait_nanos: nanos(miss_wait),
        }
    }
}

/// The bytes of a `PeakEwma` (pinned by the layout tests).
#[cfg(test)]
pub(crate) const HOT_BYTES: usize = 40;

/// How fast the miss share fades without attempts: e-fold every second. It must not linger
/// for the RTT's decay time (10 s): an endpoint that failed a burst and got no traffic since
/// would sit idle for most of a minute. Fading in seconds brings an endpoint that blipped back
/// within a few seconds, while one that keeps failing keeps renewing its share.
const MISS_DECAY_NANOS: f64 = 1e9;

/// The largest miss share the cost reads: an endpoint that misses every time costs a thousand
/// times its latency, dear enough to get a request only when every other is that loaded, and
/// never an infinite or NaN cost.
const MAX_MISSES: f64 = 0.999;

/// Tries that find a write in progress before yielding the thread between tries: a writer
/// preempted mid-write must not leave others spinning through its time slice.
const SPINS: u32 = 64;

#[derive(Debug, Clone, Copy)]
struct State {
    estimate_nanos: f64,
    updated: u64,
    misses: f64,
    missed: u64,
}

#[cfg(test)]
impl EwmaTail {
    /// `now` in this estimate's units: nanoseconds since its origin.
    #[inline]
    pub(crate) fn since_origin(&self, now: Instant) -> u64 {
        self.clock.nanos(now)
    }
}

impl PeakEwma {
    /// An estimate of `initial_nanos` at `now` (nanoseconds since the clock's origin).
    pub(crate) fn starting(initial_nanos: f64, now: u64) -> Self {
        PeakEwma {
            sequence: AtomicU64::new(0),
            estimate: AtomicU64::new(initial_nanos.to_bits()),
            updated: AtomicU64::new(now),
            misses: AtomicU64::new(0.0f64.to_bits()),
            missed: AtomicU64::new(now),
        }
    }

    /// An estimate of `initial_nanos` at `now`, on a clock that starts at `origin` (instants
    /// before it count as `origin`), and that clock.
    #[cfg(test)]
    pub(crate) fn new(initial_nanos: f64, origin: Instant, now: Instant) -> (Self, EwmaTail) {
        let clock = Clock::new(origin);
        (
            PeakEwma::starting(initial_nanos, clock.nanos(now)),
            EwmaTail { clock },
        )
    }

    #[inline]
    fn words(&self) -> State {
        let misses = f64::from_bits(self.misses.load(Ordering::Relaxed));
        State {
            estimate_nanos: f64::from_bits(self.estimate.load(Ordering::Relaxed)),
            updated: self.updated.load(Ordering::Relaxed),
            misses,
            // Its time matters only when there are misses.
            missed: if misses == 0.0 {
                0
            } else {
                self.missed.load(Ordering::Relaxed)
            },
        }
    }

    /// A consistent copy of the state, without taking the lock.
    #[inline]
    fn read(&self) -> State {
        let mut tries = 0u32;
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if before & 1 == 0 {
                let state = self.words();
                // Orders the loads above before the check below: if the sequence did not move,
                // no write overlapped them.
                fence(Ordering::Acquire);
                if self.sequence.load(Ordering::Relaxed) == before {
                    return state;
                }
            }
            pause(&mut tries);
        }
    }

    /// Replaces the state with `change(state)`, for one writer at a time; returns the new state.
    /// `change` is plain arithmetic: it cannot panic with the turn held.
    fn write(&self, change: impl FnOnce(State) -> State) -> State {
        let mut tries = 0u32;
        let sequence = loop {
            let sequence = self.sequence.load(Ordering::Relaxed);
            if sequence & 1 == 0
                && self
                    .sequence
                    .compare_exchange_weak(
                        sequence,
                        sequence.wrapping_add(1),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                break sequence;
            }
            pause(&mut tries);
        };
        let next = change(self.words());
        // Readers that see any of the stores below also see the odd sequence.
        fence(Ordering::Release);
        self.estimate
            .store(next.estimate_nanos.to_bits(), Ordering::Relaxed);
        self.updated.store(next.updated, Ordering::Relaxed);
        self.misses.store(next.misses.to_bits(), Ordering::Relaxed);
        self.missed.store(next.missed, Ordering::Relaxed);
        self.sequence
            .store(sequence.wrapping_add(2), Ordering::Release);
        next
    }

    /// The expected time to an answer: each attempt takes the latency, and a miss costs the
    /// wait before another, so with a share `m` of misses it is
    /// `(latency + m × wait) / (1 − m)`.
    fn decayed(state: &State, model: CostModel, now: u64) -> f64 {
        let elapsed = now.saturating_sub(state.updated) as f64;
        let latency = state.estimate_nanos * fade(elapsed / model.tau_nanos);
        let misses = misses_at(state, now);
        // Most endpoints never miss: no division to pay on every pick.
        if misses == 0.0 {
            latency
        } else {
            let misses = misses.min(MAX_MISSES);
            (latency + misses * model.miss_wait_nanos) / (1.0 - misses)
        }
    }

    /// The current cost estimate, in nanoseconds, decayed to `now` (nanoseconds since the origin),
    /// under the balancer's `model`.
    #[inline]
    pub(crate) fn get_at(&self, model: CostModel, now: u64) -> f64 {
        let state = self.read();
        Self::decayed(&state, model, now)
    }

    /// The latency estimate alone, in nanoseconds, decayed to `now`: how long one attempt
    /// takes, its misses aside.
    pub(crate) fn latency_at(&self, model: CostModel, now: u64) -> f64 {
        let state = self.read();
        let elapsed = now.saturating_sub(state.updated) as f64;
        state.estimate_nanos * fade(elapsed / model.tau_nanos)
    }

    /// Records one answer that took `rtt`: a latency sample, and an attempt that did not miss
    /// (the miss share moves `weight` of the way towards 0). `now` is in nanoseconds since the
    /// origin, as for every writer. The end of a plain success, whose new cost nothing reads:
    /// see [`observe`](Self::observe) for the same returning it.
    #[inline]
    pub(crate) fn answer(&self, model: CostModel, rtt: Duration, weight: f64, now: u64) {
        self.write_answer(model, rtt, weight, now);
    }

    /// As [`answer`](Self::answer), returning the new cost estimate, in nanoseconds.
    #[cfg(test)]
    pub(crate) fn observe(&self, model: CostModel, rtt: Duration, weight: f64, now: u64) -> f64 {
        let state = self.write_answer(model, rtt, weight, now);
        Self::decayed(&state, model, now)
    }

    fn write_answer(&self, model: CostModel, rtt: Duration, weight: f64, now: u64) -> State {
        let rtt = nanos(rtt);
        let tau = model.tau_nanos;
        self.write(|mut state| {
            let current = state.estimate_nanos;
            state.estimate_nanos = if rtt > current {
                rtt
            } else {
                let elapsed = now.saturating_sub(state.updated) as f64;
                let keep = fade(elapsed / tau);
                current * keep + rtt * (1.0 - keep)
            };
            state.updated = state.updated.max(now);
            answered(&mut state, weight, now);
            state
        })
    }

    /// The latency estimate as last measured, without the misses and not decayed, in
    /// nanoseconds: where a new peer starts (see `Balance::apply`).
    pub(crate) fn measured(&self) -> f64 {
        self.read().estimate_nanos
    }

    /// Returns the new estimate, in nanoseconds.
    pub(crate) fn reset(&self, rtt: Duration, now: u64) -> f64 {
        self.write(|_| State {
            estimate_nanos: nanos(rtt),
            updated: now,
            misses: 0.0,
            missed: now,
        })
        .estimate_nanos
    }

    /// Records an attempt that gave no answer after `waited`: the miss share moves `weight` of
    /// the way towards 1, and a wait above the latency estimate is its new peak (the endpoint
    /// was at least that slow). A wait below it is not blended in: a failure that came fast
    /// says nothing of how fast the endpoint answers. Nor does the estimate decay while misses
    /// come: each one restores it as last measured, so that an endpoint that only fails, fast,
    /// does not drift towards a cost of zero (and back into traffic) as an idle one would.
    /// Returns the new cost estimate, in nanoseconds.
    pub(crate) fn miss(&self, model: CostModel, waited: Duration, weight: f64, now: u64) -> f64 {
        let waited = nanos(waited);
        let state = self.write(|mut state| {
            let elapsed = now.saturating_sub(state.updated) as f64;
            let latency = state.estimate_nanos * fade(elapsed / model.tau_nanos);
            if waited > latency {
                state.estimate_nanos = waited;
                state.updated = state.updated.max(now);
            } else if weight > 0.0 {
                // The estimate as last measured, not decayed: its decay restarts from now.
                // (A zero weight leaves a fast miss out of the cost altogether.)
                state.updated = state.updated.max(now);
            }
            let misses = misses_at(&state, now);
            state.misses = misses + (1.0 - misses) * weight;
            state.missed = state.missed.max(now);
            state
        });
        Self::decayed(&state, model, now)
    }
}

/// Waits a little before trying again: spins at first (a write takes a few dozen
/// instructions), then yields the thread, in case the writer was preempted mid-write.
fn pause(tries: &mut u32) {
    if *tries < SPINS {
        *tries += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Takes an answer into the miss share: it moves `weight` of the way towards 0. A share too
/// small to matter is snapped to 0, so that the endpoint's picks go back to the path with no
/// `exp` to work out.
fn answered(state: &mut State, weight: f64, now: u64) {
    if state.misses != 0.0 {
        let misses = misses_at(state, now) * (1.0 - weight);
        state.misses = if misses < NEGLIGIBLE_MISSES {
            0.0
        } else {
            misses
        };
        state.missed = state.missed.max(now);
    }
}

/// A miss share below this changes a cost by less than a hundredth of a percent.
const NEGLIGIBLE_MISSES: f64 = 1e-4;

/// The miss share at `now`, faded since it was last updated.
fn misses_at(state: &State, now: u64) -> f64 {
    // Most endpoints never miss: nothing to decay, and no clock arithmetic or `exp` to pay
    // on every pick (the product below would be 0.0 all the same).
    if state.misses == 0.0 {
        return 0.0;
    }
    let elapsed = now.saturating_sub(state.missed) as f64;
    state.misses * fade(elapsed / MISS_DECAY_NANOS)
}

/// `e^(-x)` for `x ≥ 0`: how much of an estimate is left `x` time constants later. An endpoint
/// in use is read and written microseconds apart, against a time constant of seconds, so `x` is
/// nearly always tiny; there, six terms of the series (the first one left out is below
/// `x⁶ / 720 < 1e-13`) cost a fraction of `exp`, which is paid several times per request.
#[inline]
fn fade(x: f64) -> f64 {
    if x < 1.0 / 64.0 {
        1.0 - x * (1.0 - x * (0.5 - x * (1.0 / 6.0 - x * (1.0 / 24.0 - x * (1.0 / 120.0)))))
    } else {
        (-x).exp()
    }
}

/// `d` in nanoseconds, rounded exactly as `d.as_nanos() as f64` would be, without its
/// 128-bit conversion (a library call costing as much as the rest of a pick's arithmetic)
/// for any duration under 584 years.
pub(crate) fn nanos(d: Duration) -> f64 {
    let whole = d
        .as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())));
    match whole {
        Some(n) => n as f64,
        None => d.as_nanos() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fade_is_exp_of_minus_x_on_both_sides_of_its_shortcut() {
        let mut x = 0.0_f64;
        while x < 0.1 {
            let exact = (-x).exp();
            let relative = ((fade(x) - exact) / exact).abs();
            assert!(relative < 1e-12, "x = {x}: {} against {exact}", fade(x));
            x += 1.0 / 4096.0;
        }
        assert_eq!(fade(0.0), 1.0);
        assert_eq!(fade(5.0), (-5f64).exp());
        assert_eq!(fade(f64::INFINITY), 0.0);
    }

    /// An estimate, its tail and its balancer's model together, as a meter holds them.
    struct Est {
        hot: PeakEwma,
        tail: EwmaTail,
        model: CostModel,
    }

    impl Est {
        fn new(initial: Duration, tau: Duration, origin: Instant, now: Instant) -> Self {
            let (hot, tail) = PeakEwma::new(nanos(initial), origin, now);
            let model = CostModel::new(tau, Duration::ZERO);
            Est { hot, tail, model }
        }
        fn since_origin(&self, now: Instant) -> u64 {
            self.tail.since_origin(now)
        }
        fn get(&self, now: Instant) -> f64 {
            self.hot.get_at(self.model, self.tail.since_origin(now))
        }
        fn read(&self) -> State {
            self.hot.read()
        }
        fn observe(&self, rtt: Duration, now: u64) -> f64 {
            self.hot.observe(self.model, rtt, WEIGHT, now)
        }
        fn reset(&self, rtt: Duration, now: u64) -> f64 {
            self.hot.reset(rtt, now)
        }
        fn miss(&self, waited: Duration, now: u64) -> f64 {
            self.hot.miss(self.model, waited, WEIGHT, now)
        }
    }

    const MS: Duration = Duration::from_millis(1);
    const WEIGHT: f64 = 0.25;

    #[test]
    fn nanoseconds_round_as_the_128_bit_conversion_does() {
        let cases = [
            Duration::ZERO,
            Duration::from_nanos(1),
            30 * MS,
            Duration::from_nanos((1 << 53) + 1),
            Duration::from_nanos((1 << 54) + 3),
            Duration::from_nanos(u64::MAX),
            Duration::new(u64::MAX / 1_000_000_000, 999_999_999),
            Duration::new(u64::MAX / 1_000_000_000 + 1, 0),
            Duration::MAX,
        ];
        for d in cases {
            assert_eq!(nanos(d).to_bits(), (d.as_nanos() as f64).to_bits(), "{d:?}");
        }
    }

    #[test]
    fn a_slower_sample_is_taken_at_once() {
        let t0 = Instant::now();
        let e = Est::new(30 * MS, Duration::from_secs(10), t0, t0);
        e.observe(500 * MS, e.since_origin(t0));
        assert_eq!(e.get(t0), 500e6);
    }

    #[test]
    fn faster_samples_blend_by_elapsed_time() {
        let t0 = Instant::now();
        let e = Est::new(100 * MS, Duration::from_secs(10), t0, t0);
        // Immediately after: almost no weight for the new sample.
        e.observe(10 * MS, e.since_origin(t0 + Duration::from_millis(1)));
        let v = e.get(t0 + Duration::from_millis(1));
        assert!(v > 99e6 && v < 100e6, "{v}");
        // Ten seconds (one tau) later: the sample gets 1 - 1/e of the weight.
        let e = Est::new(100 * MS, Duration::from_secs(10), t0, t0);
        e.observe(10 * MS, e.since_origin(t0 + Duration::from_secs(10)));
        let expect = 100e6 * (-1f64).exp() + 10e6 * (1.0 - (-1f64).exp());
        assert!((e.get(t0 + Duration::from_secs(10)) - expect).abs() < 1.0);
    }

    #[test]
    fn idle_estimates_decay_towards_zero() {
        let t0 = Instant::now();
        let e = Est::new(1000 * MS, Duration::from_secs(10), t0, t0);
        let later = e.get(t0 + Duration::from_secs(30));
        assert!((later - 1000e6 * (-3f64).exp()).abs() < 1.0);
    }

    #[test]
    fn misses_divide_the_latency_by_the_share_that_answers() {
        let t0 = Instant::now();
        let at = |secs: f64| t0 + Duration::from_secs_f64(secs);
        // Decay so slow that the latency stays put: only the misses move.
        let e = Est::new(3 * MS, Duration::MAX, t0, t0);
        // A failure in 1 ms: a quarter of a miss, and no faster latency.
        let cost = e.miss(MS, e.since_origin(t0));
        assert!((cost - 3e6 / 0.75).abs() < 1.0, "{cost}");
        assert_eq!(e.read().estimate_nanos, 3e6);
        // An answer takes a quarter of the share away.
        let cost = e.observe(3 * MS, e.since_origin(t0));
        assert!((cost - 3e6 / (1.0 - 0.25 * 0.75)).abs() < 1.0, "{cost}");
        // Without attempts the share fades e-fold every second.
        let share = 0.25 * 0.75 * (-5f64).exp();
        let later = e.get(at(5.0));
        assert!((later - 3e6 / (1.0 - share)).abs() < 1.0, "{later}");
    }

    #[test]
    fn a_miss_costs_the_wait_before_another_attempt() {
        let t0 = Instant::now();
        let model = CostModel::new(Duration::MAX, Duration::from_micros(12_500));
        let (hot, tail) = PeakEwma::new(3e6, t0, t0);
        // One miss in four: (3 ms + 0.25 × 12.5 ms) / 0.75.
        let cost = hot.miss(model, MS, WEIGHT, tail.since_origin(t0));
        assert!((cost - (3e6 + 0.25 * 12.5e6) / 0.75).abs() < 1.0, "{cost}");
        // No misses, no wait: the latency alone.
        let (hot, tail) = PeakEwma::new(3e6, t0, t0);
        assert_eq!(
            hot.observe(model, 3 * MS, WEIGHT, tail.since_origin(t0)),
            3e6
        );
    }

    #[test]
    fn a_flaky_fast_endpoint_stays_cheaper_than_a_slow_one() {
        // 30% of attempts fail in 3 ms: in steady state it costs about 3 ms / 0.7, far below
        // a healthy endpoint that answers in 150 ms (a fixed penalty per failure could not
        // tell them apart).
        let t0 = Instant::now();
        let e = Est::new(3 * MS, Duration::from_secs(10), t0, t0);
        let mut worst: f64 = 0.0;
        for i in 0..1_000u64 {
            let now = e.since_origin(t0 + Duration::from_micros(100 * i));
            let cost = if i % 10 < 3 {
                e.miss(3 * MS, now)
            } else {
                e.observe(3 * MS, now)
            };
            if i > 100 {
                worst = worst.max(cost);
            }
        }
        assert!(worst > 3e6 / 0.8, "the failures count: {worst}");
        assert!(worst < 150e6 / 10.0, "{worst}");
    }

    #[test]
    fn an_endpoint_that_only_fails_fast_keeps_its_latency_estimate() {
        // One fast failure a second for two minutes: idle, the 5 ms estimate would have
        // decayed to 0.03 ms (10 s decay), and with no wait per miss its cost with it.
        let t0 = Instant::now();
        let (hot, tail) = PeakEwma::new(5e6, t0, t0);
        let model = CostModel::new(Duration::from_secs(10), Duration::ZERO);
        for s in 1..=120 {
            hot.miss(
                model,
                Duration::from_micros(50),
                WEIGHT,
                tail.since_origin(t0 + Duration::from_secs(s)),
            );
        }
        assert_eq!(hot.read().estimate_nanos, 5e6);
        let cost = hot.get_at(model, tail.since_origin(t0 + Duration::from_secs(120)));
        assert!(cost > 5e6, "{cost}");
    }

    #[test]
    fn a_miss_slower_than_the_estimate_is_its_new_peak() {
        let t0 = Instant::now();
        let e = Est::new(3 * MS, Duration::from_secs(10), t0, t0);
        e.miss(200 * MS, e.since_origin(t0));
        assert_eq!(e.read().estimate_nanos, 200e6);
    }

    #[test]
    fn an_endpoint_that_always_misses_costs_at_most_a_thousand_times_its_latency() {
        let t0 = Instant::now();
        let (hot, tail) = PeakEwma::new(2e6, t0, t0);
        let model = CostModel::new(Duration::MAX, Duration::ZERO);
        let cost = hot.miss(model, MS, 1.0, tail.since_origin(t0));
        assert!((cost - 2e6 / (1.0 - MAX_MISSES)).abs() < 1.0, "{cost}");
        assert!(cost.is_finite());
    }

    #[test]
    fn a_zero_weight_leaves_the_cost_to_the_latency() {
        let t0 = Instant::now();
        let (hot, tail) = PeakEwma::new(2e6, t0, t0);
        let model = CostModel::new(Duration::MAX, Duration::ZERO);
        for _ in 0..10 {
            hot.miss(model, MS, 0.0, tail.since_origin(t0));
        }
        assert_eq!(hot.get_at(model, tail.since_origin(t0)), 2e6);
    }

    #[test]
    fn the_clock_starts_at_the_origin_and_the_estimate_at_its_creation() {
        let origin = Instant::now();
        let born = origin + Duration::from_secs(10);
        let e = Est::new(100 * MS, Duration::from_secs(10), origin, born);
        assert_eq!(e.get(born), 100e6);
        // Decayed over the time since its creation, not since the origin.
        let later = e.get(born + Duration::from_secs(10));
        assert!((later - 100e6 * (-1f64).exp()).abs() < 1.0, "{later}");
        // Instants before the origin read as the origin, and never panic.
        if let Some(before) = origin.checked_sub(Duration::from_secs(1)) {
            assert_eq!(e.since_origin(before), 0);
        }
        assert_eq!(e.get(origin), 100e6);
    }

    #[test]
    fn readers_never_see_half_a_write() {
        // Two writers each write a whole state of their own; a reader must only ever see one
        // of the two, never the estimate of one with the timestamps of the other.
        let t0 = Instant::now();
        let e = std::sync::Arc::new(Est::new(MS, Duration::from_secs(10), t0, t0));
        let states = [(MS, t0), (2 * MS, t0 + Duration::from_secs(7))];
        // The reader and both writers start together, so that reads overlap the writes however
        // the threads are scheduled; and the reader reads at least once after they are done.
        let start = std::sync::Arc::new(std::sync::Barrier::new(3));
        let writers: Vec<_> = states
            .into_iter()
            .map(|(rtt, at)| {
                let (e, start) = (e.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..20_000 {
                        e.reset(rtt, e.since_origin(at));
                    }
                })
            })
            .collect();
        start.wait();
        let mut seen = [0u32; 2];
        loop {
            let done = writers.iter().all(|w| w.is_finished());
            let s = e.read();
            let which = match (s.estimate_nanos, s.updated) {
                (1e6, 0) => 0,
                (2e6, 7_000_000_000) => 1,
                other => panic!("a torn read: {other:?}"),
            };
            assert_eq!(s.misses, 0.0);
            seen[which] += 1;
            if done {
                break;
            }
        }
        for w in writers {
            w.join().expect("a writer panicked");
        }
        // The last read came after both writers' last writes: it saw one of them whole.
        assert!(seen.iter().sum::<u32>() > 0);
    }

    #[test]
    fn a_read_needs_only_the_hot_words() {
        // `Meter` puts these words in the line it reads for a pick: see its layout.
        assert_eq!(std::mem::size_of::<PeakEwma>(), HOT_BYTES);
    }

    #[test]
    fn reset_forgets_the_misses_and_the_peak() {
        let t0 = Instant::now();
        let e = Est::new(30 * MS, Duration::from_secs(10), t0, t0);
        e.miss(Duration::from_secs(1), e.since_origin(t0));
        e.reset(2 * MS, e.since_origin(t0 + Duration::from_secs(1)));
        assert_eq!(e.get(t0 + Duration::from_secs(1)), 2e6);
    }
}
