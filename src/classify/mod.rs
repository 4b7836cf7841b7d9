//! One decision per attempt: did it succeed, may it be retried, and why.
//!
//! Every layer of meshless reads the same [`Class`]: the retry layer decides whether to try
//! again, and the balancer, outlier ejection, breaker and metrics (which consume it later) decide
//! what the outcome says about the endpoint. Deciding once keeps them consistent: an endpoint is
//! never ejected for an answer that the retry layer considered a success.
//!
//! # Which failures may be retried, and for which requests
//!
//! A request that may have reached the server is sent again only when it is idempotent, or
//! when the failure proves the server did not act on it ([`Retryable`]). The built-in rules
//! count these as proof:
//!
//! | outcome | [`Retryable`] | source |
//! |---|---|---|
//! | connection refused, connect failure | `NeverSent` | nothing was written to any server |
//! | request canceled by hyper before it was written | `NeverSent` | hyper `Error::is_canceled` |
//! | HTTP/2 `RST_STREAM(REFUSED_STREAM)` | `NeverSent` | RFC 9113 §8.7: "not processed" |
//! | HTTP/2 `GOAWAY` received, stream above its last stream id | `NeverSent` | RFC 9113 §6.8 |
//! | HTTP 429 Too Many Requests | `NotProcessed` | RFC 6585 §4: the request was rate limited |
//! | HTTP 503 with `Retry-After` | `NotProcessed` | RFC 9110 §15.6.4, §10.2.3: the server is unable to handle it and says when to come back |
//! | gRPC UNAVAILABLE with `grpc-retry-pushback-ms` ≥ 0 | `NotProcessed` | gRPC A6: the server's pushback |
//! | HTTP 500, 502, 504, 408, a 503 without `Retry-After` | `IfIdempotent` | a proxy or the application may have acted |
//! | gRPC UNAVAILABLE without pushback | `IfIdempotent` | gRPC status code guide: not safe to retry non-idempotent calls |
//! | reset, early close, timeout, unknown error | `IfIdempotent` | the request may have been processed |
//! | a reused HTTP/1.1 connection closed before any byte of the answer ([`Reason::StaleConnection`]) | `IfIdempotent` | RFC 9112 §9.3.1: idempotent requests may be retried on a new connection |
//!
//! `NeverSent` failures are retried for every request, even one marked
//! [`Idempotent(false)`](crate::retry::Idempotent); `NotProcessed` ones for every request but
//! those (an explicit `Idempotent(false)` trusts no answer: once a byte may have reached the
//! server, it is never sent again); `IfIdempotent` ones for idempotent requests only.
//!
//! A [`Classify`] implementation looks at response heads, end-of-stream trailers and errors. The
//! built-in [`Classifier`] understands HTTP and gRPC (it recognises gRPC by the response's
//! `content-type`), and user closures can override it for any response:
//!
//! ```
//! use meshless::classify::{Class, Classifier, Classify};
//! use http::StatusCode;
//!
//! // Treat 404 from this API as a retryable failure (a replica not yet warmed up, say).
//! let classify = Classifier::default().with_response(|status, _headers| {
//!     (status == StatusCode::NOT_FOUND).then(Class::retryable_if_idempotent_failure)
//! });
//! let res = http::Response::builder().status(404).body(()).unwrap();
//! let class = classify.classify_response(res.status(), res.headers()).unwrap();
//! assert!(class.is_failure());
//! ```

mod error;
#[cfg(feature = "reqwest")]
pub(crate) use self::error::PossiblySent;
pub(crate) use self::error::callers_fault;
pub(crate) use self::error::{StaleConnection, stale_connection};
mod grpc;
mod http;
pub(crate) mod pushback;

pub use self::error::classify_error;
pub use self::grpc::{Code, Grpc};
pub use self::http::Http;
pub use self::pushback::Pushback;

pub(crate) mod grpc_web;

use ::http::{HeaderMap, StatusCode};
use std::fmt;
use std::sync::Arc;

/// The class the balancer gave a failed response, carried in the response's extensions so that
/// the layers above (the retry layer, your own) read the verdict instead of classifying again.
///
/// Attached to failures only: a success carries nothing, so the hot path allocates nothing,
/// and a layer that finds no `Classified` on a response classifies it itself (with the same
/// classifier, for [`http::Client`](crate::http::Client), the result is the same).
///
/// ```
/// use meshless::classify::{Class, Classified, Reason, Retryable};
///
/// let mut res = http::Response::new(());
/// let class = Class::failure(Reason::Status(503), Retryable::IfIdempotent);
/// res.extensions_mut().insert(Classified(class));
/// assert_eq!(res.extensions().get::<Classified>(), Some(&Classified(class)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified(pub Class);

