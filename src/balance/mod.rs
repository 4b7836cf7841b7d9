//! Latency-aware load balancing over a changing set of endpoints.
//!
//! [`Balance`] sends each request to one endpoint chosen by the power of two choices: draw two
//! at random, take the one with the lower cost, where cost is the endpoint's peak-EWMA
//! round-trip time × (requests in flight + 1), divided by its weight. The round trip runs to
//! the end of the response body. That latency is divided by the share of the endpoint's
//! recent attempts that gave an answer: failures (5xx, 429, connection errors, timeouts) and
//! first attempts a hedge outran are misses, which make it dearer in proportion to their rate
//! and never make it look faster, so an endpoint that fails fast does not attract traffic as
//! tower's `PeakEwma` would let it.
//!
//! Each endpoint has an [outlier](crate::outlier) gate: an ejected endpoint is *not ready* —
//! never removed — and comes back through one probe and a slow start. When no endpoint can take a
//! request, it waits at most the fail-fast timeout (3 s, as linkerd) and then fails with
//! [`Kind::NoReadyEndpoint`](crate::error::Kind::NoReadyEndpoint): the balancer never hangs.
//!
//! Endpoints come from a static list, from [`Balance::apply`] (any batch of
//! [`Change`]s, as `tower::discover` yields them) or from a [`Discover`] stream driven by
//! [`Balance::discover`]. A removed endpoint finishes the requests it already has.
//!
//! ```
//! use meshless::balance::Balance;
//! use tower::{ServiceExt, service_fn};
//!
//! # tokio_test::block_on(async {
//! let endpoint = |name: &'static str| service_fn(move |_req: http::Request<()>| async move {
//!     Ok::<_, std::io::Error>(http::Response::new(name.to_string()))
//! });
//! let balance = Balance::builder().build();
//! balance.insert("a", endpoint("a"));
//! balance.insert("b", endpoint("b"));
//! let res = balance.clone().oneshot(http::Request::new(())).await?;
//! assert_eq!(res.status(), 200);
//! # Ok::<_, meshless::Error>(()) });
//! ```

mod avoid;
mod body;
mod builder;
mod config;
mod discover;
mod endpoint;
mod endpoints;
mod ewma;
mod future;
mod p2c;
mod quiet;
mod stats;
mod telemetry;

pub use self::avoid::AvoidEndpoints;
pub use self::body::ResponseBody;
pub use self::builder::BalanceBuilder;
pub use self::config::BalanceConfig;
pub use self::discover::ChannelDiscover;
pub use self::future::ResponseFuture;
pub use self::stats::{BalanceStats, EndpointStats};
pub use tower::discover::{Change, Discover};

pub(crate) use self::endpoints::{Candidate, Endpoints, Shared, Snapshot};
use crate::error::{BoxError, Error};
use crate::primitives::step::{self, Step};
use http::Request;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use tokio::time::Instant;
use tower::Service;

/// Balances requests over endpoints by latency and load, ejecting outliers.
///
/// Cheap to clone: clones share the endpoints and their measurements. `poll_ready` is always
/// ready; choosing an endpoint (and waiting for one) happens in the response future, so that a
/// deadline set by an outer layer bounds the wait.
///
/// ```
/// use meshless::balance::Balance;
/// use tower::service_fn;
/// let balance = Balance::builder().build();
/// balance.insert("127.0.0.1:8080", service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::io::Error>(http::Response::new(()))
/// }));
/// assert_eq!(balance.len(), 1);
/// ```
pub struct Balance<K, S> {
    shared: Arc<Shared<K, S>>,
    // The endpoint set as this handle last saw it, and its generation: while the generation is
    // current, a request upgrades this instead of taking the shared set's read lock (one atomic
    // read-modify-write instead of three). Weak, so that an idle handle never keeps removed
    // endpoints (their services, connections and metric series) alive; a clone starts empty,
    // so that cloning a handle (the retry layer does, per request) costs no more than before.
    cached: Weak<Endpoints<K, S>>,
    generation: u64,
    // When the outlier detector's next sweep is due, as this handle last read it: until
    // then a request does not ask the detector, whose check converts the time to its own
    // clock (about a fortieth of a pick). Never late: the due time only moves later (a
    // sweep another handle ran), and one read early costs one look.
    sweep_hint: Instant,
}

impl<K, S> Clone for Balance<K, S> {
    fn clone(&self) -> Self {
        Balance {
            shared: self.shared.clone(),
            cached: Weak::new(),
            generation: 0,
            sweep_hint: self.sweep_hint,
        }
    }
}

impl Balance<(), ()> {
    /// Starts a configuration with the defaults; [`BalanceBuilder::build`] picks the key and
    /// service types.
    ///
    /// ```
    /// use meshless::balance::Balance;
    /// # use tower::service_fn;
    /// let balance = Balance::builder().build();
    /// balance.insert("a", service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::io::Error>(http::Response::new(String::new()))
    /// }));
    /// ```
    pub fn builder() -> BalanceBuilder {
        BalanceBuilder::default()
    }
}

impl<K, S> Balance<K, S> {
    /// The number of endpoints.
    ///
    /// ```
    /// assert_eq!(meshless::balance::Balance::builder().build::<&str, ()>().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.snapshot().len()
    }

    /// True when there is no endpoint.
    ///
    /// ```
    /// assert!(meshless::balance::Balance::builder().build::<&str, ()>().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests that failed fast because no endpoint was ready.
    ///
    /// ```
    /// assert_eq!(meshless::balance::Balance::builder().build::<&str, ()>().fail_fast_events(), 0);
    /// ```
    pub fn fail_fast_events(&self) -> u64 {
        self.shared.fail_fast_events.load(Ordering::Relaxed)
    }
}

impl<K, S, B, RB> Service<Request<B>> for Balance<K, S>
where
    S: Service<Request<B>, Response = http::Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    RB: http_body::Body,
{
    type Response = http::Response<ResponseBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<K, S, B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is decided per request, in the response future; see the type's docs.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let _step = Step::enter();
        let now = step::now();
        if now >= self.sweep_hint {
            let detector = &self.shared.detector;
            if detector.sweep_if_due(now) {
                self.shared.publish_rtt(now);
            }
            // With no sweep armed yet (no endpoint so far), every request looks again.
            self.sweep_hint = detector.next_sweep().unwrap_or(now);
        }
        let generation = self.shared.generation.load(Ordering::Acquire);
        let cached = if generation == self.generation {
            self.cached.upgrade()
        } else {
            None
        };
        let endpoints = match cached {
            Some(endpoints) => endpoints,
            None => {
                // Read after the generation: at least as new as it, so never stale once cached.
                let endpoints = self.shared.snapshot();
                self.cached = Arc::downgrade(&endpoints);
                self.generation = generation;
                endpoints
            }
        };
        ResponseFuture::new(self.shared.clone(), endpoints, req, now)
    }
}

impl<K: fmt::Debug + Clone + Eq + Hash, S> fmt::Debug for Balance<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<K> = self
            .shared
            .snapshot()
            .all()
            .map(|e| e.key.clone())
            .collect();
        f.debug_struct("Balance").field("endpoints", &keys).finish()
    }
}

#[cfg(test)]
mod future_tests;
#[cfg(test)]
mod sweep_tests;
