//! The retry state machine: attempt, decide, back off, attempt again.

use super::layer::Config;
use super::policy::RetryStats;
use super::replay::ReplayBody;
use crate::backoff::BackoffState;
use crate::classify::{Class, Classify, Pushback};
use crate::error::{BoxError, Error, Kind};
use http::Request;
use http::request::Parts;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::Service;

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    ///
    /// Dropping it drops the attempt or backoff in progress: no further attempt is made.
    pub struct ResponseFuture<S, B, C>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        // The head and body replay for retries; `None` when retries are off.
        retry: Option<RetryState<B>>,
        config: Arc<Config<C>>,
        attempts: u32,
        attempt_started: Option<Instant>,
        idempotent: bool,
        deadline: Option<Instant>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Attempt { #[pin] future: F },
        Backoff { sleep: Pin<Box<Sleep>> },
        Ready,
    }
}

/// The head and replayable body to build the next attempt from, and the backoff position.
pub(super) struct RetryState<B> {
    parts: Parts,
    // `None` when the body cannot be replayed (known from the start to exceed the cap).
    replay: Option<ReplayBody<B>>,
    backoff: Option<BackoffState>,
    // The body of the next attempt, taken from the replay buffer when the retry was decided.
    next_body: Option<ReplayBody<B>>,
}

impl<B> RetryState<B> {
    pub(super) fn new(parts: Parts, replay: Option<ReplayBody<B>>) -> Self {
        RetryState {
            parts,
            replay,
            backoff: None,
            next_body: None,
        }
    }
}

/// What to do after an attempt: return its outcome, or retry after a wait.
enum Decision<T> {
    Return(Result<T, Error>),
    Retry(Duration),
}

impl<S, B, C, RB> ResponseFuture<S, B, C>
where
    S: Service<Request<ReplayBody<B>>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    C: Classify,
{
    pub(super) fn start(
        mut service: S,
        first: Request<ReplayBody<B>>,
        retry: Option<RetryState<B>>,
        config: Arc<Config<C>>,
        idempotent: bool,
        deadline: Option<Instant>,
    ) -> Self {
        // The start time feeds the attempt-time estimate, which matters only under a deadline.
        let attempt_started = deadline.map(|_| Instant::now());
        ResponseFuture {
            state: State::Attempt {
                future: service.call(first),
            },
            service,
            retry,
            config,
            attempts: 1,
            attempt_started,
            idempotent,
            deadline,
        }
    }
}

