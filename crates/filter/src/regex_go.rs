//! Go `regexp` (RE2 syntax) patterns on top of the `regex` crate.
//!
//! The two syntaxes are nearly the same; this module closes the gaps that
//! change results or errors:
//! * Perl classes (`\d \D \w \W \s \S`) and word boundaries (`\b \B`) are
//!   ASCII-only in Go, Unicode-aware in Rust: they are rewritten to ASCII;
//! * `{` that does not start a valid repeat (`a{`, `a{x}`, `a{01}`) is a
//!   literal in Go, an error in Rust: it is escaped;
//! * `\Q...\E` quoting and octal escapes (`\0`, `\12`, `\101`) exist in Go
//!   only; `\<` and `\>` are plain characters in Go, word boundaries in Rust;
//!   `[`, `&` and `~` are plain characters inside a Go class, nested classes
//!   and set operators in Rust;
//! * Go rejects nested repetition (`a**`) and repeat counts above 1000.
//!
//! Errors are reported the way Go's `regexp/syntax` words them:
//! ``error parsing regexp: <problem>: `<text>` ``.

use regex_syntax::ast::{self, ErrorKind as K};

/// A rewritten pattern plus, for each of its bytes, the range of the
/// original token it came from.
struct Translated<'p> {
    original: &'p str,
    text: String,
    origin: Vec<(usize, usize)>,
}

impl Translated<'_> {
    /// `s` stands for the original character at `orig`.
    fn push(&mut self, s: &str, orig: usize) {
        let len = self.original[orig..]
            .chars()
            .next()
            .map_or(1, char::len_utf8);
        self.push_tok(s, orig, orig + len);
    }

    /// `s` stands for the original text `start..end`.
    fn push_tok(&mut self, s: &str, start: usize, end: usize) {
        self.text.push_str(s);
        self.origin
            .extend(std::iter::repeat_n((start, end), s.len()));
    }

    /// `s` is copied unchanged from offset `start`.
    fn push_verbatim(&mut self, s: &str, start: usize) {
        self.text.push_str(s);
        self.origin
            .extend((start..start + s.len()).map(|k| (k, k + 1)));
    }
}

fn go_error(code: &str, arg: &str) -> String {
    format!("error parsing regexp: {code}: `{arg}`")
}

/// Go's `parseRepeat`: the length of a valid `{n}`, `{n,}` or `{n,m}` at the
/// start of `s` (leading zeros make it invalid, hence a literal `{`).
fn go_repeat_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let int_len = |from: usize| -> Option<usize> {
        let digits = b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || (digits >= 2 && b[from] == b'0') {
            return None;
        }
        Some(digits)
    };
    let mut i = 1;
    i += int_len(i)?;
    if b.get(i) == Some(&b',') {
        i += 1;
        if b.get(i) != Some(&b'}') {
            i += int_len(i)?;
        }
    }
    (b.get(i) == Some(&b'}')).then_some(i + 1)
}

fn ascii_class(c: char, in_class: bool) -> &'static str {
    match (c, in_class) {
        ('d', false) => "[0-9]",
        ('D', false) => "[^0-9]",
        ('w', false) => "[0-9A-Za-z_]",
        ('W', false) => "[^0-9A-Za-z_]",
        ('s', false) => "[\\t\\n\\x0C\\r ]",
        ('S', false) => "[^\\t\\n\\x0C\\r ]",
        ('d', true) => "0-9",
        ('D', true) => "[^0-9]",
        ('w', true) => "0-9A-Za-z_",
        ('W', true) => "[^0-9A-Za-z_]",
        ('s', true) => "\\t\\n\\x0C\\r ",
        _ => "[^\\t\\n\\x0C\\r ]",
    }
}

/// Go's check on a parsed repeat: counts above 1000 or `min > max`.
fn go_repeat_counts_ok(op: &str) -> bool {
    let inner = &op[1..op.len() - 1];
    let parse = |s: &str| -> Option<u64> { if s.len() > 8 { None } else { s.parse().ok() } };
    let (min, max) = match inner.split_once(',') {
        None => (parse(inner), parse(inner)),
        Some((a, "")) => (parse(a), Some(0)),
        Some((a, b)) => {
            let (min, max) = (parse(a), parse(b));
            if let (Some(m), Some(n)) = (min, max)
                && m > n
            {
                return false;
            }
            (min, max)
        }
    };
    matches!((min, max), (Some(m), Some(n)) if m <= 1000 && n <= 1000)
}

