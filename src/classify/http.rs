//! HTTP status rules.

use super::{Class, Pushback, Reason, Retryable, pushback};
use http::{HeaderMap, StatusCode};
use std::sync::Arc;
use std::time::SystemTime;

/// How HTTP statuses are classified.
///
/// Defaults: every 5xx is a failure; 500, 502, 503, 504 and 408 may be retried when the
/// request is idempotent (the server, or a proxy in front of it, may have acted on it; a 500
/// is often a passing fault, which Envoy's `5xx`, linkerd and the cloud SDKs retry too), 501,
/// 505 and the other 5xx are not (a retry would only repeat them). 429 says the
/// request was rate limited before it was processed (RFC 6585 §4), and a 503 that carries a
/// valid `Retry-After` says the server could not handle it and when to come back (RFC 9110
/// §15.6.4, §10.2.3): both are [`Retryable::NotProcessed`], retried for any request but one
/// marked `Idempotent(false)`, and their `Retry-After` is honoured. Other 4xx are the client's
/// own mistakes: they say nothing bad about the endpoint and are not retried. Overrides set
/// with [`status`](Self::status) apply as given.
///
/// ```
/// use meshless::classify::{Http, Reason, Retryable};
/// use http::{HeaderMap, StatusCode};
///
/// let http = Http::new().status(500, Retryable::Never).success(501);
/// let c = http.classify(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new());
/// assert_eq!(c.retryable(), Retryable::Never);
/// assert!(http.classify(StatusCode::NOT_IMPLEMENTED, &HeaderMap::new()).is_success());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Http {
    // Few entries, looked up linearly: faster than a map at this size, and cheap to clone.
    overrides: Arc<Vec<(u16, Option<Retryable>)>>,
}

impl Http {
    /// The default HTTP rules.
    ///
    /// ```
    /// let http = meshless::classify::Http::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `status` a failure that may be retried under `retryable`.
    ///
    /// ```
    /// use meshless::classify::{Http, Retryable};
    /// let http = Http::new().status(409, Retryable::IfIdempotent);
    /// ```
    pub fn status(self, status: u16, retryable: Retryable) -> Self {
        self.set(status, Some(retryable))
    }

    /// Makes `status` a success.
    ///
    /// ```
    /// let http = meshless::classify::Http::new().success(503);
    /// ```
    pub fn success(self, status: u16) -> Self {
        self.set(status, None)
    }

    fn set(mut self, status: u16, rule: Option<Retryable>) -> Self {
        let overrides = Arc::make_mut(&mut self.overrides);
        overrides.retain(|(s, _)| *s != status);
        overrides.push((status, rule));
        self
    }

    /// Classifies a response head.
    ///
    /// ```
    /// use meshless::classify::Http;
    /// use http::{HeaderMap, StatusCode};
    /// assert!(Http::new().classify(StatusCode::OK, &HeaderMap::new()).is_success());
    /// ```
    pub fn classify(&self, status: StatusCode, headers: &HeaderMap) -> Class {
        let code = status.as_u16();
        let (rule, overridden) = match self.overrides.iter().find(|(s, _)| *s == code) {
            Some((_, rule)) => (*rule, true),
            None => (default_rule(status), false),
        };
        let Some(retryable) = rule else {
            return Class::success();
        };
        if retryable == Retryable::Never || !carries_pushback(status) {
            return Class::failure(Reason::Status(code), retryable);
        }
        let pushback = retry_after(headers);
        // A 503 that says when to come back is the server declining the request; without it,
        // it may come from anything on the way, after the request was acted on.
        let retryable = if code == 503 && pushback.is_some() && !overridden {
            Retryable::NotProcessed
        } else {
            retryable
        };
        Class::failure(Reason::Status(code), retryable).with_pushback(pushback)
    }
}

fn default_rule(status: StatusCode) -> Option<Retryable> {
    match status.as_u16() {
        429 => Some(Retryable::NotProcessed),
        408 | 500 | 502 | 503 | 504 => Some(Retryable::IfIdempotent),
        500..=599 => Some(Retryable::Never),
        _ => None,
    }
}

