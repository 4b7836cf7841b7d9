//! The breaker's state word and its transitions.
//!
//! The whole state — which state, why it last opened, the break ladder's step, the half-open
//! probes admitted and succeeded, one timestamp — is one `u64`, like the floor's
//! [gate](crate::primitives::gate) (whose four states and single probe are too few here: a
//! breaker admits N probes, ramps, and can be isolated). Admitting a request in the closed
//! state is one atomic load; every transition is one compare-and-swap from exactly the word its
//! caller checked, so under racing threads exactly N probes are admitted and exactly one
//! thread performs (and reports) each transition.
//!
//! | state | timestamp (ms from the origin) |
//! |---|---|
//! | [`CLOSED`] | when it closed (the ladder restarts after a window closed) |
//! | [`OPEN`] | when the break ends |
//! | [`PROBING`] | when the probes began: also the episode a probe reports to |
//! | [`RAMP`] | when the ramp began |
//! | [`ISOLATED`] | — |

use super::config::BreakerConfig;
use super::telemetry::Telemetry;
use super::{BreakerState, BreakerStats, Rejected, TripReason};
use crate::primitives::clock::{Clock, micros};
use crate::primitives::ladder::ejection_micros;
use crate::primitives::window::{Counts, Window};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) const CLOSED: u64 = 0;
pub(crate) const OPEN: u64 = 1;
pub(crate) const PROBING: u64 = 2;
pub(crate) const RAMP: u64 = 3;
pub(crate) const ISOLATED: u64 = 4;

// Layout: [state: 3][reason: 3][step: 5][probes: 6][successes: 6][time: 41 bits of ms].
// 41 bits of milliseconds span 69 years of uptime; breaks and ramps need no finer grain.
const TIME_BITS: u32 = 41;
const TIME_MAX: u64 = (1 << TIME_BITS) - 1;
const SUCCESS_SHIFT: u32 = TIME_BITS;
const PROBES_SHIFT: u32 = SUCCESS_SHIFT + 6;
const STEP_SHIFT: u32 = PROBES_SHIFT + 6;
const REASON_SHIFT: u32 = STEP_SHIFT + 5;
const STATE_SHIFT: u32 = REASON_SHIFT + 3;
const STEP_MAX: u64 = 31;

fn pack(state: u64, reason: u64, step: u64, probes: u64, successes: u64, ms: u64) -> u64 {
    (state << STATE_SHIFT)
        | ((reason & 0b111) << REASON_SHIFT)
        | (step.min(STEP_MAX) << STEP_SHIFT)
        | ((probes & 0x3F) << PROBES_SHIFT)
        | ((successes & 0x3F) << SUCCESS_SHIFT)
        | ms.min(TIME_MAX)
}
pub(crate) fn state(word: u64) -> u64 {
    word >> STATE_SHIFT
}
fn reason(word: u64) -> u64 {
    (word >> REASON_SHIFT) & 0b111
}
fn step(word: u64) -> u64 {
    (word >> STEP_SHIFT) & STEP_MAX
}
fn probes(word: u64) -> u64 {
    (word >> PROBES_SHIFT) & 0x3F
}
fn successes(word: u64) -> u64 {
    (word >> SUCCESS_SHIFT) & 0x3F
}
fn time(word: u64) -> u64 {
    word & TIME_MAX
}

/// The public state a word is in.
fn public(word: u64) -> BreakerState {
    match state(word) {
        CLOSED => BreakerState::Closed,
        OPEN => BreakerState::Open,
        ISOLATED => BreakerState::Isolated,
        _ => BreakerState::HalfOpen,
    }
}

/// What [`Shared::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed, or admitted by the ramp: the outcome counts in the window.
    Pass,
    /// One of the half-open probes, of the episode that began at `episode` (ms).
    Probe { episode: u64 },
    /// Refused.
    Reject(Rejected),
}

/// The settings in the units the hot path uses.
#[derive(Debug)]
struct Tuning {
    failure_rate: f64,
    minimum_calls: u64,
    slow_rate: f64,
    consecutive: u32,
    break_micros: i64,
    max_break_micros: i64,
    jitter: f64,
    probes: u64,
    ramp_ms: u64,
    ramp_start: f64,
    probe_timeout_ms: u64,
    window_ms: u64,
}

