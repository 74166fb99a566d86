//! The few pieces of Go's `strconv` package whose exact behaviour is visible
//! through go-bexpr: string literal unquoting, `%q` quoting in error messages
//! and the number/bool coercions applied to match values.
//!
//! Error strings are rendered the way Go's `*strconv.NumError` prints itself,
//! e.g. `strconv.ParseInt: parsing "abc": invalid syntax`.

const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

/// Go's `strconv.Quote`: a double-quoted literal with Go escapes. Bytes that
/// are not valid UTF-8 are written as `\xNN`.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped_char(&mut out, c);
        }
        for &b in chunk.invalid() {
            push_hex_byte(&mut out, b);
        }
    }
    out.push('"');
    out
}

/// [`quote`] for text that is already valid UTF-8.
pub(crate) fn quote_str(s: &str) -> String {
    quote(s.as_bytes())
}

fn push_hex_byte(out: &mut String, b: u8) {
    out.push_str("\\x");
    out.push(LOWER_HEX[usize::from(b >> 4)] as char);
    out.push(LOWER_HEX[usize::from(b & 0xf)] as char);
}

fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        c if is_print(c) => out.push(c),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => push_hex_byte(out, c as u8),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// An approximation of Go's `unicode.IsPrint` (letters, marks, numbers,
/// punctuation, symbols and the ASCII space). Unassigned code points cannot
/// be told apart without Unicode tables and are treated as printable.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(
        c as u32,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0xFFFE..=0xFFFF
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
            | 0xE000..=0xF8FF
            | 0xF0000..=0x10FFFF
    )
}

/// Go's `strconv.Unquote` restricted to the two literal forms the grammar
/// produces: a back-quoted raw string (carriage returns are dropped) or a
/// double-quoted string that contains no unescaped `"`. The error is always
/// `strconv.ErrSyntax` ("invalid syntax").
pub(crate) fn unquote(text: &str) -> Result<Vec<u8>, ()> {
    let bytes = text.as_bytes();
    if bytes.len() < 2 {
        return Err(());
    }
    let quote_char = bytes[0];
    if bytes[bytes.len() - 1] != quote_char {
        return Err(());
    }
    let inner = &bytes[1..bytes.len() - 1];
    match quote_char {
        b'`' => {
            if inner.contains(&b'`') {
                return Err(());
            }
            Ok(inner.iter().copied().filter(|&b| b != b'\r').collect())
        }
        b'"' => unquote_double(inner),
        _ => Err(()),
    }
}

