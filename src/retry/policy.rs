//! Which requests may be repeated, and the counters of what the retry layer decided.

use crate::classify::Idempotence;
use crate::observe::RecentStats;
use crate::primitives::ring::Recent;
use http::{HeaderMap, Method, Uri};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Marks one request as idempotent (`Idempotent(true)`) or not (`Idempotent(false)`),
/// overriding every other rule. Insert it into the request's extensions.
///
/// `Idempotent(false)` is absolute: once any byte of the request may have reached the server,
/// it is never sent again, whatever the server answered (even 429 or gRPC pushback). The only
/// repeat it allows is the transparent retry of an attempt that provably never left: a refused
/// connection, a request canceled before it was written, HTTP/2 `REFUSED_STREAM`, or a `GOAWAY`
/// above the request's stream ([`Retryable::NeverSent`](crate::classify::Retryable::NeverSent)).
///
/// ```
/// use meshless::retry::Idempotent;
/// let mut req = http::Request::post("http://pay/charge").body(()).unwrap();
/// // The server deduplicates by the charge id: safe to retry.
/// req.extensions_mut().insert(Idempotent(true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotent(pub bool);

/// The header of the IETF idempotency-key draft: a server that takes it deduplicates retries.
const IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

type RouteFn = dyn Fn(&Method, &Uri, &HeaderMap) -> bool + Send + Sync;

/// Decides whether a request is idempotent: safe to send again after a failure the server may
/// have acted on.
///
/// In order: a per-request [`Idempotent`] extension; the per-client setting
/// ([`all`](Self::all)); per-route rules ([`route`](Self::route)); an `Idempotency-Key` header
/// (the server deduplicates such requests); and finally the method, where GET, HEAD, OPTIONS,
/// PUT, DELETE and TRACE are idempotent, as RFC 9110 defines them.
///
/// ```
/// use meshless::retry::Idempotency;
/// use http::Method;
///
/// let rules = Idempotency::default()
///     .route(|method, uri, _headers| method == Method::POST && uri.path().starts_with("/v1/quotes"));
/// let req = http::Request::post("http://svc/v1/quotes").body(()).unwrap();
/// assert!(rules.is_idempotent(&req));
/// let req = http::Request::post("http://svc/v1/orders").body(()).unwrap();
/// assert!(!rules.is_idempotent(&req));
/// ```
#[derive(Clone)]
pub struct Idempotency {
    all: bool,
    idempotency_key: bool,
    routes: Vec<Arc<RouteFn>>,
}

impl Default for Idempotency {
    fn default() -> Self {
        Idempotency {
            all: false,
            idempotency_key: true,
            routes: Vec::new(),
        }
    }
}

impl fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("all", &self.all)
            .field("idempotency_key", &self.idempotency_key)
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl Idempotency {
    /// Treats every request of this client as idempotent (or, with `false`, goes back to the
    /// rules).
    ///
    /// ```
    /// let rules = meshless::retry::Idempotency::default().all(true);
    /// let req = http::Request::post("http://svc/").body(()).unwrap();
    /// assert!(rules.is_idempotent(&req));
    /// ```
    pub fn all(mut self, all: bool) -> Self {
        self.all = all;
        self
    }

    /// Adds a per-route rule: requests it returns `true` for are idempotent.
    ///
    /// ```
    /// let rules = meshless::retry::Idempotency::default()
    ///     .route(|_, uri, _| uri.path() == "/search");
    /// ```
    pub fn route<F>(mut self, rule: F) -> Self
    where
        F: Fn(&Method, &Uri, &HeaderMap) -> bool + Send + Sync + 'static,
    {
        self.routes.push(Arc::new(rule));
        self
    }

    /// Whether an `Idempotency-Key` header makes a request idempotent (default `true`).
    ///
    /// ```
    /// let rules = meshless::retry::Idempotency::default().idempotency_key(false);
    /// ```
    pub fn idempotency_key(mut self, honor: bool) -> Self {
        self.idempotency_key = honor;
        self
    }

    /// Applies the rules to a request.
    ///
    /// ```
    /// let rules = meshless::retry::Idempotency::default();
    /// assert!(rules.is_idempotent(&http::Request::get("http://svc/").body(()).unwrap()));
    /// ```
    pub fn is_idempotent<B>(&self, req: &http::Request<B>) -> bool {
        self.idempotence(req) == Idempotence::Idempotent
    }

    /// Applies the rules to a request, telling a request explicitly marked `Idempotent(false)`
    /// ([`Idempotence::Forbidden`]) from one that is merely not idempotent by the rules
    /// ([`Idempotence::Unmarked`]).
    ///
    /// ```
    /// use meshless::{classify::Idempotence, retry::{Idempotency, Idempotent}};
    /// let rules = Idempotency::default();
    /// let mut post = http::Request::post("http://svc/").body(()).unwrap();
    /// assert_eq!(rules.idempotence(&post), Idempotence::Unmarked);
    /// post.extensions_mut().insert(Idempotent(false));
    /// assert_eq!(rules.idempotence(&post), Idempotence::Forbidden);
    /// ```
    pub fn idempotence<B>(&self, req: &http::Request<B>) -> Idempotence {
        if let Some(Idempotent(marked)) = req.extensions().get::<Idempotent>() {
            return if *marked {
                Idempotence::Idempotent
            } else {
                Idempotence::Forbidden
            };
        }
        Idempotence::from(self.by_rules(req))
    }

    fn by_rules<B>(&self, req: &http::Request<B>) -> bool {
        self.by_parts(req.method(), req.uri(), req.headers())
    }

    pub(crate) fn by_parts(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
        if self.all {
            return true;
        }
        if self.routes.iter().any(|rule| rule(method, uri, headers)) {
            return true;
        }
        if self.idempotency_key && !headers.is_empty() && headers.contains_key(IDEMPOTENCY_KEY) {
            return true;
        }
        matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        )
    }
}