/// Go's `parsePerlFlags` on the text after `(?`: `Ok((len, flags_only))`
/// for `(?flags)` / `(?flags:` (len counts from the `(`), `Err(len)` with
/// the length of the text Go quotes in its error.
fn go_flags(after: &str) -> Result<(usize, bool), usize> {
    let mut negated = false;
    let mut saw_flag = false;
    for (k, c) in after.char_indices() {
        match c {
            'i' | 'm' | 's' | 'U' => saw_flag = true,
            '-' => {
                if negated {
                    return Err(3 + k);
                }
                negated = true;
                saw_flag = false;
            }
            ':' | ')' => {
                if negated && !saw_flag {
                    return Err(3 + k);
                }
                return Ok((3 + k, c == ')'));
            }
            _ => return Err(2 + k + c.len_utf8()),
        }
    }
    Err(2 + after.len())
}

/// Rewrite a Go pattern for the `regex` crate. Errors only Go reports are
/// returned with the offset at which Go's left-to-right parser finds them.
fn translate(p: &str) -> (Translated<'_>, Vec<(usize, String)>) {
    let mut t = Translated {
        original: p,
        text: String::with_capacity(p.len() + 8),
        origin: Vec::with_capacity(p.len() + 8),
    };
    let mut errors = Vec::new();
    let mut in_class = false;
    // Offset where the members of the current class start (a `]` there is a literal).
    let mut class_body = 0;
    // Start of the repetition operator that ended the previous token, if any.
    let mut last_repeat: Option<usize> = None;
    // Whether the last token can take a repetition operator.
    let mut operand = false;
    let mut names: Vec<&str> = Vec::new();
    // A flags group directly followed by a repetition operator: Go applies
    // the operator to the atom before the group, so the group is emitted
    // after the operator.
    let mut pending_flags: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let rest = &p[i..];
        let Some(c) = rest.chars().next() else { break };
        let is_repeat_op = !in_class
            && (matches!(c, '*' | '+' | '?') || (c == '{' && go_repeat_len(rest).is_some()));
        if !is_repeat_op {
            for (at, flen) in pending_flags.drain(..) {
                t.push_verbatim(&p[at..at + flen], at);
            }
        }
        let mut repeat_here = None;
        if c == '\\' {
            let Some(n) = rest[1..].chars().next() else {
                t.push("\\", i);
                i += 1;
                continue;
            };
            if n.is_ascii_alphanumeric() {
                let allowed = if in_class {
                    "afnrtvxpPdDsSwW01234567"
                } else {
                    "afnrtvxpPdDsSwWAbBzQ01234567"
                };
                if !allowed.contains(n) {
                    errors.push((i, go_error("invalid escape sequence", &rest[..2])));
                    t.push("x", i);
                    i += 2;
                    operand = true;
                    last_repeat = None;
                    continue;
                }
            }
            match n {
                'Q' if !in_class => {
                    let body = &rest[2..];
                    let (lit, used) = match body.find("\\E") {
                        Some(end) => (&body[..end], 2 + end + 2),
                        None => (body, rest.len()),
                    };
                    for (k, ch) in lit.char_indices() {
                        t.push(
                            &regex_syntax::escape(ch.encode_utf8(&mut [0; 4])),
                            i + 2 + k,
                        );
                    }
                    last_repeat = None;
                    operand = operand || !lit.is_empty();
                    i += used;
                    continue;
                }
                'x' | 'p' | 'P' if rest[2..].starts_with('{') => {
                    let len = rest.find('}').map_or(rest.len(), |e| e + 1);
                    t.push_verbatim(&rest[..len], i);
                    last_repeat = None;
                    operand = true;
                    i += len;
                    continue;
                }
                'd' | 'D' | 'w' | 'W' | 's' | 'S' => t.push_tok(ascii_class(n, in_class), i, i + 2),
                'b' | 'B' if !in_class => {
                    t.push_tok(if n == 'b' { "(?-u:\\b)" } else { "(?-u:\\B)" }, i, i + 2);
                }
                '<' | '>' => t.push_tok(if n == '<' { "<" } else { ">" }, i, i + 2),
                '0'..='7' => {
                    let digits: usize = rest[1..]
                        .bytes()
                        .take(3)
                        .take_while(|d| (b'0'..=b'7').contains(d))
                        .count();
                    if n != '0' && digits < 2 {
                        errors.push((i, go_error("invalid escape sequence", &rest[..2])));
                        t.push("x", i);
                        i += 2;
                        operand = true;
                        last_repeat = None;
                        continue;
                    }
                    let v = u32::from_str_radix(&rest[1..1 + digits], 8).unwrap_or(0);
                    t.push_tok(&format!("\\x{{{v:X}}}"), i, i + 1 + digits);
                    last_repeat = None;
                    operand = true;
                    i += 1 + digits;
                    continue;
                }
                _ => {
                    t.push("\\", i);
                    t.push(n.encode_utf8(&mut [0; 4]), i + 1);
                }
            }
            last_repeat = None;
            operand = true;
            i += 1 + n.len_utf8();
            continue;
        }
        if in_class {
            match c {
                ']' if i > class_body => {
                    in_class = false;
                    operand = true;
                }
                '[' if rest.starts_with("[:") => {
                    if let Some(end) = rest[2..].find(":]") {
                        t.push_verbatim(&rest[..end + 4], i);
                        i += end + 4;
                        continue;
                    }
                    t.push("\\[", i);
                    i += 1;
                    continue;
                }
                '[' | '&' | '~' => t.push("\\", i),
                _ => {}
            }
            t.push(c.encode_utf8(&mut [0; 4]), i);
            i += c.len_utf8();
            continue;
        }
        let mut len = c.len_utf8();
        match c {
            '[' => {
                in_class = true;
                operand = false;
                t.push("[", i);
                i += 1;
                if p[i..].starts_with('^') {
                    t.push("^", i);
                    i += 1;
                }
                class_body = i;
                last_repeat = None;
                continue;
            }
            '{' => match go_repeat_len(rest) {
                Some(op_len) => {
                    len = op_len;
                    if go_repeat_counts_ok(&rest[..op_len]) {
                        t.push_verbatim(&rest[..op_len], i);
                        repeat_here = Some(i);
                    } else {
                        errors.push((i, go_error("invalid repeat count", &rest[..op_len])));
                        t.push_tok(&regex_syntax::escape(&rest[..op_len]), i, i + op_len);
                    }
                }
                None => {
                    t.push("\\{", i);
                    operand = true;
                }
            },
            '*' | '+' | '?' => {
                t.push(c.encode_utf8(&mut [0; 4]), i);
                repeat_here = Some(i);
            }
            '(' => {
                last_repeat = None;
                let Some(after) = rest.strip_prefix("(?") else {
                    t.push("(", i);
                    operand = false;
                    i += 1;
                    continue;
                };
                let named = if after.starts_with("P<") {
                    Some("(?P<")
                } else if after.starts_with('<')
                    && !after.starts_with("<=")
                    && !after.starts_with("<!")
                {
                    Some("(?<")
                } else {
                    None
                };
                if let Some(pre) = named {
                    // Go (before 1.22 only `(?P<`) accepts duplicate group
                    // names; the regex crate does not, so later ones are renamed.
                    if let Some(gt) = rest.find('>') {
                        let name = &rest[pre.len()..gt];
                        if names.contains(&name) {
                            t.push_tok(&format!("{pre}{name}_{i}>"), i, i + gt + 1);
                        } else {
                            names.push(name);
                            t.push_verbatim(&rest[..=gt], i);
                        }
                        operand = false;
                        i += gt + 1;
                        continue;
                    }
                    t.push_verbatim(rest, i);
                    i = p.len();
                    continue;
                }
                match go_flags(after) {
                    Err(bad) => {
                        errors.push((
                            i,
                            go_error("invalid or unsupported Perl syntax", &rest[..bad]),
                        ));
                        t.push("(", i);
                        operand = false;
                        i += bad;
                    }
                    // A flags group leaves the previous operand in place.
                    Ok((flen, true)) => {
                        // A run of flags groups, then possibly an operator.
                        let mut groups = vec![(i, flen)];
                        let mut total = flen;
                        while let Some(more) = rest[total..].strip_prefix("(?")
                            && let Ok((l, true)) = go_flags(more)
                        {
                            groups.push((i + total, l));
                            total += l;
                        }
                        groups.retain(|&(_, l)| l > 3);
                        let next = &rest[total..];
                        let op_follows = matches!(next.chars().next(), Some('*' | '+' | '?'))
                            || go_repeat_len(next).is_some();
                        if operand && op_follows {
                            pending_flags = groups;
                        } else {
                            for (at, l) in groups {
                                t.push_verbatim(&p[at..at + l], at);
                            }
                        }
                        i += total;
                    }
                    Ok((flen, false)) => {
                        t.push_verbatim(&rest[..flen], i);
                        operand = false;
                        i += flen;
                    }
                }
                continue;
            }
            '|' => {
                t.push("|", i);
                operand = false;
            }
            _ => {
                t.push(c.encode_utf8(&mut [0; 4]), i);
                operand = true;
            }
        }
        if repeat_here.is_some() && !operand {
            // Nothing to repeat: the regex crate reports it like Go does.
            repeat_here = None;
        }
        if let Some(op_start) = repeat_here {
            // A lazy marker belongs to the operator.
            if p[i + len..].starts_with('?') {
                t.push("?", i + len);
                len += 1;
            }
            if let Some(prev) = last_repeat {
                errors.push((
                    prev,
                    go_error("invalid nested repetition operator", &p[prev..i + len]),
                ));
            }
            last_repeat = Some(op_start);
        } else {
            last_repeat = None;
        }
        i += len;
        for (at, flen) in pending_flags.drain(..) {
            t.push_verbatim(&p[at..at + flen], at);
        }
    }
    for (at, flen) in pending_flags.drain(..) {
        t.push_verbatim(&p[at..at + flen], at);
    }
    (t, errors)
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Map a byte range of the translated pattern back to the original.
fn original_range(t: &Translated<'_>, original: &str, span: &ast::Span) -> (usize, usize) {
    let n = original.len();
    let map = |off: usize| t.origin.get(off).copied().unwrap_or((n, n));
    let start = map(span.start.offset).0;
    let end = if span.end.offset > span.start.offset {
        map(span.end.offset - 1).1.max(start)
    } else {
        start
    };
    let start = floor_boundary(original, start);
    (start, ceil_boundary(original, end).max(start))
}

