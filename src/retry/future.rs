//! The retry state machine: attempt, decide, back off, attempt again.

use super::decide::{Decision, NextAttempt, decide};
use super::hops;
use super::layer::Config;
use super::policy::RetryStats;
use super::replay::ReplayBody;
use super::settle::{self, ResponseBody, finished, unfinished};
use super::state::RetryState;
use super::trace::{self, Trace};
use crate::budget::UnsentRetry;
use crate::classify::{Class, Classified, Classify, Idempotence};
use crate::error::{BoxError, Error, Kind};
use crate::primitives::step::{self, Step};
use http::Request;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::Service;
use tracing::Span;

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
        // The head and body replay for retries; `None` when retries are off. Inline: a success
        // then allocates nothing, and only the state of an actual retry is boxed.
        retry: Option<RetryState<B>>,
        config: Arc<Config<C>>,
        attempts: u32,
        // When the request arrived: its end-to-end latency, and its first attempt, run from here.
        started: Instant,
        // Known from the start only when retries are off; otherwise read from the head's copy
        // when a failure asks, since a success never needs it.
        idempotent: Option<Idempotence>,
        deadline: Option<Instant>,
        // The request's spans, when a subscriber wants them.
        trace: Option<Box<Trace>>,
        // The caller of the request being served retries it: only attempts that never left
        // are sent again.
        caller_retries: bool,
        // The outcome was returned (and recorded): dropping the future records nothing more.
        // A flag rather than a state, since setting the state would copy the whole enum.
        done: bool,
    }

    impl<S, B, C> PinnedDrop for ResponseFuture<S, B, C>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            // A retry was paid for but never sent: its token goes back to the budget.
            if let Some(withdrawal) = this.retry.as_mut().and_then(RetryState::take_withdrawal) {
                withdrawal.refund();
            }
            // A retry in flight counts as sent unless the balancer still held it: dropped
            // first here, the balancer gives its token back if it never sent it. (Once the
            // outcome was returned, a retry still uncounted is one that was refused unsent.)
            let uncounted = !*this.done && this.retry.as_ref().is_some_and(RetryState::has_uncounted);
            if uncounted && matches!(this.state.as_mut().project(), StateProj::Attempt { .. }) {
                let next = NextAttempt {
                    reason: "",
                    waited: Duration::ZERO,
                    again: true,
                    resend: false,
                };
                this.state.set(State::Ready { next });
                if let Some((next, false)) =
                    this.retry.as_mut().and_then(RetryState::take_uncounted)
                {
                    count_retry(this.config, next);
                }
            }
            // Unless its outcome was returned, the request ends here, unfinished.
            if !*this.done {
                // An attempt the transport still holds must not send its body now.
                abandon(this.retry);
                // Expired by one of meshless's timers (the deadline layer's), or given up by
                // its caller: the balancer and the breaker tell the two apart the same way.
                unfinished(
                    this.config,
                    this.retry,
                    *this.attempts,
                    *this.started,
                    crate::deadline::expiry::expiring(),
                    this.trace.as_deref().map(|t| &t.request),
                );
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Attempt { #[pin] future: F },
        Backoff { sleep: Pin<Box<Sleep>>, next: NextAttempt },
        Ready { next: NextAttempt },
    }
}

