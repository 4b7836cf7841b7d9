//! The breaker's response future: records the outcome at the response head.

use super::layer::Core;
use super::machine::{Admit, Shared};
use super::{BreakerState, Rejected};
use crate::classify::{Classified, Classify};
use crate::error::{BoxError, Error, Kind};
use crate::primitives::step::{self, Step};
use http::Request;
use pin_project_lite::pin_project;
use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::Service;

/// How often a request held back looks again while the circuit's probes are out or its ramp
/// refuses it (an open circuit is looked at again when its break ends).
const RECHECK: Duration = Duration::from_millis(50);

/// How the request was admitted: what its outcome feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// Closed or ramping: the window.
    Pass,
    /// A half-open probe: the probe's verdict.
    Probe { episode: u64 },
    /// Refused in shadow mode, sent anyway: nothing (an enforcing breaker never sent it).
    Shadow,
    /// The outcome was recorded, or the request refused: nothing more.
    Done,
}

pin_project! {
    /// The response future of [`Breaker`](super::Breaker).
    ///
    /// Dropping it before the response head counts nothing (and frees a half-open probe's
    /// slot), unless the client's own deadline dropped it
    /// ([`DeadlineLayer`](crate::deadline::DeadlineLayer)'s timer): then the upstream did not
    /// answer in time, a failure. A caller that stops polling and drops the future later, even
    /// past the deadline, cancelled it, as the balancer also counts it. A deadline that is the
    /// caller's (shorter than the client's own, set by the deadline layer from an inbound limit
    /// or an earlier `RequestDeadline`) counts as a cancellation when it passes: the caller ran
    /// out of patience, which says nothing certain about the upstream.
    pub struct ResponseFuture<S, B, C>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        inner: Option<S::Future>,
        refused: Option<Error>,
        // A request held back while the circuit refuses (see `BreakerConfig::hold`): boxed,
        // so that the common path moves one word for it.
        held: Option<Box<Held<S, B>>>,
        core: Arc<Core<C>>,
        // The breaker of the request's route, when it has one (else the core's).
        route: Option<Arc<Shared>>,
        ticket: Ticket,
        started: Option<Instant>,
        // The request's deadline is its caller's: its expiry counts nothing.
        callers_deadline: bool,
    }

    impl<S, B, C> PinnedDrop for ResponseFuture<S, B, C>
    where
        S: Service<Request<B>>,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.ticket == Ticket::Done {
                return;
            }
            let now = Instant::now();
            // Who dropped it, not the clock, tells a timeout: a caller who stopped polling
            // and drops the future after the deadline gave up, like one who drops it before.
            let timed_out = crate::deadline::expiry::expiring() && !*this.callers_deadline;
            let shared = this.route.as_deref().unwrap_or(&this.core.shared);
            settle(shared, *this.ticket, *this.started, now, timed_out.then_some(true));
        }
    }
}

/// A held request once sent: its future, how the circuit admitted it, and when (for slow calls).
type Sent<F> = (F, Ticket, Option<Instant>);

/// A request the circuit refused, held until it admits it or the request's deadline passes:
/// nothing is sent meanwhile.
pub(crate) struct Held<S, B> {
    service: S,
    request: Option<Request<B>>,
    /// The refusal it gets if its deadline comes first.
    why: Rejected,
    deadline: Instant,
    /// When it looks again.
    look: Pin<Box<Sleep>>,
    /// Admitted (how, and when), waiting for the service to be ready.
    admitted: Option<(Ticket, Option<Instant>)>,
}

impl<S, B, C> ResponseFuture<S, B, C>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(
        inner: S::Future,
        core: Arc<Core<C>>,
        route: Option<Arc<Shared>>,
        ticket: Ticket,
        started: Option<Instant>,
        // The request's deadline, and whether it is its caller's (see `DeadlineFromCaller`):
        // only the latter matters, since who drops the future tells whether it expired.
        (_deadline, callers_deadline): (Option<Instant>, bool),
    ) -> Self {
        ResponseFuture {
            inner: Some(inner),
            refused: None,
            held: None,
            core,
            route,
            ticket,
            started,
            callers_deadline,
        }
    }

    pub(crate) fn refused(error: Error, core: Arc<Core<C>>) -> Self {
        ResponseFuture {
            inner: None,
            refused: Some(error),
            held: None,
            core,
            route: None,
            ticket: Ticket::Done,
            started: None,
            callers_deadline: false,
        }
    }

    /// Holds `request`, refused for `why`, until the circuit admits it (then it goes to
    /// `service`) or `deadline` passes (then it is refused).
    pub(crate) fn held(
        (service, request): (S, Request<B>),
        why: Rejected,
        deadline: Instant,
        (core, route): (Arc<Core<C>>, Option<Arc<Shared>>),
        callers_deadline: bool,
    ) -> Self {
        ResponseFuture {
            inner: None,
            refused: None,
            held: Some(Box::new(Held {
                service,
                request: Some(request),
                why,
                deadline,
                look: Box::pin(tokio::time::sleep_until(deadline)),
                admitted: None,
            })),
            core,
            route,
            ticket: Ticket::Done,
            started: None,
            callers_deadline,
        }
    }
}

/// Counts and reports a refusal by `shared`, and the error it is.
pub(crate) fn refusal(why: Rejected, shared: &Shared) -> Error {
    shared.count_rejected();
    if let Some(telemetry) = shared.telemetry.get() {
        telemetry.rejected(why.state, false);
    }
    Error::with_source(Kind::CircuitOpen, why)
}