/// What a retry layer has done since it was built, and how its requests did over the last
/// minute ([`recent`](Self::recent)). Shared by all its services and clones; every reading is
/// an atomic load.
///
/// The retry layer decides at the response head (a retry is only possible before the answer is
/// committed), but a request is counted when its outcome is known: a success whose body is still
/// to come, at the end of that body ([`ResponseBody`](super::ResponseBody)). A body that fails
/// (a reset, a deadline passing while it stalls, a gRPC status in the trailers) makes the request
/// a failure, here and in [`recent`](Self::recent), as it does for the endpoint that sent it
/// ([`EndpointStats`](crate::balance::EndpointStats)`::failures`); a body its caller drops
/// before the end counts as the success its head was. Until then the request is in flight.
/// Latencies are measured to the head.
///
/// ```
/// use meshless::{budget::Budget, retry::RetryLayer};
/// let layer = RetryLayer::new(Budget::default());
/// let stats = layer.stats();
/// assert_eq!(stats.requests(), 0);
/// ```
#[derive(Debug, Default)]
pub struct RetryStats {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) stale_resends: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) retries_exhausted: AtomicU64,
    pub(crate) body_too_large: AtomicU64,
    pub(crate) pushback_refused: AtomicU64,
    pub(crate) deadline_refused: AtomicU64,
    pub(crate) caller_retries: AtomicU64,
    pub(crate) successes: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) attempt_timeouts: AtomicU64,
    pub(crate) replay_overflows: AtomicU64,
    pub(crate) backoff_nanos: AtomicU64,
    pub(crate) recent: Recent,
}

impl RetryStats {
    /// Logical requests received (each deposits into the budget).
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().requests();
    /// ```
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Retries sent. Every attempt made is `requests + retries + stale_resends`; the attempts
    /// counted by [`attempts`](Self::attempts) (and `meshless_attempts_total`) leave the
    /// stale-connection resends out.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().retries();
    /// ```
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Idempotent attempts sent again, at once and at no retry cost, because the server had
    /// closed the reused keep-alive connection they were written on before answering
    /// ([`Reason::StaleConnection`](crate::classify::Reason::StaleConnection)); at most 3 per
    /// request.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().stale_resends();
    /// ```
    pub fn stale_resends(&self) -> u64 {
        self.stale_resends.load(Ordering::Relaxed)
    }

    /// Retries refused because the budget was empty.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().budget_exhausted();
    /// ```
    pub fn budget_exhausted(&self) -> u64 {
        self.budget_exhausted.load(Ordering::Relaxed)
    }

    /// Retries refused because the request had used all its retries.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().retries_exhausted();
    /// ```
    pub fn retries_exhausted(&self) -> u64 {
        self.retries_exhausted.load(Ordering::Relaxed)
    }

    /// Requests whose body outgrew the replay buffer: sent once, and not retried when they failed.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().body_too_large();
    /// ```
    pub fn body_too_large(&self) -> u64 {
        self.body_too_large.load(Ordering::Relaxed)
    }

    /// Retries refused because the server's pushback forbade them or asked for too long a wait.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().pushback_refused();
    /// ```
    pub fn pushback_refused(&self) -> u64 {
        self.pushback_refused.load(Ordering::Relaxed)
    }

    /// Retries not started because the deadline would pass first.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().deadline_refused();
    /// ```
    pub fn deadline_refused(&self) -> u64 {
        self.deadline_refused.load(Ordering::Relaxed)
    }

