//! Contracts of the concurrency limit (`meshless::limit`): the fixed limit refuses or waits
//! (first come, first served; never past the deadline), permits are held to the end of the
//! body and released on cancellation, the adaptive limits move as their samples say, metrics,
//! settings, and a real overloaded server.
//!
//! Timing tests run on paused time against [`Upstream`], an in-memory service whose latency is
//! a function of how many requests it is serving.

#[path = "limit/adaptive.rs"]
mod adaptive;
#[path = "limit/fixed.rs"]
mod fixed;
#[path = "limit/learning.rs"]
mod learning;
#[path = "limit/learning_edges.rs"]
mod learning_edges;
#[path = "limit/overload.rs"]
mod overload;
#[path = "limit/readiness.rs"]
mod readiness;
#[path = "limit/settings.rs"]
mod settings;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use meshless::Error;
use meshless::limit::{Limit, LimitHandle, LimitLayer};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

type Latency = Arc<dyn Fn(u32, u64) -> Duration + Send + Sync>;

/// What a request asks of [`Upstream`], in its headers.
#[derive(Clone, Copy, Default)]
pub(crate) struct Ask {
    /// Recorded in the upstream's log.
    pub id: u64,
    /// A body to read (else an empty one, which ends with the head).
    pub body: bool,
    /// Fail with an I/O error instead of answering.
    pub fail: bool,
    /// Answer with this status.
    pub status: Option<StatusCode>,
    /// Fail with a meshless error of this kind (as a layer inside would).
    pub error: Option<meshless::error::Kind>,
}

/// An in-memory upstream: answers after `latency(in flight, id)`, logs each call's id and
/// instant, and counts the requests it is serving.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub log: Arc<Mutex<Vec<(u64, Instant)>>>,
    pub serving: Arc<AtomicU32>,
    latency: Latency,
}

impl Upstream {
    pub(crate) fn new(latency: impl Fn(u32, u64) -> Duration + Send + Sync + 'static) -> Self {
        Upstream {
            log: Arc::default(),
            serving: Arc::default(),
            latency: Arc::new(latency),
        }
    }

    pub(crate) fn flat(latency: Duration) -> Self {
        Self::new(move |_, _| latency)
    }

    pub(crate) fn ids(&self) -> Vec<u64> {
        self.log.lock().unwrap().iter().map(|(id, _)| *id).collect()
    }
}

impl Service<Request<Ask>> for Upstream {
    type Response = Response<Full<Bytes>>;
    type Error = meshless::BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Ask>) -> Self::Future {
        let ask = *req.body();
        self.log.lock().unwrap().push((ask.id, Instant::now()));
        let serving = self.serving.clone();
        let n = serving.fetch_add(1, Ordering::SeqCst) + 1;
        let latency = (self.latency)(n, ask.id);
        Box::pin(async move {
            // Counted down even if the caller drops the future.
            let _guard = Guard(serving);
            tokio::time::sleep(latency).await;
            if ask.fail {
                return Err(std::io::Error::other("upstream failed").into());
            }
            if let Some(kind) = ask.error {
                return Err(Error::new(kind).into());
            }
            let body = if ask.body { "body" } else { "" };
            let mut res = Response::new(Full::new(Bytes::from(body)));
            if let Some(status) = ask.status {
                *res.status_mut() = status;
            }
            Ok(res)
        })
    }
}

struct Guard(Arc<AtomicU32>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) type Svc = Limit<Upstream>;

/// The layer's service over `upstream`, and its handle.
pub(crate) fn limited(layer: LimitLayer, upstream: &Upstream) -> (Svc, LimitHandle) {
    let handle = layer.handle();
    (layer.layer(upstream.clone()), handle)
}

pub(crate) fn request(ask: Ask) -> Request<Ask> {
    Request::new(ask)
}

/// [`fetch`] on a task of its own.
pub(crate) fn spawn_fetch(
    mut svc: Svc,
    ask: Ask,
) -> tokio::task::JoinHandle<Result<StatusCode, Error>> {
    tokio::spawn(async move { fetch(&mut svc, ask).await })
}

/// `workers` tasks sending `ask` one after the other until aborted; a refused worker pauses
/// `backoff` before trying again.
pub(crate) fn load(
    svc: &Svc,
    workers: usize,
    backoff: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                loop {
                    if fetch(&mut svc, Ask::default()).await.is_err() {
                        tokio::time::sleep(backoff).await;
                    }
                }
            })
        })
        .collect()
}

/// Calls `svc` and awaits the response head.
pub(crate) async fn send(
    svc: &mut Svc,
    ask: Ask,
) -> Result<Response<meshless::limit::ResponseBody<Full<Bytes>>>, Error> {
    svc.ready().await?.call(request(ask)).await
}

/// Calls `svc`, reads the whole body, and returns the status.
pub(crate) async fn fetch(svc: &mut Svc, ask: Ask) -> Result<StatusCode, Error> {
    let res = send(svc, ask).await?;
    let status = res.status();
    res.into_body().collect().await.expect("an in-memory body");
    Ok(status)
}
