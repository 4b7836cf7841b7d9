//! Server pushback kept per endpoint: an endpoint that asked for quiet (`Retry-After`,
//! `grpc-retry-pushback-ms`) gets no request from this balancer until the time it named.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The instant until which an endpoint asked to be left alone, as nanoseconds after the
/// endpoint's own origin; 0 when it never asked. One relaxed load answers "quiet now?", so the
/// check costs nothing on the request path of an endpoint that never pushes back.
#[derive(Debug)]
pub(crate) struct Quiet {
    origin: Instant,
    until_nanos: AtomicU64,
}

impl Quiet {
    pub(crate) fn new(origin: Instant) -> Self {
        Quiet {
            origin,
            until_nanos: AtomicU64::new(0),
        }
    }

    /// Keeps the endpoint quiet for `wait` from `now`, clamped to `max`. A later request for a
    /// shorter quiet does not cut an earlier, longer one short: the server's word stands.
    pub(crate) fn hold(&self, now: Instant, wait: Duration, max: Duration) {
        let wait = wait.min(max);
        if wait.is_zero() {
            return;
        }
        let until = self.nanos(now).saturating_add(nanos(wait)).max(1);
        self.until_nanos.fetch_max(until, Ordering::Relaxed);
    }

    /// When the endpoint's quiet ends, if it is quiet at `now`.
    pub(crate) fn until(&self, now: Instant) -> Option<Instant> {
        let until = self.until_nanos.load(Ordering::Relaxed);
        if until == 0 || until <= self.nanos(now) {
            return None;
        }
        self.origin.checked_add(Duration::from_nanos(until))
    }

    /// Whether the endpoint asked for quiet that has not ended at `now`.
    #[inline]
    pub(crate) fn is_quiet(&self, now: Instant) -> bool {
        let until = self.until_nanos.load(Ordering::Relaxed);
        until != 0 && until > self.nanos(now)
    }

    fn nanos(&self, t: Instant) -> u64 {
        nanos(t.saturating_duration_since(self.origin))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn quiet_lasts_as_asked_clamped_and_never_shortened() {
        let t0 = Instant::now();
        let quiet = Quiet::new(t0);
        assert!(!quiet.is_quiet(t0));
        quiet.hold(t0, 2000 * MS, Duration::from_secs(10));
        assert!(quiet.is_quiet(t0 + 1999 * MS));
        assert_eq!(quiet.until(t0 + MS), Some(t0 + 2000 * MS));
        assert!(!quiet.is_quiet(t0 + 2000 * MS));
        assert_eq!(quiet.until(t0 + 2000 * MS), None);
        // A shorter request later does not end the first early.
        quiet.hold(t0 + MS, 10 * MS, Duration::from_secs(10));
        assert!(quiet.is_quiet(t0 + 1000 * MS));
        // Clamped by the maximum.
        let quiet = Quiet::new(t0);
        quiet.hold(t0, Duration::MAX, Duration::from_secs(10));
        assert_eq!(quiet.until(t0), Some(t0 + Duration::from_secs(10)));
        // Zero means no quiet at all.
        let quiet = Quiet::new(t0);
        quiet.hold(t0, Duration::ZERO, Duration::from_secs(10));
        assert!(!quiet.is_quiet(t0));
    }
}
