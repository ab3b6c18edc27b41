//! The fast path of the checker on JSON text: a hand-written scanner that can only *accept*.
//!
//! It answers "valid" or "not sure". Every error, path and reason belongs to the streaming
//! checker (`stream`), which runs from the start whenever this scanner is not sure. So its one
//! obligation is: accept a text only if serde_json parses it (as a `Map` for parameters, a
//! `Value` otherwise) and the tree checker accepts the result. To keep that easy to see, it
//! walks the expected type and the text together, and gives up on anything beyond the common
//! shape of valid calls:
//!
//! - a key or an enum value with a backslash (its content would have to be unescaped), any
//!   string with a control character or an escape serde_json refuses (see
//!   [`Scanner::escape`]): other string values take escapes, their content does not matter;
//! - a number longer than [`MAX_NUMBER_LEN`] or with an exponent of more than two digits (which
//!   serde_json may refuse as out of range); shorter ones are classified as serde_json does
//!   (`int`: no fraction or exponent, fits `u64`, or `i64` and is not `-0`);
//! - serde_json's raw-value token as a key (which changes what a `Value` is);
//! - an undeclared, repeated or missing struct field, a value of the wrong kind, an unknown
//!   type, a struct of more than 64 fields;
//! - nesting beyond [`MAX_NESTING`] (serde_json stops at 128), a type walk as deep as the tree
//!   checker's limit.
//!
//! The grammar is JSON's, as serde_json reads it: whitespace is space, tab, CR and LF, no
//! trailing commas, nothing but whitespace after the value. Input is `&str`, so UTF-8 is valid.
//!
//! Positions are passed from call to call and returned (`Next`) rather than kept in the
//! scanner, so that they stay in registers.

use std::cell::Cell;

use super::stream::RAW_VALUE_TOKEN;
use super::{Kind, MAX_CHECK_DEPTH};
use crate::ast::{Field, Interface, Member, Type, TypeDef};

/// Containers inside containers before giving up (serde_json's limit is 128).
const MAX_NESTING: usize = 100;

/// Longest number classified here; with at most two exponent digits it is below 1e200, so
/// serde_json never refuses it as out of range.
const MAX_NUMBER_LEN: usize = 64;

/// Struct fields tracked by the `seen` bit set.
const MAX_FIELDS: usize = 64;

/// `Some(at)`: valid so far, the text goes on at offset `at`; `None`: not sure, let the
/// streaming checker decide.
type Next = Option<usize>;

/// Whether `json` is surely valid parameters (an object or `null`) for `fields`.
#[inline] // into `check_parameters_str`, itself inlined into its caller
pub fn accepts_parameters(iface: &Interface, fields: &[Field], json: &str) -> bool {
    let scan = Scanner::new(iface, json);
    let at = scan.ws(0);
    let end = match scan.byte(at) {
        // Fields are at depth 1 of the tree checker, as in `check_parameters`.
        Some(b'{') => scan.fields(fields, 1, 0, at),
        Some(b'n') => scan
            .literal(at, b"null")
            .filter(|_| all_present_or_nullable(fields, 0)),
        _ => None,
    };
    end.is_some_and(|at| scan.at_end(at))
}

/// Where the object `json` starts with ends, if it is surely valid parameters for `fields`;
/// whatever follows it is not looked at. (The scanner never reads past the end of a value it
/// accepts, so this accepts exactly the objects `accepts_parameters` accepts.)
#[inline] // into `accepts_parameters_prefix`, itself inlined into its caller
pub fn parameters_end(iface: &Interface, fields: &[Field], json: &str) -> Option<usize> {
    let scan = Scanner::new(iface, json);
    // Fields are at depth 1 of the tree checker, as in `check_parameters`.
    scan.fields(fields, 1, 0, 0)
}

/// Whether `json` is surely a valid value of type `ty`.
pub fn accepts_value(iface: &Interface, ty: &Type, json: &str) -> bool {
    let scan = Scanner::new(iface, json);
    scan.value(ty, 0, 0, scan.ws(0))
        .is_some_and(|at| scan.at_end(at))
}

/// The text and the interface; positions are passed along by the caller.
struct Scanner<'a> {
    iface: &'a Interface,
    bytes: &'a [u8],
    /// The named type looked up last, by the `Type::Named` it was looked up for: arrays and
    /// maps of a named type look it up once.
    named: Cell<Option<(&'a String, &'a TypeDef)>>,
}