/// Text of the repetition operator starting at `start` (`*`, `+?`, `{2,3}` ...).
fn repeat_op_text(p: &str, start: usize) -> &str {
    let rest = &p[start..];
    let len = match rest.chars().next() {
        Some('{') => rest.find('}').map_or(rest.len(), |e| e + 1),
        Some(c) => c.len_utf8(),
        None => 0,
    };
    let len = if rest[len..].starts_with('?') {
        len + 1
    } else {
        len
    };
    &rest[..len]
}

fn parse_error(t: &Translated<'_>, p: &str, e: &ast::Error) -> String {
    let (start, end) = original_range(t, p, e.span());
    let text = &p[start..end];
    let tail = &p[start..];
    let or_two = |s: &'static str| -> String {
        let arg = if text.is_empty() {
            tail.char_indices().nth(2).map_or(tail, |(k, _)| &tail[..k])
        } else {
            text
        };
        go_error(s, arg)
    };
    match e.kind() {
        K::GroupUnclosed => go_error("missing closing )", p),
        K::GroupUnopened => go_error("unexpected )", p),
        K::ClassUnclosed => go_error("missing closing ]", tail),
        K::ClassRangeInvalid | K::ClassRangeLiteral => or_two("invalid character class range"),
        K::ClassEscapeInvalid
        | K::EscapeHexEmpty
        | K::EscapeHexInvalid
        | K::EscapeHexInvalidDigit
        | K::EscapeUnrecognized
        | K::UnicodeClassInvalid
        | K::UnsupportedBackreference => or_two("invalid escape sequence"),
        K::EscapeUnexpectedEof => go_error("trailing backslash at end of expression", ""),
        K::RepetitionMissing => go_error(
            "missing argument to repetition operator",
            repeat_op_text(p, start),
        ),
        K::RepetitionCountInvalid
        | K::RepetitionCountDecimalEmpty
        | K::RepetitionCountUnclosed
        | K::DecimalEmpty
        | K::DecimalInvalid => go_error("invalid repeat count", repeat_op_text(p, start)),
        K::GroupNameDuplicate { .. }
        | K::GroupNameEmpty
        | K::GroupNameInvalid
        | K::GroupNameUnexpectedEof => {
            let open = p[..ceil_boundary(p, start + 2)]
                .rfind("(?")
                .unwrap_or(start);
            let arg = match p[open..].find('>') {
                Some(gt) => &p[open..open + gt + 1],
                None => &p[open..],
            };
            go_error("invalid named capture", arg)
        }
        K::FlagDanglingNegation
        | K::FlagDuplicate { .. }
        | K::FlagRepeatedNegation { .. }
        | K::FlagUnexpectedEof
        | K::FlagUnrecognized
        | K::UnsupportedLookAround => {
            let open = p[..ceil_boundary(p, start + 2)]
                .rfind("(?")
                .unwrap_or(start);
            go_error(
                "invalid or unsupported Perl syntax",
                &p[open..end.max(open)],
            )
        }
        K::NestLimitExceeded(_) => go_error("expression nests too deeply", p),
        other => go_error(&other.to_string(), p),
    }
}