/// `Retry-After` is defined for 503 and 429 (and 3xx, which are not failures).
fn carries_pushback(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 503)
}

pub(super) fn retry_after(headers: &HeaderMap) -> Option<Pushback> {
    let value = headers.get(http::header::RETRY_AFTER)?;
    pushback::parse_retry_after(value, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn classify(status: u16) -> Class {
        Http::new().classify(StatusCode::from_u16(status).unwrap(), &HeaderMap::new())
    }

    #[test]
    fn defaults_follow_the_table() {
        for s in [200, 201, 204, 301, 304, 400, 401, 403, 404, 409, 422] {
            assert!(classify(s).is_success(), "{s}");
        }
        assert_eq!(classify(429).retryable(), Retryable::NotProcessed);
        for s in [408, 500, 502, 503, 504] {
            assert_eq!(classify(s).retryable(), Retryable::IfIdempotent, "{s}");
        }
        for s in [501, 505, 599] {
            let c = classify(s);
            assert!(c.is_failure(), "{s}");
            assert_eq!(c.retryable(), Retryable::Never, "{s}");
        }
        assert_eq!(classify(408).reason(), Reason::Status(408));
    }

    #[test]
    fn retry_after_is_read_on_429_and_503_only() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
        let http = Http::new();
        let expect = Some(Pushback::After(Duration::from_secs(2)));
        assert_eq!(
            http.classify(StatusCode::TOO_MANY_REQUESTS, &headers)
                .pushback(),
            expect
        );
        assert_eq!(
            http.classify(StatusCode::SERVICE_UNAVAILABLE, &headers)
                .pushback(),
            expect
        );
        assert_eq!(
            http.classify(StatusCode::BAD_GATEWAY, &headers).pushback(),
            None
        );
    }

    #[test]
    fn a_503_is_proof_of_no_processing_only_with_retry_after() {
        let http = Http::new();
        let mut headers = HeaderMap::new();
        let c = http.classify(StatusCode::SERVICE_UNAVAILABLE, &headers);
        assert_eq!(c.retryable(), Retryable::IfIdempotent);
        // An unparseable Retry-After proves nothing.
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        let c = http.classify(StatusCode::SERVICE_UNAVAILABLE, &headers);
        assert_eq!(c.retryable(), Retryable::IfIdempotent);
        headers.insert(http::header::RETRY_AFTER, "0".parse().unwrap());
        let c = http.classify(StatusCode::SERVICE_UNAVAILABLE, &headers);
        assert_eq!(c.retryable(), Retryable::NotProcessed);
        assert_eq!(c.pushback(), Some(Pushback::After(Duration::ZERO)));
        // 429 is proof with or without it.
        let c = http.classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new());
        assert_eq!(c.retryable(), Retryable::NotProcessed);
        // An override is taken as given.
        let strict = Http::new().status(503, Retryable::IfIdempotent);
        let c = strict.classify(StatusCode::SERVICE_UNAVAILABLE, &headers);
        assert_eq!(c.retryable(), Retryable::IfIdempotent);
        assert_eq!(c.pushback(), Some(Pushback::After(Duration::ZERO)));
    }

    #[test]
    fn overrides_replace_defaults() {
        let http = Http::new()
            .status(500, Retryable::IfIdempotent)
            .success(503)
            .status(404, Retryable::Never);
        let h = HeaderMap::new();
        assert_eq!(
            http.classify(StatusCode::INTERNAL_SERVER_ERROR, &h)
                .retryable(),
            Retryable::IfIdempotent
        );
        assert!(
            http.classify(StatusCode::SERVICE_UNAVAILABLE, &h)
                .is_success()
        );
        assert!(http.classify(StatusCode::NOT_FOUND, &h).is_failure());
        // The last rule for a status wins.
        let http = http.status(503, Retryable::Never);
        assert!(
            http.classify(StatusCode::SERVICE_UNAVAILABLE, &h)
                .is_failure()
        );
    }
}