impl<'a> Scanner<'a> {
    fn new(iface: &'a Interface, json: &'a str) -> Scanner<'a> {
        Scanner {
            iface,
            bytes: json.as_bytes(),
            named: Cell::new(None),
        }
    }

    /// The byte at `at`, if the text goes that far.
    fn byte(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    /// `at`, past whitespace.
    fn ws(&self, mut at: usize) -> usize {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.byte(at) {
            at += 1;
        }
        at
    }

    /// Whether nothing but whitespace follows `at`.
    fn at_end(&self, at: usize) -> bool {
        self.ws(at) == self.bytes.len()
    }

    /// `byte` at `at`.
    fn eat(&self, at: usize, byte: u8) -> Next {
        (self.byte(at) == Some(byte)).then_some(at + 1)
    }

    /// `literal` (`null`, `true`, `false`) at `at`.
    #[inline(always)]
    fn literal(&self, at: usize, literal: &[u8]) -> Next {
        let rest = self.bytes.get(at..)?;
        rest.starts_with(literal).then_some(at + literal.len())
    }

    /// `true` or `false` at `at`.
    fn boolean(&self, at: usize) -> Next {
        match self.byte(at)? {
            b't' => self.literal(at, b"true"),
            b'f' => self.literal(at, b"false"),
            _ => None,
        }
    }

    /// After an object's entry or an array's element: at a comma, `(true, at)` with whitespace
    /// after it skipped; at the closing `close`, `(false, at)` after it.
    #[inline(always)]
    fn more(&self, at: usize, close: u8) -> Option<(bool, usize)> {
        let at = self.ws(at);
        match self.byte(at)? {
            b',' => Some((true, self.ws(at + 1))),
            byte if byte == close => Some((false, at + 1)),
            _ => None,
        }
    }

    /// A string value whose content does not matter: escapes are taken.
    #[inline(always)]
    fn string(&self, at: usize) -> Next {
        let at = self.eat(at, b'"')?;
        let end = at + self.plain_len(at);
        match self.byte(end)? {
            b'"' => Some(end + 1),
            b'\\' => self.escaped_string(end),
            // A control character.
            _ => None,
        }
    }

    /// The rest of a string from a backslash.
    #[inline(never)] // rare: keeps `string`, inlined in several places, small
    fn escaped_string(&self, mut at: usize) -> Next {
        loop {
            at = self.escape(at)?;
            at += self.plain_len(at);
            match self.byte(at)? {
                b'"' => return Some(at + 1),
                b'\\' => {}
                _ => return None,
            }
        }
    }

    /// An escape (at its backslash) that serde_json takes in a string it parses (as it does
    /// every string of a `Map` or `Value`): `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, or
    /// `\u` and four hex digits that are not a surrogate, or a leading surrogate followed at
    /// once by `\u` and a trailing one. serde_json refuses anything else, lone surrogates too.
    fn escape(&self, at: usize) -> Next {
        let escape = self.bytes.get(at + 1..)?;
        let len = match *escape.first()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
            b'u' => match hex4(escape.get(1..5)?)? {
                0xDC00..=0xDFFF => return None,
                0xD800..=0xDBFF => {
                    let trailing = match escape.get(5..11)? {
                        [b'\\', b'u', digits @ ..] => hex4(digits)?,
                        _ => return None,
                    };
                    if !(0xDC00..=0xDFFF).contains(&trailing) {
                        return None;
                    }
                    12
                }
                _ => 6,
            },
            _ => return None,
        };
        Some(at + len)
    }

    /// How many bytes from `at` a string holds as they are (not a quote, a backslash or a
    /// control character), looked at eight at a time.
    #[inline(always)]
    fn plain_len(&self, at: usize) -> usize {
        let rest = self.bytes.get(at..).unwrap_or_default();
        let word = match rest.first_chunk() {
            Some(word) => u64::from_le_bytes(*word),
            None => match self.bytes.last_chunk() {
                // The text's last eight bytes, shifted so that those from `at` come first,
                // then zero bytes (control characters, so special).
                Some(last) => u64::from_le_bytes(*last)
                    .checked_shr(8 * (8 - rest.len() as u32))
                    .unwrap_or(0),
                // A text shorter than eight bytes.
                None => {
                    return rest
                        .iter()
                        .position(|&b| !PLAIN[usize::from(b)])
                        .unwrap_or(rest.len());
                }
            },
        };
        match special_bytes(word) {
            0 => long_plain_len(rest, 8),
            special => special.trailing_zeros() as usize / 8,
        }
    }

    /// A string without escapes or control characters (a key, an enum value): its content and
    /// where the text goes on.
    #[inline(always)]
    fn plain_string(&self, at: usize) -> Option<(&'a [u8], usize)> {
        let at = self.eat(at, b'"')?;
        let end = at + self.plain_len(at);
        let content = self.bytes.get(at..end)?;
        (self.byte(end)? == b'"').then_some((content, end + 1))
    }

    /// A key that names one of `fields`: the field, its index and where the text goes on.
    /// Field `next` is tried first, as senders mostly write fields in declaration order.
    #[inline(always)]
    fn field_key(
        &self,
        fields: &'a [Field],
        next: usize,
        at: usize,
    ) -> Option<(usize, &'a Field, usize)> {
        if let Some(field) = fields.get(next) {
            let name = field.name.as_bytes();
            let end = at + name.len() + 2;
            // No scan for the end of the key: the bytes where `"name"` would be are compared.
            if let Some([b'"', key @ .., b'"']) = self.bytes.get(at..end)
                && plain_eq(key, name)
            {
                return Some((next, field, end));
            }
        }
        self.other_field_key(fields, at)
    }

    /// A key that names one of `fields`, any of them.
    #[inline(never)] // out of order or undeclared: rare
    fn other_field_key(&self, fields: &'a [Field], at: usize) -> Option<(usize, &'a Field, usize)> {
        let (key, end) = self.plain_string(at)?;
        if key == RAW_VALUE_TOKEN.as_bytes() {
            // A field of that name (not one `parse` allows): serde_json may take the object
            // for the JSON text in its value.
            return None;
        }
        let (i, field) = fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.name.as_bytes() == key)?;
        Some((i, field, end))
    }

    /// A number that serde_json makes an `i64` or `u64`: up to 18 digits here, anything else
    /// through [`number`](Self::number).
    #[inline(always)]
    fn int(&self, at: usize) -> Next {
        let first = at + usize::from(self.byte(at) == Some(b'-'));
        let mut end = first;
        while let Some(b'0'..=b'9') = self.byte(end) {
            end += 1;
        }
        // Not `-0` (a float), no other leading zero, no fraction or exponent.
        let leading_zero = self.byte(first) == Some(b'0');
        if (1..=18).contains(&(end - first))
            && !(leading_zero && end - at > 1)
            && !matches!(self.byte(end), Some(b'.' | b'e' | b'E'))
        {
            return Some(end);
        }
        match self.number(at)? {
            (Kind::Int, end) => Some(end),
            _ => None,
        }
    }

    /// A number: its kind as serde_json gives it, and where the text goes on.
    fn number(&self, at: usize) -> Option<(Kind, usize)> {
        let bytes = self.bytes;
        let negative = self.byte(at) == Some(b'-');
        let int_start = at + usize::from(negative);
        // `0`, or digits not starting with `0` (a digit after a leading `0` then fails the
        // caller's check of what follows a value).
        let int_len = match bytes.get(int_start)? {
            b'0' => 1,
            b'1'..=b'9' => digits(&bytes[int_start..]),
            _ => return None,
        };
        let mut end = int_start + int_len;
        let mut float = false;
        if self.byte(end) == Some(b'.') {
            let fraction = digits(&bytes[end + 1..]);
            if fraction == 0 {
                return None;
            }
            end += 1 + fraction;
            float = true;
        }
        if let Some(b'e' | b'E') = self.byte(end) {
            end += 1;
            if let Some(b'+' | b'-') = self.byte(end) {
                end += 1;
            }
            let exponent = digits(&bytes[end..]);
            if !(1..=2).contains(&exponent) {
                return None;
            }
            end += exponent;
            float = true;
        }
        if end - at > MAX_NUMBER_LEN {
            return None;
        }
        if float {
            return Some((Kind::Float, end));
        }
        // serde_json keeps an integer as `u64` if it fits, a negative one as `i64` if it fits
        // and is not `-0`, and makes anything else a float. Up to 18 digits always fit.
        let digits = &bytes[int_start..int_start + int_len];
        let int = if digits.len() <= 18 {
            !negative || digits != b"0"
        } else {
            let magnitude = digits.iter().try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            });
            magnitude.is_some_and(|n| !negative || n <= 1 << 63)
        };
        Some((if int { Kind::Int } else { Kind::Float }, end))
    }

    /// The definition of a named type, looked up once for a run of the same `Type::Named`.
    fn type_def(&self, name: &'a String) -> Option<&'a TypeDef> {
        if let Some((last, def)) = self.named.get()
            && std::ptr::eq(last, name)
        {
            return Some(def);
        }
        // `Interface::type_def`, with names compared as words (a name that is not plain text
        // is not found, so the streaming checker decides).
        let def = self.iface.members.iter().find_map(|member| match member {
            Member::Type(def) if plain_eq(def.name.as_bytes(), name.as_bytes()) => Some(def),
            _ => None,
        })?;
        self.named.set(Some((name, def)));
        Some(def)
    }

    /// A value at `at` (whitespace before it skipped) checked against `ty` at tree-checker
    /// `depth`, walking the type as the tree checker does: a step into `?T`, a named type, an
    /// array's element or a map's value is one level deeper, a struct's fields two.
    fn value(&self, ty: &'a Type, depth: usize, nesting: usize, at: usize) -> Next {
        // The tree checker refuses depths beyond this; one less covers the step into a named
        // struct below. Sensible types never get near it.
        if depth >= MAX_CHECK_DEPTH {
            return None;
        }
        match ty {
            Type::String => self.string(at),
            Type::Int => self.int(at),
            Type::Float => self.number(at).map(|(_, end)| end),
            Type::Bool => self.boolean(at),
            Type::Nullable(inner) => match self.byte(at)? {
                b'n' => self.literal(at, b"null"),
                _ => self.value(inner, depth + 1, nesting, at),
            },
            Type::Named(name) => match &self.type_def(name)?.ty {
                // Not an object: the tree checker names the type, so no need to look further.
                Type::Struct(fields) => self.fields(fields, depth + 3, nesting, at),
                ty => self.value(ty, depth + 1, nesting, at),
            },
            Type::Struct(fields) => self.fields(fields, depth + 2, nesting, at),
            Type::Enum(variants) => {
                let (s, end) = self.plain_string(at)?;
                variants
                    .iter()
                    .any(|v| v.name.as_bytes() == s)
                    .then_some(end)
            }
            Type::Array(inner) => self.items(nesting, at, |at| {
                self.item(inner, depth + 1, nesting + 1, at)
            }),
            // A set: entries are objects, their content not checked.
            Type::Map(inner) if is_set_entry(inner) => self.entries(nesting, at, |at| {
                self.eat(at, b'{')?;
                self.any(nesting + 1, at)
            }),
            Type::Map(inner) => self.entries(nesting, at, |at| {
                self.item(inner, depth + 1, nesting + 1, at)
            }),
            Type::Object => {
                self.eat(at, b'{')?;
                self.any(nesting, at)
            }
            Type::Any => match self.byte(at)? {
                b'n' => None,
                _ => self.any(nesting, at),
            },
        }
    }

    /// [`value`](Self::value), with the common scalar types inline (for struct fields, array
    /// elements and map values, whose containers check `depth` once).
    #[inline(always)]
    fn item(&self, ty: &'a Type, depth: usize, nesting: usize, at: usize) -> Next {
        match ty {
            Type::String => self.string(at),
            Type::Int => self.int(at),
            Type::Bool => self.boolean(at),
            Type::Nullable(_) if self.byte(at) == Some(b'n') => self.literal(at, b"null"),
            ty => self.value(ty, depth, nesting, at),
        }
    }

    /// A struct's object, its field values at tree-checker `depth`: every key declared and
    /// given once, every absent field nullable.
    fn fields(&self, fields: &'a [Field], depth: usize, nesting: usize, at: usize) -> Next {
        if fields.len() > MAX_FIELDS || nesting >= MAX_NESTING || depth >= MAX_CHECK_DEPTH {
            return None;
        }
        let mut at = self.ws(self.eat(at, b'{')?);
        let mut seen = 0u64;
        if self.byte(at) == Some(b'}') {
            at += 1;
        } else {
            let mut next = 0;
            loop {
                let (i, field, end) = self.field_key(fields, next, at)?;
                if seen & (1 << i) != 0 {
                    // A duplicate: which value counts is for the streaming checker to say.
                    return None;
                }
                seen |= 1 << i;
                next = i + 1;
                let value = self.ws(self.eat(self.ws(end), b':')?);
                let (more, end) =
                    self.more(self.item(&field.ty, depth, nesting + 1, value)?, b'}')?;
                at = end;
                if !more {
                    break;
                }
            }
        }
        all_present_or_nullable(fields, seen).then_some(at)
    }

    /// Any value, syntax only (what `any`, `object` and set entries hold).
    fn any(&self, nesting: usize, at: usize) -> Next {
        match self.byte(at)? {
            b'{' => self.entries(nesting, at, |at| self.any(nesting + 1, at)),
            b'[' => self.items(nesting, at, |at| self.any(nesting + 1, at)),
            b'"' => self.string(at),
            b't' | b'f' => self.boolean(at),
            b'n' => self.literal(at, b"null"),
            _ => self.number(at).map(|(_, end)| end),
        }
    }

    /// An object with keys without escapes, `entry` called at each value (whitespace skipped).
    fn entries(&self, nesting: usize, at: usize, mut entry: impl FnMut(usize) -> Next) -> Next {
        if nesting >= MAX_NESTING {
            return None;
        }
        let mut at = self.ws(self.eat(at, b'{')?);
        if self.byte(at) == Some(b'}') {
            return Some(at + 1);
        }
        loop {
            let (key, end) = self.plain_string(at)?;
            if key == RAW_VALUE_TOKEN.as_bytes() {
                // What the object means then is serde_json's business.
                return None;
            }
            let value = self.ws(self.eat(self.ws(end), b':')?);
            let (more, end) = self.more(entry(value)?, b'}')?;
            if !more {
                return Some(end);
            }
            at = end;
        }
    }

    /// An array, `item` called at each element (whitespace skipped).
    fn items(&self, nesting: usize, at: usize, mut item: impl FnMut(usize) -> Next) -> Next {
        if nesting >= MAX_NESTING {
            return None;
        }
        let mut at = self.ws(self.eat(at, b'[')?);
        if self.byte(at) == Some(b']') {
            return Some(at + 1);
        }
        loop {
            let (more, end) = self.more(item(at)?, b']')?;
            if !more {
                return Some(end);
            }
            at = end;
        }
    }
}

