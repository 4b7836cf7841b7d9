//! One error type that says which layer rejected a request, and why.
//!
//! Every meshless layer returns [`Error`]. Its [`kind`](Error::kind) names the reason, its
//! [`layer`](Error::layer) the layer that gave up, and its [`source`](std::error::Error::source)
//! the failure underneath (for example the last attempt's connection error when the retry budget
//! ran out). Errors from the wrapped service pass through as [`Kind::Service`], never wrapped
//! twice however many meshless layers are stacked.

use std::error::Error as StdError;
use std::fmt;
use tokio::time::Instant;

/// A boxed, thread-safe error, as tower and hyper use.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The response header that [`Error::to_response`] uses to name the reason.
pub const ERROR_HEADER: &str = "x-meshless-error";

/// Why a request failed, and which layer decided it.
///
/// ```
/// use meshless::{Error, error::{Kind, Layer}};
///
/// let err = Error::new(Kind::DeadlineExceeded);
/// assert_eq!(err.layer(), Layer::Deadline);
/// assert_eq!(err.to_string(), "deadline exceeded");
/// assert!(err.is_timeout());
/// ```
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    attempts: u32,
    source: Option<BoxError>,
}

/// The source of a [`Kind::EndpointsPushingBack`] error: the first instant at which an endpoint
/// that could take the request is free of its server's pushback. The retry layer sends the
/// request then, if its deadline allows: nothing was sent, so it costs no retry.
///
/// ```
/// use meshless::error::QuietUntil;
/// # tokio_test::block_on(async {
/// let until = QuietUntil(tokio::time::Instant::now());
/// assert!(until.to_string().contains("pushing back"));
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietUntil(pub Instant);

impl fmt::Display for QuietUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let left = self.0.saturating_duration_since(Instant::now());
        write!(f, "every endpoint is pushing back for {left:?} more")
    }
}

impl StdError for QuietUntil {}

/// The reason a request failed.
///
/// ```
/// use meshless::error::Kind;
/// assert_eq!(Kind::BudgetExhausted.as_str(), "budget-exhausted");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// The wrapped service failed, and the failure was not retried (see the source).
    Service,
    /// A retry was warranted but the retry budget had no tokens left. The source is the last
    /// attempt's failure.
    BudgetExhausted,
    /// The maximum number of retries was reached. The source is the last attempt's failure.
    RetriesExhausted,
    /// The request body was larger than the replay buffer, so the failed attempt could not be
    /// retried. The source is the attempt's failure.
    BodyTooLarge,
    /// The server asked not to be retried (`grpc-retry-pushback-ms` negative), or to wait
    /// longer than the client allows. The source is the attempt's failure.
    Pushback,
    /// The request's total deadline passed, or too little of it remained to start another
    /// attempt. The source, if any, is the last attempt's failure.
    DeadlineExceeded,
    /// One attempt took longer than its per-attempt timeout.
    AttemptTimedOut,
    /// The response body sent no frame for longer than the body idle timeout
    /// ([`DeadlineLayer::body_idle_timeout`](crate::deadline::DeadlineLayer::body_idle_timeout)).
    BodyIdleTimeout,
    /// No endpoint was ready (none known, or all ejected or failing to connect) within the
    /// balancer's fail-fast timeout.
    NoReadyEndpoint,
    /// The request could not be sent as given (an invalid URI, say). Nothing was sent.
    InvalidRequest,
    /// Every endpoint that could take the request had asked for quiet (`Retry-After`,
    /// `grpc-retry-pushback-ms`) until after the request's deadline. Nothing was sent.
    EndpointsPushingBack,
    /// The request is `https` but TLS is compiled out (the `tls` feature is off). Nothing was
    /// sent: an `https` request never leaves in clear text.
    TlsUnavailable,
    /// The circuit breaker is open (or admitting only part of the traffic while it recovers)
    /// and refused the request. Nothing was sent. The source says why and until when.
    CircuitOpen,
    /// The concurrency limit (fixed or adaptive) was full and the request could not wait for
    /// a permit. Nothing was sent.
    ConcurrencyLimited,
    /// Client-side adaptive throttling refused the request because the upstream has been
    /// rejecting too many of them. Nothing was sent.
    Throttled,
}

