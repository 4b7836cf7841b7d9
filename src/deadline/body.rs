//! The response body under the deadline: the total deadline and the idle timeout cover it.

use super::expiry;
use crate::error::{BoxError, Error, Kind};
use crate::primitives::step::{self, Step};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pin_project! {
    /// A response body bounded by the request's deadline and by an idle timeout.
    ///
    /// [`DeadlineLayer`](super::DeadlineLayer) wraps every response body in one. It yields the
    /// inner body's frames unchanged, as long as they come before the total deadline. When the
    /// deadline passes (while the body waits, or with a frame ready but read too late), or no
    /// frame arrives for the idle timeout, it drops the inner body, yields one error, a [`meshless::Error`](crate::Error) of kind
    /// [`Kind::DeadlineExceeded`] or [`Kind::BodyIdleTimeout`], and then ends. An error of the
    /// inner body comes out as a `meshless::Error` too: of kind [`Kind::Service`], with the
    /// inner error (hyper's, for a connection lost mid-body) as its source. A
    /// [`Streaming`](super::Streaming) response is bounded by the idle timeout only.
    ///
    /// The endpoint is charged with a timeout when it had not delivered in time: the timer
    /// fired while the body waited for a frame. A frame that had arrived but was read after the
    /// deadline is the reader's lateness, and a stream silent for its default idle limit (the
    /// length of its deadline, when no idle timeout was set) is not held against the endpoint:
    /// both are dropped as a caller's drop is.
    ///
    /// No timer exists until the inner body first has to wait, so a body that is already
    /// complete costs no timer and no allocation; each frame costs one comparison with the
    /// clock, read once per poll with the layers below.
    ///
    /// ```
    /// use http_body_util::{BodyExt, Full};
    /// use meshless::deadline::DeadlineBody;
    /// use std::time::Duration;
    ///
    /// # tokio_test::block_on(async {
    /// let body = DeadlineBody::new(
    ///     Full::new(bytes::Bytes::from("hello")),
    ///     Some(tokio::time::Instant::now() + Duration::from_secs(1)),
    ///     Some(Duration::from_millis(100)),
    /// );
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    /// # });
    /// ```
    #[project = DeadlineBodyProj]
    pub struct DeadlineBody<B> {
        // `None` once the body ended by a timeout.
        #[pin]
        inner: Option<B>,
        // Armed on the first `Pending`, at the earlier of the deadline and the idle limit. Boxed,
        // so that the body stays `Unpin` when the inner one is (`body.frame().await` works).
        sleep: Option<Pin<Box<Sleep>>>,
        deadline: Option<Instant>,
        idle: Option<Duration>,
        // Whether the idle limit firing is the endpoint's doing: not when it is a default the
        // caller never chose (a stream's, the length of its deadline).
        charge_idle: bool,
        // The deadline is the caller's own: its passing is not the endpoint's doing.
        callers: bool,
        // A frame arrived since the timer was armed: the idle limit starts over.
        rearm: bool,
    }
}

impl<B> DeadlineBody<B> {
    /// Bounds `inner` by `deadline` (the instant the whole response must have arrived by) and by
    /// `idle` (the longest wait for a frame). `None` is no limit.
    ///
    /// ```
    /// use meshless::deadline::DeadlineBody;
    /// let body = DeadlineBody::new(http_body_util::Empty::<bytes::Bytes>::new(), None, None);
    /// ```
    pub fn new(inner: B, deadline: Option<Instant>, idle: Option<Duration>) -> Self {
        DeadlineBody {
            inner: Some(inner),
            sleep: None,
            deadline,
            idle,
            charge_idle: true,
            callers: false,
            rearm: false,
        }
    }

    /// Marks the deadline as the caller's own (see
    /// [`DeadlineFromCaller`](super::DeadlineFromCaller)): when it passes, the body ends as
    /// it does, but its endpoint is not charged.
    pub(crate) fn callers_deadline(mut self, callers: bool) -> Self {
        self.callers = callers;
        self
    }

    /// A stream's body whose idle limit is a default rather than the caller's: it still ends
    /// the body, but a stream that falls silent that long is not charged to its endpoint.
    pub(crate) fn with_default_idle(inner: B, idle: Option<Duration>) -> Self {
        DeadlineBody {
            charge_idle: false,
            ..DeadlineBody::new(inner, None, idle)
        }
    }

