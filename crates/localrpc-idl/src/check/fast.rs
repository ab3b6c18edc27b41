//! The fast path of the checker on JSON text: a hand-written scanner that can only *accept*.
//!
//! It answers "valid" or "not sure". Every error, path and reason belongs to the streaming
//! checker (`stream`), which runs from the start whenever this scanner is not sure. So its one
//! obligation is: accept a text only if serde_json parses it (as a `Map` for parameters, a
//! `Value` otherwise) and the tree checker accepts the result. To keep that easy to see, it
//! gives up on anything beyond the common shape of valid calls:
//!
//! - a string (key or value) with a backslash or a control character: escapes and serde_json's
//!   errors on them are left to serde_json;
//! - a number longer than [`MAX_NUMBER_LEN`] or with an exponent of more than two digits (which
//!   serde_json may refuse as out of range); shorter ones are classified as serde_json does
//!   (`int`: no fraction or exponent, fits `u64`, or `i64` and is not `-0`);
//! - serde_json's raw-value token as a key (which changes what a `Value` is);
//! - an undeclared, repeated or missing struct field, a value of the wrong kind, any type the
//!   shared walk ([`resolve`]) rejects, a struct of more than 64 fields;
//! - nesting beyond [`MAX_NESTING`] (serde_json stops at 128).
//!
//! The grammar is JSON's, as serde_json reads it: whitespace is space, tab, CR and LF, no
//! trailing commas, nothing but whitespace after the value. Input is `&str`, so UTF-8 is valid.

use super::stream::RAW_VALUE_TOKEN;
use super::{Kind, Resolved, leaf_accepts, resolve};
use crate::ast::{Field, Interface, Type};

/// Containers inside containers before giving up (serde_json's limit is 128).
const MAX_NESTING: usize = 100;

/// Longest number classified here; with at most two exponent digits it is below 1e200, so
/// serde_json never refuses it as out of range.
const MAX_NUMBER_LEN: usize = 64;

/// Struct fields tracked by the `seen` bit set.
const MAX_FIELDS: usize = 64;

/// Strings up to this long are scanned byte by byte, longer ones eight bytes at a time.
const SHORT_STRING: usize = 16;

/// `Some(())`: this much is valid; `None`: not sure, let the streaming checker decide.
type Sure = Option<()>;

/// Whether `json` is surely valid parameters (an object or `null`) for `fields`.
#[inline] // into `check_parameters_str`, itself inlined into its caller
pub fn accepts_parameters(iface: &Interface, fields: &[Field], json: &str) -> bool {
    let mut scan = Scanner {
        iface,
        json,
        pos: 0,
    };
    scan.ws();
    let sure = match scan.peek() {
        // Fields are at depth 1 of the tree checker, as in `check_parameters`.
        Some(b'{') => scan.fields(fields, 1, 0),
        Some(b'n') => scan
            .literal(b"null")
            .and_then(|()| all_present_or_nullable(fields, 0)),
        _ => None,
    };
    sure.is_some() && scan.at_end()
}

/// Whether `json` is surely a valid value of type `ty`.
pub fn accepts_value(iface: &Interface, ty: &Type, json: &str) -> bool {
    let mut scan = Scanner {
        iface,
        json,
        pos: 0,
    };
    scan.ws();
    scan.value(ty, 0, false, 0).is_some() && scan.at_end()
}