impl<S, B, C, RB> ResponseFuture<S, B, C>
where
    S: Service<Request<ReplayBody<B>>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    C: Classify,
{
    /// Sends the first attempt through `ready` (a service that was polled ready) and keeps
    /// `service`, a clone of it, for the retries.
    #[inline]
    #[allow(clippy::too_many_arguments)] // the future's fields, each given once
    pub(super) fn start(
        ready: &mut S,
        service: S,
        first: Request<ReplayBody<B>>,
        retry: Option<RetryState<B>>,
        config: Arc<Config<C>>,
        idempotent: Option<Idempotence>,
        deadline: Option<Instant>,
        trace: Option<Box<Trace>>,
        caller_retries: bool,
    ) -> Self {
        let started = step::now();
        match trace {
            // Called where the future is built, so that the attempt's future is written in
            // place instead of moved into it: one struct, one call, no guard held across it
            // (either makes the compiler build the future aside and copy it).
            None => ResponseFuture {
                state: State::Attempt {
                    future: ready.call(first),
                },
                service,
                retry,
                config,
                attempts: 1,
                started,
                idempotent,
                deadline,
                trace: None,
                caller_retries,
                done: false,
            },
            Some(trace) => Self::start_traced(
                ready,
                service,
                first,
                retry,
                config,
                idempotent,
                deadline,
                trace,
                caller_retries,
                started,
            ),
        }
    }

    /// [`start`](Self::start) for a request a subscriber traces: the attempt is called inside
    /// its span.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)] // the future's fields, each given once
    fn start_traced(
        ready: &mut S,
        service: S,
        first: Request<ReplayBody<B>>,
        retry: Option<RetryState<B>>,
        config: Arc<Config<C>>,
        idempotent: Option<Idempotence>,
        deadline: Option<Instant>,
        mut trace: Box<Trace>,
        caller_retries: bool,
        started: Instant,
    ) -> Self {
        trace.attempt = trace::attempt_span(&trace.request, 1, Duration::ZERO);
        let future = trace.attempt.in_scope(|| ready.call(first));
        ResponseFuture {
            state: State::Attempt { future },
            service,
            retry,
            config,
            attempts: 1,
            started,
            idempotent,
            deadline,
            trace: Some(trace),
            caller_retries,
            done: false,
        }
    }
}