    /// The wrapped body, unless a timeout already dropped it.
    ///
    /// ```
    /// use meshless::deadline::DeadlineBody;
    /// let body = DeadlineBody::new(http_body_util::Empty::<bytes::Bytes>::new(), None, None);
    /// assert!(body.get_ref().is_some());
    /// ```
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

impl<B> std::fmt::Debug for DeadlineBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineBody")
            .field("deadline", &self.deadline)
            .field("idle", &self.idle)
            .field("expired", &self.inner.is_none())
            .finish()
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None); // after the timeout's error
        };
        // The layers below that time the frame (the balancer, at the body's end) share this
        // pass's one reading of the clock with the deadline's check.
        let _step = Step::enter();
        if let Poll::Ready(frame) = inner.poll_frame(cx) {
            // A frame handed out at or after the deadline, even one that was waiting in a
            // buffer for a slow reader, would let the body outlive it: a body whose next frame
            // is always ready never waits, so the timer below would never get its turn. The
            // end of the stream and the inner body's own error pass: they end it all the same.
            // The frame was there: the endpoint delivered, and it is the reader who came late,
            // so the endpoint is not charged (as for a body the caller drops).
            if let (Some(Ok(_)), Some(deadline)) = (&frame, *this.deadline) {
                if step::now() >= deadline {
                    return Poll::Ready(Some(Err(expire(this, Kind::DeadlineExceeded, false))));
                }
            }
            *this.rearm = true;
            return Poll::Ready(frame.map(|f| f.map_err(service_error)));
        }
        if this.deadline.is_none() && this.idle.is_none() {
            return Poll::Pending;
        }
        // On the way to waiting the clock is read only for an idle limit: the deadline alone is
        // an instant already.
        if this.sleep.is_none() || (*this.rearm && this.idle.is_some()) {
            *this.rearm = false;
            let idle_end = this.idle.and_then(|d| step::now().checked_add(d));
            let wake = match (*this.deadline, idle_end) {
                (Some(d), Some(i)) => d.min(i),
                (Some(d), None) => d,
                (None, Some(i)) => i,
                // An idle limit too long for the clock: no limit.
                (None, None) => return Poll::Pending,
            };
            match this.sleep {
                Some(sleep) => sleep.as_mut().reset(wake),
                None => *this.sleep = Some(Box::pin(tokio::time::sleep_until(wake))),
            }
        }
        if let Some(sleep) = this.sleep {
            ready!(sleep.as_mut().poll(cx));
        }
        // The endpoint had not delivered by the time the timer fired.
        let (kind, charged) = match *this.deadline {
            Some(d) if step::now() >= d => (Kind::DeadlineExceeded, true),
            _ => (Kind::BodyIdleTimeout, *this.charge_idle),
        };
        Poll::Ready(Some(Err(expire(this, kind, charged))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// Ends the body by one of its own limits: the one error it yields, after which it is over.
/// The inner body's error as a [`meshless::Error`](crate::Error): the one a layer below gave,
/// or, for the service's own (a connection reset in the middle of the body), one of kind
/// [`Kind::Service`] with it as the source ([`Kind::InvalidRequest`] when the caller's own
/// request body failed), so that every error a body yields is typed.
fn service_error(error: impl Into<BoxError>) -> BoxError {
    let error = error.into();
    if error.is::<Error>() {
        return error;
    }
    // The caller's own request body failing after the head ends the response too.
    let kind = if crate::classify::callers_fault(&*error) {
        Kind::InvalidRequest
    } else {
        Kind::Service
    };
    Error::with_source(kind, error).into()
}

fn expire<B>(this: DeadlineBodyProj<'_, B>, kind: Kind, charged: bool) -> BoxError {
    // Dropped by our own limit: the endpoint that did not deliver in time is charged for it;
    // otherwise the drop reads as the caller's (the balancer times it to the head).
    let mut inner = this.inner;
    if charged {
        // Unless the deadline was the caller's own: then no one is charged, and the request
        // fails as it would have before its head.
        let callers = *this.callers && kind == Kind::DeadlineExceeded;
        expiry::while_deadline_expiring(callers, || inner.set(None));
    } else {
        expiry::while_cut(|| inner.set(None));
    }
    *this.sleep = None;
    super::expired(kind, *this.callers).into()
}

#[cfg(test)]
pub(super) mod tests;