/// The layer that rejected a request.
///
/// ```
/// use meshless::error::{Kind, Layer};
/// assert_eq!(Kind::AttemptTimedOut.layer(), Layer::Attempt);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// The total deadline ([`crate::deadline::Deadline`]).
    Deadline,
    /// The retry layer ([`crate::retry::Retry`]).
    Retry,
    /// The per-attempt timeout ([`crate::deadline::AttemptTimeout`]).
    Attempt,
    /// The load balancer ([`crate::balance::Balance`]).
    Balance,
    /// The concurrency limit, fixed or adaptive.
    Limit,
    /// The service-level circuit breaker.
    Breaker,
    /// Client-side adaptive throttling.
    Throttle,
    /// The client front end ([`crate::http::Client`]), before any layer ran.
    Client,
    /// The wrapped service itself.
    Service,
}

impl Kind {
    /// The layer that produces this kind of error.
    ///
    /// ```
    /// use meshless::error::{Kind, Layer};
    /// assert_eq!(Kind::BudgetExhausted.layer(), Layer::Retry);
    /// ```
    pub fn layer(self) -> Layer {
        match self {
            Kind::Service => Layer::Service,
            Kind::BudgetExhausted
            | Kind::RetriesExhausted
            | Kind::BodyTooLarge
            | Kind::Pushback => Layer::Retry,
            Kind::DeadlineExceeded | Kind::BodyIdleTimeout => Layer::Deadline,
            Kind::AttemptTimedOut => Layer::Attempt,
            Kind::NoReadyEndpoint | Kind::EndpointsPushingBack => Layer::Balance,
            Kind::InvalidRequest | Kind::TlsUnavailable => Layer::Client,
            Kind::CircuitOpen => Layer::Breaker,
            Kind::ConcurrencyLimited => Layer::Limit,
            Kind::Throttled => Layer::Throttle,
        }
    }

    /// True for the client's own load shedding: the breaker, the concurrency limit or
    /// throttling refused the request before anything was sent. Such a refusal says nothing
    /// about the upstream, so no layer counts it as the upstream's failure.
    ///
    /// ```
    /// use meshless::error::Kind;
    /// assert!(Kind::CircuitOpen.is_shed());
    /// assert!(!Kind::DeadlineExceeded.is_shed());
    /// ```
    pub fn is_shed(self) -> bool {
        matches!(
            self,
            Kind::CircuitOpen | Kind::ConcurrencyLimited | Kind::Throttled
        )
    }

    /// A short, stable name: used in the `x-meshless-error` header and as a metric label.
    ///
    /// ```
    /// assert_eq!(meshless::error::Kind::DeadlineExceeded.as_str(), "deadline-exceeded");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::BudgetExhausted => "budget-exhausted",
            Kind::RetriesExhausted => "retries-exhausted",
            Kind::BodyTooLarge => "body-too-large",
            Kind::Pushback => "pushback",
            Kind::DeadlineExceeded => "deadline-exceeded",
            Kind::AttemptTimedOut => "attempt-timed-out",
            Kind::BodyIdleTimeout => "body-idle-timeout",
            Kind::NoReadyEndpoint => "no-ready-endpoint",
            Kind::EndpointsPushingBack => "endpoints-pushing-back",
            Kind::InvalidRequest => "invalid-request",
            Kind::TlsUnavailable => "tls-unavailable",
            Kind::CircuitOpen => "circuit-open",
            Kind::ConcurrencyLimited => "concurrency-limited",
            Kind::Throttled => "throttled",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Deadline => "deadline",
            Layer::Retry => "retry",
            Layer::Attempt => "attempt",
            Layer::Balance => "balance",
            Layer::Client => "client",
            Layer::Limit => "limit",
            Layer::Breaker => "breaker",
            Layer::Throttle => "throttle",
            Layer::Service => "service",
        })
    }
}

impl Error {
    /// An error of this kind with no source.
    ///
    /// ```
    /// let err = meshless::Error::new(meshless::error::Kind::AttemptTimedOut);
    /// ```
    pub fn new(kind: Kind) -> Self {
        Error {
            kind,
            attempts: 0,
            source: None,
        }
    }

