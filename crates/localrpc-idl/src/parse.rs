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
//!
//! # Cost
//!
//! Every daemon parses its interfaces at start-up, on the path to its first reply, and peers may
//! send interface text too. So the lexer is hand-tuned (see [`Parser::skip_trivia`]): it works on
//! bytes, scans comments eight bytes at a time, lexes each token once, and allocates only what
//! the returned [`Interface`] keeps. Duplicate names are found by a short linear scan, with a hash
//! index for long lists so that hostile input stays linear in time.

use foldhash::HashMap;

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
    Parser::new(text).parse_interface().map_err(|e| *e)
}

/// A position in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

/// The kind of a token; a word's text is [`Parser::word`] (kept out of the enum so that a
/// token is one byte, returned in a register).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Word,
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

/// Where a named type was referenced, for resolution after the whole text is read.
struct NamedRef<'a> {
    name: &'a str,
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
    /// `src` as bytes: the lexer works on bytes (see [`Parser::skip_trivia`]).
    bytes: &'a [u8],
    /// Byte offset of the next unread character.
    pos: usize,
    line: usize,
    column: usize,
    /// The comment block collected since the last token (each line already stripped of `#`, one
    /// space and trailing CRs); turned into owned strings only for the tokens that keep it.
    pending_doc: Vec<&'a str>,
    /// A token was consumed on the current line (so a `#` here is a trailing comment).
    line_has_token: bool,
    /// Nothing but whitespace seen on the current line so far.
    line_blank: bool,
    /// The token at `pos` (after trivia), once [`Parser::peek`] has lexed it; cleared when
    /// the parser advances. The grammar peeks at most positions several times.
    tok: Option<Tok>,
    /// Where the peeked token starts.
    tok_at: Pos,
    /// The peeked token's length in bytes (it starts at `pos`).
    tok_len: usize,
    /// The peeked token's text when it is a word.
    tok_word: &'a str,
    /// Named types referenced before their name was declared as a type: resolved once the
    /// whole text is read.
    named_refs: Vec<NamedRef<'a>>,
    /// Declared member names → (kind, line of the declaration); see [`find_name`].
    declared: Vec<(&'a str, (MemberKind, usize))>,
    /// Hash index of `declared` once it is long.
    declared_index: Option<HashMap<&'a str, (MemberKind, usize)>>,
    /// Names of the struct fields / enum values of the lists being parsed, innermost list last;
    /// each list owns the part from its start index (see [`ItemScope`]).
    items: Vec<(&'a str, Pos)>,
}

/// Errors are boxed inside the parser so that results stay small on the hot path (a peeked
/// token is returned in a register); [`parse`] unboxes the one it reports.
type PResult<T> = Result<T, Box<ParseError>>;

/// Up to this many names, duplicates are found by a linear scan (cheaper than hashing for the
/// short lists real interfaces have); past it a hash index is built, so that hostile input with
/// huge lists stays linear in time.
const LINEAR_NAMES: usize = 16;

/// The duplicate-name state of one field / enum value list: its start in `Parser::items`, and a
/// hash index once the list is longer than [`LINEAR_NAMES`].
struct ItemScope<'a> {
    base: usize,
    index: Option<HashMap<&'a str, Pos>>,
}

/// What was recorded for `name` in `list` (the names of one scope), looked up in `index` when
/// the scope has one.
fn find_name<'a, V: Copy>(
    list: &[(&'a str, V)],
    index: Option<&HashMap<&'a str, V>>,
    name: &str,
) -> Option<V> {
    match index {
        Some(index) => index.get(name).copied(),
        None => list.iter().find(|&&(n, _)| n == name).map(|&(_, v)| v),
    }
}

/// Records `name` (not yet in the scope) in the scope: in `list`, whose part from `base` is the
/// scope, until it holds more than [`LINEAR_NAMES`] names, then (from those on) in `index`.
fn record_name<'a, V: Copy>(
    list: &mut Vec<(&'a str, V)>,
    base: usize,
    index: &mut Option<HashMap<&'a str, V>>,
    name: &'a str,
    value: V,
) {
    match index {
        Some(index) => {
            index.insert(name, value);
        }
        None => {
            list.push((name, value));
            if list.len() - base > LINEAR_NAMES {
                *index = Some(list[base..].iter().copied().collect());
            }
        }
    }
}

/// `0x01` in every byte: with [`HI`], the constants of the eight-bytes-at-a-time scans.
const LO: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte.
const HI: u64 = 0x8080_8080_8080_8080;

/// Reads eight bytes as a little-endian word (byte `i` in bits `8 * i ..`).
fn load8(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    u64::from_le_bytes(word)
}

/// `[A-Za-z0-9_]`, as a table: the bytes of a word token.
static WORD_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || c == b'_';
        i += 1;
    }
    t
};

