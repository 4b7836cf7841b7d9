//! The response future of a throttled request: counts the accept when the answer arrives.

use super::layer::Engaged;
use super::state::accepted;
use crate::classify::{Class, Classified, Classify};
use crate::error::{BoxError, Error, Kind};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

pin_project! {
    /// The response future of [`Throttle`](super::Throttle).
    ///
    /// Dropping it before the answer takes the request back out of the counts: its outcome is
    /// unknown, and counting it either way would bias the probability.
    pub struct ResponseFuture<F, C> {
        #[pin]
        future: Option<F>,
        // The request's window and the bucket it was counted in; `None` when throttling is
        // off, once the outcome is counted, or when the bucket was full and it was not counted.
        tracked: Option<Tracked<C>>,
    }

    impl<F, C> PinnedDrop for ResponseFuture<F, C> {
        fn drop(this: Pin<&mut Self>) {
            // Cancelled by the caller: neither an accept nor a refusal.
            if let Some(tracked) = this.project().tracked.take() {
                tracked.uncount();
            }
        }
    }
}

struct Tracked<C> {
    engaged: Arc<Engaged<C>>,
    epoch: Option<u64>,
}

impl<C> Tracked<C> {
    fn uncount(self) {
        if let Some(epoch) = self.epoch {
            self.engaged.shared.uncount(epoch);
        }
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn passthrough(future: F) -> Self {
        ResponseFuture {
            future: Some(future),
            tracked: None,
        }
    }

    pub(super) fn counted(future: F, engaged: Arc<Engaged<C>>, epoch: Option<u64>) -> Self {
        ResponseFuture {
            future: Some(future),
            tracked: Some(Tracked { engaged, epoch }),
        }
    }

    pub(super) fn rejected() -> Self {
        ResponseFuture {
            future: None,
            tracked: None,
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
        let this = self.project();
        let Some(future) = this.future.as_pin_mut() else {
            ready!(crate::primitives::refusing::poll_budget(cx));
            return Poll::Ready(Err(Error::new(Kind::Throttled)));
        };
        let outcome = ready!(future.poll(cx)).map_err(Error::from_service);
        if let Some(tracked) = this.tracked.take() {
            settle(tracked, &outcome);
        }
        Poll::Ready(outcome)
    }
}

/// Counts the accept, or takes back a request that was never sent.
fn settle<C: Classify, RB>(tracked: Tracked<C>, outcome: &Result<http::Response<RB>, Error>) {
    let classifier = &tracked.engaged.classifier;
    let accept = match outcome {
        Ok(res) => {
            let class = match res.extensions().get::<Classified>() {
                Some(Classified(class)) => *class,
                // A head whose class depends on trailers was answered: accepted.
                None => classifier
                    .classify_response(res.status(), res.headers())
                    .unwrap_or(Class::success()),
            };
            accepted(&class, true)
        }
        // Shed below (a breaker, a limit): nothing was sent, so it was no request. A request
        // the caller's side could not send (its body failed) says nothing of the upstream.
        // Nor does the caller's own deadline passing: its impatience, as for a cancellation.
        Err(e)
            if e.kind().is_shed()
                || e.kind() == Kind::InvalidRequest
                || e.is_callers_deadline() =>
        {
            tracked.uncount();
            return;
        }
        Err(e) => accepted(&classifier.classify_error(e), false),
    };
    tracked.engaged.shared.answered(tracked.epoch, accept);
}
