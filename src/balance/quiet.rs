//! Server pushback kept per endpoint: an endpoint that asked for quiet (`Retry-After`,
//! `grpc-retry-pushback-ms`) gets no request from this balancer until the time it named.

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
    /// the server's word stands.
    pub(crate) fn hold(&self, now: u64, wait: Duration, max: Duration) {
        let wait = wait.min(max);
        if wait.is_zero() {
            return;
        }
        let until = now.saturating_add(whole_nanos(wait)).max(1);
        self.until_nanos.fetch_max(until, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn quiet_lasts_as_asked_clamped_and_never_shortened() {
        let origin = Instant::now();
        let ten_s = Duration::from_secs(10);
        let quiet = Quiet::new();
        assert!(!quiet.is_quiet(0));
        quiet.hold(0, Duration::from_millis(2000), ten_s);
        assert!(quiet.is_quiet(1999 * MS));
        assert_eq!(
            quiet.until(origin, MS),
            Some(origin + Duration::from_millis(2000))
        );
        assert!(!quiet.is_quiet(2000 * MS));
        assert_eq!(quiet.until(origin, 2000 * MS), None);
        // A shorter request later does not end the first early.
        quiet.hold(MS, Duration::from_millis(10), ten_s);
        assert!(quiet.is_quiet(1000 * MS));
        // Clamped by the maximum.
        let quiet = Quiet::new();
        quiet.hold(0, Duration::MAX, ten_s);
        assert_eq!(quiet.until(origin, 0), Some(origin + ten_s));
        // Zero means no quiet at all.
        let quiet = Quiet::new();
        quiet.hold(0, Duration::ZERO, ten_s);
        assert!(!quiet.is_quiet(0));
        // Near the end of time it saturates instead of wrapping.
        let quiet = Quiet::new();
        quiet.hold(u64::MAX - 1, Duration::MAX, Duration::MAX);
        assert!(quiet.is_quiet(u64::MAX - 1));
    }
}
