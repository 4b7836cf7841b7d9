//! Server pushback: the server telling the client when, or whether, to retry.
//!
//! Two headers carry it:
//!
//! * HTTP `Retry-After` (RFC 9110, section 10.2.3): delta-seconds or an
//!   HTTP-date. It can only ever delay a retry.
//! * gRPC `grpc-retry-pushback-ms` (gRPC proposal A6): milliseconds to wait,
//!   or, when negative or unparseable, a request not to retry at all.
//!
//! A retry layer must honour both. Because a misbehaving or hostile server
//! could otherwise park a client forever, every delay is clamped to
//! [`MAX_PUSHBACK`].
//!
//! The parsers are the classifiers' business: users read the outcome, a
//! [`Pushback`], from [`Class::pushback`](super::Class::pushback).

use std::time::{Duration, SystemTime};

#[cfg(test)]
use http::HeaderMap;
use http::{HeaderName, HeaderValue};

/// What the server asked of a client that wants to retry, from HTTP
/// `Retry-After` or gRPC `grpc-retry-pushback-ms`: see
/// [`Class::pushback`](super::Class::pushback).
///
/// ```rust
/// use std::time::Duration;
/// use meshless::classify::Pushback;
///
/// let wait = Pushback::After(Duration::from_secs(1));
/// assert_ne!(wait, Pushback::DoNotRetry);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// The server asked the client to wait at least this long before
    /// retrying. Never longer than an hour: a longer (or absurd) delay is
    /// clamped to it, so that a hostile server cannot park a client forever.
    After(Duration),
    /// The server asked the client not to retry at all.
    DoNotRetry,
}

/// The longest delay a server can impose through pushback: one hour.
///
/// Absurd values are clamped to it rather than rejected, so that a server
/// that asks for "a very long time" still gets a long back-off instead of
/// having its header ignored.
pub(crate) const MAX_PUSHBACK: Duration = Duration::from_secs(3_600);

/// The `grpc-retry-pushback-ms` trailer/header name.
pub(crate) const GRPC_RETRY_PUSHBACK_MS: HeaderName =
    HeaderName::from_static("grpc-retry-pushback-ms");

/// Parses an HTTP `Retry-After` value.
///
/// Accepts delta-seconds (any number of digits; values too large for a
/// `u64` saturate) or an HTTP-date, which is measured from `now`. A date in
/// the past means the client may retry at once: `After(Duration::ZERO)`.
/// Optional whitespace around the value is tolerated. The delay is clamped
/// to [`MAX_PUSHBACK`].
///
/// Returns `None` for a malformed value, which the caller should ignore as
/// though the header were absent. `Retry-After` never yields
/// [`Pushback::DoNotRetry`]: it can only delay a retry.
pub(crate) fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Pushback> {
    let trimmed = trim_ows(value.as_bytes());
    if trimmed.is_empty() {
        return None;
    }

    if let Some(seconds) = parse_digits(trimmed) {
        return Some(after(Duration::from_secs(seconds)));
    }

    // Not delta-seconds, so it must be an HTTP-date; dates are pure ASCII.
    let text = std::str::from_utf8(trimmed).ok()?;
    let date = httpdate::parse_http_date(text).ok()?;
    // `duration_since` fails exactly when the date is already past.
    let delay = date.duration_since(now).unwrap_or(Duration::ZERO);
    Some(after(delay))
}

/// Parses a gRPC `grpc-retry-pushback-ms` value.
///
/// A non-negative decimal integer of milliseconds (leading zeros allowed,
/// no `+` sign) yields [`Pushback::After`], clamped to [`MAX_PUSHBACK`].
/// Following gRPC's retry design (proposal A6), a negative **or**
/// unparseable value means the server asks the client not to retry:
/// [`Pushback::DoNotRetry`]. Optional whitespace around the value is
/// tolerated, as HTTP does not count it as part of a field value.
///
/// `-0` counts as negative: when the server's intent is unclear, not
/// retrying is the choice that cannot add load to a struggling server.
pub(crate) fn parse_grpc_retry_pushback(value: &HeaderValue) -> Pushback {
    match parse_digits(trim_ows(value.as_bytes())) {
        Some(millis) => after(Duration::from_millis(millis)),
        None => Pushback::DoNotRetry,
    }
}

/// Finds the server's pushback in a response's headers (or trailers).
///
/// `grpc-retry-pushback-ms` wins when present, since a gRPC server that sent
/// it meant it specifically for retries; otherwise `Retry-After` is used.
/// When a header appears more than once, only its first value counts.
/// Returns `None` when neither header is present, or when only a malformed
/// `Retry-After` is.
///
/// The classifiers read each header where its protocol puts it (see
/// `Http::classify` and `Grpc::classify_trailers`), so only tests use this.
#[cfg(test)]
pub(crate) fn from_headers(headers: &HeaderMap, now: SystemTime) -> Option<Pushback> {
    // `HeaderMap::get` returns the first value of a repeated header.
    if let Some(value) = headers.get(GRPC_RETRY_PUSHBACK_MS) {
        return Some(parse_grpc_retry_pushback(value));
    }
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| parse_retry_after(value, now))
}