    /// An error of this kind caused by `source`.
    ///
    /// ```
    /// use meshless::{Error, error::Kind};
    /// use std::error::Error as _;
    /// let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let err = Error::with_source(Kind::BudgetExhausted, io);
    /// assert!(err.source().is_some());
    /// ```
    pub fn with_source(kind: Kind, source: impl Into<BoxError>) -> Self {
        Error {
            kind,
            attempts: 0,
            source: Some(source.into()),
        }
    }

    /// Wraps an error from the wrapped service, unless it already is a meshless [`Error`]
    /// (stacked layers never wrap each other's errors).
    ///
    /// ```
    /// use meshless::{Error, error::Kind};
    /// let err = Error::from_service(std::io::Error::other("boom"));
    /// assert_eq!(err.kind(), Kind::Service);
    /// let again = Error::from_service(err);
    /// assert_eq!(again.kind(), Kind::Service);
    /// ```
    pub fn from_service(error: impl Into<BoxError>) -> Self {
        match error.into().downcast::<Error>() {
            Ok(ours) => *ours,
            Err(theirs) => Error {
                kind: Kind::Service,
                attempts: 0,
                source: Some(theirs),
            },
        }
    }

    /// The failure underneath: the source of a [`Kind::Service`] error, or the error itself.
    /// Used to chain a retry decision onto the failure without a "service error" in between.
    ///
    /// ```
    /// use meshless::{Error, error::Kind};
    /// let cause = Error::from_service(std::io::Error::other("boom")).into_cause();
    /// assert_eq!(cause.to_string(), "boom");
    /// ```
    pub fn into_cause(self) -> BoxError {
        match (self.kind, self.source) {
            (Kind::Service, Some(source)) => source,
            (kind, source) => Box::new(Error {
                kind,
                attempts: self.attempts,
                source,
            }),
        }
    }

    /// Records how many attempts were made before this error.
    ///
    /// ```
    /// use meshless::{Error, error::Kind};
    /// let err = Error::new(Kind::RetriesExhausted).with_attempts(3);
    /// assert_eq!(err.attempts(), 3);
    /// ```
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// The reason.
    ///
    /// ```
    /// use meshless::{Error, error::Kind};
    /// assert_eq!(Error::new(Kind::Pushback).kind(), Kind::Pushback);
    /// ```
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The layer that rejected the request.
    ///
    /// ```
    /// use meshless::{Error, error::{Kind, Layer}};
    /// assert_eq!(Error::new(Kind::RetriesExhausted).layer(), Layer::Retry);
    /// ```
    pub fn layer(&self) -> Layer {
        self.kind.layer()
    }

