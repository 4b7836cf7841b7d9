//! What a backend saw: live counters, and a plain snapshot of them.

use http::StatusCode;
use std::iter::Sum;
use std::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters of one backend, updated as requests arrive and readable at any time.
///
/// Each counter is a relaxed atomic: reading one is cheap and never blocks the backend, but
/// two counters read one after the other may be a request apart. Use [`Counters::snapshot`]
/// to read them all together (each still read once; the set is not a transaction).
///
/// ```
/// use meshless::testing::{Backend, Behavior, Fleet};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let fleet = Fleet::builder().backend(Backend::new(Behavior::healthy())).start().await?;
///     let counters = fleet.backend(0).counters();
///     assert_eq!(counters.requests(), 0);
///     assert_eq!(counters.snapshot().responses(), 0);
///     fleet.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Debug, Default)]
pub struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    /// Responses by status class: index 0 is 2xx, 3 is 5xx. (No response is 1xx: see
    /// `Counters::response`.)
    responses: [AtomicU64; 4],
    resets: AtomicU64,
    hangs: AtomicU64,
    body_bytes: AtomicU64,
    // Capacity (`Backend::capacity`): all zero for a backend without one.
    served: AtomicU64,
    queued: AtomicU64,
    refused: AtomicU64,
    max_queue_depth: AtomicU64,
    in_service: AtomicU64,
    queue_depth: AtomicU64,
}

