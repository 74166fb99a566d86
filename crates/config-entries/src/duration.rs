//! Go `time.Duration` values as config entries carry them.
//!
//! Consul keeps durations as signed nanosecond counts. Inside config entries
//! they are written in two ways: the service-resolver `ConnectTimeout` and
//! `RequestTimeout` are rendered as Go duration strings (`"15s"`), every other
//! duration (passive health check `Interval`, cookie `TTL`, ...) as a plain
//! integer of nanoseconds, because those structs have no custom JSON
//! marshalling. On input both a duration string and a number are accepted.
//!
//! Unlike [`meshgate_types::GoDuration`], negative values are kept: Consul's
//! validation rejects them with a message, so they must survive decoding.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Name under which [`Nanos`] asks the config-entry decoder for duration
/// handling (a duration string or a number of nanoseconds).
pub(crate) const DURATION_MARKER: &str = "$meshgate::config_entries::Duration";

/// A signed Go duration in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub i64);

impl Nanos {
    /// The duration in nanoseconds.
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whether the duration is zero (Go's `omitempty` test).
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// The duration as a [`std::time::Duration`], `None` when negative.
    pub fn to_std(self) -> Option<std::time::Duration> {
        u64::try_from(self.0)
            .ok()
            .map(std::time::Duration::from_nanos)
    }

    /// From whole seconds.
    pub fn from_secs(secs: i64) -> Nanos {
        Nanos(secs.saturating_mul(1_000_000_000))
    }

    /// From whole milliseconds.
    pub fn from_millis(ms: i64) -> Nanos {
        Nanos(ms.saturating_mul(1_000_000))
    }
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go(self.0))
    }
}

/// Serialized as a number of nanoseconds (Go's default for `time.Duration`).
impl Serialize for Nanos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for Nanos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Nanos;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"10s\" or a number of nanoseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Nanos, E> {
                Ok(Nanos(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Nanos, E> {
                Ok(Nanos(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Nanos, E> {
                Ok(Nanos(v as i64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Nanos, E> {
                parse_go(v).map(Nanos).map_err(E::custom)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Nanos, E> {
                Ok(Nanos(i64::from(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Nanos, E> {
                Ok(Nanos(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<Nanos, E> {
                Ok(Nanos(0))
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Nanos, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_newtype_struct(DURATION_MARKER, V)
    }
}

/// `Nanos` written as a Go duration string (`"15s"`), used for the
/// service-resolver timeouts.
pub(crate) mod as_go_string {
    use serde::Serializer;

    use super::Nanos;

    pub(crate) fn serialize<S: Serializer>(v: &Nanos, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
}

/// Formats nanoseconds exactly like Go's `time.Duration.String()`:
/// `0s`, `1ns`, `1.5µs`, `2.5ms`, `1.5s`, `1m30s`, `1h0m0s`, `-5s`.
pub fn format_go(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < 1_000 {
        out.push_str(&format!("{u}ns"));
    } else if u < 1_000_000 {
        out.push_str(&frac(u, 1_000));
        out.push('µ');
        out.push('s');
    } else if u < 1_000_000_000 {
        out.push_str(&frac(u, 1_000_000));
        out.push_str("ms");
    } else {
        let secs = u / 1_000_000_000;
        let sub = u % 1_000_000_000;
        let h = secs / 3600;
        let m = (secs % 3600) / 60;
        let s = secs % 60;
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&frac(s * 1_000_000_000 + sub, 1_000_000_000));
        out.push('s');
    }
    out
}

/// `value / unit` with the fractional digits Go prints (trailing zeros
/// removed).
fn frac(value: u64, unit: u64) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses a Go duration string like `time.ParseDuration`, with its error
/// messages (`time: invalid duration "x"`, `time: missing unit in duration
/// "10"`, `time: unknown unit "x" in duration "5x"`).
pub fn parse_go(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(s));
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // The number: digits, optionally a fraction.
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_part = &rest[..int_end];
        rest = &rest[int_end..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac_part = &r[..end];
            rest = &r[end..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        // The unit: everything up to the next digit or '.'.
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(s)));
        }
        let per: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit),
                    go_quote(s)
                ));
            }
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(per).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            // Fraction scaled to the unit, truncated like Go (digits past
            // nanosecond precision of the largest unit do not matter).
            let mut scale: u128 = 1;
            let mut f: u128 = 0;
            for c in frac_part.chars().take(18) {
                f = f * 10 + u128::from(c.to_digit(10).unwrap_or(0));
                scale *= 10;
            }
            value = value.checked_add(f * per / scale).ok_or_else(invalid)?;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i64::MAX as u128 + u128::from(neg) {
            return Err(invalid());
        }
    }
    let total = total as i128;
    let signed = if neg { -total } else { total };
    i64::try_from(signed).map_err(|_| invalid())
}

/// Go's `%q` for the plain strings that appear in duration errors.
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go(0), "0s");
        assert_eq!(format_go(5), "5ns");
        assert_eq!(format_go(1_500), "1.5µs");
        assert_eq!(format_go(2_500_000), "2.5ms");
        assert_eq!(format_go(1_500_000_000), "1.5s");
        assert_eq!(format_go(90_000_000_000), "1m30s");
        assert_eq!(format_go(3_600_000_000_000), "1h0m0s");
        assert_eq!(format_go(-5_000_000_000), "-5s");
        assert_eq!(format_go(15_000_000_000), "15s");
    }

    #[test]
    fn parses_like_go() {
        assert_eq!(parse_go("15s"), Ok(15_000_000_000));
        assert_eq!(parse_go("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go("-5s"), Ok(-5_000_000_000));
        assert_eq!(parse_go("0"), Ok(0));
        assert_eq!(parse_go("500ms"), Ok(500_000_000));
        assert_eq!(parse_go("2µs"), Ok(2_000));
        assert_eq!(
            parse_go("10"),
            Err("time: missing unit in duration \"10\"".to_owned())
        );
        assert_eq!(
            parse_go("5x"),
            Err("time: unknown unit \"x\" in duration \"5x\"".to_owned())
        );
        assert_eq!(
            parse_go("abc"),
            Err("time: invalid duration \"abc\"".to_owned())
        );
        assert_eq!(parse_go(""), Err("time: invalid duration \"\"".to_owned()));
        assert_eq!(parse_go(".5s"), Ok(500_000_000));
        assert_eq!(
            parse_go("1.000000000000000000000000000001h"),
            Ok(3_600_000_000_000)
        );
        assert!(parse_go("99999999999999999999999999999999999999999h").is_err());
        assert!(parse_go("3000000h").is_err());
        assert_eq!(parse_go("-9223372036854775808ns"), Ok(i64::MIN));
    }
}