    /// How many attempts were made, when the retry layer knows it (0 otherwise).
    ///
    /// ```
    /// assert_eq!(meshless::Error::new(meshless::error::Kind::Service).attempts(), 0);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// True when time ran out: the deadline passed or an attempt timed out, also when that
    /// was the last attempt of a request that could not be retried again (`RetriesExhausted`
    /// or `BudgetExhausted` caused by a timeout).
    ///
    /// ```
    /// use meshless::{Error, error::Kind};
    /// assert!(Error::new(Kind::AttemptTimedOut).is_timeout());
    /// assert!(!Error::new(Kind::BudgetExhausted).is_timeout());
    /// let last = Error::new(Kind::AttemptTimedOut);
    /// assert!(Error::with_source(Kind::RetriesExhausted, last).is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        match self.kind {
            Kind::DeadlineExceeded | Kind::AttemptTimedOut | Kind::BodyIdleTimeout => true,
            // The last attempt's error says why the attempts ran out.
            Kind::RetriesExhausted | Kind::BudgetExhausted => self
                .source
                .as_deref()
                .and_then(|source| source.downcast_ref::<Error>())
                .is_some_and(Error::is_timeout),
            _ => false,
        }
    }

    /// Whether the request ran out of its caller's own deadline (an inbound limit or an earlier
    /// [`RequestDeadline`](crate::deadline::RequestDeadline), shorter than the client's): the
    /// caller's patience, which the protection layers count as a cancellation. Looks through
    /// `RetriesExhausted` and `BudgetExhausted` as [`is_timeout`](Self::is_timeout) does.
    pub(crate) fn is_callers_deadline(&self) -> bool {
        match self.kind {
            Kind::DeadlineExceeded => self
                .source
                .as_deref()
                .is_some_and(|source| source.is::<crate::deadline::CallersDeadlinePassed>()),
            Kind::RetriesExhausted | Kind::BudgetExhausted => self
                .source
                .as_deref()
                .and_then(|source| source.downcast_ref::<Error>())
                .is_some_and(Error::is_callers_deadline),
            _ => false,
        }
    }

    /// Converts the error into an HTTP response, for applications that answer their own
    /// callers with responses rather than errors (as axum's error handling does): 504 for a
    /// timeout, 503 otherwise, with an `x-meshless-error` header naming the reason.
    ///
    /// ```
    /// use meshless::{Error, error::Kind};
    /// let res: http::Response<String> = Error::new(Kind::DeadlineExceeded).to_response();
    /// assert_eq!(res.status(), 504);
    /// assert_eq!(res.headers()["x-meshless-error"], "deadline-exceeded");
    /// ```
    pub fn to_response<B: Default>(&self) -> http::Response<B> {
        let status = if self.is_timeout() {
            http::StatusCode::GATEWAY_TIMEOUT
        } else {
            http::StatusCode::SERVICE_UNAVAILABLE
        };
        let mut res = http::Response::new(B::default());
        *res.status_mut() = status;
        res.headers_mut().insert(
            http::HeaderName::from_static(ERROR_HEADER),
            http::HeaderValue::from_static(self.kind.as_str()),
        );
        res
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Service => "service error",
            Kind::BudgetExhausted => "retry budget exhausted",
            Kind::RetriesExhausted => "maximum retries reached",
            Kind::BodyTooLarge => "request body too large to replay for a retry",
            Kind::Pushback => "server pushback forbids a retry",
            Kind::DeadlineExceeded => "deadline exceeded",
            Kind::AttemptTimedOut => "attempt timed out",
            Kind::BodyIdleTimeout => "response body idle for too long",
            Kind::NoReadyEndpoint => "no ready endpoint",
            Kind::EndpointsPushingBack => "every endpoint is pushing back past the deadline",
            Kind::InvalidRequest => "invalid request",
            Kind::TlsUnavailable => "https refused: TLS is compiled out (feature `tls`)",
            Kind::CircuitOpen => "circuit open",
            Kind::ConcurrencyLimited => "concurrency limit reached",
            Kind::Throttled => "throttled: the upstream rejects too many requests",
        };
        f.write_str(what)?;
        if self.attempts > 0 {
            write!(f, " after {} attempt", self.attempts)?;
            if self.attempts > 1 {
                f.write_str("s")?;
            }
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_reason_and_attempts() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = Error::with_source(Kind::BudgetExhausted, io).with_attempts(2);
        assert_eq!(err.to_string(), "retry budget exhausted after 2 attempts");
        let src = err
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(src.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn responses_name_the_reason() {
        let res: http::Response<()> = Error::new(Kind::BudgetExhausted).to_response();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[ERROR_HEADER], "budget-exhausted");
        let res: http::Response<()> = Error::new(Kind::AttemptTimedOut).to_response();
        assert_eq!(res.status(), 504);
    }

    #[test]
    fn every_kind_has_a_layer_and_a_name() {
        for kind in [
            Kind::Service,
            Kind::BudgetExhausted,
            Kind::RetriesExhausted,
            Kind::BodyTooLarge,
            Kind::Pushback,
            Kind::DeadlineExceeded,
            Kind::AttemptTimedOut,
            Kind::BodyIdleTimeout,
            Kind::NoReadyEndpoint,
            Kind::EndpointsPushingBack,
            Kind::InvalidRequest,
            Kind::TlsUnavailable,
            Kind::CircuitOpen,
            Kind::ConcurrencyLimited,
            Kind::Throttled,
        ] {
            assert!(!kind.as_str().is_empty());
            assert!(!kind.layer().to_string().is_empty());
            assert!(!Error::new(kind).to_string().is_empty());
        }
    }
}

