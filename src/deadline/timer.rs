//! A timer that exists only once something has to wait for it.

use crate::primitives::step;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// Fires at its end (never, when there is none). The tokio timer is built on the first
    /// poll that has to wait, not when the request is sent: a response ready at once, the
    /// common case in front of a fast service, then costs no runtime handle and no timer. It
    /// stays inline (not boxed), so a response that waits pays no allocation either, and the
    /// end shares the timer's room until then, so the future grows by nothing.
    #[derive(Debug)]
    pub(crate) struct LazySleep {
        #[pin]
        state: State,
    }

    impl PinnedDrop for LazySleep {
        fn drop(this: Pin<&mut Self>) {
            // A watch that was told of this timer must not count on it any more.
            if let StateProj::Armed { .. } = this.project().state.project() {
                step::disarmed();
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State {
        Unarmed { end: Option<Instant> },
        Armed { #[pin] sleep: Sleep },
    }
}

impl LazySleep {
    #[inline]
    pub(crate) fn new(end: Option<Instant>) -> Self {
        LazySleep {
            state: State::Unarmed { end },
        }
    }

    /// The instant it fires at.
    #[inline]
    pub(crate) fn end(&self) -> Option<Instant> {
        match &self.state {
            State::Unarmed { end } => *end,
            State::Armed { sleep } => Some(sleep.deadline()),
        }
    }

    /// Whether the tokio timer was built.
    #[cfg(test)]
    pub(crate) fn is_armed(&self) -> bool {
        matches!(self.state, State::Armed { .. })
    }

    /// `Ready` once the end has passed; registers the waker like [`Sleep`] does, and tells a
    /// watching [`Cover`](crate::primitives::step::Cover) that it will wake the task.
    pub(crate) fn poll_end(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_end_unless(cx, None)
    }

    /// As [`poll_end`](Self::poll_end), but a timer not armed yet stays unarmed while
    /// another one, armed in this poll by an inner future, wakes the task by its end
    /// (`covered`, from a [`Cover`](crate::primitives::step::Cover)). It is armed on the
    /// first poll that finds no such timer, so it still fires at its end.
    pub(crate) fn poll_end_unless(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        covered: Option<Instant>,
    ) -> Poll<()> {
        let mut state = self.project().state;
        if let StateProj::Unarmed { end } = state.as_mut().project() {
            let Some(end) = *end else {
                return Poll::Pending;
            };
            if covered.is_some_and(|other| other <= end) {
                return Poll::Pending;
            }
            state.set(State::Armed {
                sleep: tokio::time::sleep_until(end),
            });
        }
        match state.project() {
            StateProj::Armed { sleep } => {
                let end = sleep.deadline();
                let polled = sleep.poll(cx);
                if polled.is_pending() {
                    step::armed(end);
                }
                polled
            }
            // Armed just above.
            StateProj::Unarmed { .. } => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_its_end_and_never_without_one() {
        let start = Instant::now();
        let end = start + Duration::from_millis(250);
        let timer = LazySleep::new(Some(end));
        assert_eq!(timer.end(), Some(end));
        // Time passes before the first poll: the end is an instant, not a delay from then.
        tokio::time::advance(Duration::from_millis(100)).await;
        let mut timer = std::pin::pin!(timer);
        std::future::poll_fn(|cx| timer.as_mut().poll_end(cx)).await;
        assert_eq!(Instant::now(), end);

        let mut never = std::pin::pin!(LazySleep::new(None));
        let waited = tokio::time::timeout(
            Duration::from_secs(3600),
            std::future::poll_fn(|cx| never.as_mut().poll_end(cx)),
        )
        .await;
        assert!(waited.is_err(), "a timer with no end never fires");
    }
}
