//! RFC 3339 timestamps (as Go's `time.Time` marshals them), without a date crate.

/// Days since 1970-01-01 for a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The UTC calendar parts of milliseconds since the epoch: year, month,
/// day, hour, minute, second, millisecond.
pub fn utc_parts(ms: u64) -> [i64; 7] {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    [
        y,
        mo,
        d,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        (ms % 1000) as i64,
    ]
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC with microsecond
/// precision trimmed like Go's RFC3339Nano: `2026-11-25T18:02:07.644Z`.
pub fn format_rfc3339_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let frac = ms % 1000;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Formats whole seconds of milliseconds since the epoch as Go's
/// `time.Time.String()` writes a UTC time: `2026-11-25 18:02:00 +0000 UTC`
/// (what Consul's `/v1/agent/metrics` gives as `Timestamp`, and what tools
/// reading it parse with the layout `2006-01-02 15:04:05 -0700 MST`).
pub fn format_go_utc(ms: u64) -> String {
    let rfc = format_rfc3339_ms(ms - ms % 1000);
    let civil = rfc.trim_end_matches('Z').replacen('T', " ", 1);
    format!("{civil} +0000 UTC")
}

/// Parses an RFC 3339 timestamp to milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        let padded = format!("{digits:0<3}");
        ms = padded[..3].parse().ok()?;
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' => 0,
        b'+' | b'-' => {
            let sign = if b[i] == b'-' { -1 } else { 1 };
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let total = days * 86400 + h * 3600 + mi * 60 + sec - offset_secs;
    if total < 0 {
        return None;
    }
    Some(total as u64 * 1000 + ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_offsets() {
        let ms = 1_795_629_727_644;
        let s = format_rfc3339_ms(ms);
        assert_eq!(s, "2026-11-25T18:02:07.644Z");
        assert_eq!(parse_rfc3339_ms(&s), Some(ms));
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_go_utc(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            format_go_utc(1_795_777_210_644),
            "2026-11-27 11:00:10 +0000 UTC"
        );
        assert_eq!(
            parse_rfc3339_ms("2018-10-24T10:34:20.843397-04:00"),
            parse_rfc3339_ms("2018-10-24T14:34:20.843Z")
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
        assert!(parse_rfc3339_ms("nonsense").is_none());
    }
}
