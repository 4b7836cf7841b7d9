//! Peak-EWMA latency: reacts at once to a slower sample, forgets it smoothly.

use crate::primitives::clock::Clock;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Duration;
use tokio::time::Instant;

/// A peak-sensitive exponentially weighted moving average of round-trip time.
///
/// A sample above the estimate replaces it (the peak), so an endpoint that slows down loses
/// traffic immediately; a sample below it is blended in with a weight that grows with the time
/// since the last update (decay time `tau`). Reading the estimate also decays it towards zero,
/// so an endpoint that gets no traffic — because it looked slow — is eventually tried again.
///
/// Every pick reads two estimates and every response writes one, so reads take no lock: the
/// state is four atomic words behind a sequence number (a seqlock). A writer claims its turn by
/// turning the sequence odd (one compare-and-swap: the whole cost of a write's exclusion), and
/// even again when done; a reader that sees it odd, or changed under it, reads again. Times are
/// the [`Clock`]'s nanoseconds (since the balancer's origin), so that a reader can be handed
/// `now` in those units once per pick instead of converting an `Instant` per endpoint.
///
/// Split in two, so that the words every pick reads (40 bytes) can share a cache line with the
/// endpoint's other hot numbers (see `Meter`): `PeakEwma` is those words, and [`EwmaTail`] the
/// rest (the decay time and the clock), which a pick does not touch. The methods that need
/// the tail take it: always the same estimate's.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct PeakEwma {
    /// Even when the words below are whole; odd while a writer is changing them.
    sequence: AtomicU64,
    /// The estimate, in nanoseconds (`f64` bits).
    estimate: AtomicU64,
    /// When the estimate was last updated, in nanoseconds since `origin`.
    updated: AtomicU64,
    /// What the last penalty was when it was recorded, in nanoseconds (`f64` bits).
    penalty: AtomicU64,
    /// When the penalty was recorded, in nanoseconds since `origin`: read only when there is
    /// one.
    penalized: AtomicU64,
}

/// The part of a [`PeakEwma`] that a pick does not read: the decay time (a pick is handed it
/// by the balancer's snapshot) and the clock.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct EwmaTail {
    tau_nanos: f64,
    clock: Clock,
}

/// The bytes of a `PeakEwma` (pinned by the layout tests).
#[cfg(test)]
pub(crate) const HOT_BYTES: usize = 40;

/// How fast a failure's penalty fades: e-fold every second. A penalty is not a latency the
/// endpoint showed, so it must not linger for the RTT's decay time (10 s): an endpoint that
/// failed once would sit idle for most of a minute (1 s decaying to a healthy 5 ms takes
/// 10 s × ln 200 ≈ 53 s). Fading in seconds brings an endpoint that blipped back within about
/// five seconds, while one that keeps failing keeps renewing its penalty.
const PENALTY_DECAY_NANOS: f64 = 1e9;

/// Tries that find a write in progress before yielding the thread between tries: a writer
/// preempted mid-write must not leave others spinning through its time slice.
const SPINS: u32 = 64;

#[derive(Debug, Clone, Copy)]
struct State {
    estimate_nanos: f64,
    updated: u64,
    penalty_nanos: f64,
    penalized: u64,
}

impl EwmaTail {
    /// The clock this estimate's times count on.
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// `now` in this estimate's units: nanoseconds since its origin.
    #[inline]
    pub(crate) fn since_origin(&self, now: Instant) -> u64 {
        self.clock.nanos(now)
    }
}

impl PeakEwma {
    /// An estimate of `initial` at `now`, decaying with time constant `tau`, on a clock that
    /// starts at `origin` (instants before it count as `origin`).
    pub(crate) fn new(
        initial: Duration,
        tau: Duration,
        origin: Instant,
        now: Instant,
    ) -> (Self, EwmaTail) {
        let clock = Clock::new(origin);
        let now = clock.nanos(now);
        let estimate = PeakEwma {
            sequence: AtomicU64::new(0),
            estimate: AtomicU64::new(nanos(initial).to_bits()),
            updated: AtomicU64::new(now),
            penalty: AtomicU64::new(0.0f64.to_bits()),
            penalized: AtomicU64::new(now),
        };
        let tail = EwmaTail {
            tau_nanos: tau_nanos(tau),
            clock,
        };
        (estimate, tail)
    }

