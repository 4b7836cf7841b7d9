//! The gRPC `grpc-timeout` request header.
//!
//! gRPC carries the caller's deadline to the server as a relative timeout,
//! `TimeoutValue TimeoutUnit`, where the value is 1 to 8 ASCII digits and the
//! unit is one of `H` (hours), `M` (minutes), `S` (seconds), `m` (millis),
//! `u` (micros) or `n` (nanos). This module turns that header into a
//! [`Duration`] and back, without ever panicking on hostile input.
//!
//! The deadline layers read it from the caller's request and write the time
//! left to each attempt; users set deadlines, not headers.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// The `grpc-timeout` header name.
pub(crate) const HEADER: HeaderName = HeaderName::from_static("grpc-timeout");

/// The largest value the spec allows: eight decimal digits.
const MAX_VALUE: u64 = 99_999_999;

/// What a timeout too long for the header is clamped to.
const MAX_ENCODED: &str = "99999999H";

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;
const SECONDS_PER_MINUTE: u64 = 60;
const SECONDS_PER_HOUR: u64 = 3_600;

/// Units from finest to coarsest, with their length in nanoseconds.
///
/// `encode` walks this list in order so that it keeps as much precision as
/// eight digits allow.
const UNITS: [(char, u64); 6] = [
    ('n', 1),
    ('u', NANOS_PER_MICRO),
    ('m', NANOS_PER_MILLI),
    ('S', NANOS_PER_SECOND),
    ('M', SECONDS_PER_MINUTE * NANOS_PER_SECOND),
    ('H', SECONDS_PER_HOUR * NANOS_PER_SECOND),
];

/// Parses a `grpc-timeout` header value.
///
/// Returns `None` for anything the spec does not allow: an empty value, no
/// digits, more than eight digits, a non-digit (including signs and
/// whitespace), a missing or unknown unit, or non-ASCII bytes. A caller
/// should treat `None` as "no timeout was sent" rather than as an error the
/// peer must hear about.
pub(crate) fn parse(value: &HeaderValue) -> Option<Duration> {
    let (unit, digits) = value.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }

    let mut amount: u64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        // Eight digits cannot overflow a u64, but saturating keeps that
        // argument out of the reader's head.
        amount = amount
            .saturating_mul(10)
            .saturating_add(u64::from(byte - b'0'));
    }

    let duration = match unit {
        b'H' => Duration::from_secs(amount.saturating_mul(SECONDS_PER_HOUR)),
        b'M' => Duration::from_secs(amount.saturating_mul(SECONDS_PER_MINUTE)),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    };
    Some(duration)
}