/// Whether `key` (say the bytes between two quotes) is `name` and plain text, so that the key
/// is `name` written without escapes. Names of up to 16 bytes, the usual ones, are compared as
/// words (no call to `bcmp`, no loop). Never the raw-value token.
#[inline(always)]
fn plain_eq(key: &[u8], name: &[u8]) -> bool {
    /// The first and last eight bytes (overlapping unless `s` has 16).
    fn ends(s: &[u8]) -> Option<(u64, u64)> {
        Some((
            u64::from_le_bytes(*s.first_chunk()?),
            u64::from_le_bytes(*s.last_chunk()?),
        ))
    }
    if key.len() != name.len() {
        return false;
    }
    match name.len() {
        1..=8 => {
            short_words(key, name).is_some_and(|(key, name)| key == name && special_bytes(key) == 0)
        }
        9..=16 => ends(key).is_some_and(|(first, last)| {
            Some((first, last)) == ends(name) && special_bytes(first) | special_bytes(last) == 0
        }),
        _ => {
            key == name
                && key.iter().all(|&b| PLAIN[usize::from(b)])
                && key != RAW_VALUE_TOKEN.as_bytes()
        }
    }
}

/// All of `key` and all of `name`, of the same length from one to eight bytes, in one word
/// each: their first and last four bytes (two for fewer than four, overlapping unless they
/// have 2 or 4), padded with `_` (plain text). One test of the length serves both.
#[inline(always)]
fn short_words(key: &[u8], name: &[u8]) -> Option<(u64, u64)> {
    const PAD: u64 = 0x5f5f_5f5f_5f5f_5f5f;
    if key.len() != name.len() {
        return None;
    }
    let one = |s: &[u8]| Some(u64::from(*s.first()?) | PAD << 8);
    let two = |s: &[u8]| {
        let first = u16::from_le_bytes(*s.first_chunk()?);
        let last = u16::from_le_bytes(*s.last_chunk()?);
        Some(u64::from(first) | u64::from(last) << 16 | PAD << 32)
    };
    let four = |s: &[u8]| {
        let first = u32::from_le_bytes(*s.first_chunk()?);
        let last = u32::from_le_bytes(*s.last_chunk()?);
        Some(u64::from(first) | u64::from(last) << 32)
    };
    match name.len() {
        1 => Some((one(key)?, one(name)?)),
        2..4 => Some((two(key)?, two(name)?)),
        4..=8 => Some((four(key)?, four(name)?)),
        _ => None,
    }
}

