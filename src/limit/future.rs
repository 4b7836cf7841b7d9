//! The response future, which may wait for a permit, and the response body, which holds it.

use super::adaptive::Sample;
use super::state::{Permit, Shared};
use crate::error::{BoxError, Error, Kind};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tower::Service;

pin_project! {
    /// The future of a [`Limit`](super::Limit) call: the inner call holding a permit, a wait
    /// for one, or a refusal.
    ///
    /// Dropped before the response, it gives its permit back (or leaves the queue).
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use meshless::limit::LimitLayer;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    /// use http_body_util::Empty;
    /// let mut svc = LimitLayer::fixed(1).layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(Empty::<bytes::Bytes>::new()))
    /// }));
    /// let future = svc.ready().await?.call(http::Request::new(()));
    /// drop(future); // the permit is back
    /// # Ok::<(), meshless::Error>(())
    /// # });
    /// ```
    pub struct ResponseFuture<F, S, B> {
        #[pin]
        inner: Option<F>,
        permit: Option<Permit>,
        // When the permit was taken, for the adaptive algorithms' round trip.
        started: Option<Instant>,
        // The rare paths, boxed so that the common one moves and drops one word for them.
        wait: Option<Pin<Box<Wait<S, B>>>>,
    }
}

pin_project! {
    /// A request waiting for a permit, with the service that will send it; or a refusal.
    struct Wait<S, B> {
        refused: Option<Error>,
        ticket: Ticket,
        // `None` for a refusal, which needs no timer (nor a runtime).
        #[pin]
        sleep: Option<Sleep>,
        service: Option<S>,
        request: Option<Request<B>>,
        // The permit once granted, while the service is made ready again.
        permit: Option<Permit>,
        // Whether the wait ends at the request's deadline rather than at `max_wait`.
        by_deadline: bool,
        since: Option<Instant>,
    }
}

/// A place in the queue. Dropped after a permit was handed to it but before it was taken, it
/// gives the permit back.
struct Ticket {
    rx: Option<oneshot::Receiver<()>>,
    shared: Option<Arc<Shared>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Some(shared) = &self.shared {
                if rx.try_recv().is_ok() {
                    shared.release();
                } else {
                    shared.leave();
                }
            }
        }
    }
}

impl<F, S, B> ResponseFuture<F, S, B> {
    pub(super) fn called(inner: F, permit: Permit, started: Option<Instant>) -> Self {
        ResponseFuture {
            inner: Some(inner),
            permit: Some(permit),
            started,
            wait: None,
        }
    }

    /// A request under no limit: it holds no permit.
    pub(super) fn unlimited(inner: F) -> Self {
        ResponseFuture {
            inner: Some(inner),
            permit: None,
            started: None,
            wait: None,
        }
    }