/// Encodes a timeout as a `grpc-timeout` header value.
///
/// The finest unit (`n`, then `u`, `m`, `S`, `M`, `H`) in which the timeout
/// fits in eight digits is chosen, and the value is rounded **up** in that
/// unit. Rounding up means a non-zero timeout never encodes as `0` (which
/// would make the server fail the call at once), at the price that the server
/// may wait up to one unit longer than asked; grpc-go makes the same trade.
/// The client enforces its own deadline anyway, so the slack only affects how
/// long the server keeps working on a call the client has given up on.
///
/// [`Duration::ZERO`] encodes as `"0n"`. Timeouts longer than 99,999,999
/// hours (about 11,400 years) are clamped to `"99999999H"`.
pub(crate) fn encode(timeout: Duration) -> HeaderValue {
    let nanos = timeout.as_nanos();
    for (unit, unit_nanos) in UNITS {
        let unit_nanos = u128::from(unit_nanos);
        let amount = nanos / unit_nanos + u128::from(nanos % unit_nanos != 0);
        if amount <= u128::from(MAX_VALUE) {
            // Digits followed by an ASCII letter are always a valid header
            // value; the fallback only exists so this function cannot panic.
            return HeaderValue::from_str(&format!("{amount}{unit}"))
                .unwrap_or_else(|_| HeaderValue::from_static(MAX_ENCODED));
        }
    }
    HeaderValue::from_static(MAX_ENCODED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Option<Duration> {
        parse(&HeaderValue::from_str(s).expect("test input is a valid header value"))
    }

    /// Nanoseconds in one unit, looked up by the unit letter.
    fn unit_nanos(unit: u8) -> u128 {
        UNITS
            .iter()
            .find(|(c, _)| *c == char::from(unit))
            .map(|(_, n)| u128::from(*n))
            .expect("known unit")
    }

    #[test]
    fn the_header_is_grpc_timeout_and_two_seconds_round_trip() {
        assert_eq!(HEADER.as_str(), "grpc-timeout");
        let header = encode(Duration::from_secs(2));
        assert_eq!(parse(&header), Some(Duration::from_secs(2)));
    }

    #[test]
    fn milliseconds_parse_and_a_spelled_out_unit_does_not() {
        assert_eq!(parse_str("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_str("250 ms"), None);
    }

    #[test]
    fn encode_keeps_the_finest_unit_and_clamps_the_longest() {
        assert_eq!(encode(Duration::from_millis(250)), "250000u");
        assert_eq!(encode(Duration::from_secs(3_600)), "3600000m");
        assert_eq!(encode(Duration::ZERO), "0n");
        assert_eq!(encode(Duration::MAX), "99999999H");
    }

    #[test]
    fn parses_each_unit() {
        let cases = [
            ("1H", Duration::from_secs(3_600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("4m", Duration::from_millis(4)),
            ("5u", Duration::from_micros(5)),
            ("6n", Duration::from_nanos(6)),
            ("0n", Duration::ZERO),
            ("0H", Duration::ZERO),
            ("00000007S", Duration::from_secs(7)),
            ("99999999n", Duration::from_nanos(99_999_999)),
            (
                "99999999H",
                Duration::from_secs(99_999_999 * SECONDS_PER_HOUR),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_str(input), Some(expected), "input {input:?}");
        }
    }

    #[test]
    fn rejects_malformed() {
        let cases = [
            "",
            "H",
            "1",
            "10",
            "123456789S",
            "1x",
            "1h",
            "1s",
            "-1S",
            "+1S",
            "1.5S",
            " 1S",
            "1S ",
            "1 S",
            "\t1S",
            "1SS",
            "S1",
            "0x10S",
        ];
        for input in cases {
            assert_eq!(parse_str(input), None, "input {input:?}");
        }
    }

    #[test]
    fn rejects_non_ascii() {
        let value = HeaderValue::from_bytes("1\u{00b5}".as_bytes()).expect("obs-text is allowed");
        assert_eq!(parse(&value), None);
        let value = HeaderValue::from_bytes(b"\xff1S").expect("obs-text is allowed");
        assert_eq!(parse(&value), None);
    }

    #[test]
    fn encodes_in_finest_fitting_unit() {
        let cases = [
            (Duration::ZERO, "0n"),
            (Duration::from_nanos(1), "1n"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_millis(100), "100000u"),
            (Duration::from_secs(1), "1000000u"),
            (Duration::from_secs(100), "100000m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_secs(100_000_000), "1666667M"),
            (
                Duration::from_secs(100_000_000 * SECONDS_PER_MINUTE),
                "1666667H",
            ),
            (
                Duration::from_secs(99_999_999 * SECONDS_PER_HOUR),
                "99999999H",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(encode(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn encode_rounds_up() {
        // 100_000_001 ns does not fit as nanos, and must not truncate to
        // 100000u, which would be shorter than asked.
        assert_eq!(encode(Duration::from_nanos(100_000_001)), "100001u");
        assert_eq!(
            encode(Duration::from_secs(100_000) + Duration::from_nanos(1)),
            "100001S"
        );
    }

    #[test]
    fn encode_clamps_huge_timeouts() {
        let just_over =
            Duration::from_secs(99_999_999 * SECONDS_PER_HOUR) + Duration::from_nanos(1);
        assert_eq!(encode(just_over), MAX_ENCODED);
        assert_eq!(encode(Duration::MAX), MAX_ENCODED);
    }

    /// Checks that `encode` then `parse` never shortens the timeout and adds
    /// less than one unit of the chosen unit.
    fn assert_round_trip(input: Duration) {
        let encoded = encode(input);
        let parsed = parse(&encoded).expect("encode output must parse");
        assert!(parsed >= input, "{input:?} -> {encoded:?} -> {parsed:?}");
        let unit = *encoded.as_bytes().last().expect("non-empty");
        let slack = parsed.as_nanos() - input.as_nanos();
        assert!(
            slack < unit_nanos(unit),
            "{input:?} -> {encoded:?} -> {parsed:?}"
        );
    }

    #[test]
    fn round_trip_table() {
        let cases = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(99_999_999),
            Duration::from_nanos(100_000_000),
            Duration::from_nanos(100_000_001),
            Duration::from_millis(1_234),
            Duration::new(86_400, 1),
            Duration::from_secs(99_999_999 * SECONDS_PER_HOUR),
        ];
        for input in cases {
            assert_round_trip(input);
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let _ = parse(&value);
            }
        }

        #[test]
        fn parse_never_panics_on_near_misses(s in "[0-9]{0,10}[HMSmun ]{0,2}") {
            if let Ok(value) = HeaderValue::from_str(&s) {
                let _ = parse(&value);
            }
        }

        #[test]
        fn encode_parse_round_trips(nanos in proptest::prelude::any::<u64>()) {
            assert_round_trip(Duration::from_nanos(nanos));
        }
    }
}
