//! What a request keeps so that it can be retried.

use super::head::Head;
use super::replay::ReplayBody;
use crate::backoff::{Backoff, BackoffState};
use crate::budget::Withdrawal;
use tokio::time::Instant;

/// The head and replayable body to build the next attempt from. Kept in the future itself:
/// every request that may be retried needs them, and an allocation costs more than moving them.
pub(super) struct RetryState<B> {
    pub(super) head: Head,
    // `None` when the body cannot be replayed (known from the start to exceed the cap).
    pub(super) replay: Option<ReplayBody<B>>,
    // What only a retry needs, allocated by the first retry decided: most requests never get
    // there, and the future they move around stays smaller.
    retrying: Option<Box<Retrying<B>>>,
}

/// The state of a request that is being retried.
pub(super) struct Retrying<B> {
    pub(super) backoff: BackoffState,
    // The body of the next attempt, taken from the replay buffer when the retry was decided.
    pub(super) next_body: Option<ReplayBody<B>>,
    // The budget token of a retry decided but not sent yet, refunded if it never is.
    pub(super) withdrawal: Option<Withdrawal>,
    // When the attempt in flight started, once it is not the first.
    pub(super) attempt_started: Option<Instant>,
}

impl<B> RetryState<B> {
    #[inline]
    pub(super) fn new(head: Head, replay: Option<ReplayBody<B>>) -> Self {
        RetryState {
            head,
            replay,
            retrying: None,
        }
    }

    /// The retry state, created with `backoff` on the first retry.
    pub(super) fn retrying(&mut self, backoff: &Backoff) -> &mut Retrying<B> {
        self.retrying.get_or_insert_with(|| {
            Box::new(Retrying {
                backoff: backoff.start(),
                next_body: None,
                withdrawal: None,
                attempt_started: None,
            })
        })
    }

    pub(super) fn take_withdrawal(&mut self) -> Option<Withdrawal> {
        self.retrying.as_mut()?.withdrawal.take()
    }

    pub(super) fn take_next_body(&mut self) -> Option<ReplayBody<B>> {
        self.retrying.as_mut()?.next_body.take()
    }

    pub(super) fn attempt_started(&self) -> Option<Instant> {
        self.retrying.as_ref()?.attempt_started
    }
}
