//! The breaker's response future: records the outcome at the response head.

use super::layer::Core;
use super::machine::Shared;
use crate::classify::{Classified, Classify};
use crate::error::{BoxError, Error, Kind};
use crate::primitives::step::{self, Step};
use pin_project_lite::pin_project;
use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;

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
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: Option<F>,
        refused: Option<Error>,
        core: Arc<Core<C>>,
        // The breaker of the request's route, when it has one (else the core's).
        route: Option<Arc<Shared>>,
        ticket: Ticket,
        started: Option<Instant>,
        // The request's deadline is its caller's: its expiry counts nothing.
        callers_deadline: bool,
    }

    impl<F, C> PinnedDrop for ResponseFuture<F, C> {
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

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(
        inner: F,
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
            core,
            route: None,
            ticket: Ticket::Done,
            started: None,
            callers_deadline: false,
        }
    }
}

impl<F, C, RB, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError>,
    C: Classify,
{
    type Output = Result<http::Response<RB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _step = Step::enter();
        let this = self.project();
        if this.refused.is_some() {
            ready!(crate::primitives::refusing::poll_budget(cx));
        }
        if let Some(error) = this.refused.take() {
            return Poll::Ready(Err(error));
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