/// One breaker's state, shared by its layer, its services and its handles.
#[derive(Debug)]
pub(crate) struct Shared {
    clock: Clock,
    word: AtomicU64,
    window: Window,
    consecutive: AtomicU32,
    /// Arrivals during the ramp: the k-th is admitted when ⌊k·share⌋ moves, which spreads the
    /// admitted share evenly without a random draw.
    ramp_calls: AtomicU64,
    trips: AtomicU64,
    rejected: AtomicU64,
    shadow_rejected: AtomicU64,
    tuning: Tuning,
    pub(crate) config: BreakerConfig,
    /// A call at least this slow is slow (`None`: slow calls are not counted).
    pub(crate) slow_call: Option<Duration>,
    pub(crate) telemetry: OnceLock<Telemetry>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Shared {
    /// A closed breaker with `config` (already validated).
    pub(crate) fn new(config: BreakerConfig) -> Self {
        let clock = Clock::new(Instant::now());
        let break_micros = micros(config.break_duration).max(1);
        Shared {
            clock,
            word: AtomicU64::new(pack(CLOSED, 0, 0, 0, 0, 0)),
            window: Window::new(clock, config.window),
            consecutive: AtomicU32::new(0),
            ramp_calls: AtomicU64::new(0),
            trips: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            shadow_rejected: AtomicU64::new(0),
            tuning: Tuning {
                failure_rate: config.failure_rate_threshold,
                minimum_calls: u64::from(config.minimum_calls),
                slow_rate: config.slow_call_rate_threshold,
                consecutive: config.consecutive_failures,
                break_micros,
                max_break_micros: micros(config.max_break_duration).max(break_micros),
                jitter: config.break_jitter,
                probes: u64::from(config.half_open_probes).clamp(1, 63),
                ramp_ms: ms(config.ramp),
                ramp_start: config.ramp_start_share,
                probe_timeout_ms: ms(config.probe_timeout).max(1),
                window_ms: ms(config.window),
            },
            slow_call: config.slow_call_duration,
            config,
            telemetry: OnceLock::new(),
        }
    }

    /// The state word: the one atomic load of a closed breaker's admission.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    /// `now` in whole ms from the origin, rounded down: for comparisons with a word's time.
    fn now_ms(&self, now: Instant) -> u64 {
        ms(self.clock.elapsed(now)).min(TIME_MAX)
    }

    /// `now` in ms from the origin, rounded up: where a break starts, so that it is never
    /// shorter than its length, nor its `until` earlier than the truth.
    fn start_ms(&self, now: Instant) -> u64 {
        let elapsed = self.clock.elapsed(now);
        let whole = ms(elapsed);
        let rounded = if elapsed.subsec_nanos() % 1_000_000 == 0 {
            whole
        } else {
            whole.saturating_add(1)
        };
        rounded.min(TIME_MAX)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.clock
            .instant(i64::try_from(ms.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    fn swap(&self, from: u64, to: u64) -> Result<(), u64> {
        self.word
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
    }

    /// The length of the break at ladder step `step`, in ms (at least 1).
    fn break_ms(&self, step: u64) -> u64 {
        let t = &self.tuning;
        let step = u32::try_from(step).unwrap_or(u32::MAX);
        let micros = ejection_micros(t.break_micros, t.max_break_micros, t.jitter, step);
        (u64::try_from(micros).unwrap_or(0) / 1000).max(1)
    }

    /// Decides whether a request arriving at `now` may go, from any state.
    pub(crate) fn admit(&self, now: Instant) -> Admit {
        let now_ms = self.now_ms(now);
        let start_ms = self.start_ms(now);
        let t = &self.tuning;
        let mut word = self.load();
        loop {
            let (next, admit) = match state(word) {
                CLOSED => return Admit::Pass,
                ISOLATED => return Admit::Reject(self.rejected_by(word, false, None)),
                OPEN if now_ms < time(word) => {
                    let until = Some(self.instant(time(word)));
                    return Admit::Reject(self.rejected_by(word, false, until));
                }
                OPEN => {
                    let next = pack(PROBING, reason(word), step(word), 1, 0, now_ms);
                    (next, Admit::Probe { episode: now_ms })
                }
                PROBING if now_ms >= time(word).saturating_add(t.probe_timeout_ms) => {
                    // The probes were lost (hung, or their futures leaked): reopen.
                    let reopened = self.reopen(word, TripReason::ProbeTimedOut, start_ms);
                    (reopened, Admit::Pass) // not returned: the loop refuses from OPEN
                }
                PROBING if probes(word) < t.probes => {
                    let next = word + (1 << PROBES_SHIFT);
                    (
                        next,
                        Admit::Probe {
                            episode: time(word),
                        },
                    )
                }
                PROBING => return Admit::Reject(self.rejected_by(word, false, None)),
                _ => {
                    let elapsed = now_ms.saturating_sub(time(word));
                    if elapsed >= t.ramp_ms {
                        (pack(CLOSED, 0, step(word), 0, 0, now_ms), Admit::Pass)
                    } else {
                        return self.ramp_admit(word, elapsed);
                    }
                }
            };
            match self.swap(word, next) {
                Ok(()) => {
                    self.entered(word, next);
                    if state(next) == OPEN {
                        word = next;
                        continue;
                    }
                    return admit;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// The ramp's decision for an arrival `elapsed` ms into it.
    fn ramp_admit(&self, word: u64, elapsed: u64) -> Admit {
        let t = &self.tuning;
        let progress = elapsed as f64 / t.ramp_ms.max(1) as f64;
        let share = t.ramp_start + (1.0 - t.ramp_start) * progress;
        let k = self.ramp_calls.fetch_add(1, Ordering::Relaxed) as f64;
        if ((k + 1.0) * share).floor() > (k * share).floor() {
            return Admit::Pass;
        }
        let until = Some(self.instant(time(word).saturating_add(t.ramp_ms)));
        Admit::Reject(self.rejected_by(word, true, until))
    }

    fn rejected_by(&self, word: u64, ramping: bool, until: Option<Instant>) -> Rejected {
        Rejected {
            state: public(word),
            reason: TripReason::from_code(reason(word)),
            ramping,
            until,
        }
    }

    /// Counts a request refused.
    pub(crate) fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The requests refused so far.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Counts a request shadow mode would have refused (and sent).
    pub(crate) fn count_shadow_rejected(&self) {
        self.shadow_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The refusal a request arriving at `now` would certainly get, without admitting
    /// anything: open before the break ends, every probe out, or isolated. `None` when it
    /// might go (closed, ramping, or a probe due). Lets `poll_ready` refuse without waiting
    /// for the inner service, which may itself be waiting for a ready endpoint.
    pub(crate) fn refusal(&self, now: Instant) -> Option<Rejected> {
        let word = self.load();
        let now_ms = self.now_ms(now);
        let t = &self.tuning;
        match state(word) {
            ISOLATED => Some(self.rejected_by(word, false, None)),
            OPEN if now_ms < time(word) => {
                Some(self.rejected_by(word, false, Some(self.instant(time(word)))))
            }
            PROBING
                if probes(word) >= t.probes
                    && now_ms < time(word).saturating_add(t.probe_timeout_ms) =>
            {
                Some(self.rejected_by(word, false, None))
            }
            _ => None,
        }
    }

    /// The word that reopens the circuit from `word` (probing or ramping) at `now_ms`, one
    /// step further up the ladder.
    fn reopen(&self, word: u64, why: TripReason, start_ms: u64) -> u64 {
        let step = (step(word) + 1).min(STEP_MAX);
        let until = start_ms.saturating_add(self.break_ms(step));
        pack(OPEN, why.code(), step, 0, 0, until)
    }

    /// A request admitted as [`Admit::Pass`] ended at `now`. `failed`: the upstream failed
    /// it; `slow`: it took at least the slow-call duration.
    #[inline]
    pub(crate) fn record(&self, now: Instant, failed: bool, slow: bool) {
        let word = self.load();
        if !matches!(state(word), CLOSED | RAMP) {
            return; // admitted before the circuit opened: the window was cleared since
        }
        self.window.record(now, failed, slow);
        let t = &self.tuning;
        if t.consecutive > 0 {
            if failed {
                let run = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
                if run >= t.consecutive {
                    self.trip(TripReason::ConsecutiveFailures, now);
                    return;
                }
            } else if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Release);
            }
        }
        if failed || slow {
            let Counts {
                calls,
                failures,
                slow: slow_calls,
            } = self.window.read(now);
            if calls < t.minimum_calls {
                return;
            }
            let calls = calls as f64;
            if failed && failures as f64 / calls >= t.failure_rate {
                self.trip(TripReason::FailureRate, now);
            } else if slow && slow_calls as f64 / calls >= t.slow_rate {
                self.trip(TripReason::SlowCallRate, now);
            }
        }
    }

    /// Opens a closed or ramping circuit for `why`.
    fn trip(&self, why: TripReason, now: Instant) {
        let now_ms = self.now_ms(now);
        let start_ms = self.start_ms(now);
        let mut word = self.load();
        loop {
            let step = match state(word) {
                // Closed for a whole window since the last break: the ladder starts over.
                CLOSED if now_ms.saturating_sub(time(word)) >= self.tuning.window_ms => 0,
                CLOSED | RAMP => step(word),
                _ => return, // another caller tripped it first
            };
            let until = start_ms.saturating_add(self.break_ms(step));
            let next = pack(OPEN, why.code(), step, 0, 0, until);
            match self.swap(word, next) {
                Ok(()) => return self.entered(word, next),
                Err(actual) => word = actual,
            }
        }
    }

    /// A probe of `episode` ended at `now`: `failed` if the upstream failed it (or it was
    /// slow).
    pub(crate) fn probe_done(&self, episode: u64, now: Instant, failed: bool) {
        let now_ms = self.now_ms(now);
        let t = &self.tuning;
        let mut word = self.load();
        while state(word) == PROBING && time(word) == episode {
            let next = if failed && successes(word) == 0 {
                self.reopen(word, TripReason::ProbeFailed, self.start_ms(now))
            } else if failed {
                // A sibling already came back good: this one most likely raced the healing
                // (sent together, answered from before it). Its slot goes to another probe;
                // the episode still needs its full count of successes.
                word - (1 << PROBES_SHIFT)
            } else if successes(word) + 1 < t.probes {
                word + (1 << SUCCESS_SHIFT)
            } else if t.ramp_ms == 0 {
                pack(CLOSED, 0, step(word) + 1, 0, 0, now_ms)
            } else {
                self.ramp_calls.store(0, Ordering::Relaxed);
                pack(RAMP, reason(word), step(word) + 1, 0, 0, now_ms)
            };
            match self.swap(word, next) {
                Ok(()) => return self.entered(word, next),
                Err(actual) => word = actual,
            }
        }
    }

    /// Frees the slot of a probe of `episode` that ended without a verdict (cancelled, or an
    /// outcome that says nothing about the upstream).
    pub(crate) fn release_probe(&self, episode: u64) {
        let mut word = self.load();
        while state(word) == PROBING && time(word) == episode && probes(word) > 0 {
            match self.swap(word, word - (1 << PROBES_SHIFT)) {
                Ok(()) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Opens the circuit until [`reset`](Self::reset).
    pub(crate) fn isolate(&self) {
        let word = self.load();
        let next = pack(ISOLATED, TripReason::Isolated.code(), step(word), 0, 0, 0);
        let previous = self.word.swap(next, Ordering::AcqRel);
        if state(previous) != ISOLATED {
            self.entered(previous, next);
        }
    }

    /// Closes the circuit, forgets the window and restarts the ladder.
    pub(crate) fn reset(&self) {
        let next = pack(CLOSED, 0, 0, 0, 0, self.now_ms(Instant::now()));
        let previous = self.word.swap(next, Ordering::AcqRel);
        self.window.clear();
        self.consecutive.store(0, Ordering::Release);
        if state(previous) != CLOSED {
            self.entered(previous, next);
        }
    }

    /// The state at `now`: a ramp that is over reads as closed.
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        let word = self.load();
        if state(word) == RAMP && self.now_ms(now).saturating_sub(time(word)) >= self.tuning.ramp_ms
        {
            return BreakerState::Closed;
        }
        public(word)
    }

    pub(crate) fn stats(&self, now: Instant) -> BreakerStats {
        let counts = self.window.read(now);
        BreakerStats {
            state: self.state(now),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            trips: self.trips.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            shadow_rejected: self.shadow_rejected.load(Ordering::Relaxed),
        }
    }

    /// The winner of the transition from `from` to `to` resets what the new state starts
    /// from, and reports it.
    fn entered(&self, from: u64, to: u64) {
        match state(to) {
            OPEN => {
                self.trips.fetch_add(1, Ordering::Relaxed);
                self.window.clear();
                self.consecutive.store(0, Ordering::Release);
            }
            RAMP | CLOSED if state(from) == PROBING => {
                self.window.clear();
                self.consecutive.store(0, Ordering::Release);
            }
            _ => {}
        }
        let (from_state, to_state) = (public(from), public(to));
        if from_state == to_state {
            return; // probing → ramp: still half-open
        }
        let why = TripReason::from_code(reason(to));
        let break_left = (state(to) == OPEN).then(|| {
            self.instant(time(to))
                .saturating_duration_since(Instant::now())
        });
        if let Some(telemetry) = self.telemetry.get() {
            telemetry.transition(from_state, to_state, why, break_left);
            telemetry.publish(public(self.load()));
        } else {
            Telemetry::trace(None, from_state, to_state, why, break_left);
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Decoders for the unit tests.
    pub(crate) fn probes(word: u64) -> u64 {
        super::probes(word)
    }
    pub(crate) fn successes(word: u64) -> u64 {
        super::successes(word)
    }
    pub(crate) fn step(word: u64) -> u64 {
        super::step(word)
    }
}
