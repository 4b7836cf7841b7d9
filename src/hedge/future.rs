//! The hedge layer's response future: the first attempt, the hedges it races, and the timer
//! that sends them.

use super::delay::Known;
use super::head::Head;
use super::layer::Shared;
use super::telemetry::Refusal;
use crate::balance::AvoidEndpoints;
use crate::budget::{UnsentRetry, Withdrawal};
use crate::deadline::RequestDeadline;
use crate::deadline::expiry::while_outrun;
use crate::deadline::timer::LazySleep;
use crate::error::{BoxError, Error};
use crate::retry::ReplayBody;
use crate::retry::hops;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::futures::OwnedNotified;
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
    /// Zero while `known` waits.
    delay: Duration,
    /// Set while the delay is not known yet: completes when it is.
    known: Option<Pin<Box<OwnedNotified>>>,
    deadline: Option<Instant>,
    hedges: Vec<Attempt<F>>,
    sent: u32,
    /// The request's own limit: its route's, or the layer's.
    max_hedges: u32,
    /// No more hedges will be sent.
    stopped: bool,
    /// A hedge admitted (its tokens taken), waiting for the service to be ready.
    waiting: Option<Tokens<B>>,
    /// The best non-fatal failure so far: one that forbids retries (see `forbids_retry`),
    /// else a response rather than an error, else the last.
    failure: Option<Result<R, Error>>,
    /// The failure kept forbids retries: no later one replaces it.
    final_word: bool,
    /// Attempts that ended cut by the attempt timeout: all but the one the race may end with
    /// are reported as the race ends (the retry layer counts only what reaches it).
    timed_out: u32,
}

