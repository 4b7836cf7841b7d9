//! What a throttle shares between its services: the counts over the window, the refusal
//! probability they give, and the random draws.

use super::telemetry::Telemetry;
use crate::classify::{Class, Code, Reason};
use crate::primitives::clock::Clock;
use crate::primitives::ledger::{Ledger, Units};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How many buckets the window is cut into: a count lives between 95% and 100% of the window.
const BUCKETS: u64 = 20;

/// The requests ledger starts with this reserve and each request withdraws one unit from it,
/// so that requests are withdrawals, which the ledger can refund exactly (a cancelled or shed
/// request is taken back); the count is the reserve minus the balance. 2⁴⁰ is far above what
/// a window can hold (2²⁸ per bucket) and far below the ledger's 2⁵⁵ limit.
const RESERVE: i64 = 1 << 40;

/// The counts of one window and what they imply.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Requests: one withdrawal each, counted at admission.
    requests: Ledger,
    /// Accepts: one deposit each, counted when the answer arrives.
    accepts: Ledger,
    k: f64,
    max_probability: f64,
    /// The state of the random draws (SplitMix64): one atomic add per draw, no lock, and the
    /// same sequence from the same seed.
    rng: AtomicU64,
    /// Requests sent and counted whose outcome is not known yet: left out of the numerator of
    /// the formula (see the module docs), so that a burst with no answer yet is not throttled.
    in_flight: AtomicU64,
    /// Requests refused since the throttle was built.
    rejected: AtomicU64,
    /// The metric handles, set by the first service built when metrics are on.
    pub(crate) telemetry: OnceLock<Telemetry>,
}

/// The counts in the window at one instant.
///
/// ```
/// let handle = meshless::throttle::ThrottleLayer::new().handle();
/// let counts = handle.counts();
/// assert_eq!((counts.requests, counts.accepts), (0, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ThrottleCounts {
    /// Requests the caller made in the window: sent, or refused by the throttle itself.
    pub requests: u64,
    /// Requests the upstream accepted in the window (answered without refusing for overload).
    pub accepts: u64,
    /// Requests sent and not answered yet (in `requests`, but neither accepted nor refused:
    /// their outcome is unknown, so the formula counts them in `requests + 1` only).
    pub in_flight: u64,
}

impl Shared {
    pub(crate) fn new(k: f64, window: Duration, max_probability: f64, seed: u64) -> Self {
        let clock = Clock::new(Instant::now());
        let bucket_nanos =
            u64::try_from(window.as_nanos() / u128::from(BUCKETS)).unwrap_or(u64::MAX);
        let requests = Units {
            deposit: 0,
            withdrawal: 1,
            reserve: RESERVE,
        };
        let accepts = Units {
            deposit: 1,
            withdrawal: 0,
            reserve: 0,
        };
        Shared {
            requests: Ledger::new(clock, bucket_nanos, BUCKETS, requests),
            accepts: Ledger::new(clock, bucket_nanos, BUCKETS, accepts),
            k,
            max_probability,
            rng: AtomicU64::new(seed),
            in_flight: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            telemetry: OnceLock::new(),
        }
    }

    /// The counts at `now`.
    pub(crate) fn counts(&self, now: Instant) -> ThrottleCounts {
        let requests = RESERVE.saturating_sub(self.requests.balance_at(now));
        let accepts = self.accepts.balance_at(now);
        ThrottleCounts {
            requests: u64::try_from(requests).unwrap_or(0),
            accepts: u64::try_from(accepts).unwrap_or(0),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    /// The refusal probability the counts give: `max(0, (requests − in_flight − k·accepts) /
    /// (requests + 1))`, capped. A request in flight is neither accepted nor refused yet.
    pub(crate) fn probability(&self, counts: ThrottleCounts) -> f64 {
        let requests = counts.requests as f64;
        // The in-flight count is not windowed: a request older than the window (which should
        // be far longer than any latency) may leave it after the ledger forgot it.
        let known = counts.requests.saturating_sub(counts.in_flight) as f64;
        let p = (known - self.k * counts.accepts as f64) / (requests + 1.0);
        p.clamp(0.0, self.max_probability)
    }

    /// Admits or refuses one request at `now`. The request is counted either way, as the SRE
    /// book counts it (a refused request is one the caller wanted to send): `Ok` carries the
    /// bucket it was counted in, for a refund if it ends up never having been sent.
    pub(crate) fn admit(&self, now: Instant) -> Result<Option<u64>, ()> {
        // Both windows move here, so an accept counted later (without reading the clock)
        // lands in a bucket no older than its request's: it never expires before it.
        let p = self.probability(self.counts(now));
        let epoch = self.requests.withdraw_at(now);
        if let Some(telemetry) = self.telemetry.get() {
            telemetry.probability(p);
        }
        if p > 0.0 && self.draw() < p {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            if let Some(telemetry) = self.telemetry.get() {
                telemetry.rejected();
            }
            return Err(());
        }
        if epoch.is_some() {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        Ok(epoch)
    }

    /// The answer to a request counted in the bucket of `epoch` arrived; `accept` says
    /// whether the upstream accepted it.
    pub(crate) fn answered(&self, epoch: Option<u64>, accept: bool) {
        // The accept first: in between, the request counts as neither, never as refused.
        if accept {
            self.accepts.deposit();
        }
        if epoch.is_some() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A request counted in the bucket of `epoch` turned out never to have been sent (shed by
    /// a layer below) or its outcome is unknown (cancelled): it is taken back.
    pub(crate) fn uncount(&self, epoch: u64) {
        self.requests.refund(epoch);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn draw_for_tests(&self) -> f64 {
        self.draw()
    }

    /// A uniform draw in `[0, 1)`.
    fn draw(&self) -> f64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .rng
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits: every value a double holds exactly in [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Whether an outcome of this class means the upstream accepted the request: anything but a
/// refusal for overload or unavailability (see the module docs for the rule). `answered` says
/// whether a response arrived (rather than an error).
pub(crate) fn accepted(class: &Class, answered: bool) -> bool {
    if class.is_success() {
        return true;
    }
    match class.reason() {
        // 504: a gateway timed out waiting for the upstream, a timeout like ours.
        Reason::Status(status) => !matches!(status, 429 | 503 | 504),
        Reason::Grpc(code) => !matches!(
            code,
            Code::ResourceExhausted | Code::Unavailable | Code::DeadlineExceeded
        ),
        // An answer arrived and its body failed later: the upstream did take the request.
        Reason::Body => true,
        // Refused or failed connections, resets, timeouts, no endpoint: nothing accepted it.
        // A response a custom classifier failed for another reason was still answered.
        _ => answered,
    }
}
