//! Recursive-descent parser for HCL bodies, with a bounded nesting depth.

use crate::lexer::{Lexer, Tok, Token};
use crate::{Body, Error, Item, MAX_DEPTH, Pos, Value};

pub(crate) fn parse_hcl(src: &str, first_column: usize) -> Result<Body, Error> {
    let mut parser = Parser {
        lexer: Lexer::new(src, first_column),
        peeked: None,
        // The top-level body is the first level.
        depth: 1,
    };
    parser.body(None)
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    /// Nesting depth of what is being parsed, counted as in the normalized
    /// JSON: every '{', '[' and block label adds a level. The normalized
    /// JSON is at least this deep, so stopping here loses nothing.
    depth: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<Token, Error> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    fn peek(&mut self) -> Result<&Token, Error> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(token))
    }

    fn describe(&self, token: &Token) -> String {
        self.lexer.describe(token)
    }

    fn enter(&mut self, levels: usize, pos: Pos) -> Result<(), Error> {
        self.depth += levels;
        if self.depth > MAX_DEPTH {
            return Err(Error::new(
                pos,
                format!("nesting too deep: more than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self, levels: usize) {
        self.depth -= levels;
    }

    /// The items of a body, up to the end of input (`open` is `None`) or up
    /// to and including the '}' that closes the '{' at `open`.
    fn body(&mut self, open: Option<Pos>) -> Result<Body, Error> {
        let mut items = Vec::new();
        loop {
            let token = self.next()?;
            match token.tok {
                Tok::Eof => match open {
                    None => return Ok(Body { items }),
                    Some(open) => {
                        return Err(Error::new(
                            token.pos,
                            format!(
                                "expected '}}' to close the '{{' opened at {open}, found end of input"
                            ),
                        ));
                    }
                },
                Tok::RBrace if open.is_some() => return Ok(Body { items }),
                Tok::Ident(key) | Tok::Str(key) => {
                    items.push(self.item(key, token.pos)?);
                    if self.peek()?.tok == Tok::Comma {
                        self.next()?;
                    }
                }
                _ => {
                    let expected = if open.is_some() {
                        "an attribute name, a block type or '}'"
                    } else {
                        "an attribute name or a block type"
                    };
                    return Err(Error::new(
                        token.pos,
                        format!("expected {expected}, found {}", self.describe(&token)),
                    ));
                }
            }
        }
    }

    /// What follows the key of an item.
    fn item(&mut self, key: String, pos: Pos) -> Result<Item, Error> {
        let token = self.next()?;
        match token.tok {
            Tok::Assign => {
                let value = self.value()?;
                Ok(Item::Attribute { key, value, pos })
            }
            Tok::LBrace => {
                self.enter(1, token.pos)?;
                let body = self.body(Some(token.pos))?;
                self.leave(1);
                Ok(Item::Block {
                    kind: key,
                    labels: Vec::new(),
                    body,
                    pos,
                })
            }
            Tok::Ident(_) | Tok::Str(_) => {
                let first_label = token;
                let mut label_tokens = vec![first_label.clone()];
                let mut labels = Vec::new();
                if let Tok::Ident(label) | Tok::Str(label) = first_label.tok.clone() {
                    labels.push(label);
                }
                let brace = loop {
                    let token = self.next()?;
                    match token.tok {
                        Tok::Ident(ref label) | Tok::Str(ref label) => {
                            labels.push(label.clone());
                            label_tokens.push(token);
                        }
                        _ => break token,
                    }
                };
                if brace.tok != Tok::LBrace {
                    // `policy "read"` is far more often a missing '=' than a
                    // block header missing its '{'.
                    let second_on_later_line = label_tokens
                        .get(1)
                        .is_some_and(|second| second.pos.line > first_label.pos.line);
                    if labels.len() == 1 || second_on_later_line {
                        return Err(Error::new(
                            first_label.pos,
                            format!(
                                "expected '=' or '{{' after key \"{}\", found {}",
                                crate::lexer::shorten(&key),
                                self.describe(&first_label)
                            ),
                        ));
                    }
                    return Err(Error::new(
                        brace.pos,
                        format!(
                            "expected '{{' after the labels of block \"{}\", found {}",
                            crate::lexer::shorten(&key),
                            self.describe(&brace)
                        ),
                    ));
                }
                let levels = labels.len() + 1;
                self.enter(levels, brace.pos)?;
                let body = self.body(Some(brace.pos))?;
                self.leave(levels);
                Ok(Item::Block {
                    kind: key,
                    labels,
                    body,
                    pos,
                })
            }
            _ => Err(Error::new(
                token.pos,
                format!(
                    "expected '=' or '{{' after key \"{}\", found {}",
                    crate::lexer::shorten(&key),
                    self.describe(&token)
                ),
            )),
        }
    }

    fn value(&mut self) -> Result<Value, Error> {
        let token = self.next()?;
        match token.tok {
            Tok::Str(text) | Tok::Heredoc(text) => Ok(Value::String(text)),
            Tok::Number(number) => Ok(Value::Number(number)),
            Tok::Ident(ref name) => match name.as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                "null" => Ok(Value::Null),
                _ => Err(Error::new(
                    token.pos,
                    format!(
                        "expected a value, found {} (expressions are not supported: quote strings)",
                        self.describe(&token)
                    ),
                )),
            },
            Tok::LBrack => {
                self.enter(1, token.pos)?;
                let list = self.list(token.pos)?;
                self.leave(1);
                Ok(Value::List(list))
            }
            Tok::LBrace => {
                self.enter(1, token.pos)?;
                let body = self.body(Some(token.pos))?;
                self.leave(1);
                Ok(Value::Object(body))
            }
            _ => Err(Error::new(
                token.pos,
                format!("expected a value, found {}", self.describe(&token)),
            )),
        }
    }

    /// The elements of a list whose '[' (at `open`) was consumed.
    fn list(&mut self, open: Pos) -> Result<Vec<Value>, Error> {
        let mut elements = Vec::new();
        loop {
            if self.peek()?.tok == Tok::RBrack {
                self.next()?;
                return Ok(elements);
            }
            elements.push(self.value()?);
            let token = self.next()?;
            match token.tok {
                Tok::Comma => {}
                Tok::RBrack => return Ok(elements),
                _ => {
                    return Err(Error::new(
                        token.pos,
                        format!(
                            "expected ',' or ']' after a list element (the list opened at {open}), found {}",
                            self.describe(&token)
                        ),
                    ));
                }
            }
        }
    }
}
