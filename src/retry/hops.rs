//! One retry layer per call chain: attempts announce themselves to the upstream, and a service
//! whose caller retries does not retry too.
//!
//! When service A retries B and B retries C, one failure at C becomes several attempts there
//! (with 2 retries a hop, 9 at the third hop). So:
//!
//! - every attempt the retry layer sends carries [`ATTEMPT_HEADER`] (`x-meshless-attempt: N`,
//!   N ≥ 1), the first included, whenever the layer can retry (`max_retries > 0`): the upstream
//!   knows from the first attempt that its caller retries. gRPC requests (`content-type:
//!   application/grpc…`) also carry [`GRPC_PREVIOUS_ATTEMPTS`] (`grpc-previous-rpc-attempts:
//!   N − 1`) on retries, as gRPC A6 defines it. Hedges do the same: each carries the number
//!   after the attempts before it (the first attempt counts as 1 when no retry layer numbered
//!   it, and stays unmarked: marking it would cost every hedgeable request a header);
//! - on the server, [`CallerRetriesLayer`] reads those headers and runs the handler in a scope
//!   where [`CallerRetries::current`] is `true`; the retry layer of a meshless client called
//!   from that handler then repeats only attempts that never left
//!   ([`Retryable::NeverSent`](crate::classify::Retryable::NeverSent)) and returns every other
//!   failure to the handler, for the caller to retry. Refused retries are counted as
//!   `caller_retries` (`meshless_retries_refused_total`,
//!   [`RetryStats::caller_retries`](super::RetryStats::caller_retries));
//! - code that spawns the client call onto another task, outside the handler's scope, marks
//!   the request itself with the [`CallerRetries`] extension, which the server layer also puts
//!   on the inbound request;
//! - [`RetryLayer::defer_to_caller`](super::RetryLayer::defer_to_caller)`(false)` retries as
//!   if no caller did.

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use std::future::Future;
use std::task::{Context, Poll};
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

/// The attempt number (1 for the first attempt) the retry layer sends with every attempt,
/// when it can retry.
///
/// ```
/// assert_eq!(meshless::retry::ATTEMPT_HEADER, "x-meshless-attempt");
/// ```
pub const ATTEMPT_HEADER: HeaderName = HeaderName::from_static(ATTEMPT_NAME);

const ATTEMPT_NAME: &str = "x-meshless-attempt";

/// gRPC A6's count of the attempts before this one, sent with the retries of gRPC requests.
///
/// ```
/// assert_eq!(meshless::retry::GRPC_PREVIOUS_ATTEMPTS, "grpc-previous-rpc-attempts");
/// ```
pub const GRPC_PREVIOUS_ATTEMPTS: HeaderName = HeaderName::from_static(GRPC_PREVIOUS_NAME);

const GRPC_PREVIOUS_NAME: &str = "grpc-previous-rpc-attempts";

/// The values of the first attempt numbers, built once: no allocation for them.
const NUMBERS: [HeaderValue; 10] = [
    HeaderValue::from_static("0"),
    HeaderValue::from_static("1"),
    HeaderValue::from_static("2"),
    HeaderValue::from_static("3"),
    HeaderValue::from_static("4"),
    HeaderValue::from_static("5"),
    HeaderValue::from_static("6"),
    HeaderValue::from_static("7"),
    HeaderValue::from_static("8"),
    HeaderValue::from_static("9"),
];

fn number(n: u32) -> HeaderValue {
    match NUMBERS.get(n as usize) {
        Some(value) => value.clone(),
        None => HeaderValue::from(n),
    }
}

/// Marks the first attempt of a request this layer may retry: `announce` when it would retry
/// an ordinary failure (an idempotent request), so that the upstream leaves its own retries to
/// this layer. A request this layer would not retry after a 503 is not announced: its upstream
/// keeps its retries, or the chain would have none.
#[inline]
pub(super) fn announce_first<B>(req: &mut Request<B>, announce: bool) {
    let headers = req.headers_mut();
    // Headers copied from an inbound request must not speak for this layer: a first attempt
    // has no previous one, and a request this layer does not announce is not retried by it.
    // An empty map holds neither (most requests reach the layer with few or no headers).
    if !headers.is_empty() {
        strip(headers, announce);
    }
    if announce {
        headers.insert(ATTEMPT_HEADER, NUMBERS[1].clone());
    }
}

/// The most distinct header names searched by comparison rather than by hash: hashing
/// `grpc-previous-rpc-attempts` alone costs about as much as comparing it with a dozen names
/// (callgrind: 130 instructions a `remove` of an absent name), and a client request has few.
const SCAN: usize = 12;

