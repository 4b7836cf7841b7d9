//! What to do after an attempt failed: return its outcome, retry it after a backoff or a
//! server's pushback, or send again an attempt that never left.

use super::layer::Config;
use super::policy::RetryStats;
use super::replay::ReplayBody;
use super::state::RetryState;
use super::trace::{self};
use crate::classify::{Class, Classify, Idempotence, Pushback, Reason, Retryable};
use crate::error::{BoxError, Error, Kind, QuietUntil};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Why the next attempt is sent and how long it waited, for its metrics and span.
#[derive(Debug, Clone, Copy)]
pub(super) struct NextAttempt {
    pub(super) reason: &'static str,
    pub(super) waited: Duration,
    /// The attempt before was never sent (every endpoint was pushing back): this one is the
    /// same attempt again, not a retry. It costs no token and counts as no retry.
    pub(super) again: bool,
    /// A new attempt that is no retry (after a stale connection): numbered, costs no token.
    pub(super) resend: bool,
}

/// What to do after an attempt: return its outcome, or retry after a wait.
pub(super) enum Decision<T> {
    Return(Result<T, Error>),
    Retry(Duration),
    /// Send the attempt that never left again after this wait.
    Again(Duration),
    /// Send a new attempt at once, which is no retry: the last met a stale connection.
    Resend,
}

#[allow(clippy::too_many_arguments)] // the future's fields, borrowed separately through the pin projection
pub(super) fn decide<B, C: Classify, RB>(
    outcome: Result<http::Response<RB>, Error>,
    class: &Class,
    config: &Config<C>,
    retry: &mut Option<RetryState<B>>,
    attempts: u32,
    idempotent: Option<Idempotence>,
    deadline: Option<Instant>,
    now: Instant,
    caller_retries: bool,
) -> Decision<http::Response<RB>>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    if let Some(decision) = again(&outcome, config, retry, deadline, now) {
        // The attempt the balancer refused was counted when it was handed down, and never
        // left: the error counts only the attempts sent.
        let sent = attempts.saturating_sub(1);
        return match decision {
            Ok(decision) => decision,
            Err(None) => Decision::Return(outcome.map_err(|e| e.with_attempts(sent))),
            Err(Some(kind)) => Decision::Return(
                outcome.map_err(|e| Error::with_source(kind, e.into_cause()).with_attempts(sent)),
            ),
        };
    }
    // Once the deadline has passed there is nothing left to decide.
    let out_of_time = matches!(&outcome, Err(e) if e.kind() == Kind::DeadlineExceeded);
    let idempotent = match (idempotent, retry.as_ref()) {
        (Some(idempotent), _) => idempotent,
        (None, Some(state)) => state.head.idempotence(&config.idempotency),
        // Unreachable: without retries, idempotence is known from the start.
        (None, None) => Idempotence::Unmarked,
    };
    if out_of_time || !class.retryable().allows(idempotent) {
        return Decision::Return(outcome.map_err(|e| e.with_attempts(attempts)));
    }
    let stats = &config.stats;
    // One retry layer per call chain: the caller retries this request, so a failure goes back
    // to it unchanged, but for an attempt that never left, which costs the upstream nothing.
    if caller_retries && class.retryable() != Retryable::NeverSent {
        RetryStats::add(&stats.caller_retries);
        if let Some(metrics) = &config.metrics {
            metrics.refused_caller_retries();
        }
        tracing::debug!(attempts, reason = %class.reason(), "not retrying: the caller retries");
        return Decision::Return(outcome.map_err(|e| e.with_attempts(attempts)));
    }
    // After the check above: a caller that retries gets even this failure back (one retry
    // layer per call chain), as the server read the request.
    if class.reason() == Reason::StaleConnection {
        if let Some(decision) = resend_stale(retry, config) {
            return decision;
        }
    }
    let refuse = |outcome: Result<http::Response<RB>, Error>, kind: Kind, counter: &AtomicU64| {
        RetryStats::add(counter);
        if let Some(metrics) = &config.metrics {
            metrics.refused(kind);
        }
        if kind == Kind::BudgetExhausted {
            trace::budget_exhausted(attempts, class.reason().as_str());
        } else {
            tracing::debug!(attempts, reason = %class.reason(), stop = kind.as_str(), "not retrying");
        }
        Decision::Return(
            outcome.map_err(|e| Error::with_source(kind, e.into_cause()).with_attempts(attempts)),
        )
    };

    let Some(state) = retry else {
        return refuse(outcome, Kind::RetriesExhausted, &stats.retries_exhausted);
    };
    // The route's limit is read from the head's copy, on a failure only: the future that
    // every request moves around stays the size it was.
    let max_retries = state
        .head
        .route_retries(&config.routes)
        .unwrap_or(config.max_retries);
    // Resends after stale connections are attempts, but no retries.
    if attempts - state.stale_resends() > max_retries {
        return refuse(outcome, Kind::RetriesExhausted, &stats.retries_exhausted);
    }
    let pushback = match class.pushback() {
        None => Duration::ZERO,
        // The endpoint that asked is the balancer's to keep away; another can take the retry.
        Some(Pushback::After(_)) if config.pushback_per_endpoint => Duration::ZERO,
        Some(Pushback::After(wait)) if wait <= config.max_pushback => wait,
        Some(_) => return refuse(outcome, Kind::Pushback, &stats.pushback_refused),
    };
    // Never earlier than the server asked.
    let delay = state
        .retrying(&config.backoff)
        .backoff
        .next_delay()
        .max(pushback);
    if let Some(deadline) = deadline {
        let expected = Duration::from_nanos(config.fast_attempt.load(Ordering::Relaxed));
        // Saturating: a backoff configured without a cap may exceed what an `Instant` can hold,
        // and then it certainly ends past the deadline.
        let ends = now.checked_add(delay).and_then(|t| t.checked_add(expected));
        if ends.is_none_or(|ends| ends >= deadline) {
            return refuse(outcome, Kind::DeadlineExceeded, &stats.deadline_refused);
        }
    }
    let Some(body) = state.replay.as_ref().and_then(ReplayBody::try_clone) else {
        if state.replay.as_ref().is_none_or(ReplayBody::is_capped) {
            return refuse(outcome, Kind::BodyTooLarge, &stats.body_too_large);
        }
        // The body itself failed: what the attempt returned already says why.
        return Decision::Return(outcome.map_err(|e| e.with_attempts(attempts)));
    };
    // Last, so that a token is only spent on a retry that will really be sent; if the request
    // is dropped before it is, the token goes back.
    let Some(withdrawal) = config.budget.withdraw() else {
        return refuse(outcome, Kind::BudgetExhausted, &stats.budget_exhausted);
    };
    let retrying = state.retrying(&config.backoff);
    retrying.withdrawal = Some(withdrawal);
    tracing::debug!(attempts, reason = %class.reason(), delay_ms = delay.as_millis() as u64, "retrying");
    retrying.next_body = Some(body);
    Decision::Retry(delay)
}