/// Marks a response that came at the end of redirects its HTTP client followed (reqwest's):
/// its answer is the redirect target's, and proves nothing about the request as first sent
/// (a POST answered `303`, whose target then answers `429`, was acted on). The balancer reads
/// the answer's class as [`Class::after_redirect`].
/// `elsewhere` when the answer came from another URL than the one asked (its pushback is not
/// the endpoint's); false when the client may have followed a redirect back to the URL asked
/// (a POST answered `303` to itself), which the answer cannot tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AfterRedirect {
    pub(crate) elsewhere: bool,
}

/// The verdict on one attempt: its outcome, whether it may be retried, and why.
///
/// ```
/// use meshless::classify::{Class, Reason, Retryable};
///
/// let c = Class::failure(Reason::Status(503), Retryable::IfIdempotent);
/// assert!(c.is_failure());
/// assert_eq!(c.retryable(), Retryable::IfIdempotent);
/// assert_eq!(c.reason().as_str(), "http_5xx");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    failure: bool,
    reason: Reason,
    retryable: Retryable,
    pushback: Option<Pushback>,
}

/// Whether a failed attempt may be tried again, and for which requests.
///
/// The levels rank how sure the client is that the server did not act on the request, and so
/// which requests may be sent again (see [`Idempotence`]):
///
/// | level | idempotent | not idempotent, unmarked | `Idempotent(false)` |
/// |---|---|---|---|
/// | [`Never`](Retryable::Never) | no | no | no |
/// | [`IfIdempotent`](Retryable::IfIdempotent) | yes | no | no |
/// | [`NotProcessed`](Retryable::NotProcessed) | yes | yes | no |
/// | [`NeverSent`](Retryable::NeverSent) | yes | yes | yes |
///
/// An explicit [`Idempotent(false)`](crate::retry::Idempotent) is absolute: once any byte of the
/// request may have reached the server, it is not sent again, whatever the server said. Only an
/// attempt that provably never left the client is repeated for it.
///
/// ```
/// use meshless::classify::{Idempotence, Retryable};
/// assert!(Retryable::NeverSent.allows(Idempotence::Forbidden));
/// assert!(Retryable::NotProcessed.allows(Idempotence::Unmarked));
/// assert!(!Retryable::NotProcessed.allows(Idempotence::Forbidden));
/// assert!(Retryable::IfIdempotent.allows(true));
/// assert!(!Retryable::IfIdempotent.allows(false));
/// assert!(!Retryable::Never.allows(true));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Retryable {
    /// Never retry (successes, and failures such as HTTP 501 that a retry would only repeat).
    Never,
    /// Retry only requests that are safe to repeat: the server may have acted on this one.
    IfIdempotent,
    /// The server answered that it did not act on the request (HTTP 429, a 503 with
    /// `Retry-After`, gRPC pushback): any request may retry, except one explicitly marked
    /// `Idempotent(false)`, for which an answer that a proxy or the application may have sent
    /// after acting is not proof enough.
    NotProcessed,
    /// The attempt provably never reached the server's application: the connection was refused
    /// or failed, the HTTP client canceled the request before writing it, or HTTP/2 guarantees
    /// that the stream was not processed (`REFUSED_STREAM`, RFC 9113 §8.7; a `GOAWAY` whose last
    /// stream id is below the request's, §6.8). Any request may retry, even `Idempotent(false)`:
    /// this is the transparent retry of Envoy, linkerd and gRPC.
    NeverSent,
}

impl Retryable {
    /// Whether a request of the given [`Idempotence`] may be retried under this rule. A `bool`
    /// reads as idempotent (`true`) or unmarked and not idempotent (`false`).
    ///
    /// ```
    /// use meshless::classify::{Idempotence, Retryable};
    /// assert!(Retryable::NotProcessed.allows(false));
    /// assert!(!Retryable::NotProcessed.allows(Idempotence::Forbidden));
    /// ```
    pub fn allows(self, request: impl Into<Idempotence>) -> bool {
        let request = request.into();
        match self {
            Retryable::Never => false,
            Retryable::IfIdempotent => request == Idempotence::Idempotent,
            Retryable::NotProcessed => request != Idempotence::Forbidden,
            Retryable::NeverSent => true,
        }
    }
}