    pub(super) fn refused(error: Error) -> Self {
        ResponseFuture {
            inner: None,
            permit: None,
            started: None,
            wait: Some(Box::pin(Wait {
                refused: Some(error),
                ticket: Ticket {
                    rx: None,
                    shared: None,
                },
                sleep: None,
                service: None,
                request: None,
                permit: None,
                by_deadline: false,
                since: None,
            })),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn waiting(
        rx: oneshot::Receiver<()>,
        shared: Arc<Shared>,
        service: S,
        request: Request<B>,
        since: Instant,
        until: Instant,
        by_deadline: bool,
    ) -> Self {
        ResponseFuture {
            inner: None,
            permit: None,
            started: None,
            wait: Some(Box::pin(Wait {
                refused: None,
                ticket: Ticket {
                    rx: Some(rx),
                    shared: Some(shared),
                },
                sleep: Some(tokio::time::sleep_until(until)),
                service: Some(service),
                request: Some(request),
                permit: None,
                by_deadline,
                since: Some(since),
            })),
        }
    }
}

impl<F, S, B, RB, E> Future for ResponseFuture<F, S, B>
where
    F: Future<Output = Result<Response<RB>, E>>,
    S: Service<Request<B>, Future = F, Response = Response<RB>, Error = E>,
    E: Into<BoxError>,
    RB: Body,
{
    type Output = Result<Response<ResponseBody<RB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(wait) = this.wait.as_mut() {
            let mut wait = wait.as_mut().project();
            if wait.refused.is_some() {
                ready!(crate::primitives::refusing::poll_budget(cx));
            }
            if let Some(error) = wait.refused.take() {
                return Poll::Ready(Err(error));
            }
            let Some(shared) = wait.ticket.shared.clone() else {
                return Poll::Ready(Err(Error::new(Kind::ConcurrencyLimited)));
            };
            if let Some(rx) = wait.ticket.rx.as_mut() {
                match Pin::new(rx).poll(cx) {
                    Poll::Ready(Ok(())) => {
                        wait.ticket.rx = None;
                        *wait.permit = Some(Permit(shared.clone()));
                    }
                    // Its place was closed: the limit has learnt, and refuses the excess.
                    Poll::Ready(Err(_)) => {
                        return Poll::Ready(Err(turned_away(&shared, *wait.since)));
                    }
                    Poll::Pending => {
                        ready!(poll_expired(wait.sleep.as_mut().as_pin_mut(), cx));
                        return Poll::Ready(Err(waited(&shared, *wait.since, *wait.by_deadline)));
                    }
                }
            }
            let Some(service) = wait.service.as_mut() else {
                return Poll::Ready(Err(Error::new(Kind::ConcurrencyLimited)));
            };
            // The service was made ready before the wait; by now its readiness (a breaker's
            // verdict, a balancer's endpoints) may be stale, and a service is called only when
            // ready. The permit is held meanwhile, within the same deadline.
            match service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                // Dropping the wait gives the permit back.
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::from_service(e))),
                Poll::Pending => {
                    ready!(poll_expired(wait.sleep.as_mut().as_pin_mut(), cx));
                    return Poll::Ready(Err(waited(&shared, *wait.since, *wait.by_deadline)));
                }
            }
            let (Some(mut service), Some(request), Some(permit)) =
                (wait.service.take(), wait.request.take(), wait.permit.take())
            else {
                return Poll::Ready(Err(Error::new(Kind::ConcurrencyLimited)));
            };
            if shared.is_adaptive() {
                *this.started = Some(Instant::now());
            }
            *this.permit = Some(permit);
            this.inner.set(Some(service.call(request)));
            *this.wait = None;
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(Error::new(Kind::ConcurrencyLimited)));
        };
        let result = ready!(inner.poll(cx));
        this.inner.set(None);
        let permit = this.permit.take();
        match result {
            Ok(response) => {
                if let (Some(started), Some(permit)) = (*this.started, &permit) {
                    let now = Instant::now();
                    let sample = match response.status() {
                        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                            Some(Sample::Drop)
                        }
                        s if s.is_server_error() => None,
                        _ => Some(Sample::Rtt(now.saturating_duration_since(started))),
                    };
                    if let Some(sample) = sample {
                        permit.0.sample(sample, now);
                    }
                }
                // An empty body ends with its head: its permit goes back now.
                let permit = permit.filter(|_| !response.body().is_end_stream());
                Poll::Ready(Ok(response.map(|inner| ResponseBody { inner, permit })))
            }
            Err(error) => {
                let error = Error::from_service(error);
                if let (Some(_), Some(permit)) = (*this.started, &permit) {
                    // Attempts that ran out on a timeout end as `RetriesExhausted` or
                    // `BudgetExhausted`: a drop all the same (an upstream that hangs, with no
                    // retry left, was never seen otherwise).
                    // The caller's own deadline passing is its impatience, not a drop.
                    if error.is_timeout() && !error.is_callers_deadline() {
                        permit.0.sample(Sample::Drop, Instant::now());
                    }
                }
                Poll::Ready(Err(error))
            }
        }
    }
}

