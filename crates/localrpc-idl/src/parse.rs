//! The parser and validator for `.varlink` interface text.
//!
//! [`parse`] turns text into an [`Interface`] and rejects anything the varlink grammar or the
//! naming rules forbid, reporting the `line:column` of the offending token (both 1-based, columns
//! counted in characters) and what was expected there.
//!
//! # Grammar decisions
//!
//! - Whitespace (space, tab, CR, LF) and `#` comments may appear between any two tokens. The type
//!   prefixes `?`, `[]` and `[string]` must be followed directly by their element type (as in the
//!   varlink.org PEG grammar, systemd and the Rust reference parser); `[]`, `[string]` and `->` are
//!   single tokens without inner whitespace.
//! - Trailing commas (`(a: int,)`, `(one, two,)`) are rejected, as every reference parser (varlink.org
//!   grammar, Python `varlink`, Go `varlink/idl`, systemd's sd-varlink) does.
//! - An interface needs at least one member, as the varlink.org grammar (`members: member | member
//!   members`), the Go and the Rust reference parsers require (Python and systemd accept an empty
//!   one; we follow the grammar).
//! - `type` declarations must be a struct or an enum (`type Foo int` is rejected, as in the grammar).
//!   `()` is the empty struct. An enum cannot mix plain values and typed fields.
//! - `??T` is rejected; `?[]?T`, `[]?T`, `[string]()` and nested containers are accepted (the
//!   varlink.org grammar allows them; see [`crate::systemd_lint`] for what systemd refuses).
//! - Nesting of types (`(`, `[]`, `[string]`, `?`) is capped at [`MAX_DEPTH`] levels.
//!
//! # Doc comments
//!
//! A *doc comment block* is a run of comment lines that each start their own line (only whitespace
//! before the `#`). It documents the token that directly follows it when that token is the
//! `interface`, `type`, `method` or `error` keyword, a struct field name or an enum value. Each
//! line is stored without the `#` and at most one following space (like systemd; the Go parser also
//! strips exactly one character).
//!
//! - A blank line ends the block: comments separated from the declaration by an empty line are not
//!   its doc (the Go reference parser does the same; license headers stay out of the docs).
//! - A comment after a token on the same line (`error Foo () # note`) is a trailing remark, never a
//!   doc (varlink.org: "comments that start on a new line and are immediately followed by ...").
//! - A block followed by any other token (e.g. before `)` or `->`) is dropped.

use std::collections::HashMap;

use crate::ast::{EnumVariant, ErrorDef, Field, Interface, Member, Method, Type, TypeDef};

/// Maximum nesting depth of type expressions; deeper input is rejected with a [`ParseError`].
pub const MAX_DEPTH: usize = 64;

/// Why interface text could not be parsed or validated.
///
/// `line` and `column` are 1-based; the column counts characters, not bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// Line of the offending token (1-based).
    pub line: usize,
    /// Column of the offending token (1-based, in characters).
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

/// Parses and validates one interface definition.
///
/// Runs all validation (names, duplicates, unresolved types, nesting depth) and never panics.
pub fn parse(text: &str) -> Result<Interface, ParseError> {
    Parser::new(text).parse_interface()
}

/// A position in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    LParen,
    RParen,
    Comma,
    Colon,
    Question,
    Array,
    Map,
    Arrow,
    Eof,
}

impl Tok<'_> {
    /// How the token is named in error messages.
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("\"{w}\""),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Colon => "':'".into(),
            Tok::Question => "'?'".into(),
            Tok::Array => "'[]'".into(),
            Tok::Map => "'[string]'".into(),
            Tok::Arrow => "'->'".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// Where a named type was referenced, for resolution after the whole text is read.
struct NamedRef {
    name: String,
    pos: Pos,
}

/// Which construct a parenthesised list is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Unknown,
    Struct,
    Enum,
}

#[derive(Debug, Clone, Copy)]
enum MemberKind {
    Type,
    Method,
    Error,
}

impl MemberKind {
    fn as_str(self) -> &'static str {
        match self {
            MemberKind::Type => "type",
            MemberKind::Method => "method",
            MemberKind::Error => "error",
        }
    }
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread character.
    pos: usize,
    line: usize,
    column: usize,
    /// The comment block collected since the last token.
    pending_doc: Vec<String>,
    /// A token was consumed on the current line (so a `#` here is a trailing comment).
    line_has_token: bool,
    /// Nothing but whitespace seen on the current line so far.
    line_blank: bool,
    named_refs: Vec<NamedRef>,
}

