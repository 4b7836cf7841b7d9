//! Server pushback kept per endpoint: an endpoint that asked for quiet (`Retry-After`,
//! `grpc-retry-pushback-ms`) gets no request from this balancer until the time it named, but
//! for one probe a second once the first second of a longer quiet has passed: a server that
//! answers it is back. A `Retry-After` is often a fixed figure (`120` on every 503), not the
//! server's knowledge of when it recovers: one such answer from each endpoint would otherwise
//! stop all traffic for its whole length, though the servers were overloaded for a moment.

use crate::primitives::clock::{Clock, whole_nanos};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The instant until which an endpoint asked to be left alone, as nanoseconds after the
/// balancer's origin; 0 when it never asked. One relaxed load answers "quiet now?", so the
/// check costs nothing on the request path of an endpoint that never pushes back; the origin
/// is the caller's (the endpoint's `Meter` holds it), so that a pick converts `now` once for
/// every endpoint it looks at.
#[derive(Debug)]
pub(crate) struct Quiet {
    until_nanos: AtomicU64,
}

impl Quiet {
    pub(crate) fn new() -> Self {
        Quiet {
            until_nanos: AtomicU64::new(0),
        }
    }

    /// Keeps the endpoint quiet for `wait` from `now` (nanoseconds since the origin), clamped
    /// to `max`. A later request for a shorter quiet does not cut an earlier, longer one short:
    /// the server's word stands. A quiet that begins here starts `probes` over.
    pub(crate) fn hold(&self, now: u64, wait: Duration, max: Duration, probes: &QuietProbes) {
        let wait = wait.min(max);
        if wait.is_zero() {
            return;
        }
        let until = now.saturating_add(whole_nanos(wait)).max(1);
        let before = self.until_nanos.fetch_max(until, Ordering::Relaxed);
        if before <= now {
            probes.begin(now);
        }
    }

    /// Ends the quiet: a probe was answered.
    pub(crate) fn release(&self) {
        self.until_nanos.store(0, Ordering::Relaxed);
    }

    /// When the endpoint's quiet ends, if it is quiet at `now`: as an instant, from `origin`.
    pub(crate) fn until(&self, origin: Instant, now: u64) -> Option<Instant> {
        let until = self.until_nanos.load(Ordering::Relaxed);
        if until == 0 || until <= now {
            return None;
        }
        Clock::new(origin).after_nanos(until)
    }

    /// Whether the endpoint asked for quiet that has not ended at `now`.
    #[inline]
    pub(crate) fn is_quiet(&self, now: u64) -> bool {
        let until = self.until_nanos.load(Ordering::Relaxed);
        until != 0 && until > now
    }
}

/// The wait before a quiet endpoint gets a probe, and between two probes.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The probes of a quiet endpoint, apart from [`Quiet`] (which a pick reads on every request)
/// since only a quiet endpoint reads them: when its quiet began and when the next probe may
/// go, in nanoseconds since the origin.
#[derive(Debug, Default)]
pub(crate) struct QuietProbes {
    since: AtomicU64,
    next: AtomicU64,
}

impl QuietProbes {
    fn begin(&self, now: u64) {
        self.since.store(now, Ordering::Relaxed);
        self.next.store(
            now.saturating_add(whole_nanos(PROBE_EVERY)),
            Ordering::Relaxed,
        );
    }

    /// Whether a probe may go at `now`.
    pub(crate) fn due(&self, now: u64) -> bool {
        self.next.load(Ordering::Relaxed) <= now
    }

    /// Takes the probe due at `now` for one request; `false` when none is due or another
    /// request took it.
    pub(crate) fn claim(&self, now: u64) -> bool {
        let next = self.next.load(Ordering::Relaxed);
        next <= now
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(whole_nanos(PROBE_EVERY)),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// When the next probe may go, if after `now`: as an instant, from `origin`.
    pub(crate) fn next_after(&self, origin: Instant, now: u64) -> Option<Instant> {
        let next = self.next.load(Ordering::Relaxed);
        (next > now)
            .then(|| Clock::new(origin).after_nanos(next))
            .flatten()
    }

    /// Whether a request sent at `started` went during the quiet, as its probe.
    pub(crate) fn probed_by(&self, started: u64) -> bool {
        started >= self.since.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_long_quiet_takes_one_probe_a_second_after_its_first() {
        let origin = Instant::now();
        let (quiet, probes) = (Quiet::new(), QuietProbes::default());
        quiet.hold(
            0,
            Duration::from_secs(120),
            Duration::from_secs(300),
            &probes,
        );
        // The first second is the server's.
        assert!(!probes.due(999 * MS));
        assert_eq!(
            probes.next_after(origin, 999 * MS),
            Some(origin + PROBE_EVERY)
        );
        // Then one request a second, however many ask.
        assert!(probes.claim(1000 * MS));
        assert!(!probes.claim(1000 * MS));
        assert!(!probes.claim(1999 * MS));
        assert!(probes.claim(2000 * MS));
        // A request sent during the quiet was a probe; one sent before was not.
        assert!(probes.probed_by(1000 * MS));
        // A renewed pushback does not start the probes over; the quiet that follows a
        // release does.
        quiet.hold(
            2000 * MS,
            Duration::from_secs(120),
            Duration::from_secs(300),
            &probes,
        );
        assert!(
            probes.probed_by(1000 * MS),
            "a renewal keeps when the quiet began"
        );
        assert!(probes.due(3000 * MS));
        quiet.release();
        assert!(!quiet.is_quiet(2001 * MS));
        quiet.hold(
            5000 * MS,
            Duration::from_secs(120),
            Duration::from_secs(300),
            &probes,
        );
        assert!(!probes.probed_by(4000 * MS));
        assert!(!probes.due(5999 * MS));
        assert!(probes.due(6000 * MS));
    }

    #[test]
    fn quiet_lasts_as_asked_clamped_and_never_shortened() {
        let origin = Instant::now();
        let ten_s = Duration::from_secs(10);
        let (quiet, probes) = (Quiet::new(), QuietProbes::default());
        assert!(!quiet.is_quiet(0));
        quiet.hold(0, Duration::from_millis(2000), ten_s, &probes);
        assert!(quiet.is_quiet(1999 * MS));
        assert_eq!(
            quiet.until(origin, MS),
            Some(origin + Duration::from_millis(2000))
        );
        assert!(!quiet.is_quiet(2000 * MS));
        assert_eq!(quiet.until(origin, 2000 * MS), None);
        // A shorter request later does not end the first early.
        quiet.hold(MS, Duration::from_millis(10), ten_s, &probes);
        assert!(quiet.is_quiet(1000 * MS));
        // Clamped by the maximum.
        let (quiet, probes) = (Quiet::new(), QuietProbes::default());
        quiet.hold(0, Duration::MAX, ten_s, &probes);
        assert_eq!(quiet.until(origin, 0), Some(origin + ten_s));
        // Zero means no quiet at all.
        let (quiet, probes) = (Quiet::new(), QuietProbes::default());
        quiet.hold(0, Duration::ZERO, ten_s, &probes);
        assert!(!quiet.is_quiet(0));
        // Near the end of time it saturates instead of wrapping.
        let (quiet, probes) = (Quiet::new(), QuietProbes::default());
        quiet.hold(u64::MAX - 1, Duration::MAX, Duration::MAX, &probes);
        assert!(quiet.is_quiet(u64::MAX - 1));
    }
}