/// Whether `ty` is `?T`.
fn is_nullable(ty: &Type) -> bool {
    matches!(ty, Type::Nullable(_))
}

/// The value type of a set, `[string]()`.
fn is_set_entry(ty: &Type) -> bool {
    matches!(ty, Type::Struct(fields) if fields.is_empty())
}

/// Every field is in `seen` (bit `i` for field `i`) or nullable.
fn all_present_or_nullable(fields: &[Field], seen: u64) -> bool {
    if fields.len() > MAX_FIELDS {
        return false;
    }
    // All present, the common case, without looking at the types (no fields: `None`).
    if u64::MAX.checked_shr((MAX_FIELDS - fields.len()) as u32) == Some(seen) {
        return true;
    }
    fields
        .iter()
        .enumerate()
        .all(|(i, f)| seen & (1 << i) != 0 || is_nullable(&f.ty))
}

/// How many ASCII digits `bytes` starts with.
fn digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// The value of four hex digits (either case, as serde_json takes them).
fn hex4(digits: &[u8]) -> Option<u32> {
    digits
        .iter()
        .try_fold(0, |n, &d| Some(n << 4 | char::from(d).to_digit(16)?))
}

/// [`Scanner::plain_len`] of `bytes` whose first `scanned` bytes are plain.
#[inline(never)] // keeps `Scanner::plain_len`, inlined in several places, small
fn long_plain_len(bytes: &[u8], scanned: usize) -> usize {
    let mut len = scanned;
    for chunk in bytes[scanned..].chunks_exact(8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let special = special_bytes(u64::from_le_bytes(word));
        if special != 0 {
            // The first special byte.
            return len + special.trailing_zeros() as usize / 8;
        }
        len += 8;
    }
    len + bytes[len..]
        .iter()
        .take_while(|&&b| PLAIN[usize::from(b)])
        .count()
}