impl<S, B, C, RB> Future for ResponseFuture<S, B, C>
where
    S: Service<Request<ReplayBody<B>>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
    RB: http_body::Body,
    C: Classify,
{
    type Output = Result<http::Response<ResponseBody<RB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _step = Step::enter();
        let mut this = self.project();
        // As `Instrument` does, spans are entered while their work runs: the attempt's around
        // the attempt (the balancer records its pick in it), the request's (the attempt's
        // parent) around the decisions after a failure, which may log. A success enters only
        // the attempt's span: the hot path pays for no more than it needs.
        let (request_span, mut attempt_span) = match this.trace.as_deref_mut() {
            Some(t) => (Some(&t.request), Some(&mut t.attempt)),
            None => (None, None),
        };
        loop {
            match this.state.as_mut().project() {
                StateProj::Attempt { future } => {
                    let entered = attempt_span.as_deref().map(Span::enter);
                    let outcome = ready!(future.poll(cx)).map_err(Error::from_service);
                    drop(entered);
                    if let Some((next, unsent)) =
                        this.retry.as_mut().and_then(RetryState::take_uncounted)
                    {
                        // The balancer's own refusals: nothing was sent.
                        let refused = matches!(
                            &outcome,
                            Err(e) if matches!(
                                e.kind(),
                                Kind::EndpointsPushingBack | Kind::NoReadyEndpoint
                            )
                        );
                        if unsent || refused {
                            // Never sent: counted when it is sent again, if it is.
                            if let Some(state) = this.retry.as_mut() {
                                state.retrying(&this.config.backoff).uncounted = Some(next);
                            }
                        } else {
                            count_retry(this.config, next);
                        }
                    }
                    if let Err(e) = &outcome {
                        if e.is_callers_fault() {
                            *this.done = true;
                            let attempts = *this.attempts;
                            let config = &**this.config;
                            let (started, span) = (*this.started, request_span);
                            unfinished(config, this.retry, attempts, started, false, span);
                            return Poll::Ready(
                                outcome
                                    .map(|res| res.map(ResponseBody::settled))
                                    .map_err(|e| callers_fault(e, attempts)),
                            );
                        }
                    }
                    let now = step::now();
                    let config = &**this.config;
                    let (class, decided) = classify(&outcome, &config.classifier);
                    if let Some(span) = attempt_span.as_deref() {
                        trace::attempt_ended(span, class.reason().as_str());
                    }
                    let _request = if class.is_failure() {
                        request_span.map(Span::enter)
                    } else {
                        None
                    };
                    if let Err(e) = &outcome {
                        if e.kind() == Kind::AttemptTimedOut {
                            RetryStats::add(&config.stats.attempt_timeouts);
                        }
                        if let Some(metrics) = &config.metrics {
                            metrics.attempt_failed(e.kind());
                        }
                    }
                    let took = now.saturating_duration_since(*this.started);
                    if class.is_success() {
                        // The hot path returns the outcome as it came, without wrapping it
                        // in a decision: each wrapping is a copy of the response.
                        if this.deadline.is_some() {
                            // The first attempt started with the request, and took as long:
                            // one subtraction of instants (as dear as a clock read) less.
                            let attempt_took =
                                match this.retry.as_ref().and_then(RetryState::attempt_started) {
                                    None => took,
                                    Some(started) => now.saturating_duration_since(started),
                                };
                            // The estimate only serves to check deadlines.
                            record_attempt_time(&config.fast_attempt, attempt_took);
                        }
                        let attempts = *this.attempts;
                        *this.done = true;
                        // Never entered on a success; ended here so that the trace can move.
                        drop(_request);
                        return Poll::Ready(settle::success(
                            outcome,
                            this.config,
                            this.retry,
                            class,
                            decided,
                            attempts,
                            took,
                            now,
                            this.trace,
                        ));
                    }
                    let decision = decide(
                        outcome,
                        &class,
                        config,
                        this.retry,
                        *this.attempts,
                        *this.idempotent,
                        *this.deadline,
                        now,
                        *this.caller_retries,
                    );
                    if let Decision::Return(_) = &decision {
                        // Recorded while the outcome is still in the decision: returning it
                        // straight after saves a copy of it (callgrind: 20 instructions).
                        let attempts = *this.attempts;
                        finished(
                            config,
                            this.retry,
                            &class,
                            attempts,
                            took,
                            now,
                            request_span,
                        );
                    }
                    match decision {
                        Decision::Return(outcome) => {
                            *this.done = true;
                            if outcome.is_err() {
                                // The request failed: an attempt the transport still holds
                                // (cut by its timeout while parked) must not send its body.
                                abandon(this.retry);
                            }
                            return Poll::Ready(outcome.map(|res| res.map(ResponseBody::settled)));
                        }
                        Decision::Retry(_) | Decision::Again(_) | Decision::Resend => {
                            let delay = match decision {
                                Decision::Retry(delay) | Decision::Again(delay) => delay,
                                _ => Duration::ZERO,
                            };
                            let next = NextAttempt {
                                reason: class.reason().as_str(),
                                waited: delay,
                                again: !matches!(decision, Decision::Retry(_)),
                                resend: matches!(decision, Decision::Resend),
                            };
                            if delay.is_zero() {
                                this.state.set(State::Ready { next });
                            } else {
                                this.state.set(State::Backoff {
                                    sleep: Box::pin(tokio::time::sleep(delay)),
                                    next,
                                });
                            }
                        }
                    }
                }
                StateProj::Backoff { sleep, next } => {
                    ready!(sleep.as_mut().poll(cx));
                    let next = *next;
                    this.state.set(State::Ready { next });
                }
                StateProj::Ready { next } => {
                    let next = *next;
                    let _request = request_span.map(Span::enter);
                    let ready = ready!(this.service.poll_ready(cx));
                    let request = match (ready, this.retry.as_mut()) {
                        (Err(e), _) => Err(Error::from_service(e)),
                        (Ok(()), Some(state)) => match state.take_next_body() {
                            Some(body) => Ok(state.head.request(body, *this.deadline)),
                            // Unreachable: a retry is only decided with its body.
                            None => Err(Error::new(Kind::RetriesExhausted)),
                        },
                        // Unreachable: a retry is only decided with its state.
                        (Ok(()), None) => Err(Error::new(Kind::RetriesExhausted)),
                    };
                    let req = match request {
                        Ok(req) => req,
                        Err(e) => {
                            // The retry is not sent after all.
                            if let Some(w) =
                                this.retry.as_mut().and_then(RetryState::take_withdrawal)
                            {
                                w.refund();
                            }
                            let e = e.with_attempts(*this.attempts);
                            let class = this.config.classifier.classify_error(&e);
                            let now = Instant::now();
                            let took = now.saturating_duration_since(*this.started);
                            *this.done = true;
                            let attempts = *this.attempts;
                            finished(
                                this.config,
                                this.retry,
                                &class,
                                attempts,
                                took,
                                now,
                                request_span,
                            );
                            return Poll::Ready(Err(e));
                        }
                    };
                    // The token goes with the request: spent once it is sent, given back by
                    // the balancer if it drops the request unsent.
                    let mut req = req;
                    let token = this
                        .retry
                        .as_mut()
                        .and_then(RetryState::take_withdrawal)
                        .map(UnsentRetry::new);
                    if let Some(token) = &token {
                        req.extensions_mut().insert(token.clone());
                    }
                    if let Some(state) = this.retry.as_mut() {
                        let retrying = state.retrying(&this.config.backoff);
                        retrying.attempt_started = Some(Instant::now());
                        if !next.again {
                            retrying.uncounted = Some(next);
                            retrying.token = token;
                        } else if token.is_some() {
                            // A retry sent again after the balancer refused it: its new token.
                            retrying.token = token;
                        }
                    }
                    let config = &**this.config;
                    if !next.again || next.resend {
                        *this.attempts += 1;
                    }
                    if let (Some(request), Some(attempt)) =
                        (request_span, attempt_span.as_deref_mut())
                    {
                        *attempt = trace::attempt_span(request, *this.attempts, next.waited);
                    }
                    let announce = config.idempotency.idempotence(&req) == Idempotence::Idempotent;
                    hops::announce_retry(&mut req, *this.attempts, announce);
                    if !announce {
                        // As its first attempt: a request sent again only because nothing
                        // reached the server (a refused stream, a GOAWAY that left it out)
                        // will not be sent again once it may have, so a derived attempt
                        // timeout lets it run to its deadline.
                        req.extensions_mut().insert(crate::deadline::SentOnce);
                    }
                    let future = {
                        let _attempt = attempt_span.as_deref().map(Span::enter);
                        this.service.call(req)
                    };
                    this.state.set(State::Attempt { future });
                }
            }
        }
    }
}

