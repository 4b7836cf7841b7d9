//! The hedge layer's response future: the first attempt, the hedges it races, and the timer
//! that sends them.

use super::head::Head;
use super::layer::Shared;
use super::telemetry::Refusal;
use crate::balance::AvoidEndpoints;
use crate::budget::{UnsentRetry, Withdrawal};
use crate::classify::Classified;
use crate::deadline::RequestDeadline;
use crate::deadline::timer::LazySleep;
use crate::error::{BoxError, Error};
use crate::retry::ReplayBody;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::Service;

pin_project! {
    /// The response future of [`Hedge`](super::Hedge).
    ///
    /// A request that is not hedged holds its one attempt inline, and no timer; a hedged one
    /// holds its first attempt inline, what a hedge needs in one allocation, and a timer that
    /// is built only if the delay passes without an answer. Hedges are boxed when sent.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        first: Option<S::Future>,
        #[pin]
        timer: LazySleep,
        // `None`: the layer is off, the future is the inner one.
        shared: Option<Arc<Shared>>,
        // When the first attempt was sent: `Some` when its answer is timed.
        started: Option<Instant>,
        // `Some` for a request that may be hedged. Boxed: inline, it would make every request's
        // future (moved several times up the stack) three times larger, and the copies cost
        // more than the allocation (callgrind).
        race: Option<Box<Race<S, ReplayBody<B>, S::Future, S::Response>>>,
    }
}

/// What a hedged request keeps to send hedges and to pick the winner.
pub(super) struct Race<S, B, F, R> {
    service: S,
    head: Head,
    /// Shared by every attempt: the balancer writes where each went.
    avoid: AvoidEndpoints,
    /// A handle that never reads: hedges' bodies are made from it.
    body: B,
    delay: Duration,
    deadline: Option<Instant>,
    hedges: Vec<Attempt<F>>,
    sent: u32,
    /// No more hedges will be sent.
    stopped: bool,
    /// A hedge admitted (its tokens taken), waiting for the service to be ready.
    waiting: Option<Tokens<B>>,
    /// The best non-fatal failure so far: a response rather than an error, else the last.
    failure: Option<Result<R, Error>>,
}

struct Attempt<F> {
    future: Pin<Box<F>>,
    started: Instant,
}

struct Tokens<B> {
    body: B,
    budget: Withdrawal,
    extra: Withdrawal,
}

impl<S, B, F, R> Race<S, ReplayBody<B>, F, R>
where
    B: Body,
{
    pub(super) fn new(service: S, req: &Request<ReplayBody<B>>, delay: Duration) -> Self {
        Race {
            service,
            head: Head::copy(req),
            avoid: AvoidEndpoints::new(),
            body: req.body().template(),
            delay,
            deadline: req.extensions().get::<RequestDeadline>().map(|d| d.0),
            hedges: Vec::new(),
            sent: 0,
            stopped: false,
            waiting: None,
            failure: None,
        }
    }
}

impl<S, B, F, R> Drop for Race<S, B, F, R> {
    fn drop(&mut self) {
        // Cancelled by the caller between a hedge's admission and its sending: it never left.
        self.refund();
    }
}

impl<S, B, F, R> Race<S, B, F, R> {
    /// The list every attempt of this request carries.
    pub(super) fn avoid(&self) -> AvoidEndpoints {
        self.avoid.clone()
    }

    /// Keeps `failure` if it is the best so far.
    fn keep(&mut self, failure: Result<R, Error>) {
        if failure.is_ok() || !matches!(self.failure, Some(Ok(_))) {
            self.failure = Some(failure);
        }
    }

    /// The failure to end the request with, `new` being the last attempt's.
    fn best(&mut self, new: Result<R, Error>) -> Result<R, Error> {
        self.keep(new);
        self.failure
            .take()
            .unwrap_or_else(|| Err(Error::new(crate::error::Kind::Service)))
    }

