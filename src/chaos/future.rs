//! The response future of a request the chaos layer saw, its response body, and the error of
//! an injected abort.

use super::plan::Fault;
use crate::error::{BoxError, Error};
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::time::Sleep;

/// The header every injected error response carries, so that a test or a log can tell it from
/// a real one: its value is `error`.
pub const CHAOS_HEADER: &str = "x-meshless-chaos";

/// The error of an injected abort: a reset or a refused connection, as the transport would
/// report it. Its [`source`](StdError::source) is an [`io::Error`] of kind
/// [`ConnectionReset`](io::ErrorKind::ConnectionReset) or
/// [`ConnectionRefused`](io::ErrorKind::ConnectionRefused), so that
/// [`classify_error`](crate::classify::classify_error), and every layer above, treat it as the
/// real thing. The layer returns it inside a [`Kind::Service`](crate::error::Kind::Service)
/// [`Error`].
///
/// ```
/// use meshless::chaos::{Fault, InjectedFault};
/// use meshless::classify::{classify_error, Reason, Retryable};
///
/// let err = InjectedFault::new(Fault::Reset);
/// assert_eq!(err.fault(), Fault::Reset);
/// let class = classify_error(&err);
/// assert_eq!((class.reason(), class.retryable()), (Reason::Reset, Retryable::IfIdempotent));
/// ```
#[derive(Debug)]
pub struct InjectedFault {
    fault: Fault,
    io: io::Error,
}

impl InjectedFault {
    /// The error of an injected [`Fault::Reset`] or [`Fault::Refused`]; any other fault reads
    /// as a reset.
    ///
    /// ```
    /// use meshless::chaos::{Fault, InjectedFault};
    /// assert_eq!(InjectedFault::new(Fault::Refused).fault(), Fault::Refused);
    /// ```
    pub fn new(fault: Fault) -> Self {
        let (fault, kind) = match fault {
            Fault::Refused => (Fault::Refused, io::ErrorKind::ConnectionRefused),
            _ => (Fault::Reset, io::ErrorKind::ConnectionReset),
        };
        InjectedFault {
            fault,
            io: io::Error::from(kind),
        }
    }

    /// Which fault it is: [`Fault::Reset`] or [`Fault::Refused`].
    ///
    /// ```
    /// use meshless::chaos::{Fault, InjectedFault};
    /// assert_eq!(InjectedFault::new(Fault::Reset).fault(), Fault::Reset);
    /// ```
    pub fn fault(&self) -> Fault {
        self.fault
    }
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fault {
            Fault::Refused => f.write_str("connection refused (injected fault)"),
            _ => f.write_str("connection reset (injected fault)"),
        }
    }
}

impl StdError for InjectedFault {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.io)
    }
}

pin_project! {
    /// The response body of [`Chaos`](super::Chaos): the inner service's body, or the empty
    /// body of an injected error response.
    ///
    /// ```
    /// use http_body::Body;
    /// use meshless::chaos::ChaosBody;
    ///
    /// let injected = ChaosBody::<String>::default();
    /// assert!(injected.is_injected() && injected.is_end_stream());
    /// let real = ChaosBody::new("hello".to_string());
    /// assert_eq!(real.into_inner().as_deref(), Some("hello"));
    /// ```
    pub struct ChaosBody<B> {
        #[pin]
        inner: Option<B>,
    }
}

impl<B> ChaosBody<B> {
    /// The inner service's body, passed through.
    ///
    /// ```
    /// let body = meshless::chaos::ChaosBody::new(());
    /// assert!(!body.is_injected());
    /// ```
    pub fn new(body: B) -> Self {
        ChaosBody { inner: Some(body) }
    }

    /// True for the empty body of an injected error response.
    ///
    /// ```
    /// assert!(meshless::chaos::ChaosBody::<()>::default().is_injected());
    /// ```
    pub fn is_injected(&self) -> bool {
        self.inner.is_none()
    }

    /// The inner service's body, `None` for an injected one.
    ///
    /// ```
    /// assert_eq!(meshless::chaos::ChaosBody::new(7).into_inner(), Some(7));
    /// ```
    pub fn into_inner(self) -> Option<B> {
        self.inner
    }
}

impl<B> Default for ChaosBody<B> {
    /// An injected (empty) body.
    fn default() -> Self {
        ChaosBody { inner: None }
    }
}

impl<B: fmt::Debug> fmt::Debug for ChaosBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Some(body) => f.debug_tuple("ChaosBody").field(body).finish(),
            None => f.write_str("ChaosBody(injected)"),
        }
    }
}

impl<B> Body for ChaosBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().inner.as_pin_mut() {
            Some(body) => body.poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// What an injected answer gives instead of the inner service's.
#[derive(Debug)]
pub(crate) enum Answer {
    Respond(http::Response<()>),
    Abort(Fault),
}

pin_project! {
    /// The response future of [`Chaos`](super::Chaos): waits out an injected delay, then
    /// polls the inner service's future or gives the injected answer. Dropping it drops both.
    pub struct ResponseFuture<F> {
        // Boxed, and only for a delayed request: the future of a request without a delay
        // stays as small as the inner one plus a word.
        delay: Option<Pin<Box<Sleep>>>,
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Call { #[pin] future: F },
        Answer { answer: Option<Answer> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn call(future: F, delay: Option<Pin<Box<Sleep>>>) -> Self {
        ResponseFuture {
            delay,
            state: State::Call { future },
        }
    }

    pub(super) fn answer(answer: Answer, delay: Option<Pin<Box<Sleep>>>) -> Self {
        ResponseFuture {
            delay,
            state: State::Answer {
                answer: Some(answer),
            },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("delayed", &self.delay.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<ChaosBody<RB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(delay) = this.delay {
            ready!(delay.as_mut().poll(cx));
            *this.delay = None;
        }
        match this.state.project() {
            StateProj::Call { future } => Poll::Ready(match ready!(future.poll(cx)) {
                Ok(res) => Ok(res.map(ChaosBody::new)),
                Err(e) => Err(Error::from_service(e)),
            }),
            StateProj::Answer { answer } => Poll::Ready(match answer.take() {
                Some(Answer::Respond(res)) => Ok(res.map(|()| ChaosBody::default())),
                Some(Answer::Abort(fault)) => Err(Error::from_service(InjectedFault::new(fault))),
                // Polled again after it ended: the contract of `Future` allows anything but
                // undefined behaviour; a typed error is the least surprising.
                None => Err(Error::from_service(InjectedFault::new(Fault::Reset))),
            }),
        }
    }
}
