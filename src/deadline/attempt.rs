//! The timeout of one attempt.

use super::overrun::Overruns;
use super::timer::LazySleep;
use super::{
    CallerDeadline, DEADLINE_HEADER, DeadlineFromCaller, RequestDeadline, expiry, grpc_timeout,
};
use crate::error::{BoxError, Error, Kind};
use crate::primitives::step::{self, Step};
use http::{HeaderName, HeaderValue, Request};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Bounds each attempt by `min(per-attempt timeout, time left before the request's deadline)`:
/// [`AttemptTimeout`] services.
///
/// Placed inside the retry layer, it times out one attempt so that the next can start. It reads
/// the deadline set by [`DeadlineLayer`](super::DeadlineLayer) and tells the server how long it
/// has: `grpc-timeout` on gRPC requests, and the opt-in [`deadline_header`](Self::deadline_header)
/// on others.
///
/// ```
/// use meshless::deadline::AttemptTimeoutLayer;
/// use std::time::Duration;
/// let layer = AttemptTimeoutLayer::new(Duration::from_millis(300)).deadline_header(true);
/// ```
#[derive(Debug, Clone)]
pub struct AttemptTimeoutLayer {
    pub(super) timeout: Option<Duration>,
    pub(super) header: Option<HeaderName>,
    /// Whether to look for a route's attempt timeout (a client's routes).
    pub(super) routes: crate::primitives::route_policy::Switch,
    /// Set when the timeout was derived from the deadline rather than asked for: it stands
    /// aside while attempts often run past it (see `overrun`).
    pub(super) overruns: Option<Arc<Overruns>>,
}

impl AttemptTimeoutLayer {
    /// Each attempt may take at most `timeout` (and never past the request's deadline).
    /// [`Duration::MAX`] means no per-attempt limit. `Duration::ZERO` starts no attempt: each
    /// fails at once with [`Kind::AttemptTimedOut`], nothing sent
    /// ([`AttemptTimeoutConfig::validate`](super::AttemptTimeoutConfig::validate) refuses it;
    /// use [`from_config`](Self::from_config) for checked settings).
    ///
    /// ```
    /// let layer = meshless::deadline::AttemptTimeoutLayer::new(std::time::Duration::from_secs(1));
    /// ```
    pub fn new(timeout: Duration) -> Self {
        AttemptTimeoutLayer {
            timeout: Some(timeout),
            header: None,
            routes: crate::primitives::route_policy::Switch::default(),
            overruns: None,
        }
    }

    /// Reads a request's route for its attempt timeout, in place of this one.
    pub(crate) fn routes(mut self, routes: crate::primitives::route_policy::Switch) -> Self {
        self.routes = routes;
        self
    }

    /// For a timeout the client derived from the deadline, not one the user set: while more
    /// than a quarter of the last two seconds' attempts ran past it, attempts run to the
    /// deadline instead (an upstream slow as a whole, where a retry would be as slow; see
    /// `overrun`). Retries are cut like first attempts; a request that would not be sent again
    /// once it may have reached the server (a POST) is not. A route's own attempt timeout is
    /// always kept.
    pub(crate) fn derived(mut self) -> Self {
        self.overruns = Some(Arc::new(Overruns::new(Instant::now())));
        self
    }

    /// No per-attempt limit: attempts are bounded only by the request's deadline, which is
    /// still propagated to the server.
    ///
    /// ```
    /// let layer = meshless::deadline::AttemptTimeoutLayer::deadline_only();
    /// ```
    pub fn deadline_only() -> Self {
        AttemptTimeoutLayer {
            timeout: None,
            header: None,
            routes: crate::primitives::route_policy::Switch::default(),
            overruns: None,
        }
    }