impl<S, B> Held<S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    /// Waits for the circuit to admit the request and the service to be ready, then calls it:
    /// its future, and how it was admitted. The refusal once the deadline passes first.
    fn poll_call(
        &mut self,
        shared: &Shared,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Sent<S::Future>, Error>> {
        while self.admitted.is_none() {
            let now = Instant::now();
            match shared.admit(now) {
                Admit::Pass => self.admitted = Some((Ticket::Pass, shared.slow_call.map(|_| now))),
                Admit::Probe { episode } => {
                    self.admitted = Some((Ticket::Probe { episode }, Some(now)))
                }
                Admit::Reject(why) => {
                    if now >= self.deadline {
                        return Poll::Ready(Err(refusal(why, shared)));
                    }
                    // An open circuit changes at the end of its break; probes out and a ramp
                    // change with answers this request cannot wait on, so it looks again.
                    let next = match why.until {
                        Some(end) if why.state == BreakerState::Open => end,
                        _ => now + RECHECK,
                    };
                    self.why = why;
                    self.look.as_mut().reset(next.min(self.deadline));
                    ready!(self.look.as_mut().poll(cx));
                }
            }
        }
        ready!(self.service.poll_ready(cx)).map_err(Error::from_service)?;
        let (ticket, started) = self.admitted.take().unwrap_or((Ticket::Pass, None));
        match self.request.take() {
            Some(request) => Poll::Ready(Ok((self.service.call(request), ticket, started))),
            // Polled again after it was sent: the caller broke the future's contract.
            None => Poll::Ready(Err(Error::with_source(Kind::CircuitOpen, self.why))),
        }
    }
}

impl<S, B, C, RB> Future for ResponseFuture<S, B, C>
where
    S: Service<Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    C: Classify,
{
    type Output = Result<http::Response<RB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _step = Step::enter();
        let mut this = self.project();
        if this.refused.is_some() {
            ready!(crate::primitives::refusing::poll_budget(cx));
        }
        if let Some(error) = this.refused.take() {
            return Poll::Ready(Err(error));
        }
        if let Some(held) = this.held.as_mut() {
            let shared = this.route.as_deref().unwrap_or(&this.core.shared);
            let called = ready!(held.poll_call(shared, cx));
            *this.held = None;
            match called {
                Ok((future, ticket, started)) => {
                    *this.ticket = ticket;
                    *this.started = started;
                    this.inner.set(Some(future));
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        let Some(inner) = this.inner.as_pin_mut() else {
            // Polled after it finished: the caller broke the future's contract.
            return Poll::Ready(Err(Error::new(Kind::CircuitOpen)));
        };
        let result = ready!(inner.poll(cx)).map_err(Error::from_service);
        if *this.ticket == Ticket::Done {
            // A breaker that is off: nothing to record.
            return Poll::Ready(result);
        }
        let classifier = &this.core.classifier;
        // Judged in place: moving the response through a match copies it each time.
        let failed = match &result {
            Ok(res) => Some(response_failed(res, classifier)),
            // The caller's own deadline passing (not a failure the retry layer reports as
            // `DeadlineExceeded` because no retry fits): the caller's impatience.
            Err(error) if error.is_callers_deadline() => None,
            Err(error) => error_failed(error, classifier),
        };
        let ticket = std::mem::replace(this.ticket, Ticket::Done);
        if ticket != Ticket::Shadow {
            let shared = this.route.as_deref().unwrap_or(&this.core.shared);
            settle(shared, ticket, *this.started, step::now(), failed);
        }
        Poll::Ready(result)
    }
}

/// Feeds a finished request's verdict to the breaker: `failed` is `None` for an outcome that
/// says nothing about the upstream (or a cancellation).
fn settle(
    shared: &Shared,
    ticket: Ticket,
    started: Option<Instant>,
    now: Instant,
    failed: Option<bool>,
) {
    let slow = match (shared.slow_call, started) {
        (Some(limit), Some(started)) => now.saturating_duration_since(started) >= limit,
        _ => false,
    };
    match (ticket, failed) {
        (Ticket::Pass, Some(failed)) => shared.record(now, failed, slow),
        (Ticket::Probe { episode }, Some(failed)) => {
            shared.probe_done(episode, now, failed || slow)
        }
        (Ticket::Probe { episode }, None) => shared.release_probe(episode),
        _ => {}
    }
}

/// The verdict on a response: the one it carries, or the classifier's. A response whose class
/// waits for its trailers counts as a success: its server answered.
#[inline]
fn response_failed<RB, C: Classify>(res: &http::Response<RB>, classifier: &C) -> bool {
    if let Some(Classified(class)) = res.extensions().get::<Classified>() {
        return class.is_failure();
    }
    classifier
        .classify_response(res.status(), res.headers())
        .is_some_and(|class| class.is_failure())
}

/// The verdict on an error; `None` when it says nothing about the upstream.
fn error_failed<C: Classify>(error: &Error, classifier: &C) -> Option<bool> {
    match error.kind() {
        // The caller's own request body failed: nothing about the upstream.
        Kind::Service if error.is_callers_fault() => None,
        // A keep-alive connection the server had closed: nothing about the upstream either.
        Kind::Service if crate::classify::stale_connection(error) => None,
        Kind::Service => Some(
            error
                .source()
                .is_none_or(|source| classifier.classify_error(source).is_failure()),
        ),
        // The client's own refusals: nothing was sent, so nothing was learned. Every endpoint
        // pushing back is the servers' own word, already kept (by the balancer, for as long as
        // they asked): counted here too, it would open the breaker on servers that shed only
        // some requests, and keep them away longer than they asked.
        kind if kind.is_shed() => None,
        Kind::InvalidRequest | Kind::TlsUnavailable | Kind::EndpointsPushingBack => None,
        // Retries given up, timeouts, no endpoint ready: the upstream failed the request.
        _ => Some(true),
    }
}
