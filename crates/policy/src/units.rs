//! Human units: byte sizes ("50MB", "1.5GiB", 1024) and durations ("1.5s", "200ms", "2m").
//!
//! Sizes: an integer number of bytes, or a string: a number (fractions allowed) and an optional
//! unit, case-insensitive: `B`, decimal `KB`/`MB`/`GB`/`TB` (×1000) or binary `KiB`/`MiB`/`GiB`/`TiB`
//! (×1024). Fractional results are rounded down to whole bytes.
//!
//! Durations: a number of seconds, or a string: a number and a unit `ns`, `us` (or `µs`), `ms`,
//! `s`, `m`, `h`. A string without a unit means seconds.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{invalid, ErrorKind, Problem};

/// What a size error says was expected.
pub const SIZE_EXPECTED: &str = r#"expected a size like "64MB" or a number of bytes"#;
/// What a duration error says was expected.
pub const DURATION_EXPECTED: &str = r#"expected a duration like "1.5s" or a number of seconds"#;
/// What a count error says was expected (pids, open_files, ...).
pub const COUNT_EXPECTED: &str = "expected a whole number greater than zero";

/// A byte count, written as an integer or a string with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    /// The number of bytes, or why it is not a size.
    pub fn bytes(&self) -> Result<u64, Problem> {
        match self {
            ByteSize::Bytes(n) => Ok(*n),
            ByteSize::Text(text) => {
                parse_size(text).map_err(|m| Problem::new(ErrorKind::InvalidSize, m))
            }
        }
    }
}

/// A duration, written as a string with a unit ("5s", "250ms") or a number of seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Span {
    Seconds(f64),
    Text(String),
}

impl Span {
    /// The duration, or why it is not one (malformed or negative).
    pub fn duration(&self) -> Result<Duration, Problem> {
        match self {
            Span::Seconds(secs) => seconds_to_duration(*secs)
                .ok_or_else(|| format!("{DURATION_EXPECTED}, found {}", format_number(*secs))),
            Span::Text(text) => parse_duration(text),
        }
        .map_err(|m| Problem::new(ErrorKind::InvalidDuration, m))
    }
}

/// Splits `"1.5 GiB"` into the number and the unit (either may be empty).
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

/// Parses a non-negative decimal number into an exact fraction `digits / 10^scale`, so that
/// "1.5GB" is exactly 1_500_000_000 and not a float approximation.
fn parse_decimal(number: &str) -> Option<(u128, u32)> {
    let (int, frac) = match number.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (number, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than this cannot change a result that must fit in u64.
    if int.len() > 30 || frac.len() > 18 {
        return None;
    }
    let scale = u32::try_from(frac.len()).ok()?;
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    Some((digits, scale))
}

/// Parses a size string ("64MB", "1.5GiB", "512").
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("{SIZE_EXPECTED}, found {}", quote(text));
    let (number, unit) = split_number(text.trim());
    let (digits, scale) = parse_decimal(number).ok_or_else(bad)?;
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = digits
        .checked_mul(multiplier)
        .map(|n| n / 10u128.pow(scale))
        .ok_or_else(|| format!("size {} is too large", quote(text)))?;
    u64::try_from(bytes).map_err(|_| format!("size {} is too large", quote(text)))
}

/// Parses a duration string ("250ms", "1.5s", "2m", "1h", "500us", "5").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{DURATION_EXPECTED}, found {}", quote(text));
    let (number, unit) = split_number(text.trim());
    let (digits, scale) = parse_decimal(number).ok_or_else(bad)?;
    let nanos_per_unit: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let nanos = digits
        .checked_mul(nanos_per_unit)
        .map(|n| n / 10u128.pow(scale))
        .ok_or_else(|| format!("duration {} is too long", quote(text)))?;
    let secs = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| format!("duration {} is too long", quote(text)))?;
    // The remainder is below 10^9 and always fits.
    let subsec = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, subsec))
}

fn seconds_to_duration(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// Formats a duration the way policies write it: "250ms" below a second (or "500us", "10ns"
/// when not a whole number of milliseconds), otherwise seconds with the fraction trimmed ("1.5s").
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        "0s".to_string()
    } else if nanos < 1_000_000_000 {
        if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        }
    } else {
        let secs = d.as_secs();
        let frac = d.subsec_nanos();
        if frac == 0 {
            format!("{secs}s")
        } else {
            let digits = format!("{frac:09}");
            format!("{secs}.{}s", digits.trim_end_matches('0'))
        }
    }
}