    /// Sends the attempt's time limit on HTTP requests too, in whole milliseconds, as
    /// [`DEADLINE_HEADER`]. gRPC requests always carry `grpc-timeout`.
    ///
    /// ```
    /// let layer = meshless::deadline::AttemptTimeoutLayer::deadline_only().deadline_header(true);
    /// ```
    pub fn deadline_header(mut self, enabled: bool) -> Self {
        self.header = enabled.then(|| HeaderName::from_static(DEADLINE_HEADER));
        self
    }

    /// Like [`deadline_header`](Self::deadline_header), with a header name of your choice.
    ///
    /// ```
    /// let layer = meshless::deadline::AttemptTimeoutLayer::deadline_only()
    ///     .deadline_header_name(http::HeaderName::from_static("x-envoy-expected-rq-timeout-ms"));
    /// ```
    pub fn deadline_header_name(mut self, name: HeaderName) -> Self {
        self.header = Some(name);
        self
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout {
            inner,
            config: self.clone(),
        }
    }
}

/// Times out one attempt with [`Kind::AttemptTimedOut`], or [`Kind::DeadlineExceeded`] when it
/// was the request's deadline that ran out. An attempt with no time left is not started.
///
/// ```
/// use meshless::deadline::AttemptTimeout;
/// use std::time::Duration;
/// use tower::service_fn;
/// let svc = AttemptTimeout::new(
///     service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) }),
///     Duration::from_millis(200),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct AttemptTimeout<S> {
    inner: S,
    config: AttemptTimeoutLayer,
}

impl<S> AttemptTimeout<S> {
    /// Wraps `inner`, bounding each call by `timeout`.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::deadline::AttemptTimeout::new(svc, std::time::Duration::from_secs(1));
    /// ```
    pub fn new(inner: S, timeout: Duration) -> Self {
        AttemptTimeoutLayer::new(timeout).layer(inner)
    }

    /// The wrapped service.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let svc = meshless::deadline::AttemptTimeout::new(svc, std::time::Duration::from_secs(1));
    /// let _inner = svc.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// # use tower::service_fn;
    /// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(http::Response::new(())) });
    /// let inner = meshless::deadline::AttemptTimeout::new(svc, std::time::Duration::from_secs(1)).into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for AttemptTimeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service)
    }

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let _step = Step::enter();
        let now = step::now();
        let (timeout, mut watch) = match &self.config.overruns {
            None => (self.config.timeout, None),
            Some(overruns) => {
                // A retry is cut like a first attempt: each allowed attempt has its share of
                // the deadline, and one that hangs leaves the last its turn (a gray failure);
                // at a brownout's start the cut decides again (`frequent_lately`) and lets it
                // run once most recent attempts overran. A request the retry layer will not
                // send again once it may have reached the server (a POST) is not cut: no retry
                // could follow, and a late answer within the deadline would only become a
                // failure.
                let extensions = req.extensions();
                let let_run = !extensions.is_empty() && extensions.get::<SentOnce>().is_some();
                self.watched(overruns, now, let_run)
            }
        };
        // A request with no extension has no deadline to meet, and one without headers is no
        // gRPC call: unless an HTTP header is asked for, only the timer is left to set. Kept
        // small so that it inlines into the caller, as tower's `Timeout` does.
        let plain =
            req.extensions().is_empty() && req.headers().is_empty() && self.config.header.is_none();
        let (end, kind) = if plain {
            let end = timeout.map(|t| super::instant_after(now, t));
            (end, Kind::AttemptTimedOut)
        } else {
            self.limit(&mut req, now, timeout, &mut watch)
        };
        // The request's deadline ends the attempt: whether it is the caller's own.
        let callers = kind == Kind::DeadlineExceeded
            && req.extensions().get::<DeadlineFromCaller>().is_some();
        if callers {
            req.extensions_mut()
                .insert(super::AttemptEndsAtCallersDeadline);
        }
        if end == Some(now) {
            // No time left (or a zero timeout): the attempt is not started.
            return AttemptFuture {
                inner: None,
                timer: LazySleep::new(None),
                kind,
                callers,
                watch: None,
            };
        }
        AttemptFuture {
            inner: Some(self.inner.call(req)),
            timer: LazySleep::new(end),
            kind,
            callers,
            watch,
        }
    }
}