    /// Gives back the tokens of a hedge admitted but never sent.
    fn refund(&mut self) {
        if let Some(tokens) = self.waiting.take() {
            tokens.budget.refund();
            tokens.extra.refund();
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    #[inline]
    pub(super) fn passthrough(first: S::Future) -> Self {
        ResponseFuture {
            first: Some(first),
            timer: LazySleep::new(None),
            shared: None,
            started: None,
            race: None,
        }
    }

    #[inline]
    pub(super) fn single(first: S::Future, shared: Arc<Shared>, started: Option<Instant>) -> Self {
        ResponseFuture {
            first: Some(first),
            timer: LazySleep::new(None),
            shared: Some(shared),
            started,
            race: None,
        }
    }

    #[inline]
    pub(super) fn race(
        first: S::Future,
        shared: Arc<Shared>,
        started: Instant,
        race: Race<S, ReplayBody<B>, S::Future, S::Response>,
    ) -> Self {
        ResponseFuture {
            first: Some(first),
            timer: LazySleep::new(started.checked_add(race.delay)),
            shared: Some(shared),
            started: Some(started),
            race: Some(Box::new(race)),
        }
    }
}

/// Whether an answer that ends the request is timed for the percentile: a failure is not, as
/// a fast error would pull the delay down.
fn timed<RB>(res: &Response<RB>) -> bool {
    !res.status().is_server_error()
        && (res.extensions().is_empty() || res.extensions().get::<Classified>().is_none())
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<RB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(shared) = this.shared.as_ref() else {
            return match this.first.as_pin_mut() {
                Some(first) => first.poll(cx).map_err(Error::from_service),
                None => Poll::Pending,
            };
        };
        let Some(race) = this.race.as_mut() else {
            // Not hedged: one attempt, timed when the layer learns its delay.
            let Some(first) = this.first.as_mut().as_pin_mut() else {
                return Poll::Pending;
            };
            let out = std::task::ready!(first.poll(cx)).map_err(Error::from_service);
            this.first.set(None);
            if let (Some(started), Ok(res)) = (*this.started, &out) {
                if timed(res) && shared.telemetry.stats.delay.learns() {
                    let now = Instant::now();
                    shared
                        .telemetry
                        .answered(now, now.saturating_duration_since(started));
                }
            }
            return Poll::Ready(out);
        };
        loop {
            // The first attempt.
            if let Some(first) = this.first.as_mut().as_pin_mut() {
                if let Poll::Ready(out) = first.poll(cx) {
                    this.first.set(None);
                    let out = out.map_err(Error::from_service);
                    let fatal = out.as_ref().is_ok_and(|res| !shared.non_fatal(res));
                    if fatal || race.hedges.is_empty() {
                        race.refund();
                        race.hedges.clear(); // cancelled: the losers
                        let out = if fatal { out } else { race.best(out) };
                        if let (Some(started), Ok(res)) = (*this.started, &out) {
                            if fatal && timed(res) {
                                let now = Instant::now();
                                shared
                                    .telemetry
                                    .answered(now, now.saturating_duration_since(started));
                            }
                        }
                        race.stopped = true;
                        return Poll::Ready(out);
                    }
                    race.keep(out);
                }
            }
            // The hedges.
            let mut i = 0;
            while i < race.hedges.len() {
                let Poll::Ready(out) = race.hedges[i].future.as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                let attempt = race.hedges.swap_remove(i);
                let out = out.map_err(Error::from_service);
                let fatal = out.as_ref().is_ok_and(|res| !shared.non_fatal(res));
                let others = this.first.is_some() || !race.hedges.is_empty();
                if !fatal && others {
                    race.keep(out);
                    continue;
                }
                race.refund();
                race.hedges.clear();
                race.stopped = true;
                let out = if fatal { out } else { race.best(out) };
                if fatal {
                    shared.telemetry.won();
                    tracing::debug!(service = %shared.service, "a hedge won");
                    if let Ok(res) = &out {
                        if timed(res) {
                            let now = Instant::now();
                            let telemetry = &shared.telemetry;
                            telemetry.answered(now, now.saturating_duration_since(attempt.started));
                            // The first attempt, cancelled, took at least this long: counted
                            // as such, it stays above the percentile, where it belongs.
                            if let (Some(started), true) = (*this.started, this.first.is_some()) {
                                telemetry.answered(now, now.saturating_duration_since(started));
                            }
                        }
                    }
                }
                this.first.set(None);
                return Poll::Ready(out);
            }
            if race.stopped {
                return Poll::Pending;
            }
            // The next hedge: admitted when the timer fires, sent once the service is ready.
            if race.waiting.is_none() {
                if this.timer.as_mut().poll_end(cx).is_pending() {
                    return Poll::Pending;
                }
                match admit(shared, race) {
                    Ok(tokens) => race.waiting = Some(tokens),
                    Err(reason) => {
                        shared.telemetry.refused(reason);
                        tracing::debug!(service = %shared.service, reason = reason.as_str(), "hedge refused");
                        race.stopped = true;
                        return Poll::Pending;
                    }
                }
            }
            match race.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    // The running attempts carry on; this service cannot take a hedge.
                    race.refund();
                    race.stopped = true;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {}
            }
            let Some(tokens) = race.waiting.take() else {
                return Poll::Pending;
            };
            let mut req = race.head.request(tokens.body);
            req.extensions_mut().insert(race.avoid.clone());
            // Given back by the balancer if it drops the hedge unsent; spent once sent.
            req.extensions_mut().insert(UnsentRetry::new(tokens.budget));
            drop(tokens.extra);
            let now = Instant::now();
            race.hedges.push(Attempt {
                future: Box::pin(race.service.call(req)),
                started: now,
            });
            race.sent += 1;
            shared.telemetry.hedge();
            tracing::debug!(
                service = %shared.service,
                hedge = race.sent,
                delay_us = race.delay.as_micros() as u64,
                "hedge sent"
            );
            if race.sent >= shared.max_hedges {
                race.stopped = true;
            } else {
                this.timer.set(LazySleep::new(now.checked_add(race.delay)));
            }
        }
    }
}

/// Takes what a hedge needs, or says why it cannot be sent.
fn admit<S, B, F, R>(
    shared: &Shared,
    race: &mut Race<S, ReplayBody<B>, F, R>,
) -> Result<Tokens<ReplayBody<B>>, Refusal>
where
    B: Body,
{
    if let Some(deadline) = race.deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < race.delay {
            return Err(Refusal::Deadline);
        }
    }
    let body = race.body.try_clone_complete().ok_or(Refusal::Body)?;
    let extra = shared.extra.withdraw().ok_or(Refusal::ExtraLoad)?;
    let Some(budget) = shared.budget.withdraw() else {
        extra.refund();
        return Err(Refusal::Budget);
    };
    Ok(Tokens {
        body,
        budget,
        extra,
    })
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