fn is_word_byte(c: u8) -> bool {
    WORD_BYTE[usize::from(c)]
}

/// The length of the run of word bytes that starts `rest`: four bytes per step, one table
/// look-up each.
fn word_len(rest: &[u8]) -> usize {
    let mut len = 0;
    let mut chunks = rest.chunks_exact(4);
    for chunk in &mut chunks {
        for (i, &c) in chunk.iter().enumerate() {
            if !is_word_byte(c) {
                return len + i;
            }
        }
        len += 4;
    }
    len + chunks
        .remainder()
        .iter()
        .position(|&c| !is_word_byte(c))
        .unwrap_or(chunks.remainder().len())
}

/// Bytes of the input that may follow `interface` as part of the interface name.
fn is_interface_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_')
}

/// The length in bytes of a comment's text (`rest` starts right after its `#`), up to (not
/// including) the next `\n` or the end of input.
///
/// Comments are most of the bytes of a documented interface, so this tests eight bytes at a time
/// for a `\n` with word arithmetic, two words per step (about one instruction per byte).
fn comment_len(rest: &[u8]) -> usize {
    /// The high bit of the first `\n` byte of `w` (and maybe of later bytes), or 0 if none.
    fn newlines(w: u64) -> u64 {
        let x = w ^ (LO * u64::from(b'\n'));
        // The lowest high bit set marks the first zero byte of `x` (higher bits may be false
        // positives: only the lowest one is used).
        x.wrapping_sub(LO) & !x & HI
    }
    let mut len = 0;
    let mut chunks = rest.chunks_exact(16);
    for chunk in &mut chunks {
        let (a, b) = chunk.split_at(8);
        let (na, nb) = (newlines(load8(a)), newlines(load8(b)));
        if na | nb != 0 {
            return len
                + if na != 0 {
                    (na.trailing_zeros() / 8) as usize
                } else {
                    8 + (nb.trailing_zeros() / 8) as usize
                };
        }
        len += 16;
    }
    len + chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(chunks.remainder().len())
}

/// `[A-Z][A-Za-z0-9]*`: type, method and error names (the parser checks words, see
/// [`is_member_word`]).
#[cfg(test)]
pub(crate) fn is_member_name(s: &str) -> bool {
    s.bytes().all(is_word_byte) && is_member_word(s)
}

/// Whether a word token (all bytes `[A-Za-z0-9_]`, as the lexer guarantees) is a type, method or
/// error name, `[A-Z][A-Za-z0-9]*`: an uppercase first letter and no `_`.
fn is_member_word(w: &str) -> bool {
    let b = w.as_bytes();
    b.first().is_some_and(u8::is_ascii_uppercase) && !has_underscore(b)
}

/// `[A-Za-z](_?[A-Za-z0-9])*`: field names and enum values (the parser checks words, see
/// [`is_field_word`]).
#[cfg(test)]
pub(crate) fn is_field_name(s: &str) -> bool {
    s.bytes().all(is_word_byte) && is_field_word(s)
}