/// How safe a request is to send again, as the retry layer decides it
/// ([`Idempotency`](crate::retry::Idempotency)).
///
/// ```
/// use meshless::classify::Idempotence;
/// assert_eq!(Idempotence::from(true), Idempotence::Idempotent);
/// assert_eq!(Idempotence::from(false), Idempotence::Unmarked);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Idempotence {
    /// Safe to repeat: by method (GET, PUT…), route rule, `Idempotency-Key` or an explicit
    /// `Idempotent(true)`.
    Idempotent,
    /// Not idempotent by the rules (a POST, say), with no marking: retried only when the server
    /// said it did not act, or the attempt never left.
    Unmarked,
    /// Explicitly `Idempotent(false)`: retried only when the attempt never left the client.
    Forbidden,
}

impl From<bool> for Idempotence {
    fn from(idempotent: bool) -> Self {
        if idempotent {
            Idempotence::Idempotent
        } else {
            Idempotence::Unmarked
        }
    }
}

/// Why an attempt was classified as it was. Bounded, so it is safe as a metric label.
///
/// ```
/// use meshless::classify::{Code, Reason};
/// assert_eq!(Reason::Grpc(Code::Unavailable).as_str(), "grpc_unavailable");
/// assert_eq!(Reason::Timeout.as_str(), "timeout");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A successful response.
    Success,
    /// An HTTP status that decided the class (the status code itself).
    Status(u16),
    /// A gRPC status that decided the class.
    Grpc(Code),
    /// The connection could not be established: the request never left the client.
    Connect,
    /// The server refused the stream or request before processing it (HTTP/2 REFUSED_STREAM,
    /// a connection closed before the request was written).
    Refused,
    /// The connection was reset or closed after the request may have been sent.
    Reset,
    /// The server closed a reused HTTP/1.1 keep-alive connection after the request was
    /// written and before any byte of its answer: the race every pool of idle connections
    /// has with servers that close them. Nothing says the endpoint is unwell: it is charged
    /// nothing, and the retry layer sends an idempotent request again at once, at no retry cost
    /// (as browsers and Go's `net/http` do).
    StaleConnection,
    /// The attempt timed out.
    Timeout,
    /// The body of the response failed while streaming.
    Body,
    /// No endpoint could take the request.
    NoEndpoint,
    /// Any other error.
    Other,
}

impl Reason {
    /// A short, stable, lower-case name for logs and metric labels.
    ///
    /// ```
    /// use meshless::classify::Reason;
    /// assert_eq!(Reason::Status(429).as_str(), "http_429");
    /// assert_eq!(Reason::Status(502).as_str(), "http_5xx");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Success => "success",
            // Only the statuses that change behaviour get their own label; the rest are grouped
            // so that label cardinality stays bounded.
            Reason::Status(408) => "http_408",
            Reason::Status(429) => "http_429",
            Reason::Status(s) if *s >= 500 => "http_5xx",
            Reason::Status(s) if *s >= 400 => "http_4xx",
            Reason::Status(_) => "http_other",
            Reason::Grpc(code) => code.label(),
            Reason::Connect => "connect",
            Reason::Refused => "refused",
            Reason::Reset => "reset",
            Reason::StaleConnection => "stale_connection",
            Reason::Timeout => "timeout",
            Reason::Body => "body",
            Reason::NoEndpoint => "no_endpoint",
            Reason::Other => "other",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Status(s) => write!(f, "HTTP status {s}"),
            Reason::Grpc(code) => write!(f, "gRPC status {}", code.label()),
            other => f.write_str(other.as_str()),
        }
    }
}

impl Class {
    /// A success: never retried, counts in favour of the endpoint.
    ///
    /// ```
    /// assert!(meshless::classify::Class::success().is_success());
    /// ```
    pub const fn success() -> Self {
        Class {
            failure: false,
            reason: Reason::Success,
            retryable: Retryable::Never,
            pushback: None,
        }
    }

    /// A failure with its reason and retry rule.
    ///
    /// ```
    /// use meshless::classify::{Class, Reason, Retryable};
    /// let c = Class::failure(Reason::Reset, Retryable::IfIdempotent);
    /// assert!(c.is_failure());
    /// ```
    pub const fn failure(reason: Reason, retryable: Retryable) -> Self {
        Class {
            failure: true,
            reason,
            retryable,
            pushback: None,
        }
    }

