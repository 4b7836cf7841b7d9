//! The watcher's events as a `tower::discover` stream of endpoint changes.

use super::slices::{Diff, Slices};
use crate::balance::Change;
use futures_core::Stream;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// The watcher's stream, already backing off after errors.
pub(crate) type Events =
    Pin<Box<dyn Stream<Item = Result<watcher::Event<EndpointSlice>, watcher::Error>> + Send>>;

/// Starts a watch: a new watcher, which lists the slices first.
pub(crate) type Watch = Box<dyn FnMut() -> Events + Send>;

/// The watcher's stream without the events it could not read (a malformed line, an object of
/// the wrong shape): those are logged and skipped, and the watch goes on at once. The backoff
/// that follows is for the watch failing, not for one bad event: behind it, each skipped line
/// delayed the next event by a backoff step (four in a row: 17 s).
pub(crate) struct SkipUndecodable {
    inner: Events,
    service: String,
}

impl SkipUndecodable {
    pub(crate) fn new(inner: Events, service: String) -> Self {
        SkipUndecodable { inner, service }
    }
}

impl Stream for SkipUndecodable {
    type Item = Result<watcher::Event<EndpointSlice>, watcher::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Err(watcher::Error::WatchFailed(kube::Error::SerdeError(e))))) => {
                    tracing::warn!(service = %self.service, error = %e, "skipped a Kubernetes watch event that could not be read");
                }
                other => return other,
            }
        }
    }
}

/// Whether the error is the API server's `410 Gone` for the version a watch started from: the
/// version is too old, and only a new list brings the watch up to date (kube-runtime would
/// start the watch from the same version again, and again).
fn gone(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 410)
}

/// The backoff between lists that a `410 Gone` asks for: each new watcher starts with a fresh
/// backoff of its own, so an API server that answered every watch with 410 was listed as fast
/// as it answered (3,000 lists in 3 s). The first relist is at once; one within a minute of
/// the last waits 0.8 s, doubling to 30 s.
#[derive(Default)]
struct Relist {
    last: Option<Instant>,
    delay: Duration,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// A relist more than this after the last one starts the backoff over.
const RELIST_QUIET: Duration = Duration::from_secs(60);
const RELIST_FIRST: Duration = Duration::from_millis(800);
const RELIST_MAX: Duration = Duration::from_secs(30);

impl Relist {
    fn next_delay(&mut self, now: Instant) -> Duration {
        self.delay = match self.last {
            Some(last) if now.saturating_duration_since(last) < RELIST_QUIET => {
                (self.delay * 2).clamp(RELIST_FIRST, RELIST_MAX)
            }
            _ => Duration::ZERO,
        };
        self.last = Some(now + self.delay);
        self.delay
    }
}

/// Opens an endpoint's service for a new address; `None` leaves the address out.
pub(crate) type MakeService<S> = Box<dyn FnMut(SocketAddr) -> Option<S> + Send>;

/// The endpoints of a Kubernetes Service as a [`tower::discover::Discover`] stream: a
/// [`Change::Insert`] when an address becomes ready, a [`Change::Remove`] when it stops
/// being ready (terminating, failing its readiness probe) or its slice goes.
///
/// Made by [`KubeService::discover`](super::KubeService::discover) or
/// [`discover_with`](super::KubeService::discover_with). It never ends and never yields an
/// error: the watcher's errors are logged, the watch is retried with kube-runtime's default
/// backoff (0.8 s doubling to 30 s, jittered), and the endpoints stay as they were meanwhile.
/// An event that cannot be read is skipped at once (no backoff), and a `410 Gone` at the start
/// of a watch lists again.
/// After a watch restart the relisted set replaces the old one through the difference only:
/// an address listed before and after is neither removed nor inserted again.
///
/// ```
/// # #[cfg(feature = "testing")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let api = meshless::kube::MockApiServer::start().await?;
/// # api.set_list(r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"web-1","resourceVersion":"1"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}],"ports":[{"name":"http","port":8080}]}]}"#);
/// // In a cluster: kube::Client::try_default().await?
/// let kube = api.client()?;
/// use meshless::balance::Balance;
/// use meshless::kube::{EndpointSliceDiscover, KubeService};
/// use std::net::SocketAddr;
///
/// let changes: EndpointSliceDiscover<SocketAddr> = KubeService::new(kube, "shop", "web").discover()?;
/// // The address itself as the service: a balancer of addresses, to watch the set.
/// let addresses: Balance<SocketAddr, SocketAddr> = Balance::builder().build();
/// let _task = addresses.discover(changes);
/// while addresses.is_empty() {
///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
/// }
/// # Ok(()) }
/// # #[cfg(not(feature = "testing"))]
/// # fn main() {}
/// ```
pub struct EndpointSliceDiscover<S> {
    events: Events,
    watch: Watch,
    /// Lists afresh after a `410 Gone`, at once the first time and then backing off.
    relist: Relist,
    slices: Slices,
    make: MakeService<S>,
    /// Changes of the last event not yet handed out: one event's changes are handed out
    /// back to back, so that `Balance::discover` applies them as one batch.
    pending: VecDeque<Change<SocketAddr, S>>,
    /// `namespace/name`, for the logs.
    service: String,
}

impl<S> EndpointSliceDiscover<S> {
    pub(crate) fn new(
        mut watch: Watch,
        slices: Slices,
        make: MakeService<S>,
        service: String,
    ) -> Self {
        EndpointSliceDiscover {
            events: watch(),
            watch,
            relist: Relist::default(),
            slices,
            make,
            pending: VecDeque::new(),
            service,
        }
    }

    fn queue(&mut self, diff: Diff) {
        if diff.removed.is_empty() && diff.added.is_empty() {
            return;
        }
        tracing::debug!(service = %self.service, removed = ?diff.removed, added = ?diff.added, "Kubernetes endpoints changed");
        self.pending
            .extend(diff.removed.into_iter().map(Change::Remove));
        for addr in diff.added {
            if let Some(service) = (self.make)(addr) {
                self.pending.push_back(Change::Insert(addr, service));
            }
        }
    }
}

// Nothing in it is ever pinned in place: the watcher's stream is boxed.
impl<S> Unpin for EndpointSliceDiscover<S> {}

impl<S> Stream for EndpointSliceDiscover<S> {
    type Item = Result<Change<SocketAddr, S>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            if let Some(wait) = this.relist.wait.as_mut() {
                std::task::ready!(wait.as_mut().poll(cx));
                this.relist.wait = None;
                this.events = (this.watch)();
            }
            match this.events.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => {
                    let diff = this.slices.apply(event);
                    this.queue(diff);
                }
                Poll::Ready(Some(Err(e))) if gone(&e) => {
                    let delay = this.relist.next_delay(Instant::now());
                    tracing::warn!(service = %this.service, error = %e, delay_ms = delay.as_millis() as u64, "Kubernetes watch version expired; listing again");
                    this.relist.wait = Some(Box::pin(tokio::time::sleep(delay)));
                }
                Poll::Ready(Some(Err(e))) => {
                    // The backoff stream delays the next attempt; the endpoints stay.
                    tracing::warn!(service = %this.service, error = %e, "Kubernetes watch failed; keeping the last endpoints and retrying");
                }
                // The watcher itself never ends; a stream that did has nothing more to say.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S> fmt::Debug for EndpointSliceDiscover<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSliceDiscover")
            .field("service", &self.service)
            .field("slices", &self.slices)
            .field("pending", &self.pending.len())
            .finish()
    }
}
