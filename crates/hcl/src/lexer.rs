//! Turns HCL source text into tokens, skipping whitespace and comments.

use serde_json::Number;

use crate::{Error, Pos};

/// The kinds of token the parser sees.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Comma,
    Assign,
    /// An identifier, including `true`, `false` and `null`.
    Ident(String),
    /// A quoted string, escapes decoded.
    Str(String),
    /// The text of a heredoc.
    Heredoc(String),
    Number(Number),
    /// A character that starts no token; the parser reports it in context.
    Other(char),
    Eof,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
    /// Byte range of the token in the source.
    pub start: usize,
    pub end: usize,
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

pub(crate) fn is_ident_continue(c: char) -> bool {
    matches!(c, '_' | '-' | '.') || c.is_alphanumeric()
}

pub(crate) struct Lexer<'a> {
    src: &'a str,
    off: usize,
    line: usize,
    column: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str, first_column: usize) -> Lexer<'a> {
        Lexer {
            src,
            off: 0,
            line: 1,
            column: first_column,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.off..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        let mut chars = self.src[self.off..].chars();
        chars.next();
        chars.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.off += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// A short description of a token for error messages.
    pub fn describe(&self, token: &Token) -> String {
        match &token.tok {
            Tok::LBrace => "'{'".to_owned(),
            Tok::RBrace => "'}'".to_owned(),
            Tok::LBrack => "'['".to_owned(),
            Tok::RBrack => "']'".to_owned(),
            Tok::Comma => "','".to_owned(),
            Tok::Assign => "'='".to_owned(),
            Tok::Ident(name) => format!("\"{}\"", shorten(name)),
            Tok::Str(_) | Tok::Number(_) => shorten(&self.src[token.start..token.end]),
            Tok::Heredoc(_) => "a heredoc".to_owned(),
            Tok::Other(c) => format!("'{}'", c.escape_debug()),
            Tok::Eof => "end of input".to_owned(),
        }
    }

    fn skip_trivia(&mut self) -> Result<(), Error> {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r' | '\n') => {
                    self.bump();
                }
                Some('#') => self.skip_line(),
                Some('/') if self.peek_second() == Some('/') => self.skip_line(),
                Some('/') if self.peek_second() == Some('*') => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Err(Error::new(
                                    start,
                                    "unterminated comment: '/*' has no closing '*/'",
                                ));
                            }
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    pub fn next_token(&mut self) -> Result<Token, Error> {
        self.skip_trivia()?;
        let pos = self.pos();
        let start = self.off;
        let Some(c) = self.peek() else {
            return Ok(Token {
                tok: Tok::Eof,
                pos,
                start,
                end: start,
            });
        };
        let tok = match c {
            '{' | '}' | '[' | ']' | ',' | '=' => {
                self.bump();
                match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '[' => Tok::LBrack,
                    ']' => Tok::RBrack,
                    ',' => Tok::Comma,
                    _ => Tok::Assign,
                }
            }
            '"' => Tok::Str(self.string()?),
            '<' if self.peek_second() == Some('<') => Tok::Heredoc(self.heredoc()?),
            '0'..='9' => Tok::Number(self.number(pos)?),
            '-' if self.peek_second().is_some_and(|c| c.is_ascii_digit()) => {
                Tok::Number(self.number(pos)?)
            }
            c if is_ident_start(c) => {
                while self.peek().is_some_and(is_ident_continue) {
                    self.bump();
                }
                Tok::Ident(self.src[start..self.off].to_owned())
            }
            '/' => {
                return Err(Error::new(
                    pos,
                    "unexpected '/': comments start with '//' or '/*'",
                ));
            }
            other => {
                self.bump();
                Tok::Other(other)
            }
        };
        Ok(Token {
            tok,
            pos,
            start,
            end: self.off,
        })
    }

    /// A quoted string; the opening quote is the next character.
    fn string(&mut self) -> Result<String, Error> {
        let open = self.pos();
        self.bump();
        let mut out = String::new();
        loop {
            let here = self.pos();
            match self.bump() {
                None => {
                    return Err(Error::new(
                        open,
                        "unterminated string: missing closing '\"' before the end of input",
                    ));
                }
                Some('\n') => {
                    return Err(Error::new(
                        open,
                        "unterminated string: missing closing '\"' before the end of the line",
                    ));
                }
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.escape(here)?),
                Some('$') if self.peek() == Some('{') => {
                    self.bump();
                    out.push_str("${");
                    self.interpolation(here, &mut out)?;
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// The rest of a `${ ... }` sequence, kept verbatim up to the matching
    /// closing brace.
    fn interpolation(&mut self, start: Pos, out: &mut String) -> Result<(), Error> {
        let mut depth = 1usize;
        loop {
            match self.bump() {
                None | Some('\n') => {
                    return Err(Error::new(
                        start,
                        "unterminated interpolation: '${' has no matching '}' on the same line",
                    ));
                }
                Some(c) => {
                    out.push(c);
                    if c == '{' {
                        depth += 1;
                    } else if c == '}' {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// An escape sequence; the backslash (at `start`) was consumed.
    fn escape(&mut self, start: Pos) -> Result<char, Error> {
        let Some(c) = self.bump() else {
            return Err(Error::new(
                start,
                "unterminated string: input ends inside an escape sequence",
            ));
        };
        Ok(match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '"' => '"',
            '\\' => '\\',
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'v' => '\u{b}',
            'x' | 'u' | 'U' => {
                let digits = match c {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut code = 0u32;
                for _ in 0..digits {
                    match self.peek().and_then(|d| d.to_digit(16)) {
                        Some(d) => {
                            self.bump();
                            code = code * 16 + d;
                        }
                        None => {
                            return Err(Error::new(
                                start,
                                format!(
                                    "invalid escape sequence: '\\{c}' must be followed by {digits} hexadecimal digits"
                                ),
                            ));
                        }
                    }
                }
                if c == 'x' && code > 0x7f {
                    return Err(Error::new(
                        start,
                        "invalid escape sequence: '\\x' is limited to ASCII, use '\\u' for other characters",
                    ));
                }
                char::from_u32(code).ok_or_else(|| {
                    Error::new(
                        start,
                        format!("invalid escape sequence: U+{code:04X} is not a Unicode character"),
                    )
                })?
            }
            '0'..='7' => {
                let mut code = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            self.bump();
                            code = code * 8 + d;
                        }
                        None => {
                            return Err(Error::new(
                                start,
                                "invalid escape sequence: an octal escape needs three digits",
                            ));
                        }
                    }
                }
                if code > 0x7f {
                    return Err(Error::new(
                        start,
                        "invalid escape sequence: octal escapes are limited to ASCII, use '\\u' for other characters",
                    ));
                }
                // Below 0x80, so always a valid char.
                char::from_u32(code).unwrap_or('\u{0}')
            }
            other => {
                return Err(Error::new(
                    start,
                    format!(
                        "invalid escape sequence '\\{}' in string",
                        other.escape_debug()
                    ),
                ));
            }
        })
    }

    /// A heredoc; `<<` are the next two characters.
    fn heredoc(&mut self) -> Result<String, Error> {
        let open = self.pos();
        self.bump();
        self.bump();
        let strip_indent = if self.peek() == Some('-') {
            self.bump();
            true
        } else {
            false
        };
        let marker_start = self.off;
        while self.peek().is_some_and(|c| c == '_' || c.is_alphanumeric()) {
            self.bump();
        }
        let marker = &self.src[marker_start..self.off];
        if marker.is_empty() {
            return Err(Error::new(
                self.pos(),
                "expected a heredoc marker after '<<' (as in <<EOF)",
            ));
        }
        if self.peek() == Some('\r') && self.peek_second() == Some('\n') {
            self.bump();
        }
        if self.peek() != Some('\n') {
            return Err(Error::new(
                self.pos(),
                format!("expected a newline after the heredoc marker {marker}"),
            ));
        }
        self.bump();
        let mut lines: Vec<&'a str> = Vec::new();
        loop {
            if self.off >= self.src.len() {
                return Err(Error::new(
                    open,
                    format!("unterminated heredoc: no line holds the closing marker {marker}"),
                ));
            }
            let line_start = self.off;
            self.skip_line();
            let line_end = self.off;
            let had_newline = self.bump().is_some();
            let content = &self.src[line_start..line_end];
            if content
                .trim_end_matches('\r')
                .trim_start_matches([' ', '\t'])
                == marker
            {
                break;
            }
            if !had_newline {
                return Err(Error::new(
                    open,
                    format!("unterminated heredoc: no line holds the closing marker {marker}"),
                ));
            }
            lines.push(&self.src[line_start..self.off]);
        }
        if strip_indent {
            Ok(strip_common_indent(&lines))
        } else {
            Ok(lines.concat())
        }
    }

    /// A number; the next character is a digit or a '-' before a digit.
    fn number(&mut self, pos: Pos) -> Result<Number, Error> {
        let start = self.off;
        let negative = if self.peek() == Some('-') {
            self.bump();
            true
        } else {
            false
        };
        if self.peek() == Some('0') && matches!(self.peek_second(), Some('x' | 'X')) {
            self.bump();
            self.bump();
            let digits_start = self.off;
            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.bump();
            }
            let digits = &self.src[digits_start..self.off];
            if digits.is_empty() {
                return Err(Error::new(
                    pos,
                    "invalid hexadecimal number: expected digits after '0x'",
                ));
            }
            self.check_number_end(pos, start)?;
            let value = u64::from_str_radix(digits, 16).map_err(|_| out_of_range(pos))?;
            return integer(negative, value, pos);
        }
        let int_start = self.off;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let int_part = &self.src[int_start..self.off];
        let mut is_float = false;
        if self.peek() == Some('.') && self.peek_second().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
            is_float = true;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(Error::new(
                    pos,
                    "invalid number: expected digits in the exponent",
                ));
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
            is_float = true;
        }
        self.check_number_end(pos, start)?;
        let text = &self.src[start..self.off];
        if is_float {
            let value: f64 = text.parse().map_err(|_| out_of_range(pos))?;
            return Number::from_f64(value).ok_or_else(|| out_of_range(pos));
        }
        if int_part.len() > 1 && int_part.starts_with('0') {
            // HCL1 reads a leading zero as octal.
            if int_part.contains(['8', '9']) {
                return Err(Error::new(
                    pos,
                    format!("invalid octal number {text} (a leading zero means octal, as in HCL1)"),
                ));
            }
            let value = u64::from_str_radix(int_part, 8).map_err(|_| out_of_range(pos))?;
            return integer(negative, value, pos);
        }
        if negative {
            if let Ok(value) = text.parse::<i64>() {
                return Ok(value.into());
            }
        } else if let Ok(value) = text.parse::<u64>() {
            return Ok(value.into());
        }
        // Too large for an integer: a float, as serde_json does.
        let value: f64 = text.parse().map_err(|_| out_of_range(pos))?;
        Number::from_f64(value).ok_or_else(|| out_of_range(pos))
    }

    fn check_number_end(&self, pos: Pos, start: usize) -> Result<(), Error> {
        match self.peek() {
            Some(c) if is_ident_continue(c) => Err(Error::new(
                pos,
                format!(
                    "invalid number: unexpected '{}' after {}",
                    c.escape_debug(),
                    shorten(&self.src[start..self.off])
                ),
            )),
            _ => Ok(()),
        }
    }
}

fn out_of_range(pos: Pos) -> Error {
    Error::new(pos, "number out of range")
}

fn integer(negative: bool, value: u64, pos: Pos) -> Result<Number, Error> {
    if !negative {
        return Ok(value.into());
    }
    i64::try_from(-i128::from(value))
        .map(Number::from)
        .map_err(|_| out_of_range(pos))
}

/// Removes from every line the smallest indentation of the non-blank lines
/// (spaces and tabs count one each), as HCL2 does for `<<-` heredocs.
fn strip_common_indent(lines: &[&str]) -> String {
    let indent_of = |line: &str| line.chars().take_while(|c| matches!(c, ' ' | '\t')).count();
    let is_blank = |line: &str| {
        line.trim_end_matches(['\n', '\r'])
            .chars()
            .all(|c| matches!(c, ' ' | '\t'))
    };
    let min = lines
        .iter()
        .filter(|line| !is_blank(line))
        .map(|line| indent_of(line))
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in lines {
        let strip = indent_of(line).min(min);
        // Spaces and tabs are one byte each.
        out.push_str(&line[strip..]);
    }
    out
}

/// Cuts long source excerpts for error messages.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