/// Whether the wait's timer has fired (a wait always has one: without, it is over).
fn poll_expired(sleep: Option<Pin<&mut Sleep>>, cx: &mut Context<'_>) -> Poll<()> {
    match sleep {
        Some(sleep) => sleep.poll(cx),
        None => Poll::Ready(()),
    }
}

/// The refusal of a request that waited until its time ran out.
/// The refusal of a request that waited while the limit was learning, once it had learnt.
fn turned_away(shared: &Shared, since: Option<Instant>) -> Error {
    let since = since.unwrap_or_else(Instant::now);
    let waited = Instant::now().saturating_duration_since(since);
    shared.rejected_one();
    Error::with_source(
        Kind::ConcurrencyLimited,
        Refusal::Learnt {
            limit: shared.limit(),
            waited,
        },
    )
}

fn waited(shared: &Shared, since: Option<Instant>, by_deadline: bool) -> Error {
    let since = since.unwrap_or_else(Instant::now);
    let waited = Instant::now().saturating_duration_since(since);
    shared.rejected_one();
    Error::with_source(
        Kind::ConcurrencyLimited,
        Refusal::Waited {
            waited,
            by_deadline,
        },
    )
}

impl<F, S, B> fmt::Debug for ResponseFuture<F, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("permit", &self.permit.is_some())
            .field("waiting", &self.wait.is_some())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// A response body that holds its request's permit until it ends: at the end of the
    /// stream, on an error, or when dropped. It yields exactly what the inner body yields.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use http_body_util::{BodyExt, Full};
    /// use meshless::limit::LimitLayer;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    /// let layer = LimitLayer::fixed(1);
    /// let handle = layer.handle();
    /// let mut svc = layer.layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(Full::new(bytes::Bytes::from("hi"))))
    /// }));
    /// let response = svc.ready().await?.call(http::Request::new(())).await?;
    /// assert_eq!(handle.in_flight(), 1); // the body is still to be read
    /// let body = response.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(body, "hi");
    /// assert_eq!(handle.in_flight(), 0);
    /// # Ok::<(), meshless::Error>(())
    /// # });
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("permit", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> ResponseBody<B> {
    /// The body without its permit, which goes back now.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use meshless::limit::LimitLayer;
    /// use tower::{Layer, Service, ServiceExt, service_fn};
    /// use http_body_util::Empty;
    /// let mut svc = LimitLayer::fixed(1).layer(service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(Empty::<bytes::Bytes>::new()))
    /// }));
    /// let response = svc.ready().await?.call(http::Request::new(())).await?;
    /// let _empty: Empty<bytes::Bytes> = response.into_body().into_inner();
    /// # Ok::<(), meshless::Error>(())
    /// # });
    /// ```
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        // The end of the stream, an error, or a last frame after which a reader that stops
        // at `is_end_stream` never polls again: the permit goes back.
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request was refused: the source of a [`Kind::ConcurrencyLimited`] error.
#[derive(Debug)]
pub(super) enum Refusal {
    Full { limit: u32, in_flight: u32 },
    Waited { waited: Duration, by_deadline: bool },
    NoTime,
    Learnt { limit: u32, waited: Duration },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Full { limit, in_flight } => {
                write!(f, "limit {limit} reached ({in_flight} in flight)")
            }
            Refusal::Waited {
                waited,
                by_deadline: false,
            } => write!(f, "no permit freed within {waited:?}"),
            Refusal::Waited {
                waited,
                by_deadline: true,
            } => write!(
                f,
                "no permit freed before the request's deadline ({waited:?})"
            ),
            Refusal::NoTime => f.write_str("limit reached, and no time left to wait"),
            Refusal::Learnt { limit, waited } => write!(
                f,
                "waited {waited:?} while the limit was learning; it has settled at {limit}, reached"
            ),
        }
    }
}

impl std::error::Error for Refusal {}
