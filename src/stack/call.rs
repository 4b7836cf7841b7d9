//! One request's way through a client's stack, shared by the clients' response futures.

use crate::error::{Error, Kind};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::Service;
use tower::util::Oneshot;

pin_project! {
    /// The state of a client's response future: a concrete type, so a request costs no
    /// allocation for it and no dynamic call per poll.
    #[project = CallProj]
    pub(crate) enum Call<S, R>
    where
        S: Service<R>,
    {
        // An error found before sending (an invalid URI); taken when reported.
        Failed { error: Option<Error> },
        // Sent by a convenience method: the stack is asked whether it is ready first.
        Waiting { #[pin] call: Oneshot<S, R> },
        // Sent through `Service::call`, whose caller already waited for readiness.
        Called { #[pin] future: S::Future },
        // Reported: the layers' futures are gone, so polling again cannot reach them.
        Done,
    }
}

impl<S, R> Future for Call<S, R>
where
    S: Service<R, Error = Error>,
{
    type Output = Result<S::Response, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = match self.as_mut().project() {
            CallProj::Waiting { call } => std::task::ready!(call.poll(cx)),
            CallProj::Called { future } => std::task::ready!(future.poll(cx)),
            CallProj::Failed { error } => Err(error
                .take()
                .unwrap_or_else(|| Error::new(Kind::InvalidRequest))),
            // Polled after it reported: a caller's bug, answered without a panic (the layers'
            // futures, tower's `Oneshot` among them, would panic).
            CallProj::Done => Err(Error::new(Kind::InvalidRequest)),
        };
        self.set(Call::Done);
        Poll::Ready(out)
    }
}