/// A configuration value that cannot work, reported when a layer or budget is built.
///
/// Every config struct ([`BudgetConfig`](crate::budget::BudgetConfig),
/// [`RetryConfig`](crate::retry::RetryConfig), [`DeadlineConfig`](crate::deadline::DeadlineConfig),
/// [`AttemptTimeoutConfig`](crate::deadline::AttemptTimeoutConfig),
/// [`BalanceConfig`](crate::balance::BalanceConfig), [`OutlierConfig`](crate::outlier::OutlierConfig))
/// is checked in one place, its `validate`, which names the field at fault as
/// `"<layer>.<field>"` (plus its [`index`](Self::index) within a list) and says what is wrong
/// with the value given.
///
/// ```
/// use meshless::budget::Budget;
/// use std::time::Duration;
/// let err = Budget::builder().ratio(-1.0).build().unwrap_err();
/// assert_eq!(err.setting(), "budget.ratio");
/// assert!(err.to_string().contains("-1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    /// The position of the bad value in a list setting.
    index: Option<usize>,
    problem: String,
    /// Where the value sits in the configuration it was read from, when that is more than
    /// `setting` (a section nested in a file: `routes[2].retry.backoff.base`).
    path: Option<Box<str>>,
}

impl ConfigError {
    /// A problem with the named setting.
    ///
    /// ```
    /// let err = meshless::ConfigError::new("max_retries", "must be at most 10");
    /// assert_eq!(err.setting(), "max_retries");
    /// ```
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            setting,
            index: None,
            problem: problem.into(),
            path: None,
        }
    }

    /// A problem with the value at `index` of the named list setting.
    ///
    /// ```
    /// let err = meshless::ConfigError::at("deadline.streaming_content_types", 1, "is empty");
    /// assert_eq!(err.index(), Some(1));
    /// assert_eq!(err.to_string(), "invalid deadline.streaming_content_types[1]: is empty");
    /// ```
    pub fn at(setting: &'static str, index: usize, problem: impl Into<String>) -> Self {
        ConfigError {
            setting,
            index: Some(index),
            problem: problem.into(),
            path: None,
        }
    }

    /// The same problem, placed at `index` of its list setting (a check of one value, made
    /// by code that does not know the value's place in the list).
    #[cfg(feature = "reqwest")]
    pub(crate) fn at_index(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    /// The name of the setting at fault.
    ///
    /// ```
    /// assert_eq!(meshless::ConfigError::new("ttl", "too long").setting(), "ttl");
    /// ```
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// The position of the bad value when the setting is a list, `None` otherwise.
    ///
    /// ```
    /// assert_eq!(meshless::ConfigError::new("budget.ttl", "too short").index(), None);
    /// ```
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// What is wrong with the value, the value included.
    ///
    /// ```
    /// let err = meshless::ConfigError::new("budget.ttl", "10ms is less than 100ms");
    /// assert_eq!(err.problem(), "10ms is less than 100ms");
    /// ```
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// The full path of the value at fault: where it sits in the configuration it was read
    /// from (`retry.backoff.base`, `routes[2].retry.max_retries`, `deadline.streaming_content_types[1]`).
    /// For a layer configured in code, the [`setting`](Self::setting) and its index.
    ///
    /// ```
    /// let err = meshless::ConfigError::at("deadline.streaming_content_types", 1, "is empty");
    /// assert_eq!(err.path(), "deadline.streaming_content_types[1]");
    /// ```
    pub fn path(&self) -> String {
        match (&self.path, self.index) {
            (Some(path), _) => path.to_string(),
            (None, Some(index)) => format!("{}[{index}]", self.setting),
            (None, None) => self.setting.to_string(),
        }
    }

    /// The same problem, placed at `path` in the file it was read from.
    pub(crate) fn placed(mut self, path: String) -> Self {
        self.path = Some(path.into_boxed_str());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            return write!(f, "invalid {path}: {}", self.problem);
        }
        match self.index {
            Some(index) => write!(f, "invalid {}[{index}]: {}", self.setting, self.problem),
            None => write!(f, "invalid {}: {}", self.setting, self.problem),
        }
    }
}

impl StdError for ConfigError {}