/// The high bit of each byte of `word` that is a quote, a backslash or a control character,
/// exact up to the first such byte (above it, borrows may set other bits).
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `x` below `n`.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    // Flipping bit 1 maps the quote (0x22) to 0x20 and control characters to control
    // characters, and nothing else below 0x21.
    below(word ^ (ONES * 0x02), 0x21) | below(word ^ (ONES * u64::from(b'\\')), 1)
}

/// The bytes a string's content may have as they are: not a quote, a backslash or a control
/// character.
static PLAIN: [bool; 256] = {
    let mut plain = [true; 256];
    let mut b = 0;
    while b < 0x20 {
        plain[b] = false;
        b += 1;
    }
    plain[b'"' as usize] = false;
    plain[b'\\' as usize] = false;
    plain
};

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| PLAIN[usize::from(b)])
    }

    /// Every byte value at every position of a word, after plain bytes near the special ones
    /// and before anything: `special_bytes` finds the first special byte, or none.
    #[test]
    fn special_bytes_finds_the_first_special_byte() {
        for at in 0..8 {
            for before in [b' ', b'!', b'#', b'[', b']', b'a', 0x7f, 0x80, 0xff] {
                for b in 0..=255u8 {
                    for after in [b'a', b'"', b'\\', 0, 0x20, 0xff] {
                        let mut word = [after; 8];
                        word[..at].fill(before);
                        word[at] = b;
                        let special = special_bytes(u64::from_le_bytes(word));
                        let first = (special != 0).then(|| special.trailing_zeros() as usize / 8);
                        let expected = word.iter().position(|&b| !PLAIN[usize::from(b)]);
                        assert_eq!(first, expected, "{word:?}");
                    }
                }
            }
        }
    }

    /// `plain_eq` is equality of plain text, for names of every length the word compares
    /// cover and beyond, with a special or different byte anywhere.
    #[test]
    fn plain_eq_is_equality_of_plain_text() {
        let names: Vec<Vec<u8>> = (0..=20u8)
            .map(|len| (0..len).map(|i| b'a' + i % 26).collect())
            .collect();
        for name in &names {
            assert!(plain_eq(name, name));
            for other in &names {
                assert_eq!(plain_eq(other, name), other == name);
            }
            for at in 0..name.len() {
                for b in [b'"', b'\\', 0, 0x1f, b' ', b'z', 0x80, 0xff] {
                    let mut key = name.clone();
                    key[at] = b;
                    assert_eq!(plain_eq(&key, name), key == *name, "{key:?}");
                    assert_eq!(plain_eq(&key, &key), plain(&key), "{key:?}");
                }
            }
        }
        let token = RAW_VALUE_TOKEN.as_bytes();
        assert!(!plain_eq(token, token));
    }
}