    /// A failure that idempotent requests may retry, with reason [`Reason::Other`]: a
    /// convenient answer for custom classifiers.
    ///
    /// ```
    /// let c = meshless::classify::Class::retryable_if_idempotent_failure();
    /// assert!(c.retryable().allows(true));
    /// ```
    pub const fn retryable_if_idempotent_failure() -> Self {
        Class::failure(Reason::Other, Retryable::IfIdempotent)
    }

    /// The class of the same answer when it came from a redirect's target rather than from the
    /// server first asked: that server may have acted on the request (a POST answered `303`),
    /// so no answer of the target proves the request unprocessed (`NotProcessed` and
    /// `NeverSent` become `IfIdempotent`), and the pushback of a target elsewhere is not the
    /// first server's to keep.
    pub(crate) fn after_redirect(self, redirect: AfterRedirect) -> Self {
        let retryable = match self.retryable {
            Retryable::NotProcessed | Retryable::NeverSent => Retryable::IfIdempotent,
            other => other,
        };
        Class {
            retryable,
            pushback: if redirect.elsewhere {
                None
            } else {
                self.pushback
            },
            ..self
        }
    }

    /// The same class carrying the server's pushback (`Retry-After`, `grpc-retry-pushback-ms`).
    ///
    /// ```
    /// use meshless::classify::{Class, Pushback, Reason, Retryable};
    /// use std::time::Duration;
    /// let c = Class::failure(Reason::Status(429), Retryable::NotProcessed)
    ///     .with_pushback(Some(Pushback::After(Duration::from_secs(1))));
    /// assert_eq!(c.pushback(), Some(Pushback::After(Duration::from_secs(1))));
    /// ```
    pub const fn with_pushback(mut self, pushback: Option<Pushback>) -> Self {
        self.pushback = pushback;
        self
    }

    /// True for a success.
    ///
    /// ```
    /// assert!(meshless::classify::Class::success().is_success());
    /// ```
    pub const fn is_success(&self) -> bool {
        !self.failure
    }

    /// True for a failure.
    ///
    /// ```
    /// assert!(!meshless::classify::Class::success().is_failure());
    /// ```
    pub const fn is_failure(&self) -> bool {
        self.failure
    }

    /// Why this class was given.
    ///
    /// ```
    /// use meshless::classify::{Class, Reason};
    /// assert_eq!(Class::success().reason(), Reason::Success);
    /// ```
    pub const fn reason(&self) -> Reason {
        self.reason
    }

    /// Which requests may retry this outcome.
    ///
    /// ```
    /// use meshless::classify::{Class, Retryable};
    /// assert_eq!(Class::success().retryable(), Retryable::Never);
    /// ```
    pub const fn retryable(&self) -> Retryable {
        self.retryable
    }

    /// What the server asked of retries, if it said anything.
    ///
    /// ```
    /// assert_eq!(meshless::classify::Class::success().pushback(), None);
    /// ```
    pub const fn pushback(&self) -> Option<Pushback> {
        self.pushback
    }
}

/// Decides the [`Class`] of each attempt's outcome.
///
/// `classify_response` sees the response head. It returns `None` when the outcome is only known
/// at the end of the stream (a gRPC response whose status travels in trailers); then
/// `classify_eos` decides once the body ends. Errors (from the service or from the response
/// body) go to `classify_error`.
///
/// Retries decide on the head alone: a response whose head has been received is committed (as in
/// gRPC's retry design), so only trailers-only gRPC responses can be retried.
///
/// ```
/// use meshless::classify::{Class, Classify, Reason, Retryable};
/// use http::{HeaderMap, StatusCode};
///
/// /// Everything but 200 is a retryable failure.
/// struct Strict;
/// impl Classify for Strict {
///     fn classify_response(&self, status: StatusCode, _: &HeaderMap) -> Option<Class> {
///         Some(if status == StatusCode::OK {
///             Class::success()
///         } else {
///             Class::failure(Reason::Status(status.as_u16()), Retryable::IfIdempotent)
///         })
///     }
///     fn classify_eos(&self, _: Option<&HeaderMap>) -> Class {
///         Class::success()
///     }
///     fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Class {
///         meshless::classify::classify_error(error)
///     }
/// }
/// assert!(Strict.classify_response(StatusCode::CREATED, &HeaderMap::new()).unwrap().is_failure());
/// ```
pub trait Classify: Send + Sync + 'static {
    /// Classifies a response head; `None` defers to [`Classify::classify_eos`].
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Class>;

    /// Classifies the end of a response stream whose head was deferred.
    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Class;

    /// Classifies an error returned instead of a response, or raised by the response body.
    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Class;
}

