//! gRPC status rules.

use super::{Class, Reason, Retryable, pushback};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;

/// The `grpc-status` header name.
const GRPC_STATUS: &str = "grpc-status";

/// A gRPC status code.
///
/// ```
/// use meshless::classify::Code;
/// use http::HeaderValue;
/// assert_eq!(Code::from_header(&HeaderValue::from_static("14")), Code::Unavailable);
/// // Anything that is not a valid code means UNKNOWN, as the gRPC spec says.
/// assert_eq!(Code::from_header(&HeaderValue::from_static("99999999999")), Code::Unknown);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // the names are gRPC's own
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

const CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

impl Code {
    /// The code for a number; out-of-range numbers are [`Code::Unknown`].
    ///
    /// ```
    /// use meshless::classify::Code;
    /// assert_eq!(Code::from_i32(4), Code::DeadlineExceeded);
    /// assert_eq!(Code::from_i32(-1), Code::Unknown);
    /// ```
    pub fn from_i32(n: i32) -> Code {
        usize::try_from(n)
            .ok()
            .and_then(|i| CODES.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// Parses a `grpc-status` value. It never fails: malformed values are [`Code::Unknown`].
    ///
    /// ```
    /// use meshless::classify::Code;
    /// use http::HeaderValue;
    /// assert_eq!(Code::from_header(&HeaderValue::from_static("0")), Code::Ok);
    /// assert_eq!(Code::from_header(&HeaderValue::from_static("x")), Code::Unknown);
    /// ```
    pub fn from_header(value: &HeaderValue) -> Code {
        let bytes = value.as_bytes();
        // A valid code has at most two digits; longer input is rejected before any arithmetic.
        if bytes.is_empty() || bytes.len() > 2 || !bytes.iter().all(u8::is_ascii_digit) {
            return Code::Unknown;
        }
        let n = bytes.iter().fold(0i32, |n, b| n * 10 + i32::from(b - b'0'));
        Code::from_i32(n)
    }

    /// The metric label of this code (`grpc_` and its lower-case name).
    ///
    /// ```
    /// assert_eq!(meshless::classify::Code::NotFound.label(), "grpc_not_found");
    /// ```
    pub fn label(self) -> &'static str {
        match self {
            Code::Ok => "grpc_ok",
            Code::Cancelled => "grpc_cancelled",
            Code::Unknown => "grpc_unknown",
            Code::InvalidArgument => "grpc_invalid_argument",
            Code::DeadlineExceeded => "grpc_deadline_exceeded",
            Code::NotFound => "grpc_not_found",
            Code::AlreadyExists => "grpc_already_exists",
            Code::PermissionDenied => "grpc_permission_denied",
            Code::ResourceExhausted => "grpc_resource_exhausted",
            Code::FailedPrecondition => "grpc_failed_precondition",
            Code::Aborted => "grpc_aborted",
            Code::OutOfRange => "grpc_out_of_range",
            Code::Unimplemented => "grpc_unimplemented",
            Code::Internal => "grpc_internal",
            Code::Unavailable => "grpc_unavailable",
            Code::DataLoss => "grpc_data_loss",
            Code::Unauthenticated => "grpc_unauthenticated",
        }
    }
}

/// How gRPC statuses are classified.
///
/// Defaults: the codes that say something is wrong with the server — UNKNOWN, DEADLINE_EXCEEDED,
/// UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS — are failures. UNAVAILABLE may be retried
/// when the call is idempotent (gRPC's status code guide: it is not always safe to retry
/// non-idempotent operations); with a `grpc-retry-pushback-ms` of zero or more, the server said
/// it did not act and when to come back (gRPC A6), so it becomes [`Retryable::NotProcessed`]
/// and any call but one marked `Idempotent(false)` may retry. The same holds for a gRPC call
/// answered by HTTP 429, or 503 with `Retry-After`, from something in between. The other
/// failures are not retried. The remaining codes describe the caller's request (NOT_FOUND,
/// INVALID_ARGUMENT, …) and count as successes for the endpoint's health. Every gRPC call is a
/// POST: declare idempotent methods with [`Idempotency`](crate::retry::Idempotency) (the
/// analog of a proto `idempotency_level`).
///
/// ```
/// use meshless::classify::{Code, Grpc, Retryable};
/// let grpc = Grpc::new()
///     .code(Code::ResourceExhausted, Retryable::NotProcessed)
///     .code(Code::Aborted, Retryable::IfIdempotent)
///     .success(Code::Unimplemented);
/// assert_eq!(grpc.classify_code(Code::Aborted).retryable(), Retryable::IfIdempotent);
/// assert!(grpc.classify_code(Code::Unimplemented).is_success());
/// ```
#[derive(Debug, Clone)]
pub struct Grpc {
    rules: Arc<[Option<Retryable>; 17]>,
}

impl Default for Grpc {
    fn default() -> Self {
        let mut rules = [None; 17];
        for code in [
            Code::Unknown,
            Code::DeadlineExceeded,
            Code::Unimplemented,
            Code::Internal,
            Code::DataLoss,
        ] {
            rules[code as usize] = Some(Retryable::Never);
        }
        rules[Code::Unavailable as usize] = Some(Retryable::IfIdempotent);
        Grpc {
            rules: Arc::new(rules),
        }
    }
}

impl Grpc {
    /// The default gRPC rules.
    ///
    /// ```
    /// let grpc = meshless::classify::Grpc::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `code` a failure that may be retried under `retryable`.
    ///
    /// ```
    /// use meshless::classify::{Code, Grpc, Retryable};
    /// let grpc = Grpc::new().code(Code::Internal, Retryable::IfIdempotent);
    /// ```
    pub fn code(mut self, code: Code, retryable: Retryable) -> Self {
        Arc::make_mut(&mut self.rules)[code as usize] = Some(retryable);
        self
    }

