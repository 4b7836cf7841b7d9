//! When a derived attempt timeout stands aside.
//!
//! The client's default attempt timeout is the deadline shared by the attempts allowed (a 1 s
//! deadline and 2 retries: 333 ms). Cutting an attempt there pays when few attempts run that
//! long: a hanging endpoint or a lost packet, where the retry on another endpoint answers in
//! time. When many do, the upstream is slow as a whole (a fleet answering in 400 ms, a
//! brownout), the retry runs as long, and every cut turns a slow answer into a failure. So the
//! client counts, over the last two seconds, the attempts that ran past the timeout — cut, or
//! let run — and lets attempts run to the deadline while more than a quarter did. Counting
//! both keeps the decision from swinging: the attempts let run still say whether they would
//! have been cut. A quarter, beyond the retry budget's fifth: up to there the cut attempts'
//! retries are mostly paid for, and a fleet where one request in five hangs (a gray failure:
//! the rest answer fast) is served by cutting and retrying, as a brownout is not (standing
//! aside there at a tenth left a fifth of the requests to hang to the deadline).

use crate::primitives::clock::Clock;
use crate::primitives::window::Window;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How far back the count goes: short, so that the timeout stands aside within the first
/// second of a brownout and returns within two of its end.
const WINDOW: Duration = Duration::from_secs(2);

/// The span of the second, short count, read when a timeout is about to cut an attempt: the
/// long window still holds the fast answers from before a brownout, and would let it cut
/// a hundred attempts in flight before it stood aside.
const RECENT: Duration = Duration::from_millis(500);

/// Attempts the window must hold before it decides anything: a client's first few attempts
/// say too little.
const MIN_ATTEMPTS: u64 = 10;

/// The timeout stands aside while more than one attempt in this many ran past it.
const ONE_IN: u64 = 4;

/// Over the last [`RECENT`] alone, the timeout spares an attempt while more than one in this
/// many ran past it: a sudden brownout slows most attempts, and the short count, a few dozen
/// attempts, would cross a quarter by chance alone where a fifth hang (a gray failure).
const RECENT_ONE_IN: u64 = 2;

/// Attempts that ran past a derived attempt timeout, over the last [`WINDOW`].
#[derive(Debug)]
pub(crate) struct Overruns {
    window: Window,
    // The same count over the last [`RECENT`] only.
    recent: Window,
    clock: Clock,
    // When an attempt last ran past the timeout, in nanoseconds since the origin plus one; 0
    // if none ever did. Every attempt asks `frequent`, and summing the window's buckets costs
    // more than the rest of the attempt layer: while no overrun is recent enough to be in the
    // window, the answer is known without it.
    last_overrun: AtomicU64,
}

impl Overruns {
    /// An empty count, its clock starting at `origin`.
    pub(crate) fn new(origin: Instant) -> Self {
        Overruns {
            window: Window::new(Clock::new(origin), WINDOW),
            recent: Window::new(Clock::new(origin), RECENT),
            clock: Clock::new(origin),
            last_overrun: AtomicU64::new(0),
        }
    }

    /// Whether so many recent attempts ran past the timeout that it should let attempts run.
    pub(crate) fn frequent(&self, now: Instant) -> bool {
        let last = self.last_overrun.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        // Two lengths of the window: well past the oldest bucket a read still counts.
        let quiet_since = last.saturating_add(2 * crate::primitives::clock::whole_nanos(WINDOW));
        if self.clock.nanos(now) > quiet_since {
            return false;
        }
        let counts = self.window.read(now);
        counts.calls >= MIN_ATTEMPTS && counts.slow.saturating_mul(ONE_IN) > counts.calls
    }

    /// As [`frequent`](Self::frequent), or so over the last [`RECENT`] alone: asked when the
    /// timeout would cut an attempt, whose upstream may have slowed since it began.
    pub(crate) fn frequent_lately(&self, now: Instant) -> bool {
        if self.frequent(now) {
            return true;
        }
        if self.last_overrun.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let counts = self.recent.read(now);
        counts.calls >= MIN_ATTEMPTS && counts.slow.saturating_mul(RECENT_ONE_IN) > counts.calls
    }

    /// Counts one attempt that ended (or was given up) at `now`, and whether it ran past the
    /// timeout.
    pub(crate) fn record(&self, now: Instant, overran: bool) {
        self.window.record(now, false, overran);
        self.recent.record(now, false, overran);
        if overran {
            // After the window has it: a reader that sees this time finds the count too.
            let at = self.clock.nanos(now).saturating_add(1);
            self.last_overrun.fetch_max(at, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stands_aside_only_while_more_than_a_quarter_overran() {
        let start = Instant::now();
        let overruns = Overruns::new(start);
        // Too few attempts to decide, all of them over.
        for _ in 0..MIN_ATTEMPTS - 1 {
            overruns.record(start, true);
        }
        assert!(!overruns.frequent(start));
        overruns.record(start, true);
        assert!(overruns.frequent(start));

        // One in four over is not more than a quarter; one more is.
        let later = start + WINDOW * 2;
        for _ in 0..15 {
            overruns.record(later, false);
        }
        for _ in 0..5 {
            overruns.record(later, true);
        }
        assert!(!overruns.frequent(later), "5 of 20");
        overruns.record(later, true);
        assert!(overruns.frequent(later), "6 of 21");

        // The window forgets: two seconds on, nothing is left to decide with.
        assert!(!overruns.frequent(later + WINDOW + Duration::from_millis(1)));
    }

    /// The answer the window alone gives: what the shortcut must never contradict.
    fn by_window(overruns: &Overruns, now: Instant) -> bool {
        let counts = overruns.window.read(now);
        counts.calls >= MIN_ATTEMPTS && counts.slow.saturating_mul(ONE_IN) > counts.calls
    }

    #[test]
    fn the_shortcut_answers_as_the_window_does() {
        let start = Instant::now();
        let overruns = Overruns::new(start);
        let mut now = start;
        // A fixed pseudo-random walk: bursts of overruns, long quiet stretches, idle gaps
        // longer than the window.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut seen = [0u32; 2];
        for step in 0..20_000 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let roll = seed >> 33;
            let gap = match roll % 100 {
                0 => Duration::from_secs(3),
                1..=4 => Duration::from_millis(300),
                _ => Duration::from_micros(roll % 5_000),
            };
            now += gap;
            let phase = (step / 2_000) % 3;
            let overran = match phase {
                0 => false,
                1 => roll % 4 == 0,
                _ => roll % 40 == 0,
            };
            overruns.record(now, overran);
            let frequent = overruns.frequent(now);
            assert_eq!(frequent, by_window(&overruns, now), "step {step}");
            seen[usize::from(frequent)] += 1;
        }
        // Both answers came up often: the walk tried the shortcut both ways.
        assert!(seen[0] > 1_000 && seen[1] > 1_000, "{seen:?}");
    }
}