type ResponseFn = dyn Fn(StatusCode, &HeaderMap) -> Option<Class> + Send + Sync;

/// The default classifier: HTTP and gRPC rules, plus optional user overrides.
///
/// A response whose `content-type` starts with `application/grpc` follows the [`Grpc`] rules;
/// any other follows the [`Http`] rules. Errors are classified by [`classify_error`], which walks
/// the error's source chain for I/O, hyper and HTTP/2 errors.
///
/// ```
/// use meshless::classify::{Classifier, Classify, Reason, Retryable};
/// use http::StatusCode;
///
/// let c = Classifier::default();
/// // A plain 503 may come from a proxy or an application that acted: idempotent requests only.
/// let class = c.classify_response(StatusCode::SERVICE_UNAVAILABLE, &Default::default()).unwrap();
/// assert_eq!(class.retryable(), Retryable::IfIdempotent);
/// assert_eq!(class.reason(), Reason::Status(503));
/// // 429 says the request was rejected before it was processed.
/// let class = c.classify_response(StatusCode::TOO_MANY_REQUESTS, &Default::default()).unwrap();
/// assert_eq!(class.retryable(), Retryable::NotProcessed);
/// ```
#[derive(Clone, Default)]
pub struct Classifier {
    http: Http,
    grpc: Grpc,
    user: Option<Arc<ResponseFn>>,
    /// Every request is a gRPC call (a tonic channel's): every response follows the gRPC
    /// rules, whatever its content type says.
    grpc_only: bool,
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("http", &self.http)
            .field("grpc", &self.grpc)
            .field("user", &self.user.is_some())
            .finish()
    }
}

impl Classifier {
    /// The HTTP and gRPC rules with their defaults.
    ///
    /// ```
    /// let c = meshless::classify::Classifier::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the HTTP rules.
    ///
    /// ```
    /// use meshless::classify::{Classifier, Http, Retryable};
    /// let c = Classifier::new().http(Http::new().status(500, Retryable::IfIdempotent));
    /// ```
    pub fn http(mut self, http: Http) -> Self {
        self.http = http;
        self
    }

    /// Replaces the gRPC rules.
    ///
    /// ```
    /// use meshless::classify::{Classifier, Code, Grpc, Retryable};
    /// let c = Classifier::new().grpc(Grpc::new().code(Code::ResourceExhausted, Retryable::NotProcessed));
    /// ```
    pub fn grpc(mut self, grpc: Grpc) -> Self {
        self.grpc = grpc;
        self
    }

    /// The same rules for a client whose every request is a gRPC call: a response is judged
    /// by the gRPC rules even without gRPC's content type (an HTTP 200 from something that is
    /// not a gRPC server has no `grpc-status`: INTERNAL).
    #[cfg(feature = "tonic")]
    pub(crate) fn grpc_only(mut self) -> Self {
        self.grpc_only = true;
        self
    }

    /// A closure consulted first for every response head; `None` falls back to the built-in
    /// rules.
    ///
    /// ```
    /// use meshless::classify::{Class, Classifier};
    /// let c = Classifier::new().with_response(|status, _| (status == 409).then(Class::success));
    /// ```
    pub fn with_response<F>(mut self, f: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap) -> Option<Class> + Send + Sync + 'static,
    {
        self.user = Some(Arc::new(f));
        self
    }
}

impl Classify for Classifier {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Class> {
        if let Some(user) = &self.user {
            if let Some(class) = user(status, headers) {
                return Some(class);
            }
        }
        if self.grpc_only || grpc::is_grpc(headers) {
            self.grpc.classify_response(status, headers)
        } else {
            Some(self.http.classify(status, headers))
        }
    }

    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Class {
        self.grpc.classify_trailers(trailers)
    }

    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Class {
        classify_error(error)
    }
}

impl<C: Classify + ?Sized> Classify for Arc<C> {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Class> {
        (**self).classify_response(status, headers)
    }
    fn classify_eos(&self, trailers: Option<&HeaderMap>) -> Class {
        (**self).classify_eos(trailers)
    }
    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Class {
        (**self).classify_error(error)
    }
}
