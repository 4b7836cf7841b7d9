//! A timer that exists only once something has to wait for it.

use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// Fires at `end` (never, when there is none). The tokio timer is built on the first poll
    /// that has to wait, not when the request is sent: a response ready at once, the common
    /// case in front of a fast service, then costs no runtime handle, no timer and no copy of
    /// one. It stays inline (not boxed), so a response that waits pays no allocation either.
    #[derive(Debug)]
    pub(crate) struct LazySleep {
        end: Option<Instant>,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl LazySleep {
    #[inline]
    pub(crate) fn new(end: Option<Instant>) -> Self {
        LazySleep { end, sleep: None }
    }

    /// The instant it fires at.
    #[inline]
    pub(crate) fn end(&self) -> Option<Instant> {
        self.end
    }

    /// `Ready` once `end` has passed; registers the waker like [`Sleep`] does.
    pub(crate) fn poll_end(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(end) = *this.end else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(end)));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            // Set just above.
            None => Poll::Pending,
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