/// Removes [`GRPC_PREVIOUS_ATTEMPTS`], and [`ATTEMPT_HEADER`] unless `keep_attempt`, from a
/// request's headers; a small map is searched by comparing names, so that names it does not
/// hold cost no hashing.
fn strip(headers: &mut HeaderMap, keep_attempt: bool) {
    let (grpc, attempt) = if headers.keys_len() <= SCAN {
        headers
            .keys()
            .fold((false, false), |(grpc, attempt), name| {
                (
                    grpc || name.as_str() == GRPC_PREVIOUS_NAME,
                    attempt || name.as_str() == ATTEMPT_NAME,
                )
            })
    } else {
        (true, true)
    };
    if grpc {
        headers.remove(GRPC_PREVIOUS_ATTEMPTS);
    }
    if attempt && !keep_attempt {
        headers.remove(ATTEMPT_HEADER);
    }
}

/// Marks attempt number `attempt` (2 or more) of a request; with `announce` false (a request
/// this layer retries only because its attempt never left or was not processed), only the
/// gRPC count, which says what happened and asks nothing of the upstream.
pub(crate) fn announce_retry<B>(req: &mut Request<B>, attempt: u32, announce: bool) {
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
    let headers = req.headers_mut();
    if announce {
        headers.insert(ATTEMPT_HEADER, number(attempt));
    } else {
        headers.remove(ATTEMPT_HEADER);
    }
    if grpc {
        headers.insert(GRPC_PREVIOUS_ATTEMPTS, number(attempt.saturating_sub(1)));
    } else {
        // A header copied from an inbound request must not claim attempts this layer did not
        // make.
        headers.remove(GRPC_PREVIOUS_ATTEMPTS);
    }
}