/// Counts a retry that was sent: in the stats, the backoff it waited, and its metrics.
fn count_retry<C>(config: &Config<C>, next: NextAttempt) {
    RetryStats::add(&config.stats.retries);
    config.stats.add_backoff(next.waited);
    if let Some(metrics) = &config.metrics {
        metrics.retried(next.reason, next.waited);
    }
}

/// The class of an attempt's outcome, and whether it is decided (`false`: the head left it to
/// the end of the stream, as gRPC does).
///
/// A failed response that came through a balancer carries the balancer's verdict
/// ([`Classified`]): it is read, not made again.
fn classify<RB, C: Classify>(
    outcome: &Result<http::Response<RB>, Error>,
    classifier: &C,
) -> (Class, bool) {
    match outcome {
        Ok(res) => match res.extensions().get::<Classified>() {
            Some(Classified(class)) => (*class, true),
            // A head whose class depends on trailers is committed: it cannot be retried, and
            // its body settles its class when it ends (`settle`).
            None => match classifier.classify_response(res.status(), res.headers()) {
                Some(class) => (class, true),
                None => (Class::success(), false),
            },
        },
        Err(e) => (classifier.classify_error(e), true),
    }
}

/// The error of a request its caller's own body failed: never retried (the body failed, and
/// cannot be sent again), and typed as the caller's, [`Kind::InvalidRequest`].
#[cold]
fn callers_fault(error: Error, attempts: u32) -> Error {
    let error = match error.kind() {
        Kind::InvalidRequest => error,
        _ => Error::with_source(Kind::InvalidRequest, error.into_cause()),
    };
    error.with_attempts(attempts)
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

/// Ends the reading of the request's body in every attempt still out: the request is over
/// without an answer (see [`ReplayBody::abandon`]).
fn abandon<B>(retry: &Option<RetryState<B>>) {
    if let Some(replay) = retry.as_ref().and_then(|r| r.replay.as_ref()) {
        replay.abandon();
    }
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