impl Counters {
    /// Connections accepted (HTTP/1.1 and HTTP/2 alike).
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.connections(), 0);
    /// ```
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Requests received: counted when their head arrives, whatever happens to them next.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.requests(), 0);
    /// ```
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Responses with a 2xx status.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.responses_2xx(), 0);
    /// ```
    pub fn responses_2xx(&self) -> u64 {
        self.responses[0].load(Ordering::Relaxed)
    }

    /// Responses with a 3xx status.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.responses_3xx(), 0);
    /// ```
    pub fn responses_3xx(&self) -> u64 {
        self.responses[1].load(Ordering::Relaxed)
    }

    /// Responses with a 4xx status: configured errors, and 400 for a body that did not arrive
    /// intact.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.responses_4xx(), 0);
    /// ```
    pub fn responses_4xx(&self) -> u64 {
        self.responses[2].load(Ordering::Relaxed)
    }

    /// Responses with a 5xx status.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.responses_5xx(), 0);
    /// ```
    pub fn responses_5xx(&self) -> u64 {
        self.responses[3].load(Ordering::Relaxed)
    }

    /// Requests whose connection was reset instead of answered.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.resets(), 0);
    /// ```
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// Requests left unanswered on purpose.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.hangs(), 0);
    /// ```
    pub fn hangs(&self) -> u64 {
        self.hangs.load(Ordering::Relaxed)
    }

    /// Bytes of request bodies received.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.body_bytes(), 0);
    /// ```
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }

    /// Requests a worker took up, at once or after waiting in the queue, for a backend with a
    /// [capacity](crate::testing::Backend::capacity) (0 otherwise). Counted when the work
    /// starts.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.served(), 0);
    /// ```
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Requests that found every worker busy and waited in the queue (whether a worker took
    /// them up later or the client gave up first). Counted when they join the queue.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.queued(), 0);
    /// ```
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Requests refused because every worker was busy and the queue full.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.refused(), 0);
    /// ```
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The most requests ever waiting in the queue at once.
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.max_queue_depth(), 0);
    /// ```
    pub fn max_queue_depth(&self) -> u64 {
        self.max_queue_depth.load(Ordering::Relaxed)
    }

    /// Requests a worker is busy with now (a gauge, not in [`Snapshot`]).
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.in_service(), 0);
    /// ```
    pub fn in_service(&self) -> u64 {
        self.in_service.load(Ordering::Relaxed)
    }

    /// Requests waiting in the queue now (a gauge, not in [`Snapshot`]).
    ///
    /// ```
    /// # use meshless::testing::Counters;
    /// let counters = Counters::default();
    /// assert_eq!(counters.queue_depth(), 0);
    /// ```
    pub fn queue_depth(&self) -> u64 {
        self.queue_depth.load(Ordering::Relaxed)
    }

    /// Every counter, read now.
    ///
    /// ```
    /// # use meshless::testing::{Counters, Snapshot};
    /// let counters = Counters::default();
    /// assert_eq!(counters.snapshot(), Snapshot::default());
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections: self.connections(),
            requests: self.requests(),
            responses_2xx: self.responses_2xx(),
            responses_3xx: self.responses_3xx(),
            responses_4xx: self.responses_4xx(),
            responses_5xx: self.responses_5xx(),
            resets: self.resets(),
            hangs: self.hangs(),
            body_bytes: self.body_bytes(),
            served: self.served(),
            queued: self.queued(),
            refused: self.refused(),
            max_queue_depth: self.max_queue_depth(),
        }
    }

    // The backend's side. Relaxed is enough: each counter is independent, and nothing is
    // ordered by them.

    pub(crate) fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn response(&self, status: StatusCode) {
        // A `StatusCode` is 100..=999. The backend never answers 1xx (`Behavior::errors` turns
        // one into 500, as hyper would on the wire), and the unusual 6xx to 9xx are counted as
        // 5xx, the nearest meaning, so that no response goes uncounted.
        let class = usize::from(status.as_u16() / 100).clamp(2, 5);
        self.responses[class - 2].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reset(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn hang(&self) {
        self.hangs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn body(&self, bytes: u64) {
        self.body_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Joins the queue if fewer than `limit` wait in it. The gauge is the bound itself, so
    /// that concurrent arrivals can never overfill the queue.
    pub(crate) fn join_queue(&self, limit: u64) -> bool {
        let joined = self
            .queue_depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |depth| {
                (depth < limit).then_some(depth + 1)
            });
        match joined {
            Ok(before) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
                self.max_queue_depth
                    .fetch_max(before + 1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn leave_queue(&self) {
        self.queue_depth.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn start_service(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.in_service.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end_service(&self) {
        self.in_service.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The counters of a backend (or the sum over a fleet) at one moment, as plain numbers.
///
/// Snapshots add up (`+`, [`Sum`]) and subtract ([`Snapshot::since`]), so a test can measure
/// one step of a scenario:
///
/// ```
/// use meshless::testing::{Backend, Behavior, Fleet};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let fleet = Fleet::builder().backend(Backend::new(Behavior::healthy())).start().await?;
///     let before = fleet.totals();
///     // ... send requests ...
///     let step = fleet.totals().since(&before);
///     assert_eq!(step.requests, 0);
///     fleet.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// Connections accepted.
    pub connections: u64,
    /// Requests received.
    pub requests: u64,
    /// Responses with a 2xx status.
    pub responses_2xx: u64,
    /// Responses with a 3xx status.
    pub responses_3xx: u64,
    /// Responses with a 4xx status.
    pub responses_4xx: u64,
    /// Responses with a 5xx status (and the unusual 6xx to 9xx).
    pub responses_5xx: u64,
    /// Requests whose connection was reset instead of answered.
    pub resets: u64,
    /// Requests left unanswered on purpose.
    pub hangs: u64,
    /// Bytes of request bodies received.
    pub body_bytes: u64,
    /// Requests a worker took up (a backend with a capacity only).
    pub served: u64,
    /// Requests that waited in the queue.
    pub queued: u64,
    /// Requests refused for a full queue.
    pub refused: u64,
    /// The deepest the queue has been. Not a count: the sum of snapshots keeps the largest,
    /// and [`Snapshot::since`] keeps the later snapshot's value.
    pub max_queue_depth: u64,
}

impl Snapshot {
    /// Responses of every status class.
    ///
    /// ```
    /// use meshless::testing::Snapshot;
    ///
    /// let s = Snapshot { responses_2xx: 3, responses_5xx: 1, ..Snapshot::default() };
    /// assert_eq!(s.responses(), 4);
    /// ```
    pub fn responses(&self) -> u64 {
        self.responses_2xx + self.responses_3xx + self.responses_4xx + self.responses_5xx
    }

    /// What happened between `earlier` and this snapshot, counter by counter.
    ///
    /// Counters only grow, so each difference is exact; a snapshot of another backend, taken
    /// out of order, gives zeros rather than an underflow.
    ///
    /// ```
    /// use meshless::testing::Snapshot;
    ///
    /// let before = Snapshot { requests: 10, ..Snapshot::default() };
    /// let after = Snapshot { requests: 25, ..Snapshot::default() };
    /// assert_eq!(after.since(&before).requests, 15);
    /// ```
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        self.zip(earlier, u64::saturating_sub, |later, _| later)
    }

    /// `f` on every count, `depth` on the maximum queue depth.
    fn zip(
        &self,
        other: &Snapshot,
        f: impl Fn(u64, u64) -> u64,
        depth: impl Fn(u64, u64) -> u64,
    ) -> Snapshot {
        Snapshot {
            connections: f(self.connections, other.connections),
            requests: f(self.requests, other.requests),
            responses_2xx: f(self.responses_2xx, other.responses_2xx),
            responses_3xx: f(self.responses_3xx, other.responses_3xx),
            responses_4xx: f(self.responses_4xx, other.responses_4xx),
            responses_5xx: f(self.responses_5xx, other.responses_5xx),
            resets: f(self.resets, other.resets),
            hangs: f(self.hangs, other.hangs),
            body_bytes: f(self.body_bytes, other.body_bytes),
            served: f(self.served, other.served),
            queued: f(self.queued, other.queued),
            refused: f(self.refused, other.refused),
            max_queue_depth: depth(self.max_queue_depth, other.max_queue_depth),
        }
    }
}

/// Counter by counter (saturating, so no input can overflow).
///
/// ```
/// use meshless::testing::Snapshot;
///
/// let a = Snapshot { requests: 1, ..Snapshot::default() };
/// assert_eq!((a + a).requests, 2);
/// ```
impl Add for Snapshot {
    type Output = Snapshot;

    fn add(self, other: Snapshot) -> Snapshot {
        self.zip(&other, u64::saturating_add, u64::max)
    }
}

/// The sum over many snapshots, e.g. over every backend of a fleet.
///
/// ```
/// use meshless::testing::Snapshot;
///
/// let one = Snapshot { hangs: 1, ..Snapshot::default() };
/// let total: Snapshot = [one, one, one].into_iter().sum();
/// assert_eq!(total.hangs, 3);
/// ```
impl Sum for Snapshot {
    fn sum<I: Iterator<Item = Snapshot>>(iter: I) -> Snapshot {
        iter.fold(Snapshot::default(), Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_counted_by_class() {
        let counters = Counters::default();
        for code in [200, 204, 301, 400, 429, 500, 503, 999] {
            let status = StatusCode::from_u16(code).expect("a valid status code");
            counters.response(status);
        }
        let s = counters.snapshot();
        assert_eq!(
            (
                s.responses_2xx,
                s.responses_3xx,
                s.responses_4xx,
                s.responses_5xx
            ),
            (2, 1, 2, 3)
        );
        assert_eq!(s.responses(), 8);
    }
}