/// How many times one request is sent again after meeting a stale keep-alive connection,
/// beyond its retries: each time the pool has dropped one more connection the server had
/// closed, and a few such in a row are the pool's idle connections closing together.
const STALE_RESENDS: u32 = 3;

/// An idempotent attempt that met a stale keep-alive connection
/// ([`Reason::StaleConnection`]): a new attempt sent at once, on another connection, that is
/// no retry (no token, not counted against the retry limit), at most [`STALE_RESENDS`] times;
/// then, and when its body cannot be replayed, `None`: the failure is decided as any other.
fn resend_stale<B, C, T>(
    retry: &mut Option<RetryState<B>>,
    config: &Config<C>,
) -> Option<Decision<T>>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let state = retry.as_mut()?;
    let body = state.replay.as_ref().and_then(ReplayBody::try_clone)?;
    let retrying = state.retrying(&config.backoff);
    if retrying.stale_resends >= STALE_RESENDS {
        return None;
    }
    retrying.stale_resends += 1;
    retrying.next_body = Some(body);
    RetryStats::add(&config.stats.stale_resends);
    tracing::debug!("the server had closed the reused connection: sending again");
    Some(Decision::Resend)
}

/// An attempt the balancer never sent because every endpoint was pushing back past the
/// attempt's own limit: `None` when the outcome is something else; `Some(Err(None))` to return
/// it as it is (no time, or no body to send again), `Some(Err(Some(kind)))` to return it as
/// `kind`; `Some(Ok(Again))` to send the same attempt once the first endpoint is free, within
/// the request's deadline. Nothing reached a server, so the wait counts against no retry
/// limit; but a retry the balancer refused gave its token back, and sent again it pays again.
fn again<B, C, RB>(
    outcome: &Result<http::Response<RB>, Error>,
    config: &Config<C>,
    retry: &mut Option<RetryState<B>>,
    deadline: Option<Instant>,
    now: Instant,
) -> Option<Result<Decision<http::Response<RB>>, Option<Kind>>>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let Err(e) = outcome else { return None };
    if e.kind() != Kind::EndpointsPushingBack {
        return None;
    }
    let QuietUntil(free_at) = *std::error::Error::source(e)?.downcast_ref::<QuietUntil>()?;
    let wait = free_at.saturating_duration_since(now);
    let fits = match deadline {
        Some(deadline) => {
            let expected = Duration::from_nanos(config.fast_attempt.load(Ordering::Relaxed));
            free_at
                .checked_add(expected)
                .is_some_and(|end| end < deadline)
        }
        None => wait <= config.max_pushback,
    };
    // Without retries there is no state: the refusal is returned, counting the attempts sent.
    let Some(state) = retry.as_mut() else {
        return Some(Err(None));
    };
    if !fits {
        return Some(Err(None));
    }
    let Some(body) = state.replay.as_ref().and_then(ReplayBody::try_clone) else {
        return Some(Err(None));
    };
    let retrying = state.retrying(&config.backoff);
    if retrying.uncounted.is_some() && retrying.withdrawal.is_none() {
        // The refused attempt was a retry, whose token the balancer gave back.
        let Some(withdrawal) = config.budget.withdraw() else {
            RetryStats::add(&config.stats.budget_exhausted);
            if let Some(metrics) = &config.metrics {
                metrics.refused(Kind::BudgetExhausted);
            }
            return Some(Err(Some(Kind::BudgetExhausted)));
        };
        retrying.withdrawal = Some(withdrawal);
    }
    retrying.next_body = Some(body);
    tracing::debug!(
        wait_ms = wait.as_millis() as u64,
        "every endpoint is pushing back: waiting"
    );
    Some(Ok(Decision::Again(wait)))
}