    #[inline]
    fn words(&self) -> State {
        let penalty_nanos = f64::from_bits(self.penalty.load(Ordering::Relaxed));
        State {
            estimate_nanos: f64::from_bits(self.estimate.load(Ordering::Relaxed)),
            updated: self.updated.load(Ordering::Relaxed),
            penalty_nanos,
            // Its time matters only when there is a penalty.
            penalized: if penalty_nanos == 0.0 {
                0
            } else {
                self.penalized.load(Ordering::Relaxed)
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
        self.penalty
            .store(next.penalty_nanos.to_bits(), Ordering::Relaxed);
        self.penalized.store(next.penalized, Ordering::Relaxed);
        self.sequence
            .store(sequence.wrapping_add(2), Ordering::Release);
        next
    }

    fn decayed(state: &State, tau_nanos: f64, now: u64) -> f64 {
        let elapsed = now.saturating_sub(state.updated) as f64;
        state.estimate_nanos * (-elapsed / tau_nanos).exp() + penalty(state, now)
    }

    /// The current estimate, in nanoseconds, decayed to `now`.
    pub(crate) fn get(&self, tail: &EwmaTail, now: Instant) -> f64 {
        self.get_at(tail.tau_nanos, tail.since_origin(now))
    }

    /// The current estimate, in nanoseconds, decayed to `now` (nanoseconds since the origin),
    /// with the decay time `tau_nanos`: the tail's, which a pick reads from the balancer's
    /// snapshot rather than from each endpoint's tail.
    #[inline]
    pub(crate) fn get_at(&self, tau_nanos: f64, now: u64) -> f64 {
        let state = self.read();
        Self::decayed(&state, tau_nanos, now)
    }

    /// The latency estimate alone, without any penalty, in nanoseconds, decayed to `now`
    /// (nanoseconds since the origin).
    pub(crate) fn latency_at(&self, tail: &EwmaTail, now: u64) -> f64 {
        let state = self.read();
        let elapsed = now.saturating_sub(state.updated) as f64;
        state.estimate_nanos * (-elapsed / tail.tau_nanos).exp()
    }

    /// Records one round trip; returns the new estimate, in nanoseconds.
    /// `now` is in nanoseconds since the origin, as for every writer.
    pub(crate) fn observe(&self, tail: &EwmaTail, rtt: Duration, now: u64) -> f64 {
        let rtt = nanos(rtt);
        let tau = tail.tau_nanos;
        self.write(|mut state| {
            let current = state.estimate_nanos;
            state.estimate_nanos = if rtt > current {
                rtt
            } else {
                let elapsed = now.saturating_sub(state.updated) as f64;
                let keep = (-elapsed / tau).exp();
                current * keep + rtt * (1.0 - keep)
            };
            state.updated = state.updated.max(now);
            state
        })
        .estimate_nanos
    }

    /// Forgets the history: used when an endpoint comes back from ejection, so that the penalty
    /// that got it ejected does not keep it idle after it has proven healthy again.
    /// Returns the new estimate, in nanoseconds.
    pub(crate) fn reset(&self, rtt: Duration, now: u64) -> f64 {
        self.write(|_| State {
            estimate_nanos: nanos(rtt),
            updated: now,
            penalty_nanos: 0.0,
            penalized: now,
        })
        .estimate_nanos
    }

    /// Records a failure's penalty: like a peak, it replaces what is left of earlier ones when
    /// larger (penalties do not pile up, or one burst of failures would bar an endpoint for
    /// long after it recovered). Returns the cost estimate it leads to, in nanoseconds.
    pub(crate) fn penalize(&self, tail: &EwmaTail, amount: Duration, now: u64) -> f64 {
        let state = self.write(|mut state| {
            state.penalty_nanos = penalty(&state, now).max(nanos(amount));
            state.penalized = now;
            state
        });
        Self::decayed(&state, tail.tau_nanos, now)
    }
}

/// `tau` in nanoseconds, at least 1: the decay time every reader divides by.
pub(crate) fn tau_nanos(tau: Duration) -> f64 {
    nanos(tau).max(1.0)
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

/// What is left of the last penalty at `now`.
fn penalty(state: &State, now: u64) -> f64 {
    // Most endpoints never failed: nothing to decay, and no clock arithmetic or `exp` to pay
    // on every pick (the product below would be 0.0 all the same).
    if state.penalty_nanos == 0.0 {
        return 0.0;
    }
    let elapsed = now.saturating_sub(state.penalized) as f64;
    state.penalty_nanos * (-elapsed / PENALTY_DECAY_NANOS).exp()
}

/// `d` in nanoseconds, rounded exactly as `d.as_nanos() as f64` would be, without its
/// 128-bit conversion (a library call costing as much as the rest of a pick's arithmetic)
/// for any duration under 584 years.
fn nanos(d: Duration) -> f64 {
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

    /// An estimate and its tail together, as a meter holds them.
    struct Est {
        hot: PeakEwma,
        tail: EwmaTail,
    }

    impl Est {
        fn new(initial: Duration, tau: Duration, origin: Instant, now: Instant) -> Self {
            let (hot, tail) = PeakEwma::new(initial, tau, origin, now);
            Est { hot, tail }
        }
        fn since_origin(&self, now: Instant) -> u64 {
            self.tail.since_origin(now)
        }
        fn get(&self, now: Instant) -> f64 {
            self.hot.get(&self.tail, now)
        }
        fn read(&self) -> State {
            self.hot.read()
        }
        fn observe(&self, rtt: Duration, now: u64) -> f64 {
            self.hot.observe(&self.tail, rtt, now)
        }
        fn reset(&self, rtt: Duration, now: u64) -> f64 {
            self.hot.reset(rtt, now)
        }
        fn penalize(&self, amount: Duration, now: u64) -> f64 {
            self.hot.penalize(&self.tail, amount, now)
        }
    }

    const MS: Duration = Duration::from_millis(1);

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
    fn penalties_fade_within_seconds() {
        let t0 = Instant::now();
        let e = Est::new(5 * MS, Duration::from_secs(10), t0, t0);
        e.penalize(Duration::from_secs(1), e.since_origin(t0));
        e.penalize(Duration::from_millis(500), e.since_origin(t0));
        assert!(
            (e.get(t0) - 1.005e9).abs() < 1.0,
            "the larger penalty stands"
        );
        // Five seconds later the penalty is about 7 ms, against an RTT of about 3 ms.
        let later = e.get(t0 + Duration::from_secs(5));
        let expect = 5e6 * (-0.5f64).exp() + 1e9 * (-5f64).exp();
        assert!((later - expect).abs() < 1.0, "{later}");
        // A success does not clear it, but a probe's reset does.
        e.observe(MS, e.since_origin(t0 + Duration::from_secs(5)));
        assert!(e.get(t0 + Duration::from_secs(5)) > 6e6);
        e.reset(MS, e.since_origin(t0 + Duration::from_secs(5)));
        assert_eq!(e.get(t0 + Duration::from_secs(5)), 1e6);
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
            assert_eq!(s.penalty_nanos, 0.0);
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
    fn reset_forgets_the_penalty() {
        let t0 = Instant::now();
        let e = Est::new(30 * MS, Duration::from_secs(10), t0, t0);
        e.observe(Duration::from_secs(1), e.since_origin(t0));
        e.reset(2 * MS, e.since_origin(t0 + Duration::from_secs(1)));
        assert_eq!(e.get(t0 + Duration::from_secs(1)), 2e6);
    }
}
