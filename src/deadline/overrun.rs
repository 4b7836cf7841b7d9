//! When a derived attempt timeout stands aside.
//!
//! The client's default attempt timeout is the deadline shared by the attempts allowed (a 1 s
//! deadline and 2 retries: 333 ms). Cutting an attempt there pays when few attempts run that
//! long: a hanging endpoint or a lost packet, where the retry on another endpoint answers in
//! time. When many do, the upstream is slow as a whole (a fleet answering in 400 ms, a
//! brownout), the retry runs as long, and every cut turns a slow answer into a failure. So the
//! client counts, over the last two seconds, the attempts that ran past the timeout — cut, or
//! let run — and lets attempts run to the deadline while more than a tenth did. Counting both
//! keeps the decision from swinging: the attempts let run still say whether they would have
//! been cut.

use crate::primitives::clock::Clock;
use crate::primitives::window::Window;
use std::time::Duration;
use tokio::time::Instant;

/// How far back the count goes: short, so that the timeout stands aside within the first
/// second of a brownout and returns within two of its end.
const WINDOW: Duration = Duration::from_secs(2);

/// Attempts the window must hold before it decides anything: a client's first few attempts
/// say too little.
const MIN_ATTEMPTS: u64 = 10;

/// The timeout stands aside while more than one attempt in this many ran past it.
const ONE_IN: u64 = 10;

/// Attempts that ran past a derived attempt timeout, over the last [`WINDOW`].
#[derive(Debug)]
pub(crate) struct Overruns {
    window: Window,
}

impl Overruns {
    /// An empty count, its clock starting at `origin`.
    pub(crate) fn new(origin: Instant) -> Self {
        Overruns {
            window: Window::new(Clock::new(origin), WINDOW),
        }
    }

    /// Whether so many recent attempts ran past the timeout that it should let attempts run.
    pub(crate) fn frequent(&self, now: Instant) -> bool {
        let counts = self.window.read(now);
        counts.calls >= MIN_ATTEMPTS && counts.slow.saturating_mul(ONE_IN) > counts.calls
    }

    /// Counts one attempt that ended (or was given up) at `now`, and whether it ran past the
    /// timeout.
    pub(crate) fn record(&self, now: Instant, overran: bool) {
        self.window.record(now, false, overran);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stands_aside_only_while_more_than_a_tenth_overran() {
        let start = Instant::now();
        let overruns = Overruns::new(start);
        // Too few attempts to decide, all of them over.
        for _ in 0..MIN_ATTEMPTS - 1 {
            overruns.record(start, true);
        }
        assert!(!overruns.frequent(start));
        overruns.record(start, true);
        assert!(overruns.frequent(start));

        // One in ten over is not more than a tenth; one more is.
        let later = start + WINDOW * 2;
        for _ in 0..18 {
            overruns.record(later, false);
        }
        overruns.record(later, true);
        overruns.record(later, true);
        assert!(!overruns.frequent(later), "2 of 20");
        overruns.record(later, true);
        assert!(overruns.frequent(later), "3 of 21");

        // The window forgets: two seconds on, nothing is left to decide with.
        assert!(!overruns.frequent(later + WINDOW + Duration::from_millis(1)));
    }
}