struct Attempt<F> {
    future: Pin<Box<F>>,
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
    pub(super) fn new(
        service: S,
        req: &Request<ReplayBody<B>>,
        delay: Known,
        max_hedges: u32,
    ) -> Self {
        let (delay, known) = match delay {
            Known::Now(delay) => (delay, None),
            Known::Later(known) => (Duration::ZERO, Some(Box::pin(known))),
        };
        Race {
            service,
            head: Head::copy(req),
            avoid: AvoidEndpoints::new(),
            body: req.body().template(),
            delay,
            known,
            deadline: req.extensions().get::<RequestDeadline>().map(|d| d.0),
            hedges: Vec::new(),
            sent: 0,
            max_hedges,
            stopped: false,
            waiting: None,
            failure: None,
            final_word: false,
            timed_out: 0,
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

    /// Counts an attempt's outcome as it arrives.
    fn arrived(&mut self, out: &Result<R, Error>) {
        if is_attempt_timeout(out) {
            self.timed_out += 1;
        }
    }

    /// The race's outcome, once the attempt timeouts it swallowed are reported.
    fn finish(&mut self, shared: &Shared, out: Result<R, Error>) -> Result<R, Error> {
        let passed_on = u32::from(is_attempt_timeout(&out));
        let swallowed = std::mem::take(&mut self.timed_out).saturating_sub(passed_on);
        if swallowed > 0 {
            shared.telemetry.attempts_timed_out(u64::from(swallowed));
        }
        out
    }

    /// Keeps `failure` if it is the best so far; `forbids` when it forbids retries. The
    /// balancer's refusal of an attempt it never sent replaces nothing: the race would end
    /// as if no attempt had left (and the retry layer send one again at no cost).
    fn keep(&mut self, failure: Result<R, Error>, forbids: bool) {
        if self.final_word {
            return;
        }
        let refused_unsent = matches!(&failure, Err(e) if matches!(
            e.kind(),
            crate::error::Kind::EndpointsPushingBack | crate::error::Kind::NoReadyEndpoint
        ));
        if refused_unsent && self.failure.is_some() {
            return;
        }
        if forbids || failure.is_ok() || !matches!(self.failure, Some(Ok(_))) {
            self.failure = Some(failure);
            self.final_word = forbids;
        }
    }

    /// The failure to end the request with, `new` being the last attempt's.
    fn best(&mut self, new: Result<R, Error>, forbids: bool) -> Result<R, Error> {
        self.keep(new, forbids);
        self.failure
            .take()
            .unwrap_or_else(|| Err(Error::new(crate::error::Kind::Service)))
    }

    /// Once no more hedges will be sent: the failure kept, when no attempt is left running
    /// (`first_done` and no hedge in flight: a shortcut hedge was refused); else pending, for
    /// the attempts still running.
    fn settled(&mut self, first_done: bool) -> Poll<Result<R, Error>> {
        if first_done && self.hedges.is_empty() {
            Poll::Ready(
                self.failure
                    .take()
                    .unwrap_or_else(|| Err(Error::new(crate::error::Kind::Service))),
            )
        } else {
            Poll::Pending
        }
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
            timer: LazySleep::new(match race.known {
                Some(_) => None,
                None => started.checked_add(race.delay),
            }),
            shared: Some(shared),
            started: Some(started),
            race: Some(Box::new(race)),
        }
    }
}

/// Whether `out` is an attempt cut by the attempt timeout.
fn is_attempt_timeout<R>(out: &Result<R, Error>) -> bool {
    matches!(out, Err(e) if e.kind() == crate::error::Kind::AttemptTimedOut)
}

/// Times the first attempt's wait for the percentile, from its send to now: when it ends,
/// whatever it ends with (a fast failure did not need a hedge either), or when a hedge outran
/// it (its wait so far, a lower bound, which keeps it above the percentile where it belongs).
/// So the percentile says how many first attempts are still waiting at each delay: the hedges
/// a delay would send.
fn time_first(shared: &Shared, started: Option<Instant>) {
    if let Some(started) = started {
        if shared.telemetry.stats.delay.learns() {
            let now = Instant::now();
            shared
                .telemetry
                .waited(now, now.saturating_duration_since(started));
        }
    }
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
            time_first(shared, *this.started);
            return Poll::Ready(out);
        };
        loop {
            // The first attempt.
            if let Some(first) = this.first.as_mut().as_pin_mut() {
                if let Poll::Ready(out) = first.poll(cx) {
                    this.first.set(None);
                    time_first(shared, *this.started);
                    let out = out.map_err(Error::from_service);
                    race.arrived(&out);
                    let fatal = out.as_ref().is_ok_and(|res| !shared.non_fatal(res));
                    let forbids = forbids_retry(&out);
                    if forbids {
                        // gRPC A6: after an answer that says not to retry, no more hedges.
                        race.refund();
                        race.stopped = true;
                    }
                    let shortcut = !fatal && race.hedges.is_empty() && may_shortcut(race, &out);
                    if fatal || (race.hedges.is_empty() && !shortcut) {
                        race.refund();
                        // The losers: cancelled, charged nothing. A hedge that lost to the first
                        // attempt was sent a delay later: its wait says nothing of its endpoint.
                        race.hedges.clear();
                        let out = if fatal { out } else { race.best(out, forbids) };
                        race.stopped = true;
                        return Poll::Ready(race.finish(shared, out));
                    }
                    race.keep(out, forbids);
                    if shortcut {
                        // gRPC A6: a non-fatal answer sends the next hedge at once, rather than
                        // after the rest of its delay (or after a retry's backoff, above).
                        this.timer.set(LazySleep::new(Some(Instant::now())));
                    }
                }
            }
            // The hedges.
            let mut i = 0;
            while i < race.hedges.len() {
                let Poll::Ready(out) = race.hedges[i].future.as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                race.hedges.swap_remove(i);
                let out = out.map_err(Error::from_service);
                race.arrived(&out);
                let fatal = out.as_ref().is_ok_and(|res| !shared.non_fatal(res));
                let forbids = forbids_retry(&out);
                let others = this.first.is_some() || !race.hedges.is_empty();
                if !fatal && others {
                    if forbids {
                        // No more hedges (gRPC A6); the attempts running may still answer.
                        race.refund();
                        race.stopped = true;
                    }
                    race.keep(out, forbids);
                    continue;
                }
                race.refund();
                race.hedges.clear();
                race.stopped = true;
                let out = if fatal { out } else { race.best(out, forbids) };
                if fatal {
                    shared.telemetry.won();
                    tracing::debug!(service = %shared.service, "a hedge won");
                }
                if this.first.is_some() {
                    time_first(shared, *this.started);
                    // Outrun by a hedge sent a delay after it: what it waited is news of its
                    // endpoint's latency (see `expiry::while_outrun`).
                    while_outrun(|| this.first.set(None));
                }
                return Poll::Ready(race.finish(shared, out));
            }
            if race.stopped {
                return Poll::Pending;
            }
            if let Some(known) = race.known.as_mut() {
                if known.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Worked out again from fewer samples in between (refreshes can overlap, or the
                // window emptied): wait for the next time it is known rather than give up on a
                // request that may well be stuck on a dead endpoint.
                let delay = match shared.telemetry.stats.delay.known() {
                    Known::Now(delay) => delay,
                    Known::Later(later) => {
                        race.known = Some(Box::pin(later));
                        continue;
                    }
                };
                race.known = None;
                race.delay = delay;
                let from = this.started.unwrap_or_else(Instant::now);
                this.timer.set(LazySleep::new(from.checked_add(delay)));
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
                        let settled = race.settled(this.first.is_none());
                        return settled.map(|out| race.finish(shared, out));
                    }
                }
            }
            match race.service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    // The running attempts carry on; this service cannot take a hedge.
                    race.refund();
                    race.stopped = true;
                    let settled = race.settled(this.first.is_none());
                    return settled.map(|out| race.finish(shared, out));
                }
                Poll::Ready(Ok(())) => {}
            }
            let Some(tokens) = race.waiting.take() else {
                return Poll::Pending;
            };
            let mut req = race.head.request(tokens.body);
            // A hedge is one more send of the request: it says so to the upstream, as a retry
            // does (so that the upstream leaves repeats to this client), and to gRPC (A6's
            // count of the sends before it).
            let first = hops::attempt_number(req.headers()).unwrap_or(1);
            hops::announce_retry(&mut req, first.saturating_add(race.sent + 1), true);
            req.extensions_mut().insert(race.avoid.clone());
            // Given back by the balancer if it drops the hedge unsent; spent once sent.
            req.extensions_mut().insert(UnsentRetry::new(tokens.budget));
            drop(tokens.extra);
            race.hedges.push(Attempt {
                future: Box::pin(race.service.call(req)),
            });
            race.sent += 1;
            shared.telemetry.hedge();
            tracing::debug!(
                service = %shared.service,
                hedge = race.sent,
                delay_us = race.delay.as_micros() as u64,
                "hedge sent"
            );
            if race.sent >= race.max_hedges {
                race.stopped = true;
            } else {
                this.timer
                    .set(LazySleep::new(Instant::now().checked_add(race.delay)));
            }
        }
    }
}