type PResult<T> = Result<T, ParseError>;

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `[A-Z][A-Za-z0-9]*`: type, method and error names.
pub(crate) fn is_member_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
}

/// `[A-Za-z](_?[A-Za-z0-9])*`: field names and enum values.
pub(crate) fn is_field_name(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.first().is_some_and(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    let mut prev_underscore = false;
    for &c in b.iter().skip(1) {
        if c == b'_' {
            if prev_underscore {
                return false;
            }
            prev_underscore = true;
        } else if c.is_ascii_alphanumeric() {
            prev_underscore = false;
        } else {
            return false;
        }
    }
    !prev_underscore
}

/// `[A-Za-z]([-]*[A-Za-z0-9])*(\.[A-Za-z0-9]([-]*[A-Za-z0-9])*)+`: interface names.
pub(crate) fn is_interface_name(s: &str) -> bool {
    let mut labels = s.split('.');
    let Some(first) = labels.next() else {
        return false;
    };
    let label_ok = |l: &str, first: bool| {
        let b = l.as_bytes();
        let Some(&start) = b.first() else {
            return false;
        };
        let start_ok = if first {
            start.is_ascii_alphabetic()
        } else {
            start.is_ascii_alphanumeric()
        };
        start_ok
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    if !label_ok(first, true) {
        return false;
    }
    let mut rest = 0;
    for l in labels {
        if !label_ok(l, false) {
            return false;
        }
        rest += 1;
    }
    rest >= 1
}

const BUILTINS: &[&str] = &["bool", "int", "float", "string", "object", "any"];

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            pos: 0,
            line: 1,
            column: 1,
            pending_doc: Vec::new(),
            line_has_token: false,
            line_blank: true,
            named_refs: Vec::new(),
        }
    }

    fn here(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn err<T>(&self, at: Pos, message: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            line: at.line,
            column: at.column,
            message: message.into(),
        })
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    /// Consumes a `\n`: a new line starts, and a blank line ends any comment block.
    fn newline(&mut self) {
        self.pos += 1;
        if self.line_blank {
            self.pending_doc.clear();
        }
        self.line += 1;
        self.column = 1;
        self.line_has_token = false;
        self.line_blank = true;
    }

    /// Skips whitespace and comments, collecting own-line comments into `pending_doc`.
    fn skip_trivia(&mut self) {
        while let Some(&byte) = self.src.as_bytes().get(self.pos) {
            match byte {
                b'\n' => self.newline(),
                b' ' | b'\t' | b'\r' => {
                    self.pos += 1;
                    self.column += 1;
                }
                b'#' => {
                    let trailing = self.line_has_token;
                    self.line_blank = false;
                    let rest = &self.src[self.pos + 1..];
                    let len = rest.find('\n').unwrap_or(rest.len());
                    let comment = &rest[..len];
                    if !trailing {
                        let text = comment.trim_end_matches('\r');
                        self.pending_doc
                            .push(text.strip_prefix(' ').unwrap_or(text).to_string());
                    }
                    // Up to (not including) the newline: `#` and one column per character.
                    self.pos += 1 + len;
                    self.column += 1 + comment.chars().count();
                }
                _ => break,
            }
        }
    }

    fn peek(&mut self) -> PResult<(Tok<'a>, Pos, usize)> {
        self.skip_trivia();
        let at = self.here();
        let rest = &self.src[self.pos..];
        let Some(c) = rest.chars().next() else {
            return Ok((Tok::Eof, at, 0));
        };
        let tok = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            ':' => (Tok::Colon, 1),
            '?' => (Tok::Question, 1),
            '[' => {
                if rest.starts_with("[]") {
                    (Tok::Array, 2)
                } else if rest.starts_with("[string]") {
                    (Tok::Map, 8)
                } else {
                    return self.err(at, "expected '[]' or '[string]'");
                }
            }
            '-' => {
                if rest.starts_with("->") {
                    (Tok::Arrow, 2)
                } else {
                    return self.err(at, "expected '->'");
                }
            }
            c if is_word_char(c) => {
                let len = rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len());
                (Tok::Word(&rest[..len]), len)
            }
            c => return self.err(at, format!("unexpected character {c:?}")),
        };
        Ok((tok.0, at, tok.1))
    }

    /// Consumes a token of `len` bytes (as returned by [`Self::peek`]) and returns the doc comment
    /// block that preceded it.
    fn bump(&mut self, len: usize) -> Vec<String> {
        let doc = std::mem::take(&mut self.pending_doc);
        // Tokens are ASCII and never span lines: one column per byte.
        self.pos += len;
        self.column += len;
        self.line_has_token = true;
        self.line_blank = false;
        doc
    }

    /// Consumes the next token if it is `want`, else fails with `expected <what>, found <tok>`.
    fn expect(&mut self, want: Tok<'static>, what: &str) -> PResult<Pos> {
        let (tok, at, len) = self.peek()?;
        if tok == want {
            self.bump(len);
            Ok(at)
        } else {
            self.err(at, format!("expected {what}, found {}", tok.describe()))
        }
    }

    /// After `?`, `[]` or `[string]` the element type must follow without whitespace.
    fn require_adjacent(&self, prefix: &str) -> PResult<()> {
        match self.peek_char() {
            Some(c) if is_space(c) || c == '#' => self.err(
                self.here(),
                format!("expected a type directly after '{prefix}', found whitespace"),
            ),
            _ => Ok(()),
        }
    }

    fn parse_interface(mut self) -> PResult<Interface> {
        let (tok, at, len) = self.peek()?;
        if tok != Tok::Word("interface") {
            return self.err(
                at,
                format!(
                    "expected 'interface' at the start of the definition, found {}",
                    tok.describe()
                ),
            );
        }
        let doc = self.bump(len);

        self.skip_trivia();
        let at = self.here();
        let rest = &self.src[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
            .unwrap_or(rest.len());
        if len == 0 {
            let (tok, at, _) = self.peek()?;
            return self.err(
                at,
                format!(
                    "expected interface name after 'interface', found {}",
                    tok.describe()
                ),
            );
        }
        let name = &rest[..len];
        if !is_interface_name(name) {
            return self.err(
                at,
                format!(
                    "invalid interface name \"{name}\": expected a reverse-domain name like \
                     \"org.example.service\" (at least two dot-separated parts of letters, digits \
                     and inner '-', starting with a letter)"
                ),
            );
        }
        let name = name.to_string();
        self.bump(len);

        let mut members = Vec::new();
        // Name → (kind, line of the declaration).
        let mut declared: HashMap<String, (MemberKind, usize)> = HashMap::new();
        loop {
            let (tok, at, len) = self.peek()?;
            let kind = match tok {
                Tok::Eof => break,
                Tok::Word("type") => MemberKind::Type,
                Tok::Word("method") => MemberKind::Method,
                Tok::Word("error") => MemberKind::Error,
                _ => {
                    let what = if members.is_empty() {
                        "at least one declaration: "
                    } else {
                        ""
                    };
                    return self.err(
                        at,
                        format!(
                            "expected {what}'type', 'method' or 'error', found {}",
                            tok.describe()
                        ),
                    );
                }
            };
            let doc = self.bump(len);
            let (name_tok, name_at, name_len) = self.peek()?;
            let Tok::Word(member_name) = name_tok else {
                return self.err(
                    name_at,
                    format!(
                        "expected {} name after '{}', found {}",
                        kind.as_str(),
                        kind.as_str(),
                        name_tok.describe()
                    ),
                );
            };
            if !is_member_name(member_name) {
                return self.err(
                    name_at,
                    format!(
                        "invalid {} name \"{member_name}\": must start with an uppercase letter \
                         followed by letters and digits ([A-Z][A-Za-z0-9]*)",
                        kind.as_str()
                    ),
                );
            }
            if let Some((prev_kind, prev_line)) = declared.get(member_name) {
                return self.err(
                    name_at,
                    format!(
                        "duplicate name \"{member_name}\": {} at line {} conflicts with {} declared at \
                         line {prev_line} (types, methods and errors share one namespace)",
                        kind.as_str(),
                        name_at.line,
                        prev_kind.as_str()
                    ),
                );
            }
            declared.insert(member_name.to_string(), (kind, name_at.line));
            let member_name = member_name.to_string();
            self.bump(name_len);

            let member = match kind {
                MemberKind::Type => {
                    let (tok, at, len) = self.peek()?;
                    if tok != Tok::LParen {
                        return self.err(
                            at,
                            format!(
                                "expected '(' after type name \"{member_name}\" (a struct or an enum), found {}",
                                tok.describe()
                            ),
                        );
                    }
                    self.bump(len);
                    let ty = self.parse_list(1, false)?;
                    Member::Type(TypeDef {
                        name: member_name,
                        doc,
                        ty,
                    })
                }
                MemberKind::Method => {
                    let (tok, at, len) = self.peek()?;
                    if tok != Tok::LParen {
                        return self.err(
                            at,
                            format!(
                                "expected '(' after method name \"{member_name}\", found {}",
                                tok.describe()
                            ),
                        );
                    }
                    self.bump(len);
                    let input = self.parse_fields(1)?;
                    self.expect(Tok::Arrow, "'->' after the method's input parameters")?;
                    self.expect(Tok::LParen, "'(' to start the method's output parameters")?;
                    let output = self.parse_fields(1)?;
                    Member::Method(Method {
                        name: member_name,
                        doc,
                        input,
                        output,
                    })
                }
                MemberKind::Error => {
                    let (tok, at, len) = self.peek()?;
                    if tok != Tok::LParen {
                        return self.err(
                            at,
                            format!(
                                "expected '(' after error name \"{member_name}\", found {}",
                                tok.describe()
                            ),
                        );
                    }
                    self.bump(len);
                    let parameters = self.parse_fields(1)?;
                    Member::Error(ErrorDef {
                        name: member_name,
                        doc,
                        parameters,
                    })
                }
            };
            members.push(member);
        }
        if members.is_empty() {
            return self.err(
                self.here(),
                "expected at least one 'type', 'method' or 'error' declaration, found end of input",
            );
        }

        // Resolve named types now that every declaration is known.
        for r in &self.named_refs {
            match declared.get(&r.name) {
                Some((MemberKind::Type, _)) => {}
                Some((kind, line)) => {
                    return self.err(
                        r.pos,
                        format!(
                            "\"{}\" is declared as {} at line {line}, not as a type",
                            r.name,
                            match kind {
                                MemberKind::Method => "a method",
                                _ => "an error",
                            }
                        ),
                    );
                }
                None => return self.err(r.pos, format!("unknown type \"{}\"", r.name)),
            }
        }

        Ok(Interface { name, doc, members })
    }

    /// Parses a parameter list after its `(`: a struct only (method input/output, error).
    fn parse_fields(&mut self, depth: usize) -> PResult<Vec<Field>> {
        match self.parse_list(depth, true)? {
            Type::Struct(fields) => Ok(fields),
            // parse_list with struct_only never returns anything else.
            _ => Ok(Vec::new()),
        }
    }

    /// Parses the body of a parenthesised struct or enum after its `(`, up to and including `)`.
    ///
    /// `depth` is the nesting level of this list itself (1 for a declaration's own list).
    fn parse_list(&mut self, depth: usize, struct_only: bool) -> PResult<Type> {
        let mut kind = if struct_only {
            ListKind::Struct
        } else {
            ListKind::Unknown
        };
        let mut fields: Vec<Field> = Vec::new();
        let mut variants: Vec<EnumVariant> = Vec::new();
        let mut seen: HashMap<String, Pos> = HashMap::new();

        let (tok, _, len) = self.peek()?;
        if tok == Tok::RParen {
            self.bump(len);
            return Ok(Type::Struct(Vec::new()));
        }
        loop {
            let (tok, at, len) = self.peek()?;
            let Tok::Word(name) = tok else {
                let what = match kind {
                    ListKind::Enum => "an enum value name",
                    _ => "a field name",
                };
                return self.err(at, format!("expected {what}, found {}", tok.describe()));
            };
            let doc = self.bump(len);
            let name_at = at;

            let (next, next_at, next_len) = self.peek()?;
            match next {
                Tok::Colon if kind != ListKind::Enum => {
                    kind = ListKind::Struct;
                    self.check_item_name(name, name_at, "field", &mut seen)?;
                    self.bump(next_len);
                    let ty = self.parse_type(depth + 1)?;
                    fields.push(Field {
                        name: name.to_string(),
                        doc,
                        ty,
                    });
                }
                Tok::Colon => {
                    return self.err(
                        next_at,
                        format!(
                            "unexpected ':' after enum value \"{name}\": an enum cannot mix plain values \
                             and typed fields"
                        ),
                    );
                }
                Tok::Comma | Tok::RParen if kind != ListKind::Struct => {
                    kind = ListKind::Enum;
                    self.check_item_name(name, name_at, "enum value", &mut seen)?;
                    variants.push(EnumVariant {
                        name: name.to_string(),
                        doc,
                    });
                }
                _ if kind == ListKind::Enum => {
                    return self.err(
                        next_at,
                        format!(
                            "expected ',' or ')' after enum value \"{name}\", found {}",
                            next.describe()
                        ),
                    );
                }
                _ => {
                    return self.err(
                        next_at,
                        format!(
                            "expected ':' after field name \"{name}\", found {}",
                            next.describe()
                        ),
                    );
                }
            }

            let (sep, sep_at, sep_len) = self.peek()?;
            match sep {
                Tok::Comma => {
                    self.bump(sep_len);
                    let (after, after_at, _) = self.peek()?;
                    if after == Tok::RParen {
                        return self.err(
                            after_at,
                            "unexpected ')' after ',': trailing commas are not allowed",
                        );
                    }
                }
                Tok::RParen => {
                    self.bump(sep_len);
                    break;
                }
                other => {
                    let what = if kind == ListKind::Enum {
                        "enum value"
                    } else {
                        "field"
                    };
                    return self.err(
                        sep_at,
                        format!(
                            "expected ',' or ')' after {what} \"{name}\", found {}",
                            other.describe()
                        ),
                    );
                }
            }
        }
        Ok(match kind {
            ListKind::Enum => Type::Enum(variants),
            _ => Type::Struct(fields),
        })
    }

    /// Validates a field or enum value name and rejects duplicates within one list.
    fn check_item_name(
        &self,
        name: &str,
        at: Pos,
        what: &str,
        seen: &mut HashMap<String, Pos>,
    ) -> PResult<()> {
        if !is_field_name(name) {
            return self.err(
                at,
                format!(
                    "invalid {what} name \"{name}\": must start with a letter, followed by letters, \
                     digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)"
                ),
            );
        }
        if let Some(prev) = seen.get(name) {
            return self.err(
                at,
                format!(
                    "duplicate {what} \"{name}\" (first declared at {}:{})",
                    prev.line, prev.column
                ),
            );
        }
        seen.insert(name.to_string(), at);
        Ok(())
    }

    /// Parses a type expression at nesting level `depth`; compound types (`?`, `[]`, `[string]`,
    /// `(`) deeper than [`MAX_DEPTH`] are rejected before recursing.
    fn parse_type(&mut self, depth: usize) -> PResult<Type> {
        let (tok, at, len) = self.peek()?;
        let compound = matches!(tok, Tok::Question | Tok::Array | Tok::Map | Tok::LParen);
        if compound && depth > MAX_DEPTH {
            return self.err(
                at,
                format!("type nesting is too deep (the limit is {MAX_DEPTH} levels)"),
            );
        }
        match tok {
            Tok::Question => {
                self.bump(len);
                self.require_adjacent("?")?;
                let (next, next_at, _) = self.peek()?;
                if next == Tok::Question {
                    return self.err(
                        next_at,
                        "\"??\" is not allowed: a nullable type cannot be made nullable again",
                    );
                }
                Ok(Type::Nullable(Box::new(self.parse_type(depth + 1)?)))
            }
            Tok::Array => {
                self.bump(len);
                self.require_adjacent("[]")?;
                Ok(Type::Array(Box::new(self.parse_type(depth + 1)?)))
            }
            Tok::Map => {
                self.bump(len);
                self.require_adjacent("[string]")?;
                Ok(Type::Map(Box::new(self.parse_type(depth + 1)?)))
            }
            Tok::LParen => {
                self.bump(len);
                self.parse_list(depth, false)
            }
            Tok::Word(w) => {
                let ty = match w {
                    "bool" => Type::Bool,
                    "int" => Type::Int,
                    "float" => Type::Float,
                    "string" => Type::String,
                    "object" => Type::Object,
                    "any" => Type::Any,
                    _ if is_member_name(w) => {
                        self.named_refs.push(NamedRef {
                            name: w.to_string(),
                            pos: at,
                        });
                        Type::Named(w.to_string())
                    }
                    _ => {
                        return self.err(
                            at,
                            format!(
                                "unknown type \"{w}\": expected {}, a type name, '(', '[]', '[string]' or '?'",
                                BUILTINS.join(", ")
                            ),
                        );
                    }
                };
                self.bump(len);
                Ok(ty)
            }
            other => self.err(at, format!("expected a type, found {}", other.describe())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_interface_name("org.varlink.service"));
        assert!(is_interface_name("a--b.c"));
        assert!(is_interface_name("com.example.0example"));
        assert!(is_interface_name("xn--lgbbat1ad8j.example.algeria"));
        assert!(!is_interface_name("org"));
        assert!(!is_interface_name("org."));
        assert!(!is_interface_name(".org.a"));
        assert!(!is_interface_name("1org.a"));
        assert!(!is_interface_name("org.-a"));
        assert!(!is_interface_name("org.a-"));
        assert!(!is_interface_name("org..a"));
        assert!(!is_interface_name("org.a_b"));
        assert!(is_field_name("a_b1"));
        assert!(is_field_name("A"));
        assert!(!is_field_name("a__b"));
        assert!(!is_field_name("_a"));
        assert!(!is_field_name("a_"));
        assert!(!is_field_name("1a"));
        assert!(is_member_name("Foo1"));
        assert!(!is_member_name("foo"));
        assert!(!is_member_name("Foo_bar"));
    }

    #[test]
    fn doc_attachment() {
        let text = "# license header\n\n# iface doc\n#\n#  indented\ninterface org.example.a\n\n\
                    # stray\n\n# type doc\ntype T (\n  # field doc\n  a: int, # trailing\n  b: (\n    # v1 doc\n    one,\n    two\n  )\n)\n\
                    error E () # trailing, not a doc of M\n# method doc\nmethod M() -> ()\n";
        let iface = parse(text).unwrap();
        assert_eq!(iface.doc, vec!["iface doc", "", " indented"]);
        let Member::Type(t) = &iface.members[0] else {
            panic!()
        };
        assert_eq!(t.doc, vec!["type doc"]);
        let Type::Struct(fields) = &t.ty else {
            panic!()
        };
        assert_eq!(fields[0].doc, vec!["field doc"]);
        assert!(fields[1].doc.is_empty());
        let Type::Enum(vs) = &fields[1].ty else {
            panic!()
        };
        assert_eq!(vs[0].doc, vec!["v1 doc"]);
        assert!(vs[1].doc.is_empty());
        let Member::Error(e) = &iface.members[1] else {
            panic!()
        };
        assert!(e.doc.is_empty());
        let Member::Method(m) = &iface.members[2] else {
            panic!()
        };
        assert_eq!(m.doc, vec!["method doc"]);
    }

    #[test]
    fn crlf_and_tabs() {
        let iface = parse("# doc\r\ninterface a.b\r\n\r\nmethod\tF(\r\n\ta: ?[]int\r\n) -> ()\r\n")
            .unwrap();
        assert_eq!(iface.doc, vec!["doc"]);
        let m = iface.method("F").unwrap();
        assert_eq!(
            m.input[0].ty,
            Type::Nullable(Box::new(Type::Array(Box::new(Type::Int))))
        );
    }

    #[test]
    fn hostile_nesting_does_not_overflow() {
        for unit in ["(", "(a:", "[]", "?[]", "[string]", "(a: ("] {
            let text = format!("interface a.b\ntype T (x: {})", unit.repeat(100_000));
            let e = parse(&text).unwrap_err();
            assert!(
                e.message.contains("too deep") || e.message.contains("expected"),
                "{e}"
            );
        }
        let text = format!(
            "interface a.b\nmethod F(x: {}int) -> ()",
            "[]".repeat(100_000)
        );
        assert!(parse(&text).unwrap_err().message.contains("too deep"));
    }

    #[test]
    fn depth_limit_is_exact() {
        // 63 `[]` + the struct level of the method input = 64 levels: fine.
        let ok = format!(
            "interface a.b\nmethod F(x: {}int) -> ()",
            "[]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
        let bad = format!(
            "interface a.b\nmethod F(x: {}int) -> ()",
            "[]".repeat(MAX_DEPTH)
        );
        assert!(parse(&bad).unwrap_err().message.contains("too deep"));
    }
}