/// Compile a Go regular expression. The error is the text Go's
/// `regexp.Compile` would return (as closely as the engines allow).
pub(crate) fn compile(pattern: &str) -> Result<regex::Regex, String> {
    let (t, mut errors) = translate(pattern);
    if let Err(e) = ast::parse::ParserBuilder::new()
        .nest_limit(1000)
        .build()
        .parse(&t.text)
    {
        // Go only notices unclosed groups and classes at the end.
        let at = match e.kind() {
            K::GroupUnclosed | K::ClassUnclosed => pattern.len(),
            _ => original_range(&t, pattern, e.span()).0,
        };
        errors.push((at, parse_error(&t, pattern, &e)));
    }
    if let Some((_, msg)) = errors.into_iter().min_by_key(|(at, _)| *at) {
        return Err(msg);
    }
    regex::RegexBuilder::new(&t.text)
        .size_limit(1 << 22)
        .nest_limit(1000)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => go_error("expression too large", pattern),
            other => {
                let detail = other.to_string();
                let line = detail
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or("invalid regular expression")
                    .trim_start_matches("error: ")
                    .to_string();
                go_error(&line, pattern)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::compile;

    fn err(p: &str) -> String {
        compile(p).err().unwrap_or_else(|| panic!("{p:?} compiled"))
    }

    #[test]
    fn go_semantics() {
        assert!(compile(r"^web-\d+$").unwrap().is_match("web-12"));
        assert!(!compile(r"^\d$").unwrap().is_match("٣"));
        assert!(!compile(r"^\w$").unwrap().is_match("é"));
        assert!(compile(r"[\d]").unwrap().is_match("5"));
        assert!(compile(r"^a{$").unwrap().is_match("a{"));
        assert!(compile(r"^a{01}$").unwrap().is_match("a{01}"));
        assert!(compile(r"^a{2}$").unwrap().is_match("aa"));
        assert!(compile(r"^\Q*.+\E$").unwrap().is_match("*.+"));
        assert!(compile(r"^\101\0$").unwrap().is_match("A\0"));
        assert!(compile(r"^\<\>$").unwrap().is_match("<>"));
        assert!(compile(r"^[[a]+$").unwrap().is_match("[a["));
        assert!(compile(r"^[a&&b]+$").unwrap().is_match("a&b"));
        assert!(compile(r"^[[:alpha:]]+$").unwrap().is_match("abc"));
        assert!(compile(r"^[]a]+$").unwrap().is_match("]a"));
        assert!(compile(r"(?i)WEB").unwrap().is_match("web"));
    }

    #[test]
    fn go_errors() {
        assert_eq!(err("("), "error parsing regexp: missing closing ): `(`");
        assert_eq!(err("a)"), "error parsing regexp: unexpected ): `a)`");
        assert_eq!(err("[a"), "error parsing regexp: missing closing ]: `[a`");
        assert_eq!(
            err("*"),
            "error parsing regexp: missing argument to repetition operator: `*`"
        );
        assert_eq!(
            err("x**"),
            "error parsing regexp: invalid nested repetition operator: `**`"
        );
        assert_eq!(
            err("(?P<x"),
            "error parsing regexp: invalid named capture: `(?P<x`"
        );
        assert_eq!(
            err(r"\q"),
            "error parsing regexp: invalid escape sequence: `\\q`"
        );
        assert_eq!(
            err(r"\1"),
            "error parsing regexp: invalid escape sequence: `\\1`"
        );
        assert_eq!(
            err("a\\"),
            "error parsing regexp: trailing backslash at end of expression: ``"
        );
        assert_eq!(
            err("a{2,1}"),
            "error parsing regexp: invalid repeat count: `{2,1}`"
        );
        assert_eq!(
            err("a{1001}"),
            "error parsing regexp: invalid repeat count: `{1001}`"
        );
        assert_eq!(
            err("[z-a]"),
            "error parsing regexp: invalid character class range: `z-a`"
        );
    }
}