impl<S, B, C, RB> Future for ResponseFuture<S, B, C>
where
    S: Service<Request<ReplayBody<B>>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
    C: Classify,
{
    type Output = Result<http::Response<RB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Attempt { future } => {
                    let outcome = ready!(future.poll(cx)).map_err(Error::from_service);
                    let decision = decide(
                        outcome,
                        this.config,
                        this.retry,
                        *this.attempts,
                        *this.attempt_started,
                        *this.idempotent,
                        *this.deadline,
                    );
                    match decision {
                        Decision::Return(outcome) => return Poll::Ready(outcome),
                        Decision::Retry(delay) => {
                            this.state.set(State::Backoff {
                                sleep: Box::pin(tokio::time::sleep(delay)),
                            });
                        }
                    }
                }
                StateProj::Backoff { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        return Poll::Ready(Err(
                            Error::from_service(e).with_attempts(*this.attempts)
                        ));
                    }
                    let Some(state) = this.retry.as_mut() else {
                        // Unreachable: a retry is only decided with its state.
                        return Poll::Ready(Err(Error::new(Kind::RetriesExhausted)));
                    };
                    let Some(body) = state.next_body.take() else {
                        return Poll::Ready(Err(Error::new(Kind::RetriesExhausted)));
                    };
                    let req = Request::from_parts(state.parts.clone(), body);
                    *this.attempts += 1;
                    if this.deadline.is_some() {
                        *this.attempt_started = Some(Instant::now());
                    }
                    RetryStats::add(&this.config.stats.retries);
                    this.state.set(State::Attempt {
                        future: this.service.call(req),
                    });
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)] // the future's fields, borrowed separately through the pin projection
fn decide<B, C: Classify, RB>(
    outcome: Result<http::Response<RB>, Error>,
    config: &Config<C>,
    retry: &mut Option<RetryState<B>>,
    attempts: u32,
    attempt_started: Option<Instant>,
    idempotent: bool,
    deadline: Option<Instant>,
) -> Decision<http::Response<RB>>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let class = match &outcome {
        // A head whose class depends on trailers is committed: it cannot be retried.
        Ok(res) => config
            .classifier
            .classify_response(res.status(), res.headers())
            .unwrap_or(Class::success()),
        Err(e) => config.classifier.classify_error(e),
    };
    if class.is_success() {
        if let Some(started) = attempt_started {
            record_attempt_time(&config.fast_attempt, started.elapsed());
        }
        return Decision::Return(outcome);
    }
    // Once the deadline has passed there is nothing left to decide.
    let out_of_time = matches!(&outcome, Err(e) if e.kind() == Kind::DeadlineExceeded);
    if out_of_time || !class.retryable().allows(idempotent) {
        return Decision::Return(outcome.map_err(|e| e.with_attempts(attempts)));
    }
    let stats = &config.stats;
    let refuse = |outcome: Result<http::Response<RB>, Error>, kind: Kind, counter: &AtomicU64| {
        RetryStats::add(counter);
        tracing::debug!(attempts, reason = %class.reason(), stop = kind.as_str(), "not retrying");
        Decision::Return(
            outcome.map_err(|e| Error::with_source(kind, e.into_cause()).with_attempts(attempts)),
        )
    };

    let Some(state) = retry else {
        return refuse(outcome, Kind::RetriesExhausted, &stats.retries_exhausted);
    };
    if attempts > config.max_retries {
        return refuse(outcome, Kind::RetriesExhausted, &stats.retries_exhausted);
    }
    let pushback = match class.pushback() {
        None => Duration::ZERO,
        Some(Pushback::After(wait)) if wait <= config.max_pushback => wait,
        Some(_) => return refuse(outcome, Kind::Pushback, &stats.pushback_refused),
    };
    let backoff = state.backoff.get_or_insert_with(|| config.backoff.start());
    // Never earlier than the server asked.
    let delay = backoff.next_delay().max(pushback);
    if let Some(deadline) = deadline {
        let expected = Duration::from_nanos(config.fast_attempt.load(Ordering::Relaxed));
        let now = Instant::now();
        if now + delay + expected >= deadline {
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
    // Last, so that a token is only spent on a retry that will really be sent.
    if !config.budget.try_withdraw() {
        return refuse(outcome, Kind::BudgetExhausted, &stats.budget_exhausted);
    }
    tracing::debug!(attempts, reason = %class.reason(), delay_ms = delay.as_millis() as u64, "retrying");
    state.next_body = Some(body);
    Decision::Retry(delay)
}

/// Tracks a low estimate of a successful attempt's duration: it drops at once to a faster
/// sample and rises slowly towards slower ones. It answers "can an attempt still finish?", where
/// erring short only costs an attempt that might fail, while erring long refuses good retries.
fn record_attempt_time(estimate: &AtomicU64, took: Duration) {
    let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    let old = estimate.load(Ordering::Relaxed);
    let new = if old == 0 || took < old {
        took
    } else {
        old + (took - old) / 16
    };
    // Races between threads lose a sample at worst: good enough for an estimate.
    estimate.store(new, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_time_estimate_drops_fast_and_rises_slowly() {
        let est = AtomicU64::new(0);
        record_attempt_time(&est, Duration::from_millis(100));
        assert_eq!(est.load(Ordering::Relaxed), 100_000_000);
        record_attempt_time(&est, Duration::from_millis(20));
        assert_eq!(est.load(Ordering::Relaxed), 20_000_000);
        record_attempt_time(&est, Duration::from_millis(180));
        assert_eq!(est.load(Ordering::Relaxed), 30_000_000);
    }
}