    /// Retries left to the caller, which retries the request itself
    /// ([`CallerRetries`](super::CallerRetries)).
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().caller_retries();
    /// ```
    pub fn caller_retries(&self) -> u64 {
        self.caller_retries.load(Ordering::Relaxed)
    }

    /// Attempts made: the first attempt of every request (one the balancer refused unsent
    /// too), and every retry; not the resends after a stale keep-alive connection.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let stats = layer.stats();
    /// assert_eq!(stats.attempts(), stats.requests() + stats.retries());
    /// ```
    pub fn attempts(&self) -> u64 {
        self.requests().saturating_add(self.retries())
    }

    /// Requests that finished with a success, by the classifier (a 404 is one: the server
    /// answered as it should), counted once their body ended well or was dropped by their
    /// caller before its end.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().successes();
    /// ```
    pub fn successes(&self) -> u64 {
        self.successes.load(Ordering::Relaxed)
    }

    /// Requests that finished with a failure: a failure answer (say a 503 that was not
    /// retried), an error, a deadline that passed while they were under way, or a success
    /// head whose body then failed (a reset, the deadline, a gRPC status in the trailers).
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().failures();
    /// ```
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Requests whose caller dropped them before they finished and before their deadline.
    /// Once none is in flight (a response whose body has not ended is still in flight),
    /// `requests = successes + failures + cancelled`.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().cancelled();
    /// ```
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Attempts cut by the per-attempt timeout
    /// ([`AttemptTimeout`](crate::deadline::AttemptTimeout), inside the retry layer).
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().attempt_timeouts();
    /// ```
    pub fn attempt_timeouts(&self) -> u64 {
        self.attempt_timeouts.load(Ordering::Relaxed)
    }

    /// Requests whose body outgrew the replay buffer, so that they could not have been
    /// retried, whether or not they needed it ([`body_too_large`](Self::body_too_large) counts
    /// those that did).
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let n = layer.stats().replay_overflows();
    /// ```
    pub fn replay_overflows(&self) -> u64 {
        self.replay_overflows.load(Ordering::Relaxed)
    }

    /// The time the retry layer spent waiting before retries (backoff, or the server's pushback
    /// when it waits it out), added up. A pushback the balancer keeps per endpoint (the clients'
    /// setting) is waited for inside the next attempt, not here.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// assert_eq!(layer.stats().backoff_time(), std::time::Duration::ZERO);
    /// ```
    pub fn backoff_time(&self) -> Duration {
        Duration::from_nanos(self.backoff_nanos.load(Ordering::Relaxed))
    }

    /// Success rate and latency percentiles of the requests that finished in the last minute:
    /// a request's success as its body settled it, and its latency to the response head.
    ///
    /// ```
    /// # let layer = meshless::retry::RetryLayer::new(meshless::budget::Budget::default());
    /// let recent = layer.stats().recent();
    /// assert_eq!(recent.success_rate(), None); // nothing sent yet
    /// ```
    pub fn recent(&self) -> RecentStats {
        self.recent.read(tokio::time::Instant::now())
    }
}

impl RetryStats {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_backoff(&self, waited: Duration) {
        // Waits are capped by the max pushback: u64 nanoseconds (584 years) never overflow.
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.backoff_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method) -> http::Request<()> {
        http::Request::builder()
            .method(method)
            .uri("http://svc/x")
            .body(())
            .unwrap()
    }

    #[test]
    fn methods_follow_rfc_9110() {
        let rules = Idempotency::default();
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE,
        ] {
            assert!(rules.is_idempotent(&req(m.clone())), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!rules.is_idempotent(&req(m.clone())), "{m}");
        }
    }

    #[test]
    fn per_request_marks_override_everything() {
        let rules = Idempotency::default().all(true);
        let mut get = req(Method::GET);
        get.extensions_mut().insert(Idempotent(false));
        assert!(!rules.is_idempotent(&get));
        assert_eq!(rules.idempotence(&get), Idempotence::Forbidden);
        assert_eq!(
            rules.idempotence(&req(Method::GET)),
            Idempotence::Idempotent
        );
        assert_eq!(
            Idempotency::default().idempotence(&req(Method::POST)),
            Idempotence::Unmarked
        );
        let mut post = req(Method::POST);
        post.extensions_mut().insert(Idempotent(true));
        assert!(Idempotency::default().is_idempotent(&post));
    }

    #[test]
    fn idempotency_keys_count_unless_disabled() {
        let mut post = req(Method::POST);
        post.headers_mut()
            .insert("idempotency-key", "8e03978e".parse().unwrap());
        assert!(Idempotency::default().is_idempotent(&post));
        assert!(
            !Idempotency::default()
                .idempotency_key(false)
                .is_idempotent(&post)
        );
    }
}
