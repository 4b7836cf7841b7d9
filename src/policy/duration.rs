//! Durations as text: `"250ms"`, `"2s"`, `"1m"`, `"1h30m"`, and Envoy's and gRPC's `"0.25s"`.
//!
//! The unit is required (a bare `250` could be seconds or milliseconds, and a wrong guess is
//! off by a thousand): `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. A number may have a decimal
//! fraction; several parts add up (`"1m30s"`). Negative values, NaN, unknown units and values
//! beyond [`Duration::MAX`] are refused with what was wrong. Written back, a duration takes the
//! largest unit that keeps it exact (`1500ms`, `2s`), so every value round-trips.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use std::fmt;
use std::time::Duration;

const UNITS: [(&str, u128); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Reads a duration such as `"250ms"`, `"0.25s"` or `"1m30s"`.
///
/// ```
/// use meshless::policy::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("-1s").unwrap_err().contains("negative"));
/// assert!(parse_duration("250").unwrap_err().contains("unit"));
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!("{text:?} is negative: a duration is at least 0s"));
    }
    if trimmed.is_empty() {
        return Err("an empty string is not a duration (write e.g. \"250ms\")".into());
    }
    let mut rest = trimmed.strip_prefix('+').unwrap_or(trimmed);
    if rest.is_empty() {
        return Err(format!("{text:?} is not a duration (write e.g. \"250ms\")"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if number.is_empty() {
            return Err(format!(
                "{text:?} is not a duration: expected a number before {unit:?} (e.g. \"250ms\")"
            ));
        }
        if unit.is_empty() {
            return Err(format!(
                "{text:?} has no unit: write e.g. \"{number}ms\" or \"{number}s\" (units: ns, us, ms, s, m, h)"
            ));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?} (units: ns, us, ms, s, m, h)"
            ));
        };
        let nanos = scaled(number, scale).ok_or_else(|| format!("{text:?} is not a duration"))?;
        total = total.checked_add(nanos).ok_or_else(|| too_long(text))?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_long(text))?;
    // The remainder is below 10^9, so it fits.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

fn too_long(text: &str) -> String {
    format!("{text:?} is longer than the longest duration (about 584 billion years)")
}

/// `number × scale` in nanoseconds, a fraction below a nanosecond dropped; `None` for a
/// malformed number (two dots, no digit) or one too large.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') || fraction.len() > 18 {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(scale)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let denominator = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        nanos = nanos.checked_add(digits.checked_mul(scale)? / denominator)?;
    }
    Some(nanos)
}

/// Writes a duration in the largest unit that keeps it exact (`"1500ms"`, `"2s"`, `"90s"`).
///
/// ```
/// use meshless::policy::format_duration;
/// use std::time::Duration;
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
/// assert_eq!(format_duration(Duration::from_secs(120)), "2m");
/// ```
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    // `µs` is skipped: `us` says the same in ASCII.
    for (name, scale) in UNITS.iter().rev().filter(|(name, _)| *name != "µs") {
        if nanos % scale == 0 {
            return format!("{}{name}", nanos / scale);
        }
    }
    format!("{nanos}ns")
}

/// `#[serde(with = "crate::policy::duration")]` for a [`Duration`].
pub(crate) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*duration))
}

/// `#[serde(with = "crate::policy::duration")]` for a [`Duration`].
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with its unit, such as \"250ms\", \"2s\", \"1m\" or \"0.25s\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse_duration(text).map_err(E::custom)
    }

    // A bare number is refused by name: which unit it meant cannot be told.
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "{n} has no unit: write it as a string, e.g. \"{n}ms\" or \"{n}s\""
        )))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "{n} has no unit: write it as a string, e.g. \"{n}ms\" or \"{n}s\""
        )))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "{n} has no unit: write it as a string, e.g. \"{n}s\""
        )))
    }
}

/// `#[serde(with = "crate::policy::duration::optional")]` for an `Option<Duration>`: `"off"`
/// (or `"none"`, or a null) is `None`, written back as `"off"` so that a default of `Some`
/// cannot come back in its place.
pub(crate) mod optional {
    use super::{DurationVisitor, format_duration};
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;
    use std::fmt;
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_str(super::super::OFF),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(OptionalVisitor)
    }

    struct OptionalVisitor;

    impl<'de> Visitor<'de> for OptionalVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"250ms\" or \"0.25s\", or \"off\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            if super::super::is_off(text) {
                return Ok(None);
            }
            DurationVisitor.visit_str(text).map(Some)
        }

        fn visit_bool<E: de::Error>(self, on: bool) -> Result<Self::Value, E> {
            if on {
                return Err(E::custom(
                    "`true` says no duration: write one, e.g. \"250ms\"",
                ));
            }
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            DurationVisitor.visit_u64(n).map(Some)
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            DurationVisitor.visit_i64(n).map(Some)
        }

        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
            DurationVisitor.visit_f64(n).map(Some)
        }
    }
}

/// `#[serde(with = "crate::policy::duration::some")]` for an `Option<Duration>` whose `None`
/// means "not set here" (skipped when written, missing when read): a value is a duration.
pub(crate) mod some {
    use serde::de::Deserializer;
    use serde::ser::Serializer;
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::deserialize(d).map(Some)
    }
}