/// Wraps a delay, clamped to [`MAX_PUSHBACK`].
fn after(delay: Duration) -> Pushback {
    Pushback::After(delay.min(MAX_PUSHBACK))
}

/// Strips HTTP optional whitespace (spaces and tabs) from both ends.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Parses `1*DIGIT`, saturating at `u64::MAX` instead of overflowing, so a
/// server sending a thousand digits still gets the longest back-off.
fn parse_digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.saturating_mul(10).saturating_add(u64::from(b - b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// Sun, 06 Nov 1994 08:49:37 GMT, the date RFC 9110 uses in examples.
    fn fixed_now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_777)
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("test input is a valid header value")
    }

    fn retry_after(s: &str) -> Option<Pushback> {
        parse_retry_after(&hv(s), fixed_now())
    }

    fn grpc(s: &str) -> Pushback {
        parse_grpc_retry_pushback(&hv(s))
    }

    fn secs(n: u64) -> Option<Pushback> {
        Some(Pushback::After(Duration::from_secs(n)))
    }

    #[test]
    fn the_constants_name_the_header_and_the_clamp() {
        assert_eq!(GRPC_RETRY_PUSHBACK_MS.as_str(), "grpc-retry-pushback-ms");
        assert_eq!(MAX_PUSHBACK, Duration::from_secs(3_600));
    }

    #[test]
    fn retry_after_seconds_are_clamped_and_words_refused_whatever_the_time() {
        let now = SystemTime::now();
        assert_eq!(
            parse_retry_after(&hv("120"), now),
            Some(Pushback::After(Duration::from_secs(120))),
        );
        assert_eq!(
            parse_retry_after(&hv("99999999999"), now),
            Some(Pushback::After(MAX_PUSHBACK)),
        );
        assert_eq!(parse_retry_after(&hv("soon"), now), None);
    }

    #[test]
    fn grpc_pushback_is_a_delay_or_a_refusal() {
        assert_eq!(grpc("250"), Pushback::After(Duration::from_millis(250)));
        assert_eq!(grpc("-1"), Pushback::DoNotRetry);
        assert_eq!(grpc("later"), Pushback::DoNotRetry);
    }

    #[test]
    fn from_headers_reads_retry_after_alone_and_prefers_grpc_pushback() {
        let now = SystemTime::now();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, hv("5"));
        assert_eq!(from_headers(&headers, now), secs(5));
        headers.insert(GRPC_RETRY_PUSHBACK_MS, hv("-1"));
        assert_eq!(from_headers(&headers, now), Some(Pushback::DoNotRetry));
        assert_eq!(from_headers(&HeaderMap::new(), now), None);
    }

    #[test]
    fn retry_after_table() {
        let huge = "9".repeat(1_000);
        let cases: [(&str, Option<Pushback>); 19] = [
            ("0", secs(0)),
            ("1", secs(1)),
            ("120", secs(120)),
            ("007", secs(7)),
            ("3600", secs(3_600)),
            ("3601", Some(Pushback::After(MAX_PUSHBACK))),
            (huge.as_str(), Some(Pushback::After(MAX_PUSHBACK))),
            (" 5\t", secs(5)),
            // 120 s after `fixed_now`, in each of the three date formats.
            ("Sun, 06 Nov 1994 08:51:37 GMT", secs(120)),
            ("Sunday, 06-Nov-94 08:51:37 GMT", secs(120)),
            ("Sun Nov  6 08:51:37 1994", secs(120)),
            ("  Sun, 06 Nov 1994 08:51:37 GMT ", secs(120)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", secs(0)),
            ("Sat, 01 Jan 1994 00:00:00 GMT", secs(0)),
            (
                "Fri, 31 Dec 9999 23:59:59 GMT",
                Some(Pushback::After(MAX_PUSHBACK)),
            ),
            ("", None),
            ("-5", None),
            ("+5", None),
            ("1.5", None),
        ];
        for (input, expected) in cases {
            assert_eq!(retry_after(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn retry_after_rejects_garbage() {
        let cases = [
            "   ",
            "soon",
            "5 5",
            "5s",
            "0x10",
            "Sun, 06 Nov 1994 08:51:37",
            "Sun, 32 Nov 1994 08:51:37 GMT",
            "Sun, 06 Nov 1994 25:51:37 GMT",
        ];
        for input in cases {
            assert_eq!(retry_after(input), None, "input {input:?}");
        }
        let non_ascii = HeaderValue::from_bytes(b"\xff5").expect("obs-text is allowed");
        assert_eq!(parse_retry_after(&non_ascii, fixed_now()), None);
    }

    #[test]
    fn grpc_pushback_table() {
        let huge = "9".repeat(1_000);
        let cases: [(&str, Pushback); 15] = [
            ("0", Pushback::After(Duration::ZERO)),
            ("250", Pushback::After(Duration::from_millis(250))),
            ("000250", Pushback::After(Duration::from_millis(250))),
            (" 250 ", Pushback::After(Duration::from_millis(250))),
            ("3600000", Pushback::After(MAX_PUSHBACK)),
            ("3600001", Pushback::After(MAX_PUSHBACK)),
            (huge.as_str(), Pushback::After(MAX_PUSHBACK)),
            ("-1", Pushback::DoNotRetry),
            ("-0", Pushback::DoNotRetry),
            ("-250", Pushback::DoNotRetry),
            ("+250", Pushback::DoNotRetry),
            ("", Pushback::DoNotRetry),
            ("2.5", Pushback::DoNotRetry),
            ("later", Pushback::DoNotRetry),
            ("25 0", Pushback::DoNotRetry),
        ];
        for (input, expected) in cases {
            assert_eq!(grpc(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn from_headers_precedence() {
        let now = fixed_now();

        assert_eq!(from_headers(&HeaderMap::new(), now), None);

        let mut only_retry_after = HeaderMap::new();
        only_retry_after.insert(http::header::RETRY_AFTER, hv("7"));
        assert_eq!(from_headers(&only_retry_after, now), secs(7));

        let mut bad_retry_after = HeaderMap::new();
        bad_retry_after.insert(http::header::RETRY_AFTER, hv("soon"));
        assert_eq!(from_headers(&bad_retry_after, now), None);

        // The gRPC header wins, whether it asks for a delay or for no retry.
        let mut both = HeaderMap::new();
        both.insert(http::header::RETRY_AFTER, hv("7"));
        both.insert(GRPC_RETRY_PUSHBACK_MS, hv("100"));
        assert_eq!(
            from_headers(&both, now),
            Some(Pushback::After(Duration::from_millis(100)))
        );
        both.insert(GRPC_RETRY_PUSHBACK_MS, hv("nope"));
        assert_eq!(from_headers(&both, now), Some(Pushback::DoNotRetry));
    }

    #[test]
    fn from_headers_uses_first_value() {
        let now = fixed_now();
        let mut headers = HeaderMap::new();
        headers.append(http::header::RETRY_AFTER, hv("3"));
        headers.append(http::header::RETRY_AFTER, hv("9"));
        assert_eq!(from_headers(&headers, now), secs(3));

        headers.append(GRPC_RETRY_PUSHBACK_MS, hv("-1"));
        headers.append(GRPC_RETRY_PUSHBACK_MS, hv("10"));
        assert_eq!(from_headers(&headers, now), Some(Pushback::DoNotRetry));
    }

    fn assert_clamped(pushback: Option<Pushback>) {
        if let Some(Pushback::After(d)) = pushback {
            assert!(d <= MAX_PUSHBACK, "{d:?} exceeds MAX_PUSHBACK");
        }
    }

    /// Feeds one header value to every parser and checks the clamp.
    fn check_all(value: &HeaderValue, now: SystemTime) {
        let retry_after = parse_retry_after(value, now);
        assert_ne!(retry_after, Some(Pushback::DoNotRetry));
        assert_clamped(retry_after);
        assert_clamped(Some(parse_grpc_retry_pushback(value)));

        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, value.clone());
        assert_clamped(from_headers(&headers, now));
        headers.insert(GRPC_RETRY_PUSHBACK_MS, value.clone());
        assert_clamped(from_headers(&headers, now));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            now_secs in 0u64..=u64::from(u32::MAX),
        ) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                check_all(&value, UNIX_EPOCH + Duration::from_secs(now_secs));
            }
        }

        #[test]
        fn near_miss_numbers_never_panic(s in "[ \t+-]{0,2}[0-9]{0,40}[ \t.]{0,2}") {
            if let Ok(value) = HeaderValue::from_str(&s) {
                check_all(&value, fixed_now());
            }
        }

        #[test]
        fn near_miss_dates_never_panic(
            s in "[A-Za-z]{3}, [0-9]{1,3} [A-Za-z]{3} [0-9]{2,5} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
            now_secs in 0u64..=u64::from(u32::MAX),
        ) {
            if let Ok(value) = HeaderValue::from_str(&s) {
                check_all(&value, UNIX_EPOCH + Duration::from_secs(now_secs));
            }
        }
    }
}