    /// Makes `code` a success. `OK` is always a success.
    ///
    /// ```
    /// use meshless::classify::{Code, Grpc};
    /// let grpc = Grpc::new().success(Code::DeadlineExceeded);
    /// ```
    pub fn success(mut self, code: Code) -> Self {
        Arc::make_mut(&mut self.rules)[code as usize] = None;
        self
    }

    /// Classifies a gRPC status code.
    ///
    /// ```
    /// use meshless::classify::{Code, Grpc};
    /// assert!(Grpc::new().classify_code(Code::Internal).is_failure());
    /// ```
    pub fn classify_code(&self, code: Code) -> Class {
        match (code, self.rules[code as usize]) {
            (Code::Ok, _) | (_, None) => Class::success(),
            (code, Some(retryable)) => Class::failure(Reason::Grpc(code), retryable),
        }
    }

    /// Classifies a gRPC response head. A trailers-only response carries its status in the
    /// head; otherwise the status is in the trailers and this returns `None`.
    ///
    /// ```
    /// use meshless::classify::Grpc;
    /// use http::{HeaderMap, StatusCode};
    /// let mut headers = HeaderMap::new();
    /// headers.insert("grpc-status", "14".parse().unwrap());
    /// assert!(Grpc::new().classify_response(StatusCode::OK, &headers).unwrap().is_failure());
    /// assert!(Grpc::new().classify_response(StatusCode::OK, &HeaderMap::new()).is_none());
    /// ```
    pub fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Class> {
        if headers.contains_key(GRPC_STATUS) {
            return Some(self.classify_status_headers(headers));
        }
        if status != StatusCode::OK {
            // A non-200 head on a gRPC call came from something in between (a proxy, a load
            // balancer); gRPC maps it to a status code.
            let code = code_for_http_status(status);
            let class = self.classify_code(code);
            if class.retryable() != Retryable::IfIdempotent {
                return Some(class);
            }
            let pushback = super::http::retry_after(headers);
            let declined = match status.as_u16() {
                429 => true,
                503 => pushback.is_some(),
                _ => false,
            };
            return Some(if declined {
                Class::failure(class.reason(), Retryable::NotProcessed).with_pushback(pushback)
            } else {
                class
            });
        }
        None
    }

    /// Classifies the trailers at the end of a gRPC response. Missing trailers or a missing
    /// `grpc-status` are a protocol error: INTERNAL.
    ///
    /// ```
    /// use meshless::classify::Grpc;
    /// assert!(Grpc::new().classify_trailers(None).is_failure());
    /// ```
    pub fn classify_trailers(&self, trailers: Option<&HeaderMap>) -> Class {
        match trailers {
            Some(t) if t.contains_key(GRPC_STATUS) => self.classify_status_headers(t),
            _ => self.classify_code(Code::Internal),
        }
    }