/// Whether a word token (all bytes `[A-Za-z0-9_]`, as the lexer guarantees) is a field name or
/// enum value, `[A-Za-z](_?[A-Za-z0-9])*`: a letter first, no `__` and no `_` last.
fn is_field_word(w: &str) -> bool {
    let b = w.as_bytes();
    let (Some(first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if !first.is_ascii_alphabetic() || last == b'_' {
        return false;
    }
    !has_double_underscore(b)
}

/// The high bit of each byte of `w` that is `_`, and only of those.
fn underscores(w: u64) -> u64 {
    let y = w ^ (LO * u64::from(b'_'));
    let low7 = !HI;
    // The high bit of a byte of `y` stays clear iff the byte is 0.
    !(((y & low7) + low7) | y) & HI
}

/// Whether `b` holds `_`, looking at eight bytes at a time (the last window ends at the end).
fn has_underscore(b: &[u8]) -> bool {
    if b.len() < 8 {
        return b.contains(&b'_');
    }
    let mut start = 0;
    loop {
        let start_here = start.min(b.len() - 8);
        if underscores(load8(&b[start_here..start_here + 8])) != 0 {
            return true;
        }
        if start_here + 8 == b.len() {
            return false;
        }
        start += 8;
    }
}

/// Whether `b` holds `__`.
///
/// Field names are often long (`connections_accepted`), so this looks at eight bytes at a time,
/// in windows seven bytes apart (the last one ending at the end) so that every pair of adjacent
/// bytes lies within one window.
fn has_double_underscore(b: &[u8]) -> bool {
    if b.len() < 8 {
        return b.windows(2).any(|p| p == b"__");
    }
    let mut start = 0;
    loop {
        let start_here = start.min(b.len() - 8);
        let u = underscores(load8(&b[start_here..start_here + 8]));
        // A `_` whose next byte is `_` too.
        if u & (u >> 8) != 0 {
            return true;
        }
        if start_here + 8 == b.len() {
            return false;
        }
        start += 7;
    }
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
            bytes: src.as_bytes(),
            pos: 0,
            line: 1,
            column: 1,
            pending_doc: Vec::with_capacity(8),
            line_has_token: false,
            line_blank: true,
            tok: None,
            tok_at: Pos { line: 1, column: 1 },
            tok_len: 0,
            tok_word: "",
            named_refs: Vec::new(),
            declared: Vec::with_capacity(LINEAR_NAMES + 1),
            declared_index: None,
            items: Vec::with_capacity(LINEAR_NAMES + 1),
        }
    }

    fn here(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    #[cold]
    fn err<T>(&self, at: Pos, message: impl Into<String>) -> PResult<T> {
        Err(Box::new(ParseError {
            line: at.line,
            column: at.column,
            message: message.into(),
        }))
    }

    /// Skips whitespace and comments, collecting own-line comments into `pending_doc`.
    ///
    /// The lexer is hand-tuned because every daemon parses its interfaces at start-up, on the
    /// critical path to its first reply (the parser was a quarter of a daemon's start-up
    /// instructions): it works on bytes, as every token and separator is ASCII and only comments
    /// may hold other characters (their columns still count characters, see below); it borrows
    /// doc lines from the input until a token keeps them; [`Parser::peek`] lexes each token once;
    /// and tokens are one byte, passed in registers. Inlined into [`Parser::lex`], its only hot
    /// caller, so that the common one-space or no-trivia case costs no call.
    #[inline(always)]
    fn skip_trivia(&mut self) {
        let bytes = self.bytes;
        let mut pos = self.pos;
        let mut column = self.column;
        while let Some(&byte) = bytes.get(pos) {
            match byte {
                b' ' | b'\t' | b'\r' => {
                    pos += 1;
                    column += 1;
                }
                b'\n' => {
                    // A new line starts, and a blank line ends any comment block.
                    pos += 1;
                    if self.line_blank {
                        self.pending_doc.clear();
                    }
                    self.line += 1;
                    column = 1;
                    self.line_has_token = false;
                    self.line_blank = true;
                }
                b'#' => {
                    let trailing = self.line_has_token;
                    self.line_blank = false;
                    let len = comment_len(&bytes[pos + 1..]);
                    if !trailing {
                        let range = pos + 1..pos + 1 + len;
                        // Both ends are character boundaries: the range starts right after
                        // a `#` and ends at a `\n` or at the end of `src`.
                        let text = &self.src[range];
                        let text = text.trim_end_matches('\r');
                        self.pending_doc
                            .push(text.strip_prefix(' ').unwrap_or(text));
                    }
                    pos += 1 + len;
                    // The column only matters when no `\n` follows (it resets the column):
                    // then `#` and one column per character.
                    if pos == bytes.len() {
                        column += 1 + self.src[pos - len..].chars().count();
                    }
                }
                _ => break,
            }
        }
        self.pos = pos;
        self.column = column;
    }

    /// The next token (after trivia), without consuming it; its position is `tok_at`, a word's
    /// text [`Self::word`].
    #[inline]
    fn peek(&mut self) -> PResult<Tok> {
        if let Some(tok) = self.tok {
            return Ok(tok);
        }
        match self.lex() {
            Some(tok) => Ok(tok),
            None => self.lex_error(),
        }
    }

    /// Skips trivia and lexes the token at the new position into `tok`, `tok_at`, `tok_len`;
    /// `None` if no token starts there (see [`Self::lex_error`]). Returns only a byte, so that
    /// the common path passes it in a register.
    fn lex(&mut self) -> Option<Tok> {
        if matches!(
            self.bytes.get(self.pos),
            Some(b' ' | b'\t' | b'\r' | b'\n' | b'#')
        ) {
            self.skip_trivia();
        }
        let rest = &self.bytes[self.pos..];
        let (tok, len) = match rest.first() {
            None => (Tok::Eof, 0),
            Some(b'(') => (Tok::LParen, 1),
            Some(b')') => (Tok::RParen, 1),
            Some(b',') => (Tok::Comma, 1),
            Some(b':') => (Tok::Colon, 1),
            Some(b'?') => (Tok::Question, 1),
            Some(b'[') if rest.starts_with(b"[]") => (Tok::Array, 2),
            Some(b'[') if rest.starts_with(b"[string]") => (Tok::Map, 8),
            Some(b'-') if rest.starts_with(b"->") => (Tok::Arrow, 2),
            Some(&c) if is_word_byte(c) => {
                let len = word_len(rest);
                // ASCII word bytes: both ends are character boundaries.
                self.tok_word = &self.src[self.pos..self.pos + len];
                (Tok::Word, len)
            }
            Some(_) => return None,
        };
        self.tok = Some(tok);
        self.tok_at = self.here();
        self.tok_len = len;
        Some(tok)
    }

    /// The error for the text at `pos` (after trivia) where [`Self::lex`] found no token.
    #[cold]
    fn lex_error<T>(&self) -> PResult<T> {
        let at = self.here();
        let rest = &self.src[self.pos..];
        match rest.chars().next().unwrap_or_default() {
            '[' => self.err(at, "expected '[]' or '[string]'"),
            '-' => self.err(at, "expected '->'"),
            c => self.err(at, format!("unexpected character {c:?}")),
        }
    }

    /// The text of the peeked token when it is a word.
    fn word(&self) -> &'a str {
        self.tok_word
    }

    /// How the peeked token `tok` is named in error messages.
    fn describe(&self, tok: Tok) -> String {
        match tok {
            Tok::Word => format!("\"{}\"", self.word()),
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

    /// Consumes `len` bytes of token text, dropping the doc comment block that preceded it.
    fn advance(&mut self, len: usize) {
        self.pending_doc.clear();
        self.tok = None;
        // Tokens are ASCII and never span lines: one column per byte.
        self.pos += len;
        self.column += len;
        self.line_has_token = true;
        self.line_blank = false;
    }

    /// Consumes the peeked token, dropping the doc comment block that preceded it.
    fn bump(&mut self) {
        self.advance(self.tok_len);
    }

    /// Consumes the peeked token and returns the doc comment block that preceded it.
    fn bump_doc(&mut self) -> Vec<String> {
        let doc = if self.pending_doc.is_empty() {
            Vec::new()
        } else {
            self.pending_doc.iter().map(|&l| l.to_owned()).collect()
        };
        self.bump();
        doc
    }

    /// Consumes the next token if it is `want`, else fails with `expected <what>, found <tok>`.
    fn expect(&mut self, want: Tok, what: &str) -> PResult<Pos> {
        let tok = self.peek()?;
        let at = self.tok_at;
        if tok == want {
            self.bump();
            Ok(at)
        } else {
            self.err(at, format!("expected {what}, found {}", self.describe(tok)))
        }
    }

    /// After `?`, `[]` or `[string]` the element type must follow without whitespace.
    fn require_adjacent(&self, prefix: &str) -> PResult<()> {
        match self.bytes.get(self.pos) {
            Some(b' ' | b'\t' | b'\r' | b'\n' | b'#') => self.err(
                self.here(),
                format!("expected a type directly after '{prefix}', found whitespace"),
            ),
            _ => Ok(()),
        }
    }

    fn parse_interface(mut self) -> PResult<Interface> {
        let tok = self.peek()?;
        if tok != Tok::Word || self.word() != "interface" {
            return self.err(
                self.tok_at,
                format!(
                    "expected 'interface' at the start of the definition, found {}",
                    self.describe(tok)
                ),
            );
        }
        let doc = self.bump_doc();

        self.skip_trivia();
        let at = self.here();
        let rest = &self.bytes[self.pos..];
        let len = rest
            .iter()
            .position(|&c| !is_interface_name_byte(c))
            .unwrap_or(rest.len());
        if len == 0 {
            let tok = self.peek()?;
            return self.err(
                self.tok_at,
                format!(
                    "expected interface name after 'interface', found {}",
                    self.describe(tok)
                ),
            );
        }
        let name = &self.src[self.pos..self.pos + len];
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
        self.advance(len);

        let mut members = Vec::with_capacity(8);
        loop {
            let tok = self.peek()?;
            if tok == Tok::Eof {
                break;
            }
            let kind = match (tok == Tok::Word).then(|| self.word()) {
                Some("type") => MemberKind::Type,
                Some("method") => MemberKind::Method,
                Some("error") => MemberKind::Error,
                _ => {
                    let what = if members.is_empty() {
                        "at least one declaration: "
                    } else {
                        ""
                    };
                    return self.err(
                        self.tok_at,
                        format!(
                            "expected {what}'type', 'method' or 'error', found {}",
                            self.describe(tok)
                        ),
                    );
                }
            };
            let doc = self.bump_doc();
            let name_tok = self.peek()?;
            let name_at = self.tok_at;
            if name_tok != Tok::Word {
                return self.err(
                    name_at,
                    format!(
                        "expected {} name after '{}', found {}",
                        kind.as_str(),
                        kind.as_str(),
                        self.describe(name_tok)
                    ),
                );
            }
            let member_name = self.word();
            if !is_member_word(member_name) {
                return self.err(
                    name_at,
                    format!(
                        "invalid {} name \"{member_name}\": must start with an uppercase letter \
                         followed by letters and digits ([A-Z][A-Za-z0-9]*)",
                        kind.as_str()
                    ),
                );
            }
            if let Some((prev_kind, prev_line)) =
                find_name(&self.declared, self.declared_index.as_ref(), member_name)
            {
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
            record_name(
                &mut self.declared,
                0,
                &mut self.declared_index,
                member_name,
                (kind, name_at.line),
            );
            let member_name = member_name.to_string();
            self.bump();

            let member = match kind {
                MemberKind::Type => {
                    let tok = self.peek()?;
                    if tok != Tok::LParen {
                        return self.err(
                            self.tok_at,
                            format!(
                                "expected '(' after type name \"{member_name}\" (a struct or an enum), found {}",
                                self.describe(tok)
                            ),
                        );
                    }
                    self.bump();
                    let ty = self.parse_list(1, false)?;
                    Member::Type(TypeDef {
                        name: member_name,
                        doc,
                        ty,
                    })
                }
                MemberKind::Method => {
                    let tok = self.peek()?;
                    if tok != Tok::LParen {
                        return self.err(
                            self.tok_at,
                            format!(
                                "expected '(' after method name \"{member_name}\", found {}",
                                self.describe(tok)
                            ),
                        );
                    }
                    self.bump();
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
                    let tok = self.peek()?;
                    if tok != Tok::LParen {
                        return self.err(
                            self.tok_at,
                            format!(
                                "expected '(' after error name \"{member_name}\", found {}",
                                self.describe(tok)
                            ),
                        );
                    }
                    self.bump();
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
            match find_name(&self.declared, self.declared_index.as_ref(), r.name) {
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
        let mut seen = ItemScope {
            base: self.items.len(),
            index: None,
        };

        if self.peek()? == Tok::RParen {
            self.bump();
            return Ok(Type::Struct(Vec::new()));
        }
        loop {
            let tok = self.peek()?;
            let name_at = self.tok_at;
            if tok != Tok::Word {
                let what = match kind {
                    ListKind::Enum => "an enum value name",
                    _ => "a field name",
                };
                return self.err(
                    name_at,
                    format!("expected {what}, found {}", self.describe(tok)),
                );
            }
            let name = self.word();
            let doc = self.bump_doc();

            let next = self.peek()?;
            let next_at = self.tok_at;
            match next {
                Tok::Colon if kind != ListKind::Enum => {
                    kind = ListKind::Struct;
                    self.check_item_name(name, name_at, "field", &mut seen)?;
                    self.bump();
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
                            self.describe(next)
                        ),
                    );
                }
                _ => {
                    return self.err(
                        next_at,
                        format!(
                            "expected ':' after field name \"{name}\", found {}",
                            self.describe(next)
                        ),
                    );
                }
            }

            let sep = self.peek()?;
            match sep {
                Tok::Comma => {
                    self.bump();
                    if self.peek()? == Tok::RParen {
                        return self.err(
                            self.tok_at,
                            "unexpected ')' after ',': trailing commas are not allowed",
                        );
                    }
                }
                Tok::RParen => {
                    self.bump();
                    break;
                }
                other => {
                    let what = if kind == ListKind::Enum {
                        "enum value"
                    } else {
                        "field"
                    };
                    return self.err(
                        self.tok_at,
                        format!(
                            "expected ',' or ')' after {what} \"{name}\", found {}",
                            self.describe(other)
                        ),
                    );
                }
            }
        }
        self.items.truncate(seen.base);
        Ok(match kind {
            ListKind::Enum => Type::Enum(variants),
            _ => Type::Struct(fields),
        })
    }

    /// Validates a field or enum value name and rejects duplicates within one list.
    fn check_item_name(
        &mut self,
        name: &'a str,
        at: Pos,
        what: &str,
        seen: &mut ItemScope<'a>,
    ) -> PResult<()> {
        if !is_field_word(name) {
            return self.err(
                at,
                format!(
                    "invalid {what} name \"{name}\": must start with a letter, followed by letters, \
                     digits and single inner '_' ([A-Za-z](_?[A-Za-z0-9])*)"
                ),
            );
        }
        if let Some(prev) = find_name(&self.items[seen.base..], seen.index.as_ref(), name) {
            return self.err(
                at,
                format!(
                    "duplicate {what} \"{name}\" (first declared at {}:{})",
                    prev.line, prev.column
                ),
            );
        }
        record_name(&mut self.items, seen.base, &mut seen.index, name, at);
        Ok(())
    }

    /// Parses a type expression at nesting level `depth`; compound types (`?`, `[]`, `[string]`,
    /// `(`) deeper than [`MAX_DEPTH`] are rejected before recursing.
    fn parse_type(&mut self, depth: usize) -> PResult<Type> {
        let tok = self.peek()?;
        let at = self.tok_at;
        let compound = matches!(tok, Tok::Question | Tok::Array | Tok::Map | Tok::LParen);
        if compound && depth > MAX_DEPTH {
            return self.err(
                at,
                format!("type nesting is too deep (the limit is {MAX_DEPTH} levels)"),
            );
        }
        match tok {
            Tok::Question => {
                self.bump();
                self.require_adjacent("?")?;
                if self.peek()? == Tok::Question {
                    return self.err(
                        self.tok_at,
                        "\"??\" is not allowed: a nullable type cannot be made nullable again",
                    );
                }
                Ok(Type::Nullable(Box::new(self.parse_type(depth + 1)?)))
            }
            Tok::Array => {
                self.bump();
                self.require_adjacent("[]")?;
                Ok(Type::Array(Box::new(self.parse_type(depth + 1)?)))
            }
            Tok::Map => {
                self.bump();
                self.require_adjacent("[string]")?;
                Ok(Type::Map(Box::new(self.parse_type(depth + 1)?)))
            }
            Tok::LParen => {
                self.bump();
                self.parse_list(depth, false)
            }
            Tok::Word => {
                let w = self.word();
                let ty = match w {
                    "bool" => Type::Bool,
                    "int" => Type::Int,
                    "float" => Type::Float,
                    "string" => Type::String,
                    "object" => Type::Object,
                    "any" => Type::Any,
                    _ if is_member_word(w) => {
                        // A type declared earlier (the usual case) resolves now; anything else
                        // waits for the end of the text, so errors keep their order.
                        let declared = find_name(&self.declared, self.declared_index.as_ref(), w);
                        if !matches!(declared, Some((MemberKind::Type, _))) {
                            self.named_refs.push(NamedRef { name: w, pos: at });
                        }
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
                self.bump();
                Ok(ty)
            }
            other => self.err(
                at,
                format!("expected a type, found {}", self.describe(other)),
            ),
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

    /// The name checks as the grammar states them, byte by byte (the parser's own checks look at
    /// eight bytes at a time).
    fn reference_member_name(s: &str) -> bool {
        let mut chars = s.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_alphanumeric())
    }

    fn reference_field_name(s: &str) -> bool {
        let b = s.as_bytes();
        if !b.first().is_some_and(|c| c.is_ascii_alphabetic()) {
            return false;
        }
        let mut prev_underscore = false;
        for &c in &b[1..] {
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

    #[test]
    fn name_checks_match_the_grammar_at_every_length_and_offset() {
        let mut words: Vec<String> = vec![String::new()];
        // Every word of up to five bytes over a small alphabet...
        for _ in 0..5 {
            let longer: Vec<String> = words
                .iter()
                .filter(|w| w.len() == words.last().map_or(0, String::len))
                .flat_map(|w| ["a", "Z", "7", "_"].map(|c| format!("{w}{c}")))
                .collect();
            words.extend(longer);
        }
        // ...and longer ones with one or two `_` at every offset (the eight-byte windows).
        for len in 6..=26 {
            for first in ["a", "Z", "7", "_"] {
                let base = format!("{first}{}", "b".repeat(len - 1));
                words.push(base.clone());
                for i in 0..len {
                    let mut one = base.clone().into_bytes();
                    one[i] = b'_';
                    words.push(String::from_utf8(one.clone()).unwrap());
                    if i + 1 < len {
                        one[i + 1] = b'_';
                        words.push(String::from_utf8(one).unwrap());
                    }
                }
            }
        }
        for w in &words {
            assert_eq!(is_member_name(w), reference_member_name(w), "{w:?}");
            assert_eq!(is_field_name(w), reference_field_name(w), "{w:?}");
        }
        for not_a_word in ["a-b", "Ab.c", "é", "a b", "A\u{e9}"] {
            assert!(!is_member_name(not_a_word) && !is_field_name(not_a_word));
        }
    }

    #[test]
    fn comment_len_stops_at_the_first_newline() {
        let pieces = ["x", "é", "😀", "\r", "\n", " "];
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 48) as usize;
            let text: String = (0..len)
                .map(|i| pieces[((rng >> (i % 32)) as usize + i * 7) % pieces.len()])
                .collect();
            let expected = text.find('\n').unwrap_or(text.len());
            assert_eq!(comment_len(text.as_bytes()), expected, "{text:?}");
        }
    }

    #[test]
    fn doc_lines_keep_non_ascii_text_and_lose_crs() {
        let text = "# ünïcödé, 😀 and more than sixteen bytes\r\r\n#\tTab\r\n#\r\n#  two\n\
                    interface a.b # é trailing\n# é\nerror E ()\n# dangling é";
        let iface = parse(text).unwrap();
        assert_eq!(
            iface.doc,
            vec![
                "ünïcödé, 😀 and more than sixteen bytes",
                "\tTab",
                "",
                " two"
            ]
        );
        let Member::Error(e) = &iface.members[0] else {
            panic!()
        };
        assert_eq!(e.doc, vec!["é"]);
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