/// The attempt number a request carries ([`ATTEMPT_HEADER`]), if any: the retry layer's mark,
/// which a hedge of that attempt counts on from.
pub(crate) fn attempt_number(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(ATTEMPT_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

tokio::task_local! {
    static CALLER_RETRIES: CallerRetries;
}

/// Whether the caller of the request being served retries it: `CallerRetries(true)` makes the
/// retry layer repeat only attempts that never left, and leave every other retry to the caller.
///
/// The retry layer reads it from the outbound request's extensions first, then from the scope
/// [`CallerRetriesLayer`] runs a handler in. Insert it into a request whose call runs outside
/// that scope (a spawned task), or `CallerRetries(false)` to retry whatever the caller does.
///
/// ```
/// use meshless::retry::CallerRetries;
/// let mut req = http::Request::get("http://c/").body(()).unwrap();
/// req.extensions_mut().insert(CallerRetries(true));
/// assert!(!CallerRetries::current()); // outside any server scope
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallerRetries(pub bool);

impl CallerRetries {
    /// Whether the request this task serves comes from a caller that retries: `true` inside a
    /// handler that [`CallerRetriesLayer`] runs for such a request, `false` anywhere else.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// use meshless::retry::CallerRetries;
    /// let inside = CallerRetries::scope(true, async { CallerRetries::current() }).await;
    /// assert!(inside);
    /// assert!(!CallerRetries::current());
    /// # });
    /// ```
    pub fn current() -> bool {
        CALLER_RETRIES.try_with(|c| c.0).unwrap_or(false)
    }

    /// Runs `future` with [`current`](Self::current) answering `caller_retries`: what the
    /// server layer does, for servers that are not tower services.
    ///
    /// ```
    /// # tokio_test::block_on(async {
    /// let out = meshless::retry::CallerRetries::scope(true, async { 7 }).await;
    /// assert_eq!(out, 7);
    /// # });
    /// ```
    pub fn scope<F: Future>(caller_retries: bool, future: F) -> TaskLocalFuture<CallerRetries, F> {
        CALLER_RETRIES.scope(CallerRetries(caller_retries), future)
    }

    /// Whether inbound request headers say the caller retries: an [`ATTEMPT_HEADER`] (a
    /// meshless caller that can retry) or a [`GRPC_PREVIOUS_ATTEMPTS`] (a gRPC retry).
    ///
    /// ```
    /// use meshless::retry::{CallerRetries, ATTEMPT_HEADER};
    /// let mut headers = http::HeaderMap::new();
    /// assert!(!CallerRetries::from_headers(&headers));
    /// headers.insert(ATTEMPT_HEADER, http::HeaderValue::from_static("1"));
    /// assert!(CallerRetries::from_headers(&headers));
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> bool {
        headers.contains_key(ATTEMPT_HEADER) || headers.contains_key(GRPC_PREVIOUS_ATTEMPTS)
    }

    /// What the retry layer reads for an outbound request: its extension, else the scope.
    #[inline]
    pub(crate) fn of<B>(req: &Request<B>) -> bool {
        match req.extensions().get::<CallerRetries>() {
            Some(CallerRetries(marked)) => *marked,
            None => CallerRetries::current(),
        }
    }
}

/// The server side of the hop guard: wraps a server's service (an axum `Router`, a hyper
/// `service_fn` through `tower`) so that a handler serving a request its caller retries makes
/// no retries of its own through a meshless client ([`CallerRetries`]).
///
/// ```
/// use meshless::retry::{CallerRetries, CallerRetriesLayer, ATTEMPT_HEADER};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio_test::block_on(async {
/// let handler = service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(CallerRetries::current())
/// });
/// let svc = CallerRetriesLayer::new().layer(handler);
/// let req = http::Request::builder().header(ATTEMPT_HEADER, "1").body(()).unwrap();
/// assert!(svc.oneshot(req).await.unwrap());
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CallerRetriesLayer {
    _private: (),
}

impl CallerRetriesLayer {
    /// The layer.
    ///
    /// ```
    /// let layer = meshless::retry::CallerRetriesLayer::new();
    /// ```
    pub fn new() -> Self {
        CallerRetriesLayer { _private: () }
    }
}

impl<S> Layer<S> for CallerRetriesLayer {
    type Service = CallerRetriesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerRetriesService { inner }
    }
}

/// A server's service that tells its handlers whether their caller retries (see
/// [`CallerRetriesLayer`]).
///
/// ```
/// use meshless::retry::CallerRetriesLayer;
/// use tower::{Layer, service_fn};
/// let svc = CallerRetriesLayer::new().layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(())
/// }));
/// let _inner = svc.get_ref();
/// ```
#[derive(Debug, Clone)]
pub struct CallerRetriesService<S> {
    inner: S,
}

impl<S> CallerRetriesService<S> {
    /// The wrapped service.
    ///
    /// ```
    /// # use tower::{Layer, service_fn};
    /// # let svc = meshless::retry::CallerRetriesLayer::new().layer(service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(()) }));
    /// let _inner = svc.get_ref();
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// # use tower::{Layer, service_fn};
    /// # let svc = meshless::retry::CallerRetriesLayer::new().layer(service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(()) }));
    /// let _inner = svc.into_inner();
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for CallerRetriesService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<CallerRetries, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let caller_retries = CallerRetries::from_headers(req.headers());
        if caller_retries {
            // For handlers that hand the call to another task, outside this scope.
            req.extensions_mut().insert(CallerRetries(true));
        }
        // The handler's synchronous part (`call`) runs in the scope too: a client request
        // made there and spawned reads its answer before it leaves.
        let future =
            CALLER_RETRIES.sync_scope(CallerRetries(caller_retries), || self.inner.call(req));
        CallerRetries::scope(caller_retries, future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose headers were copied from an inbound one, with `extra` more names.
    fn forwarded(extra: usize) -> Request<()> {
        let mut req = Request::new(());
        let headers = req.headers_mut();
        for i in 0..extra {
            let name = HeaderName::try_from(format!("x-extra-{i}")).unwrap();
            headers.insert(name, HeaderValue::from_static("v"));
        }
        headers.append(GRPC_PREVIOUS_ATTEMPTS, HeaderValue::from_static("4"));
        headers.append(ATTEMPT_HEADER, HeaderValue::from_static("3"));
        headers.append(ATTEMPT_HEADER, HeaderValue::from_static("7"));
        req
    }

    /// Both ways of finding the copied headers (comparing a few names, hashing among many)
    /// remove them; the headers of the request itself stay.
    #[test]
    fn copied_attempt_headers_never_speak_for_this_layer() {
        for extra in [0, 1, SCAN - 2, SCAN - 1, SCAN, 3 * SCAN] {
            let mut req = forwarded(extra);
            announce_first(&mut req, true);
            let attempts: Vec<_> = req.headers().get_all(ATTEMPT_HEADER).iter().collect();
            assert_eq!(attempts, ["1"], "{extra} more headers");
            assert!(!req.headers().contains_key(GRPC_PREVIOUS_ATTEMPTS));
            assert_eq!(req.headers().keys_len(), extra + 1);

            let mut req = forwarded(extra);
            announce_first(&mut req, false);
            assert!(!req.headers().contains_key(ATTEMPT_HEADER), "{extra}");
            assert!(!req.headers().contains_key(GRPC_PREVIOUS_ATTEMPTS));
            assert_eq!(req.headers().keys_len(), extra);
        }
    }

    #[test]
    fn an_empty_map_gets_the_number_alone() {
        let mut req = Request::new(());
        announce_first(&mut req, true);
        assert_eq!(req.headers().len(), 1);
        assert_eq!(req.headers()[ATTEMPT_HEADER], "1");
        let mut req = Request::new(());
        announce_first(&mut req, false);
        assert!(req.headers().is_empty());
    }
}