    fn classify_status_headers(&self, headers: &HeaderMap) -> Class {
        let code = headers
            .get(GRPC_STATUS)
            .map_or(Code::Unknown, Code::from_header);
        let class = self.classify_code(code);
        if !class.is_failure() {
            return class;
        }
        let pushback = headers
            .get(pushback::GRPC_RETRY_PUSHBACK_MS)
            .map(pushback::parse_grpc_retry_pushback);
        // A server that says when to retry says it did not act (gRPC A6).
        let declined = code == Code::Unavailable
            && class.retryable() == Retryable::IfIdempotent
            && matches!(pushback, Some(super::Pushback::After(_)));
        if declined {
            Class::failure(class.reason(), Retryable::NotProcessed).with_pushback(pushback)
        } else {
            class.with_pushback(pushback)
        }
    }
}

/// gRPC's mapping of HTTP statuses to status codes (doc/http-grpc-status-mapping.md).
fn code_for_http_status(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// True when the response is gRPC (`content-type: application/grpc[+proto|…]`).
/// gRPC-web (`application/grpc-web…`) is gRPC too: its status is in the head of a trailers-only
/// response, else in the body's trailer frame (see `grpc_web`).
pub(super) fn is_grpc(headers: &HeaderMap) -> bool {
    // A response with no headers at all is common in benchmarks and tiny services, and the
    // lookup hashes the name even in an empty map.
    !headers.is_empty()
        && headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes()
                .get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Pushback;
    use std::time::Duration;

    fn head(status: &str, pushback: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(GRPC_STATUS, status.parse().unwrap());
        if let Some(p) = pushback {
            h.insert(pushback::GRPC_RETRY_PUSHBACK_MS, p.parse().unwrap());
        }
        h
    }

    #[test]
    fn status_parsing_never_fails() {
        for (raw, code) in [
            ("0", Code::Ok),
            ("14", Code::Unavailable),
            ("16", Code::Unauthenticated),
            ("17", Code::Unknown),
            ("", Code::Unknown),
            ("-1", Code::Unknown),
            ("014", Code::Unknown),
            ("1 4", Code::Unknown),
            ("99999999999999999999", Code::Unknown),
        ] {
            let v = HeaderValue::from_str(raw).unwrap();
            assert_eq!(Code::from_header(&v), code, "{raw:?}");
        }
    }

    #[test]
    fn trailers_only_responses_are_classified_from_the_head() {
        let grpc = Grpc::new();
        let c = grpc
            .classify_response(StatusCode::OK, &head("14", Some("250")))
            .unwrap();
        assert_eq!(c.reason(), Reason::Grpc(Code::Unavailable));
        assert_eq!(c.retryable(), Retryable::NotProcessed);
        assert_eq!(
            c.pushback(),
            Some(Pushback::After(Duration::from_millis(250)))
        );

        let c = grpc
            .classify_response(StatusCode::OK, &head("14", Some("-1")))
            .unwrap();
        assert_eq!(c.pushback(), Some(Pushback::DoNotRetry));
        assert_eq!(c.retryable(), Retryable::IfIdempotent);

        // Without pushback, UNAVAILABLE is retried only for idempotent calls.
        let c = grpc
            .classify_response(StatusCode::OK, &head("14", None))
            .unwrap();
        assert_eq!(c.retryable(), Retryable::IfIdempotent);

        assert!(
            grpc.classify_response(StatusCode::OK, &head("5", None))
                .unwrap()
                .is_success()
        );
        assert_eq!(
            grpc.classify_response(StatusCode::OK, &HeaderMap::new()),
            None
        );
    }

    #[test]
    fn trailers_decide_streamed_responses() {
        let grpc = Grpc::new();
        assert!(grpc.classify_trailers(Some(&head("0", None))).is_success());
        let c = grpc.classify_trailers(Some(&head("13", None)));
        assert_eq!(c.reason(), Reason::Grpc(Code::Internal));
        assert_eq!(c.retryable(), Retryable::Never);
        assert!(grpc.classify_trailers(Some(&HeaderMap::new())).is_failure());
    }

    #[test]
    fn http_statuses_map_to_codes() {
        let grpc = Grpc::new();
        let c = grpc
            .classify_response(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new())
            .unwrap();
        assert_eq!(c.reason(), Reason::Grpc(Code::Unavailable));
        assert_eq!(c.retryable(), Retryable::IfIdempotent);
        let c = grpc
            .classify_response(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new())
            .unwrap();
        assert_eq!(c.reason(), Reason::Grpc(Code::Unavailable));
        assert_eq!(c.retryable(), Retryable::NotProcessed);
        let mut retry_after = HeaderMap::new();
        retry_after.insert(http::header::RETRY_AFTER, "1".parse().unwrap());
        let c = grpc
            .classify_response(StatusCode::SERVICE_UNAVAILABLE, &retry_after)
            .unwrap();
        assert_eq!(c.retryable(), Retryable::NotProcessed);
        assert_eq!(c.pushback(), Some(Pushback::After(Duration::from_secs(1))));
        let c = grpc
            .classify_response(StatusCode::NOT_FOUND, &HeaderMap::new())
            .unwrap();
        assert_eq!(c.reason(), Reason::Grpc(Code::Unimplemented));
    }

    #[test]
    fn defaults_separate_server_faults_from_caller_faults() {
        let grpc = Grpc::new();
        for code in [
            Code::Unknown,
            Code::DeadlineExceeded,
            Code::Unimplemented,
            Code::Internal,
            Code::DataLoss,
        ] {
            let c = grpc.classify_code(code);
            assert!(
                c.is_failure() && c.retryable() == Retryable::Never,
                "{code:?}"
            );
        }
        for code in [
            Code::Ok,
            Code::Cancelled,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unauthenticated,
        ] {
            assert!(grpc.classify_code(code).is_success(), "{code:?}");
        }
        // OK cannot be made a failure.
        assert!(
            grpc.code(Code::Ok, Retryable::NeverSent)
                .classify_code(Code::Ok)
                .is_success()
        );
    }
}
