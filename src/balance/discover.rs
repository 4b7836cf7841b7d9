//! Following a discovery stream: changes that arrive together are applied as one batch.

use super::{Balance, Change, Discover};
use crate::error::BoxError;
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};

impl<K, S> Balance<K, S>
where
    K: Clone + Eq + Hash + fmt::Display + Send + Sync + 'static,
    S: Send + Sync + 'static,
{
    /// Follows a discovery stream in a background task: changes that arrive together are
    /// applied as one batch. The task ends with the stream, or on its first error.
    ///
    /// ```
    /// use meshless::balance::{Balance, Change};
    /// # use tower::service_fn;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let svc = service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    /// let balance = Balance::builder().build();
    /// let stream = meshless::balance::ChannelDiscover::new(rx);
    /// let task = balance.discover(stream);
    /// tx.send(Change::Insert("a", svc)).unwrap();
    /// drop(tx);
    /// task.await.unwrap();
    /// assert_eq!(balance.len(), 1);
    /// # }
    /// ```
    pub fn discover<D>(&self, discover: D) -> tokio::task::JoinHandle<()>
    where
        D: Discover<Key = K, Service = S> + Send + 'static,
        D::Error: Into<BoxError>,
    {
        let balance = self.clone();
        tokio::spawn(async move {
            let mut discover = Box::pin(discover);
            loop {
                let batch = std::future::poll_fn(|cx| drain(discover.as_mut(), cx)).await;
                let ended = batch.ended;
                balance.apply(batch.changes);
                if ended {
                    return;
                }
            }
        })
    }
}

struct Batch<K, S> {
    changes: Vec<Change<K, S>>,
    ended: bool,
}

/// Everything the stream has ready now; pending only when it has nothing at all.
fn drain<D: Discover>(
    mut discover: Pin<&mut D>,
    cx: &mut Context<'_>,
) -> Poll<Batch<D::Key, D::Service>>
where
    D::Error: Into<BoxError>,
{
    let mut changes = Vec::new();
    loop {
        match discover.as_mut().poll_discover(cx) {
            Poll::Ready(Some(Ok(change))) => changes.push(change),
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                tracing::warn!(error = %e, "discovery failed; keeping the last endpoints");
                return Poll::Ready(Batch {
                    changes,
                    ended: true,
                });
            }
            Poll::Ready(None) => {
                return Poll::Ready(Batch {
                    changes,
                    ended: true,
                });
            }
            Poll::Pending if changes.is_empty() => return Poll::Pending,
            Poll::Pending => {
                return Poll::Ready(Batch {
                    changes,
                    ended: false,
                });
            }
        }
    }
}

/// A discovery stream fed by a channel: send [`Change`]s from anywhere.
///
/// ```
/// use meshless::balance::{ChannelDiscover, Change};
/// let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Change<&str, ()>>();
/// let discover = ChannelDiscover::new(rx);
/// ```
#[derive(Debug)]
pub struct ChannelDiscover<K, S> {
    rx: tokio::sync::mpsc::UnboundedReceiver<Change<K, S>>,
}

impl<K, S> ChannelDiscover<K, S> {
    /// Wraps the receiving end of a channel.
    ///
    /// ```
    /// let (_tx, rx) = tokio::sync::mpsc::unbounded_channel::<meshless::balance::Change<u32, ()>>();
    /// let discover = meshless::balance::ChannelDiscover::new(rx);
    /// ```
    pub fn new(rx: tokio::sync::mpsc::UnboundedReceiver<Change<K, S>>) -> Self {
        ChannelDiscover { rx }
    }
}

impl<K, S> futures_core::Stream for ChannelDiscover<K, S> {
    type Item = Result<Change<K, S>, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}