/// Body of a double-quoted literal (without the surrounding quotes).
fn unquote_double(inner: &[u8]) -> Result<Vec<u8>, ()> {
    if !inner.contains(&b'\\') && !inner.contains(&b'\n') {
        if inner.contains(&b'"') {
            return Err(());
        }
        return Ok(inner.to_vec());
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        match c {
            b'\n' | b'"' => return Err(()),
            b'\\' => {
                // An escape at the very end would swallow the closing quote.
                let Some(&e) = inner.get(i + 1) else {
                    return Err(());
                };
                i += 2;
                match e {
                    b'a' => out.push(0x07),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(0x0b),
                    b'\\' => out.push(b'\\'),
                    // `\"` consumes the closing quote of the literal, so the
                    // string can never be terminated.
                    b'"' => return Err(()),
                    b'x' | b'u' | b'U' => {
                        let n = match e {
                            b'x' => 2,
                            b'u' => 4,
                            _ => 8,
                        };
                        let digits = inner.get(i..i + n).ok_or(())?;
                        let mut v: u32 = 0;
                        for &d in digits {
                            let h = (d as char).to_digit(16).ok_or(())?;
                            v = (v << 4) | h;
                        }
                        i += n;
                        if e == b'x' {
                            out.push(v as u8);
                        } else {
                            let ch = char::from_u32(v).ok_or(())?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                    b'0'..=b'7' => {
                        let digits = inner.get(i..i + 2).ok_or(())?;
                        let mut v = u32::from(e - b'0');
                        for &d in digits {
                            if !(b'0'..=b'7').contains(&d) {
                                return Err(());
                            }
                            v = (v << 3) | u32::from(d - b'0');
                        }
                        i += 2;
                        if v > 255 {
                            return Err(());
                        }
                        out.push(v as u8);
                    }
                    _ => return Err(()),
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn num_error(func: &str, num: &[u8], err: &str) -> String {
    format!("strconv.{func}: parsing {}: {err}", quote(num))
}

const SYNTAX: &str = "invalid syntax";
const RANGE: &str = "value out of range";

enum UintErr {
    Syntax,
    Range,
}

/// Go's `underscoreOK`: underscores may only separate digits (or follow a
/// base prefix).
fn underscore_ok(s: &[u8]) -> bool {
    let mut s = s;
    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        s = &s[1..];
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    while i < s.len() {
        let c = s[i];
        if c.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&c.to_ascii_lowercase())) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// `strconv.ParseUint(s, 0, 64)` without the error decoration.
fn parse_uint_base0(s: &[u8]) -> Result<u64, UintErr> {
    if s.is_empty() {
        return Err(UintErr::Syntax);
    }
    let s0 = s;
    let mut s = s;
    let mut base: u64 = 10;
    if s[0] == b'0' {
        if s.len() >= 3 && s[1].eq_ignore_ascii_case(&b'b') {
            base = 2;
            s = &s[2..];
        } else if s.len() >= 3 && s[1].eq_ignore_ascii_case(&b'o') {
            base = 8;
            s = &s[2..];
        } else if s.len() >= 3 && s[1].eq_ignore_ascii_case(&b'x') {
            base = 16;
            s = &s[2..];
        } else {
            base = 8;
            s = &s[1..];
        }
    }
    let mut n: u64 = 0;
    let mut underscores = false;
    for &c in s {
        let d = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => u64::from(c - b'0'),
            _ if c.is_ascii_alphabetic() => u64::from(c.to_ascii_lowercase() - b'a') + 10,
            _ => return Err(UintErr::Syntax),
        };
        if d >= base {
            return Err(UintErr::Syntax);
        }
        n = n
            .checked_mul(base)
            .and_then(|m| m.checked_add(d))
            .ok_or(UintErr::Range)?;
    }
    if underscores && !underscore_ok(s0) {
        return Err(UintErr::Syntax);
    }
    Ok(n)
}

/// `strconv.ParseInt(s, 0, 0)` on a 64-bit platform (go-bexpr's `CoerceInt`).
pub(crate) fn parse_int(s: &[u8]) -> Result<i64, String> {
    const FUNC: &str = "ParseInt";
    if s.is_empty() {
        return Err(num_error(FUNC, s, SYNTAX));
    }
    let (neg, digits) = match s[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let un = match parse_uint_base0(digits) {
        Ok(v) => v,
        Err(UintErr::Syntax) => return Err(num_error(FUNC, s, SYNTAX)),
        Err(UintErr::Range) => u64::MAX,
    };
    let cutoff: u64 = 1 << 63;
    if !neg && un >= cutoff {
        return Err(num_error(FUNC, s, RANGE));
    }
    if neg && un > cutoff {
        return Err(num_error(FUNC, s, RANGE));
    }
    Ok(if neg {
        (un as i64).wrapping_neg()
    } else {
        un as i64
    })
}

/// `strconv.ParseUint(s, 0, 0)` on a 64-bit platform (go-bexpr's `CoerceUint`).
pub(crate) fn parse_uint(s: &[u8]) -> Result<u64, String> {
    const FUNC: &str = "ParseUint";
    parse_uint_base0(s).map_err(|e| match e {
        UintErr::Syntax => num_error(FUNC, s, SYNTAX),
        UintErr::Range => num_error(FUNC, s, RANGE),
    })
}

/// `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &[u8]) -> Result<bool, String> {
    match s {
        b"1" | b"t" | b"T" | b"TRUE" | b"true" | b"True" => Ok(true),
        b"0" | b"f" | b"F" | b"FALSE" | b"false" | b"False" => Ok(false),
        _ => Err(num_error("ParseBool", s, SYNTAX)),
    }
}

/// `strconv.ParseFloat(s, 64)` for decimal notation, `inf`/`infinity`/`nan`
/// and digit-separating underscores. Hexadecimal floats are rejected.
pub(crate) fn parse_float(s: &[u8]) -> Result<f64, String> {
    const FUNC: &str = "ParseFloat";
    let syntax = || num_error(FUNC, s, SYNTAX);
    let text = std::str::from_utf8(s).map_err(|_| syntax())?;
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let lower = unsigned.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return text.parse::<f64>().map_err(|_| syntax());
    }
    let mut seen_digit = false;
    let mut seen_dot = false;
    let mut seen_exp = false;
    let mut prev = b'^';
    for &c in unsigned.as_bytes() {
        match c {
            b'0'..=b'9' => seen_digit = true,
            b'_' => {}
            b'.' if !seen_dot && !seen_exp => seen_dot = true,
            b'e' | b'E' if seen_digit && !seen_exp => seen_exp = true,
            b'+' | b'-' if matches!(prev, b'e' | b'E') => {}
            _ => return Err(syntax()),
        }
        prev = c;
    }
    if !seen_digit {
        return Err(syntax());
    }
    if text.contains('_') && !underscore_ok(s) {
        return Err(syntax());
    }
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let v = cleaned.parse::<f64>().map_err(|_| syntax())?;
    if v.is_infinite() {
        return Err(num_error(FUNC, s, RANGE));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go() {
        assert_eq!(quote(b"abc"), r#""abc""#);
        assert_eq!(quote(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote(b"\n\t\x01\x7f"), r#""\n\t\x01\x7f""#);
        assert_eq!(quote("åß∂ƒ".as_bytes()), "\"åß∂ƒ\"");
        assert_eq!(quote(b"\xff"), r#""\xff""#);
        assert_eq!(quote("\u{a0}".as_bytes()), r#""\u00a0""#);
        assert_eq!(quote("\u{e0001}".as_bytes()), r#""\U000e0001""#);
    }

    #[test]
    fn unquote_matches_go() {
        assert_eq!(unquote(r#""abc""#).unwrap(), b"abc");
        assert_eq!(unquote("`a\\nb\r`").unwrap(), b"a\\nb");
        assert_eq!(unquote(r#""a\nb""#).unwrap(), b"a\nb");
        assert_eq!(
            unquote(r#""\x41\u00e9\101""#).unwrap(),
            "Aé".bytes().chain([b'A']).collect::<Vec<_>>()
        );
        assert_eq!(unquote(r#""\xff""#).unwrap(), vec![0xff]);
        assert!(unquote(r#""\q""#).is_err());
        assert!(unquote(r#""\'""#).is_err());
        assert!(unquote("\"a\nb\"").is_err());
        assert!(unquote(r#""a\""#).is_err());
        assert!(unquote(r#""\400""#).is_err());
        assert!(unquote(r#""\ud800""#).is_err());
    }

    #[test]
    fn parse_int_matches_go() {
        assert_eq!(parse_int(b"80"), Ok(80));
        assert_eq!(parse_int(b"-80"), Ok(-80));
        assert_eq!(parse_int(b"+7"), Ok(7));
        assert_eq!(parse_int(b"0x50"), Ok(80));
        assert_eq!(parse_int(b"0o17"), Ok(15));
        assert_eq!(parse_int(b"017"), Ok(15));
        assert_eq!(parse_int(b"0b101"), Ok(5));
        assert_eq!(parse_int(b"1_000"), Ok(1000));
        assert_eq!(parse_int(b"0"), Ok(0));
        assert_eq!(parse_int(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            parse_int(b"abc"),
            Err(r#"strconv.ParseInt: parsing "abc": invalid syntax"#.to_string())
        );
        assert_eq!(
            parse_int(b"80.0"),
            Err(r#"strconv.ParseInt: parsing "80.0": invalid syntax"#.to_string())
        );
        assert_eq!(
            parse_int(b"9223372036854775808"),
            Err(
                r#"strconv.ParseInt: parsing "9223372036854775808": value out of range"#
                    .to_string()
            )
        );
        assert!(parse_int(b"").is_err());
        assert!(parse_int(b"-").is_err());
        assert!(parse_int(b"0x").is_err());
        assert!(parse_int(b"08").is_err());
        assert!(parse_int(b"1__0").is_err());
        assert!(parse_int(b"_1").is_err());
    }

    #[test]
    fn parse_uint_bool_float() {
        assert_eq!(parse_uint(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_uint(b"-1"),
            Err(r#"strconv.ParseUint: parsing "-1": invalid syntax"#.to_string())
        );
        assert_eq!(parse_bool(b"True"), Ok(true));
        assert_eq!(parse_bool(b"0"), Ok(false));
        assert_eq!(
            parse_bool(b"yes"),
            Err(r#"strconv.ParseBool: parsing "yes": invalid syntax"#.to_string())
        );
        assert_eq!(parse_float(b"1.5"), Ok(1.5));
        assert_eq!(parse_float(b"-2e3"), Ok(-2000.0));
        assert_eq!(parse_float(b".5"), Ok(0.5));
        assert!(parse_float(b"Inf").unwrap().is_infinite());
        assert!(parse_float(b"abc").is_err());
        assert_eq!(
            parse_float(b"1e400"),
            Err(r#"strconv.ParseFloat: parsing "1e400": value out of range"#.to_string())
        );
    }
}