impl<S> AttemptTimeout<S> {
    /// A derived timeout's attempt: its timeout (none while attempts often run past it), and
    /// what the attempt reports when it ends.
    #[inline(never)]
    fn watched(
        &self,
        overruns: &Arc<Overruns>,
        now: Instant,
        let_run: bool,
    ) -> (Option<Duration>, Option<Watch>) {
        let Some(timeout) = self.config.timeout else {
            return (None, None);
        };
        let watch = Watch {
            overruns: overruns.clone(),
            past: super::instant_after(now, timeout),
            may_let_run: true,
        };
        let timeout = if let_run || overruns.frequent(now) {
            None
        } else {
            Some(timeout)
        };
        (timeout, Some(watch))
    }

    /// The attempt's end and the error it reports when it passes, for a request that may
    /// carry a deadline or propagate a limit; records the end in the request's
    /// [`RequestDeadline`] and tells the server. `timeout` is the layer's own, unless the
    /// request's route has one.
    #[inline(never)]
    fn limit<B>(
        &self,
        req: &mut Request<B>,
        now: Instant,
        timeout: Option<Duration>,
        watch: &mut Option<Watch>,
    ) -> (Option<Instant>, Kind) {
        let timeout = match self.config.routes.route(req) {
            // A derived one keeps the derived rules `call` applied: none for a retry, none
            // while attempts often run past it. (Any route, even one that does not fit the
            // request, turned them off: a retry was cut again.) Its overruns are counted
            // against the route's own timeout.
            Some(route) if route.0.attempt_derived && self.config.overruns.is_some() => {
                if let Some(watch) = watch.as_mut() {
                    watch.past = super::instant_after(now, route.0.attempt_timeout);
                }
                timeout.map(|_| route.0.attempt_timeout)
            }
            Some(route) => {
                // A timeout asked for always cuts, the re-decision included.
                if let Some(watch) = watch.as_mut() {
                    watch.may_let_run = false;
                }
                Some(route.0.attempt_timeout)
            }
            None => timeout,
        };
        // Whichever limit is shorter decides both the timer and the error it reports. Compared
        // as instants: a duration between two instants costs as much as the rest of this
        // function, and only a propagated limit needs one.
        let (end, kind) = match req.extensions_mut().get_mut::<RequestDeadline>() {
            None => (
                timeout.map(|t| super::instant_after(now, t)),
                Kind::AttemptTimedOut,
            ),
            Some(deadline) => {
                let cut = deadline.0.max(now);
                // A timeout too long for the clock is longer than any deadline.
                match timeout.and_then(|t| now.checked_add(t)) {
                    Some(own) if own <= cut => {
                        // Below this layer the request must be done when the attempt ends:
                        // the balancer does not wait for an endpoint's pushback past it.
                        // Written in place, so nothing allocates; the retry layer above
                        // keeps its own copy of the head for the next attempt.
                        deadline.0 = own;
                        (Some(own), Kind::AttemptTimedOut)
                    }
                    _ => (Some(cut), Kind::DeadlineExceeded),
                }
            }
        };
        if let Some(end) = end.filter(|end| *end != now) {
            // The server was told the attempt's end: it is not let run past it.
            if self.propagate(req, end) && kind == Kind::AttemptTimedOut {
                if let Some(watch) = watch.as_mut() {
                    watch.may_let_run = false;
                }
            }
        }
        (end, kind)
    }