/// Formats a number without a useless ".0" (for messages).
pub(crate) fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// A string as JSON would write it, for messages.
pub(crate) fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

/// Serializes an optional duration as `format_duration` text (for the effective policy).
pub fn serialize_opt_duration<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// Reads what [`serialize_opt_duration`] wrote (a policy that crosses a process boundary).
pub fn deserialize_opt_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = serde::Deserialize::deserialize(d)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Deserialization with messages that say what was expected and what was found.
// ---------------------------------------------------------------------------------------------

struct SizeVisitor;

impl<'de> Visitor<'de> for SizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&SIZE_EXPECTED["expected ".len()..])
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize::Bytes(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v).map(ByteSize::Bytes).map_err(|_| {
            invalid(
                ErrorKind::InvalidSize,
                format!("{SIZE_EXPECTED}, found {v}"),
            )
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 {
            Ok(ByteSize::Bytes(v as u64))
        } else {
            Err(invalid(
                ErrorKind::InvalidSize,
                format!("{SIZE_EXPECTED}, found {}", format_number(v)),
            ))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        Ok(ByteSize::Text(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ByteSize, E> {
        Err(invalid(
            ErrorKind::InvalidSize,
            format!("{SIZE_EXPECTED}, found {v}"),
        ))
    }
    fn visit_unit<E: de::Error>(self) -> Result<ByteSize, E> {
        Err(invalid(
            ErrorKind::InvalidSize,
            format!("{SIZE_EXPECTED}, found null"),
        ))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<ByteSize, A::Error> {
        Err(invalid(
            ErrorKind::InvalidSize,
            format!("{SIZE_EXPECTED}, found a list"),
        ))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<ByteSize, A::Error> {
        Err(invalid(
            ErrorKind::InvalidSize,
            format!("{SIZE_EXPECTED}, found an object"),
        ))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

struct SpanVisitor;

impl<'de> Visitor<'de> for SpanVisitor {
    type Value = Span;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&DURATION_EXPECTED["expected ".len()..])
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Span, E> {
        Ok(Span::Seconds(v as f64))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Span, E> {
        Ok(Span::Seconds(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Span, E> {
        Ok(Span::Seconds(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
        Ok(Span::Text(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Span, E> {
        Err(invalid(
            ErrorKind::InvalidDuration,
            format!("{DURATION_EXPECTED}, found {v}"),
        ))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Span, E> {
        Err(invalid(
            ErrorKind::InvalidDuration,
            format!("{DURATION_EXPECTED}, found null"),
        ))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Span, A::Error> {
        Err(invalid(
            ErrorKind::InvalidDuration,
            format!("{DURATION_EXPECTED}, found a list"),
        ))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Span, A::Error> {
        Err(invalid(
            ErrorKind::InvalidDuration,
            format!("{DURATION_EXPECTED}, found an object"),
        ))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SpanVisitor)
    }
}

/// Deserializes a count (pids, open files, ...) with a message that says what was expected.
/// Zero passes here and is refused by validation, which names the limit.
pub fn deserialize_opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct CountVisitor;
    impl<'de> Visitor<'de> for CountVisitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(&COUNT_EXPECTED["expected ".len()..])
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<u64>, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<u64>, E> {
            u64::try_from(v).map(Some).map_err(|_| {
                invalid(
                    ErrorKind::InvalidLimit,
                    format!("{COUNT_EXPECTED}, found {v}"),
                )
            })
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<u64>, E> {
            if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 {
                Ok(Some(v as u64))
            } else {
                Err(invalid(
                    ErrorKind::InvalidLimit,
                    format!("{COUNT_EXPECTED}, found {}", format_number(v)),
                ))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<u64>, E> {
            Err(invalid(
                ErrorKind::InvalidLimit,
                format!("{COUNT_EXPECTED}, found {}", quote(v)),
            ))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<u64>, E> {
            Err(invalid(
                ErrorKind::InvalidLimit,
                format!("{COUNT_EXPECTED}, found {v}"),
            ))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Option<u64>, A::Error> {
            Err(invalid(
                ErrorKind::InvalidLimit,
                format!("{COUNT_EXPECTED}, found a list"),
            ))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Option<u64>, A::Error> {
            Err(invalid(
                ErrorKind::InvalidLimit,
                format!("{COUNT_EXPECTED}, found an object"),
            ))
        }
    }
    d.deserialize_any(CountVisitor)
}

/// What a CPU share error says was expected.
pub const CORES_EXPECTED: &str = "expected a number of cores like 0.5 or 2";

/// Deserializes `limits.cpu` with a message that says what was expected. Zero and negative
/// values pass here and are refused by validation, which names the limit.
pub fn deserialize_opt_cores<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    struct CoresVisitor;
    impl<'de> Visitor<'de> for CoresVisitor {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(&CORES_EXPECTED["expected ".len()..])
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<f64>, E> {
            Ok(Some(v as f64))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<f64>, E> {
            Ok(Some(v as f64))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<f64>, E> {
            Ok(Some(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<f64>, E> {
            Err(invalid(
                ErrorKind::InvalidLimit,
                format!("{CORES_EXPECTED}, found {}", quote(v)),
            ))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<f64>, E> {
            Err(invalid(
                ErrorKind::InvalidLimit,
                format!("{CORES_EXPECTED}, found {v}"),
            ))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<f64>, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Option<f64>, A::Error> {
            Err(invalid(
                ErrorKind::InvalidLimit,
                format!("{CORES_EXPECTED}, found a list"),
            ))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Option<f64>, A::Error> {
            Err(invalid(
                ErrorKind::InvalidLimit,
                format!("{CORES_EXPECTED}, found an object"),
            ))
        }
    }
    d.deserialize_any(CoresVisitor)
}

// ---------------------------------------------------------------------------------------------
// JSON Schema: precise patterns so editors flag "64 megs" before bunker does.
// ---------------------------------------------------------------------------------------------

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a number of bytes, or a string with a decimal (KB, MB, GB, TB: x1000) or binary (KiB, MiB, GiB, TiB: x1024) unit, case-insensitive, e.g. \"64MB\", \"1.5GiB\".",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*([0-9]+(\\.[0-9]*)?|\\.[0-9]+)\\s*([bB]|[kKmMgGtT][iI]?[bB])?\\s*$" }
            ]
        })
    }
}

impl JsonSchema for Span {
    fn schema_name() -> Cow<'static, str> {
        "Span".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a number of seconds, or a string with a unit ns, us, ms, s, m or h, e.g. \"250ms\", \"1.5s\", \"2m\".",
            "anyOf": [
                { "type": "number", "exclusiveMinimum": 0 },
                { "type": "string", "pattern": "^\\s*([0-9]+(\\.[0-9]*)?|\\.[0-9]+)\\s*(ns|us|µs|ms|s|m|h)?\\s*$" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("50mb"), Ok(50_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("10KiB"), Ok(10_240));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("0.5KiB"), Ok(512));
        assert_eq!(parse_size("1 MB"), Ok(1_000_000));
        assert_eq!(parse_size("7B"), Ok(7));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in [
            "", "lots", "MB", "1.2.3MB", "-1MB", "1XB", "1 M", "1e9", ".",
        ] {
            assert_eq!(
                parse_size(bad),
                Err(format!("{SIZE_EXPECTED}, found {}", quote(bad))),
                "{bad}"
            );
        }
        assert!(parse_size("99999999TB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "soon", "5 sec", "-1s", "1S", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Span::Seconds(1.5).duration(),
            Ok(Duration::from_millis(1500))
        );
        assert!(Span::Seconds(-1.0).duration().is_err());
    }

    #[test]
    fn duration_formatting_round_trips() {
        for (d, text) in [
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_micros(500), "500us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::new(2, 1), "2.000000001s"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn deserialize_messages() {
        let err = serde_json::from_str::<ByteSize>("true")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(r#"expected a size like "64MB" or a number of bytes, found true"#));
        let err = serde_json::from_str::<ByteSize>("-3")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(r#"expected a size like "64MB" or a number of bytes, found -3"#));
        assert_eq!(
            serde_json::from_str::<ByteSize>("1e3").unwrap(),
            ByteSize::Bytes(1000)
        );
        assert_eq!(
            serde_json::from_str::<Span>("2").unwrap(),
            Span::Seconds(2.0)
        );
    }
}
