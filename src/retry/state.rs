//! What a request keeps so that it can be retried.

use super::decide::NextAttempt;
use super::head::Head;
use super::replay::ReplayBody;
use crate::backoff::{Backoff, BackoffState};
use crate::budget::{UnsentRetry, Withdrawal};
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
    // A retry handed down but not counted yet: counted once its attempt is answered by
    // anything but the balancer's refusal (every endpoint pushing back, nothing sent), or
    // dropped while in flight. One the caller drops while it waits to be sent again never
    // left, and is no retry sent.
    pub(super) uncounted: Option<NextAttempt>,
    // The token that went down with the uncounted retry: the balancer gives it back if it
    // drops the retry unsent.
    pub(super) token: Option<UnsentRetry>,
    // Attempts sent again after meeting a stale keep-alive connection (no retries).
    pub(super) stale_resends: u32,
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
                uncounted: None,
                token: None,
                stale_resends: 0,
            })
        })
    }

    pub(super) fn take_withdrawal(&mut self) -> Option<Withdrawal> {
        self.retrying.as_mut()?.withdrawal.take()
    }

    pub(super) fn has_uncounted(&self) -> bool {
        self.retrying
            .as_ref()
            .is_some_and(|r| r.uncounted.is_some())
    }

    /// The retry handed down and not counted yet, and whether it is known to have been
    /// dropped unsent (its token given back); the token is forgotten.
    pub(super) fn take_uncounted(&mut self) -> Option<(NextAttempt, bool)> {
        let retrying = self.retrying.as_mut()?;
        let next = retrying.uncounted.take()?;
        let unsent = retrying.token.take().is_some_and(|t| t.refunded());
        Some((next, unsent))
    }

    pub(super) fn take_next_body(&mut self) -> Option<ReplayBody<B>> {
        self.retrying.as_mut()?.next_body.take()
    }

    /// Attempts sent again after stale connections, which are no retries.
    pub(super) fn stale_resends(&self) -> u32 {
        self.retrying.as_ref().map_or(0, |r| r.stale_resends)
    }

    pub(super) fn attempt_started(&self) -> Option<Instant> {
        self.retrying.as_ref()?.attempt_started
    }
}