    /// Tells the server the attempt's limit, never more than the caller asked for: the
    /// smallest of `limit`, the caller's own header and what is left of the caller's limit
    /// recorded by [`Deadline`](super::Deadline). A malformed caller value is replaced.
    ///
    /// `grpc-timeout` goes on gRPC calls, the configured header on the others; and a limit
    /// header the caller already put on the request (`grpc-timeout` on any call, or
    /// [`DEADLINE_HEADER`]) never leaves higher than what is left: the deadline layer read it
    /// as the caller's limit, and the server may too.
    fn propagate<B>(&self, req: &mut Request<B>, end: Instant) -> bool {
        let found = Limits::find(req.headers());
        let grpc = found.grpc || found.grpc_timeout;
        // A gRPC call says its limit in `grpc-timeout` alone.
        let configured = self.config.header.as_ref().filter(|_| !found.grpc);
        let http = match configured {
            Some(name) => Some(name.clone()),
            None if found.deadline_header => Some(OURS),
            None => None,
        };
        if !grpc && http.is_none() {
            return false;
        }
        // The time left, from a reading of its own: the step's shared one may be a few
        // microseconds old, and the limit told downstream must not be longer than what is left.
        let now = Instant::now();
        let mut limit = end.saturating_duration_since(now);
        if let Some(CallerDeadline(at)) = req.extensions().get::<CallerDeadline>() {
            limit = limit.min(at.saturating_duration_since(now));
        }
        if grpc {
            let own = req
                .headers()
                .get(&grpc_timeout::HEADER)
                .and_then(grpc_timeout::parse);
            let sent = own.map_or(limit, |own| own.min(limit));
            req.headers_mut()
                .insert(grpc_timeout::HEADER, grpc_timeout::encode(sent));
        }
        if let Some(name) = http {
            if configured.is_some_and(|c| *c != OURS) {
                // For a layer below that holds the request back, to lower it again.
                req.extensions_mut()
                    .insert(super::LimitHeader(name.clone()));
            }
            // The caller's own header under our name, with another name configured: lowered too.
            if configured.is_some_and(|c| *c != OURS) && found.deadline_header {
                lower_millis(req.headers_mut(), OURS, limit);
            }
            lower_millis(req.headers_mut(), name, limit);
        }
        true
    }
}

/// [`DEADLINE_HEADER`] as a name, built at compile time: `from_static` at run time checks every
/// byte (callgrind: 154 instructions an attempt).
pub(super) const OURS: HeaderName = HeaderName::from_static(DEADLINE_HEADER);

/// Sets `name` to `limit` in whole milliseconds, or to the value already there if lower.
pub(super) fn lower_millis(headers: &mut http::HeaderMap, name: HeaderName, limit: Duration) {
    let own = headers.get(&name).and_then(super::total::parse_millis);
    let sent = own.map_or(limit, |own| own.min(limit));
    // Rounded up, so a limit under a millisecond is not sent as "no time at all".
    let millis = sent.as_nanos().div_ceil(1_000_000);
    headers.insert(
        name,
        HeaderValue::from(u64::try_from(millis).unwrap_or(u64::MAX)),
    );
}

/// The most header values searched by comparing names rather than by hashing.
const SCAN: usize = 8;

/// What a request's headers say about its limit, found in one pass. Asked of every attempt
/// that carries headers (the retry layer's attempt number is one): a few names are compared
/// for less than a lookup's hashing and probing costs (callgrind: 83 instructions for a `get`
/// in a map of one header).
struct Limits {
    /// A gRPC call: `content-type: application/grpc…`, in any case.
    grpc: bool,
    /// The caller sent a `grpc-timeout`.
    grpc_timeout: bool,
    /// The caller sent a [`DEADLINE_HEADER`].
    deadline_header: bool,
}