struct Scanner<'a> {
    iface: &'a Interface,
    json: &'a str,
    /// Byte offset of the next unread byte.
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.json.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.pos == self.json.len()
    }

    fn eat(&mut self, byte: u8) -> Sure {
        (self.peek() == Some(byte)).then(|| self.pos += 1)
    }

    fn literal(&mut self, literal: &[u8]) -> Sure {
        let rest = &self.json.as_bytes()[self.pos..];
        rest.starts_with(literal).then(|| self.pos += literal.len())
    }

    /// An object key: a string. One shared copy for every object loop, while string values
    /// get [`string`](Self::string) inlined (measured: both cheaper than either choice alone).
    #[inline(never)]
    fn key(&mut self) -> Option<&'a [u8]> {
        self.string()
    }

    /// A string without escapes or control characters; its content.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = &self.json.as_bytes()[self.pos..];
        // Short strings, the common case, byte by byte: cheapest to start.
        let short = rest.len().min(SHORT_STRING);
        let len = match rest[..short].iter().position(|&b| !PLAIN[usize::from(b)]) {
            Some(len) if rest[len] == b'"' => len,
            Some(_) => return None,
            None => return self.long_string(short),
        };
        self.pos += len + 1;
        Some(&rest[..len])
    }

    /// The rest of a string whose first `scanned` bytes are plain, eight bytes at a time (as
    /// fast as serde_json on long strings).
    #[inline(never)] // keeps `string`, inlined in several places, small
    fn long_string(&mut self, scanned: usize) -> Option<&'a [u8]> {
        let rest = &self.json.as_bytes()[self.pos..];
        let mut len = scanned;
        for chunk in rest[scanned..].chunks_exact(8) {
            let special = special_bytes(u64::from_le_bytes(chunk.try_into().ok()?));
            if special != 0 {
                // The first special byte; the byte loop below stops at it.
                len += special.trailing_zeros() as usize / 8;
                break;
            }
            len += 8;
        }
        len += rest[len..].iter().position(|&b| !PLAIN[usize::from(b)])?;
        if rest[len] != b'"' {
            return None;
        }
        self.pos += len + 1;
        Some(&rest[..len])
    }

    /// A number; its kind as serde_json gives it.
    fn number(&mut self) -> Option<Kind> {
        let bytes = self.json.as_bytes();
        let start = self.pos;
        let negative = bytes.get(start) == Some(&b'-');
        let int_start = start + usize::from(negative);
        // `0`, or digits not starting with `0` (a digit after a leading `0` then fails the
        // caller's check of what follows a value).
        let int_len = match bytes.get(int_start)? {
            b'0' => 1,
            b'1'..=b'9' => digits(&bytes[int_start..]),
            _ => return None,
        };
        let mut end = int_start + int_len;
        let mut float = false;
        if bytes.get(end) == Some(&b'.') {
            let fraction = digits(&bytes[end + 1..]);
            if fraction == 0 {
                return None;
            }
            end += 1 + fraction;
            float = true;
        }
        if let Some(b'e' | b'E') = bytes.get(end) {
            end += 1;
            if let Some(b'+' | b'-') = bytes.get(end) {
                end += 1;
            }
            let exponent = digits(&bytes[end..]);
            if !(1..=2).contains(&exponent) {
                return None;
            }
            end += exponent;
            float = true;
        }
        if end - start > MAX_NUMBER_LEN {
            return None;
        }
        self.pos = end;
        if float {
            return Some(Kind::Float);
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
        Some(if int { Kind::Int } else { Kind::Float })
    }

    /// A value (whitespace before it already skipped) checked against `ty` at tree-checker
    /// `depth`; `null_ok` and the walk of the type as in [`resolve`].
    fn value(&mut self, ty: &'a Type, depth: usize, null_ok: bool, nesting: usize) -> Sure {
        let (kind, s) = match self.peek()? {
            b'{' => return self.object(ty, depth, null_ok, nesting),
            b'[' => return self.array(ty, depth, null_ok, nesting),
            b'"' => (Kind::String, Some(self.string()?)),
            b't' => {
                self.literal(b"true")?;
                (Kind::Bool, None)
            }
            b'f' => {
                self.literal(b"false")?;
                (Kind::Bool, None)
            }
            b'n' => {
                self.literal(b"null")?;
                (Kind::Null, None)
            }
            _ => (self.number()?, None),
        };
        match resolve(self.iface, ty, depth, null_ok, kind) {
            Resolved::Accept => Some(()),
            Resolved::Check(ty, _) => leaf_accepts(ty, kind, s).then_some(()),
            Resolved::Reject(_) => None,
        }
    }

    /// An object checked against `ty` (depths as in the streaming checker's `visit_map`).
    fn object(&mut self, ty: &'a Type, depth: usize, null_ok: bool, nesting: usize) -> Sure {
        match resolve(self.iface, ty, depth, null_ok, Kind::Object) {
            Resolved::Accept | Resolved::Check(Type::Object, _) => self.any(nesting),
            Resolved::Check(Type::Struct(fields), depth) => self.fields(fields, depth + 2, nesting),
            // A set: entries are objects, their content not checked.
            Resolved::Check(Type::Map(inner), _) if is_set_entry(inner) => {
                self.entries(nesting, |scan, _| {
                    (scan.peek() == Some(b'{')).then_some(())?;
                    scan.any(nesting + 1)
                })
            }
            Resolved::Check(Type::Map(inner), depth) => self.entries(nesting, |scan, _| {
                scan.value(inner, depth + 1, false, nesting + 1)
            }),
            Resolved::Check(..) | Resolved::Reject(_) => None,
        }
    }

    /// An array checked against `ty`.
    fn array(&mut self, ty: &'a Type, depth: usize, null_ok: bool, nesting: usize) -> Sure {
        match resolve(self.iface, ty, depth, null_ok, Kind::Array) {
            Resolved::Accept => self.any(nesting),
            Resolved::Check(Type::Array(inner), depth) => self.items(nesting, |scan| {
                scan.value(inner, depth + 1, false, nesting + 1)
            }),
            Resolved::Check(..) | Resolved::Reject(_) => None,
        }
    }

    /// A struct's object, its field values at tree-checker `depth`: every key declared and
    /// given once, every absent field nullable.
    fn fields(&mut self, fields: &'a [Field], depth: usize, nesting: usize) -> Sure {
        if fields.len() > MAX_FIELDS {
            return None;
        }
        let mut seen = 0u64;
        let mut next = 0;
        self.entries(nesting, |scan, key| {
            let i = field_index(fields, key, next)?;
            next = i + 1;
            if seen & (1 << i) != 0 {
                // A duplicate: which value counts is for the streaming checker to say.
                return None;
            }
            seen |= 1 << i;
            let ty = &fields[i].ty;
            scan.value(ty, depth, is_nullable(ty), nesting + 1)
        })?;
        all_present_or_nullable(fields, seen)
    }

    /// Any value, syntax only (what `any`, `object` and set entries hold).
    fn any(&mut self, nesting: usize) -> Sure {
        match self.peek()? {
            b'{' => self.entries(nesting, |scan, _| scan.any(nesting + 1)),
            b'[' => self.items(nesting, |scan| scan.any(nesting + 1)),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// An object, `entry` called at each value (whitespace skipped) with its key.
    fn entries(
        &mut self,
        nesting: usize,
        mut entry: impl FnMut(&mut Self, &'a [u8]) -> Sure,
    ) -> Sure {
        if nesting >= MAX_NESTING {
            return None;
        }
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.key()?;
            if key == RAW_VALUE_TOKEN.as_bytes() {
                // What the object means then is serde_json's business.
                return None;
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            entry(self, key)?;
            self.ws();
            if self.eat(b',').is_some() {
                self.ws();
            } else {
                return self.eat(b'}');
            }
        }
    }

    /// An array, `item` called at each element (whitespace skipped).
    fn items(&mut self, nesting: usize, mut item: impl FnMut(&mut Self) -> Sure) -> Sure {
        if nesting >= MAX_NESTING {
            return None;
        }
        self.eat(b'[')?;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            self.ws();
            if self.eat(b',').is_some() {
                self.ws();
            } else {
                return self.eat(b']');
            }
        }
    }
}

/// The declared field called `key`: field `next` first, as senders mostly write fields in
/// declaration order, then all of them (few: a linear scan, `==` compares lengths first).
fn field_index(fields: &[Field], key: &[u8], next: usize) -> Option<usize> {
    let is_key = |f: &Field| f.name.as_bytes() == key;
    match fields.get(next) {
        Some(field) if is_key(field) => Some(next),
        _ => fields.iter().position(is_key),
    }
}

fn is_nullable(ty: &Type) -> bool {
    matches!(ty, Type::Nullable(_))
}

/// The value type of a set, `[string]()`.
fn is_set_entry(ty: &Type) -> bool {
    matches!(ty, Type::Struct(fields) if fields.is_empty())
}

/// Every field is in `seen` (bit `i` for field `i`) or nullable.
fn all_present_or_nullable(fields: &[Field], seen: u64) -> Sure {
    if fields.len() > MAX_FIELDS {
        return None;
    }
    // All present, the common case, without looking at the types (no fields: `None`).
    if u64::MAX.checked_shr((MAX_FIELDS - fields.len()) as u32) == Some(seen) {
        return Some(());
    }
    fields
        .iter()
        .enumerate()
        .all(|(i, f)| seen & (1 << i) != 0 || is_nullable(&f.ty))
        .then_some(())
}

/// How many ASCII digits `bytes` starts with.
fn digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// The high bit of each byte of `word` that is a quote, a backslash or a control character,
/// exact up to the first such byte (above it, borrows may set other bits).
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `x` below `n`.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    below(word ^ (ONES * u64::from(b'"')), 1)
        | below(word ^ (ONES * u64::from(b'\\')), 1)
        | below(word, 0x20)
}

/// The bytes a string's content may have here: not a quote, a backslash or a control character.
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