/// Whether an answer says not to retry (gRPC's negative `grpc-retry-pushback-ms`, as the
/// balancer classified it): no hedge follows it (gRPC A6), and the race ends with it rather
/// than with another attempt's retryable failure, so that the retry layer above hears it too.
fn forbids_retry<RB>(out: &Result<Response<RB>, Error>) -> bool {
    out.as_ref().is_ok_and(|res| {
        !res.extensions().is_empty()
            && res
                .extensions()
                .get::<crate::classify::Classified>()
                .is_some_and(|c| c.0.pushback() == Some(crate::classify::Pushback::DoNotRetry))
    })
}

/// Whether a first attempt's non-fatal answer, with no hedge running, sends the next hedge at
/// once. Only a response, without pushback: an error may be one that never left (the retry
/// layer sends it again for free), and a server that named a wait is heard by the retry layer.
/// Only once the delay is known: before, a hedge's delay would be zero, and so every next one's.
fn may_shortcut<S, B, F, R, RB>(
    race: &Race<S, B, F, R>,
    out: &Result<Response<RB>, Error>,
) -> bool {
    let Ok(res) = out else { return false };
    // Classified below (by a balancer), or, over a bare service, the headers that carry it.
    let pushback = match res.extensions().get::<crate::classify::Classified>() {
        Some(c) => c.0.pushback().is_some(),
        None => {
            res.headers().contains_key(http::header::RETRY_AFTER)
                || res.headers().contains_key("grpc-retry-pushback-ms")
        }
    };
    !pushback && !race.stopped && race.known.is_none() && race.sent < race.max_hedges
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