impl Limits {
    fn find(headers: &http::HeaderMap) -> Self {
        let is_grpc = |v: &HeaderValue| {
            let prefix = b"application/grpc";
            v.as_bytes()
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        };
        if headers.len() <= SCAN {
            let mut found = Limits {
                grpc: false,
                grpc_timeout: false,
                deadline_header: false,
            };
            let mut content_type = None;
            for (name, value) in headers {
                if *name == http::header::CONTENT_TYPE {
                    // The first value, as `get` reads it.
                    content_type = content_type.or(Some(value));
                } else if *name == grpc_timeout::HEADER {
                    found.grpc_timeout = true;
                } else if name.as_str() == DEADLINE_HEADER {
                    found.deadline_header = true;
                }
            }
            found.grpc = content_type.is_some_and(is_grpc);
            found
        } else {
            Limits {
                grpc: headers.get(http::header::CONTENT_TYPE).is_some_and(is_grpc),
                grpc_timeout: headers.contains_key(&grpc_timeout::HEADER),
                deadline_header: headers.contains_key(DEADLINE_HEADER),
            }
        }
    }
}

/// What an attempt under a derived timeout reports when it ends: whether it ran past the
/// timeout, cut there or let run.
/// Marks a request its retry layer will not send again once it may have reached the server
/// (not idempotent): a derived attempt timeout lets it run to its deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentOnce;

struct Watch {
    overruns: Arc<Overruns>,
    /// Where the timeout would cut the attempt.
    past: Instant,
    /// Whether the re-decision when the timer fires may let it run (a derived timeout, not
    /// told to the server).
    may_let_run: bool,
}

impl Watch {
    fn report(self, now: Instant) {
        self.overruns.record(now, now >= self.past);
    }
}

pin_project! {
    /// The response future of [`AttemptTimeout`].
    pub struct AttemptFuture<F> {
        // None when the attempt was not started (no time was left), and once the timeout
        // dropped it.
        #[pin]
        inner: Option<F>,
        #[pin]
        timer: LazySleep,
        kind: Kind,
        // The end is the caller's own deadline (see `DeadlineFromCaller`).
        callers: bool,
        // Under a derived timeout, until the attempt ends.
        watch: Option<Watch>,
    }

    impl<F> PinnedDrop for AttemptFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Given up before it ended (the deadline, or the caller): it counts only if it had
            // run past the timeout; one the caller dropped sooner says nothing of the upstream.
            if let Some(watch) = this.project().watch.take() {
                let now = Instant::now();
                if now >= watch.past {
                    watch.report(now);
                }
            }
        }
    }
}

impl<F, T, E> Future for AttemptFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(super::expired(*this.kind, *this.callers)));
        };
        if let Poll::Ready(result) = inner.poll(cx) {
            if let Some(watch) = this.watch.take() {
                watch.report(step::now());
            }
            return Poll::Ready(result.map_err(Error::from_service));
        }
        std::task::ready!(this.timer.as_mut().poll_end(cx));
        // A derived timeout decides again when it would cut: attempts that began before the
        // window knew the upstream had slowed as a whole (a fleet-wide brownout) run on too,
        // to the deadline the layers above keep, rather than being cut all at once.
        if *this.kind == Kind::AttemptTimedOut {
            let now = Instant::now();
            if this
                .watch
                .as_ref()
                .is_some_and(|w| w.may_let_run && w.overruns.frequent_lately(now))
            {
                if let Some(watch) = this.watch.take() {
                    watch.report(now);
                }
                this.timer.set(LazySleep::new(None));
                return Poll::Pending;
            }
        }
        // Dropped by our own timer: the endpoint is charged with the timeout, unless it was
        // the caller's deadline.
        expiry::while_deadline_expiring(*this.callers, || this.inner.set(None));
        if let Some(watch) = this.watch.take() {
            // A fresh reading: the pass's shared one may predate the timer's end.
            watch.report(Instant::now());
        }
        Poll::Ready(Err(super::expired(*this.kind, *this.callers)))
    }
}

impl<F> std::fmt::Debug for AttemptFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptFuture")
            .field("started", &self.inner.is_some())
            .field("kind", &self.kind)
            .finish()
    }
}

#[cfg(test)]
mod derived;

#[cfg(test)]
mod tests;
