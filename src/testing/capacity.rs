//! A backend's finite capacity: a few workers, a bounded FIFO queue in front of them, and what
//! happens to a request that finds the queue full.

use super::counters::Counters;
use http::StatusCode;
use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};

/// What a backend at capacity does with a request that finds its queue full.
///
/// ```
/// use http::StatusCode;
/// use meshless::testing::{Backend, Behavior, Refusal};
///
/// // The default: answer 503 at once.
/// let polite = Backend::new(Behavior::healthy()).capacity(4, 16);
/// // Shed with 429 instead, or drop the connection as an overflowing accept queue would.
/// let throttling = Backend::new(Behavior::healthy())
///     .capacity(4, 16)
///     .refusal(Refusal::Status(StatusCode::TOO_MANY_REQUESTS));
/// let brutal = Backend::new(Behavior::healthy()).capacity(4, 16).refusal(Refusal::Reset);
/// # let _ = (polite, throttling, brutal);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Answer at once with this status and an empty body, without waiting for the behavior's
    /// latency (a 1xx status is answered as `500`, as with [`Behavior::errors`]).
    ///
    /// [`Behavior::errors`]: super::Behavior::errors
    Status(StatusCode),
    /// Reset the request's connection (TCP RST), failing every other request in flight on it,
    /// as [`Behavior::resets`] does.
    ///
    /// [`Behavior::resets`]: super::Behavior::resets
    Reset,
}

/// `Refusal::Status(503)`.
///
/// ```
/// use http::StatusCode;
/// use meshless::testing::Refusal;
///
/// assert_eq!(Refusal::default(), Refusal::Status(StatusCode::SERVICE_UNAVAILABLE));
/// ```
impl Default for Refusal {
    fn default() -> Refusal {
        Refusal::Status(StatusCode::SERVICE_UNAVAILABLE)
    }
}

impl Refusal {
    pub(crate) fn normalized(self) -> Refusal {
        match self {
            Refusal::Status(status) if status.is_informational() => {
                Refusal::Status(StatusCode::INTERNAL_SERVER_ERROR)
            }
            other => other,
        }
    }
}

/// The capacity a `Backend` was given: plain numbers, copied into its `Gate` when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capacity {
    pub(crate) workers: usize,
    pub(crate) queue: usize,
    pub(crate) refusal: Refusal,
}

/// The workers and the queue of one running backend, shared by all its connections.
#[derive(Debug)]
pub(crate) struct Gate {
    /// One permit per worker. Tokio's semaphore is fair: a released permit goes to the
    /// longest-waiting request, and `try_acquire` cannot take one while anyone waits, so the
    /// queue is first in, first out.
    workers: Semaphore,
    queue: u64,
    refusal: Refusal,
}

impl Gate {
    pub(crate) fn new(capacity: Capacity) -> Gate {
        Gate {
            workers: Semaphore::new(capacity.workers.clamp(1, Semaphore::MAX_PERMITS)),
            queue: u64::try_from(capacity.queue).unwrap_or(u64::MAX),
            refusal: capacity.refusal.normalized(),
        }
    }

    /// Waits for a worker, in turn; or refuses at once if the queue is full.
    ///
    /// Dropping the future (the client went away) leaves the queue; dropping the `Worker`
    /// frees the worker for the next in line.
    pub(crate) async fn admit<'a>(&'a self, counters: &'a Counters) -> Result<Worker<'a>, Refusal> {
        match self.workers.try_acquire() {
            Ok(permit) => return Ok(Worker::new(permit, counters)),
            // The semaphore is never closed; were it, refusing is the only sound answer.
            Err(TryAcquireError::Closed) => return Err(self.refusal),
            Err(TryAcquireError::NoPermits) => {}
        }
        if !counters.join_queue(self.queue) {
            counters.refuse();
            return Err(self.refusal);
        }
        let in_line = InLine(counters);
        let permit = self.workers.acquire().await.map_err(|_| self.refusal)?;
        drop(in_line);
        Ok(Worker::new(permit, counters))
    }
}

/// A request's place in the queue: left when dropped, whether a worker took the request up
/// or the client gave up on it.
struct InLine<'a>(&'a Counters);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.leave_queue();
    }
}

/// A worker busy with one request, until dropped.
pub(crate) struct Worker<'a> {
    _permit: SemaphorePermit<'a>,
    counters: &'a Counters,
}

impl<'a> Worker<'a> {
    fn new(permit: SemaphorePermit<'a>, counters: &'a Counters) -> Worker<'a> {
        counters.start_service();
        Worker {
            _permit: permit,
            counters,
        }
    }
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        self.counters.end_service();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(workers: usize, queue: usize) -> Gate {
        Gate::new(Capacity {
            workers,
            queue,
            refusal: Refusal::default(),
        })
    }

    #[tokio::test]
    async fn workers_then_queue_then_refusal_in_fifo_order() {
        let counters = Counters::default();
        let gate = gate(1, 2);
        let first = gate.admit(&counters).await.expect("a free worker");
        let mut second = Box::pin(gate.admit(&counters));
        let mut third = Box::pin(gate.admit(&counters));
        // Polled once each: both join the queue, in this order.
        assert!(futures_poll(&mut second).is_none());
        assert!(futures_poll(&mut third).is_none());
        assert_eq!(counters.queue_depth(), 2);
        assert_eq!(
            gate.admit(&counters).await.err(),
            Some(Refusal::Status(StatusCode::SERVICE_UNAVAILABLE))
        );
        drop(first);
        // The worker went to the first in line, not to the last.
        assert!(futures_poll(&mut third).is_none());
        let second = futures_poll(&mut second).expect("second in line").ok();
        assert!(second.is_some());
        let s = counters.snapshot();
        assert_eq!(
            (s.served, s.queued, s.refused, s.max_queue_depth),
            (2, 2, 1, 2)
        );
        assert_eq!((counters.in_service(), counters.queue_depth()), (1, 1));
        // Giving up leaves the queue.
        drop(third);
        assert_eq!(counters.queue_depth(), 0);
        drop(second);
        assert_eq!(counters.in_service(), 0);
    }

    #[test]
    fn zero_workers_means_one_and_informational_refusals_500() {
        let g = Gate::new(Capacity {
            workers: 0,
            queue: 0,
            refusal: Refusal::Status(StatusCode::CONTINUE),
        });
        assert_eq!(g.workers.available_permits(), 1);
        assert_eq!(
            g.refusal,
            Refusal::Status(StatusCode::INTERNAL_SERVER_ERROR)
        );
    }

    /// Polls a future once, with a waker that does nothing.
    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(f).poll(&mut cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }
}
