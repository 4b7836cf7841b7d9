//! Consecutive-failure ejection: an endpoint that fails N times in a row.
//!
//! The cheapest signal and the fastest: it needs no interval and no peers, and fires on the
//! report that completes the run. The default run is 5 (Envoy's `consecutive_5xx`) rather than
//! linkerd's 7: two fewer failed requests before the endpoint is out, and a false ejection is
//! cheap here, since the max ejected share caps how many endpoints can go at once and a
//! one-request probation returns a healthy endpoint after about a second.
//!
//! A success anywhere in the run starts it over, so an endpoint that fails one request in two
//! is never ejected by this policy; the interval policies (success rate, failure percentage)
//! catch that one.

use std::sync::atomic::{AtomicU32, Ordering};

/// The current run of failures of one endpoint.
///
/// Relaxed atomics: a success racing a failure may leave the count off by one, which at worst
/// moves an ejection by one request.
#[derive(Debug, Default)]
pub(crate) struct Consecutive {
    run: AtomicU32,
}

impl Consecutive {
    /// Counts a failure; true when the run has reached `threshold`.
    pub(crate) fn failure(&self, threshold: u32) -> bool {
        // Wrapping after four billion failures in a row (possible only while the max ejected
        // share holds the endpoint in) just starts the run over.
        self.run.fetch_add(1, Ordering::Relaxed).wrapping_add(1) >= threshold
    }

    /// Ends the run. Reads first, so the common case (no run) never writes the cache line.
    pub(crate) fn success(&self) {
        if self.run.load(Ordering::Relaxed) != 0 {
            self.run.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn reset(&self) {
        self.run.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_reaches_the_threshold_on_exactly_the_nth_failure() {
        let c = Consecutive::default();
        for _ in 0..4 {
            assert!(!c.failure(5));
        }
        assert!(c.failure(5));
        assert!(c.failure(5), "a run past the threshold still says so");
    }

    #[test]
    fn a_success_starts_the_run_over() {
        let c = Consecutive::default();
        for _ in 0..4 {
            assert!(!c.failure(5));
        }
        c.success();
        for _ in 0..4 {
            assert!(!c.failure(5));
        }
        c.reset();
        assert!(!c.failure(5));
    }
}
