//! Decoding a call's parameters, already checked against the method's IDL, into a handler's
//! typed input: a `serde::Deserializer` over the JSON text that [`Call::decode`] uses instead
//! of `serde_json::from_str`.
//!
//! Written by hand because by the time a handler decodes, the IDL checker (its fast scanner or
//! the full check) has read the text already, so it is valid JSON of a known shape; serde_json
//! validates every byte again, and its string reader falls back to a byte-at-a-time loop for
//! strings shorter than eight bytes, which most keys and many values are. Here only what is
//! common and simple is read natively: objects and arrays (struct, map and sequence access,
//! keys as borrowed `str`), strings without escapes or control bytes (found eight bytes at a
//! time with json_escape's `escape_mask`, visited as borrowed `str`), `true`, `false`, `null`,
//! options, enums and `deserialize_any`.
//!
//! Everything delicate is handed to serde_json itself on the exact token's text, so the
//! semantics cannot drift: numbers of every width and floats (overflow, precision, `-0`),
//! strings with escapes, numeric map keys, a wrong token where a scalar is expected (the
//! "invalid type" error), values a visitor ignores (unknown fields; serde_json's
//! `ignore_value`, found with its `StreamDeserializer`) and `RawValue`s. Structure follows
//! serde_json's `Deserializer` and `MapKey` method for method (structs from objects or arrays,
//! `Option` as null-or-value, enums from a string or a one-key object, the recursion limit of
//! 128 nested arrays and objects, nothing but whitespace after the value), and errors are
//! `serde_json::Error`s with the same messages; only their line and column are not the
//! text's (none, or the position within the token serde_json read). The text should never be
//! malformed here; if it were, decoding fails where serde_json's would, with its words, and
//! nothing panics.
//!
//! [`Call::decode`]: crate::service::Call::decode

use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, Unexpected, Visitor};
use serde_json::Error;

use super::json_escape::{escape_mask, last_word};

type Result<T> = std::result::Result<T, Error>;

/// serde_json's deserializer over a token's text, to which the delicate cases go.
type Json<'de> = serde_json::Deserializer<serde_json::de::StrRead<'de>>;

/// The newtype name under which `serde_json::value::RawValue` asks for its text.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Arrays and objects nested deeper than this fail, as with serde_json's default limit.
const RECURSION_LIMIT: u8 = 128;

/// `text`, JSON already checked against the IDL, decoded into `T`: what
/// `serde_json::from_str::<T>(text)` returns, but for the positions in errors.
pub(crate) fn from_str<'de, T: de::Deserialize<'de>>(text: &'de str) -> Result<T> {
    let mut de = Deserializer {
        text,
        pos: 0,
        remaining_depth: RECURSION_LIMIT,
    };
    let value = T::deserialize(&mut de)?;
    match de.peek() {
        None => Ok(value),
        Some(_) => Err(syntax("trailing characters")),
    }
}

/// The reader: the text and the index of the next byte to read, always at a character
/// boundary (it only ever stops at ASCII bytes or where serde_json stopped).
struct Deserializer<'de> {
    text: &'de str,
    pos: usize,
    remaining_depth: u8,
}

/// An error where the text is not what serde_json accepts at this point, in serde_json's
/// words for the same case (its error codes' messages). The text was checked already, so
/// this is for text that somehow was not, and for the shapes JSON allows but a type does not
/// (such as a second key in an enum's object).
#[cold]
#[inline(never)]
fn syntax(message: &'static str) -> Error {
    de::Error::custom(message)
}

/// How much of a number serde_json reads for a method: all of it, or (for `i128` and `u128`,
/// which it scans apart) only a sign and digits, leaving any fraction or exponent to whatever
/// reads next.
#[derive(Clone, Copy)]
enum Extent {
    Number,
    Integer,
}

/// The index after the number that starts at `at`, as far as serde_json reads it: an
/// optional `-` and digits, then (for [`Extent::Number`]) a `.` and digits, then `e` or `E`,
/// a sign and digits. serde_json either reads all of that or fails within it (leading zeros,
/// a `.` without digits), so it and this reader stop at the same byte.
fn number_end(bytes: &[u8], at: usize, extent: Extent) -> usize {
    let digits = |mut end: usize| {
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        end
    };
    let mut end = digits(at + usize::from(bytes.get(at) == Some(&b'-')));
    if let Extent::Integer = extent {
        return end;
    }
    if bytes.get(end) == Some(&b'.') {
        end = digits(end + 1);
    }
    if let Some(b'e' | b'E') = bytes.get(end) {
        end += 1;
        end += usize::from(matches!(bytes.get(end), Some(b'+' | b'-')));
        end = digits(end);
    }
    end
}

impl<'de> Deserializer<'de> {
    /// The next byte that is not whitespace (`pos` moved to it), or `None` at the end.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while let Some(&byte) = bytes.get(self.pos) {
            if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(byte);
            }
            self.pos += 1;
        }
        None
    }

    /// The string whose opening quote is at `pos`, if it has no escape and no control byte:
    /// its contents and the index after its closing quote. `None` for any other string (or
    /// one not closed), which serde_json then reads.
    #[inline(always)]
    fn clean_string(&self) -> Option<(&'de str, usize)> {
        let bytes = self.text.as_bytes();
        let start = self.pos + 1;
        let mut end = start;
        // Eight bytes at a time while eight remain, then the rest (the end of the text: a short
        // value's closing quote and brace) in one word padded with spaces, which never stop it.
        while let Some(word) = bytes.get(end..).and_then(<[u8]>::first_chunk::<8>) {
            let special = escape_mask(u64::from_le_bytes(*word));
            if special != 0 {
                end += special.trailing_zeros() as usize / 8;
                return self.closed_at(start, end);
            }
            end += 8;
        }
        let special = escape_mask(last_word(bytes.get(end..)?));
        if special == 0 {
            return None;
        }
        self.closed_at(start, end + special.trailing_zeros() as usize / 8)
    }

    /// The string from `start` to `end`, where the first byte that needs an escape is, if
    /// that byte is the closing quote.
    #[inline(always)]
    fn closed_at(&self, start: usize, end: usize) -> Option<(&'de str, usize)> {
        if self.text.as_bytes().get(end) != Some(&b'"') {
            return None;
        }
        Some((self.text.get(start..end)?, end + 1))
    }

    /// The index after the string whose opening quote is at `pos`, escapes skipped (the end
    /// of the text if it is not closed).
    fn string_end(&self) -> usize {
        let bytes = self.text.as_bytes();
        let mut at = self.pos + 1;
        loop {
            match bytes.get(at) {
                Some(b'"') => return at + 1,
                Some(b'\\') => at += 2,
                Some(_) => at += 1,
                None => return bytes.len(),
            }
        }
    }

    /// The index after the scalar token at `pos`: a string, a number (read as `extent`
    /// says), or a word (`true`, `false`, `null` or something malformed); a single byte for
    /// anything else.
    fn scalar_end(&self, extent: Extent) -> usize {
        let bytes = self.text.as_bytes();
        match bytes.get(self.pos) {
            Some(b'"') => self.string_end(),
            Some(b'-' | b'0'..=b'9') => number_end(bytes, self.pos, extent),
            Some(b'a'..=b'z') => {
                let mut end = self.pos;
                while bytes.get(end).is_some_and(u8::is_ascii_alphanumeric) {
                    end += 1;
                }
                end
            }
            Some(_) => self.pos + 1,
            None => self.pos,
        }
    }

    /// Runs `f` on serde_json's deserializer over the text from `pos` to `end`, which it
    /// must read all of; `pos` moves to `end`.
    fn delegate<T>(
        &mut self,
        end: usize,
        f: impl FnOnce(&mut Json<'de>) -> Result<T>,
    ) -> Result<T> {
        let Some(token) = self.text.get(self.pos..end) else {
            return Err(syntax("expected value"));
        };
        let mut json = serde_json::Deserializer::from_str(token);
        let value = f(&mut json)?;
        json.end()?;
        self.pos = end;
        Ok(value)
    }

    /// A value this reader does not take natively (a number for a number, or the wrong token
    /// for what the visitor wants): serde_json reads the scalar at `pos`, or fails as it would
    /// for an array or object.
    fn delegate_value<V: Visitor<'de>>(
        &mut self,
        visitor: V,
        extent: Extent,
        f: impl FnOnce(&mut Json<'de>, V) -> Result<V::Value>,
    ) -> Result<V::Value> {
        match self.peek() {
            Some(b'[') => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
            Some(b'{') => Err(de::Error::invalid_type(Unexpected::Map, &visitor)),
            _ => {
                let end = self.scalar_end(extent);
                self.delegate(end, |json| f(json, visitor))
            }
        }
    }

    /// The string at `pos` (its opening quote): borrowed when clean, else serde_json's.
    #[inline]
    fn string<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        if let Some((s, end)) = self.clean_string() {
            self.pos = end;
            return visitor.visit_borrowed_str(s);
        }
        let end = self.string_end();
        self.delegate(end, |json| json.deserialize_str(visitor))
    }

    /// `word` (`null`, `true` or `false`) at `pos`, or serde_json's error for what is there.
    fn literal(&mut self, word: &[u8]) -> Result<()> {
        let rest = self.text.as_bytes().get(self.pos..).unwrap_or_default();
        if rest.starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else if word.starts_with(rest) {
            Err(syntax("EOF while parsing a value"))
        } else {
            Err(syntax("expected ident"))
        }
    }

    /// One more level of nesting, or the recursion-limit error.
    fn enter(&mut self) -> Result<()> {
        // serde_json fails where its count would reach zero; the count is kept unchanged
        // then, in case a visitor goes on after the error.
        if self.remaining_depth <= 1 {
            return Err(de::Error::custom("recursion limit exceeded"));
        }
        self.remaining_depth -= 1;
        Ok(())
    }

    /// `visit` on the array or object whose opening bracket is at `pos`, one level deeper;
    /// `pos` ends where the visit left it, before the closing bracket.
    #[inline]
    fn nested<T>(&mut self, visit: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.enter()?;
        self.pos += 1;
        let value = visit(self);
        self.remaining_depth += 1;
        value
    }

    /// The array at `pos` through `visitor`, then its closing bracket.
    fn seq<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        let value = self.nested(|de| visitor.visit_seq(Elements { de, first: true }))?;
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(value)
            }
            Some(_) => Err(syntax("trailing characters")),
            None => Err(syntax("EOF while parsing a list")),
        }
    }

    /// The object at `pos` through `visitor`, then its closing brace.
    fn map<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        let value = self.nested(|de| visitor.visit_map(Entries { de, first: true }))?;
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                Ok(value)
            }
            Some(b',') => Err(syntax("trailing comma")),
            Some(_) => Err(syntax("trailing characters")),
            None => Err(syntax("EOF while parsing an object")),
        }
    }

    /// Skips the value at `pos` as serde_json's `ignore_value` does (no recursion limit).
    fn skip(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'"') => {
                if let Some((_, end)) = self.clean_string() {
                    self.pos = end;
                    return Ok(());
                }
            }
            Some(b'n') => return self.literal(b"null"),
            Some(b't') => return self.literal(b"true"),
            Some(b'f') => return self.literal(b"false"),
            Some(b'-' | b'0'..=b'9') => {
                let end = number_end(self.text.as_bytes(), self.pos, Extent::Number);
                return self.delegate(end, |json| {
                    json.deserialize_ignored_any(IgnoredAny).map(drop)
                });
            }
            _ => {}
        }
        let Some(rest) = self.text.get(self.pos..) else {
            return Err(syntax("expected value"));
        };
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<IgnoredAny>();
        match values.next() {
            Some(Ok(IgnoredAny)) => {
                self.pos += values.byte_offset();
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Err(syntax("EOF while parsing a value")),
        }
    }

    /// A `RawValue` of the value at `pos`: its extent found by skipping it, then serde_json
    /// hands the visitor that text.
    fn raw_value<V: Visitor<'de>>(&mut self, name: &'static str, visitor: V) -> Result<V::Value> {
        self.peek();
        let start = self.pos;
        self.skip()?;
        let end = self.pos;
        self.pos = start;
        self.delegate(end, |json| json.deserialize_newtype_struct(name, visitor))
    }
}

/// The value methods serde_json implements by its number parsers: all go to serde_json.
macro_rules! delegate_numbers {
    ($($method:ident: $extent:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
                self.delegate_value(visitor, Extent::$extent, |json, visitor| json.$method(visitor))
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'"') => self.string(visitor),
            Some(b'{') => self.map(visitor),
            Some(b'[') => self.seq(visitor),
            Some(b'n') => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            Some(b't' | b'f') => self.deserialize_bool(visitor),
            _ => self.delegate_value(visitor, Extent::Number, |json, visitor| {
                json.deserialize_any(visitor)
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b't') => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            _ => self.delegate_value(visitor, Extent::Number, |json, visitor| {
                json.deserialize_bool(visitor)
            }),
        }
    }

    delegate_numbers! {
        deserialize_i8: Number deserialize_i16: Number deserialize_i32: Number
        deserialize_i64: Number deserialize_i128: Integer deserialize_u8: Number
        deserialize_u16: Number deserialize_u32: Number deserialize_u64: Number
        deserialize_u128: Integer deserialize_f32: Number deserialize_f64: Number
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'"') => self.string(visitor),
            _ => self.delegate_value(visitor, Extent::Number, |json, visitor| {
                json.deserialize_str(visitor)
            }),
        }
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'[') => self.seq(visitor),
            _ => self.delegate_value(visitor, Extent::Number, |json, visitor| {
                json.deserialize_bytes(visitor)
            }),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'n') => {
                self.literal(b"null")?;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'n') => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            _ => self.delegate_value(visitor, Extent::Number, |json, visitor| {
                json.deserialize_unit(visitor)
            }),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == RAW_VALUE_TOKEN {
            return self.raw_value(name, visitor);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'[') => self.seq(visitor),
            _ => self.delegate_value(visitor, Extent::Number, |json, visitor| {
                json.deserialize_seq(visitor)
            }),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek() {
            Some(b'{') => self.map(visitor),
            _ => self.delegate_value(visitor, Extent::Number, |json, visitor| {
                json.deserialize_map(visitor)
            }),
        }
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.peek() {
            Some(b'{') => self.map(visitor),
            Some(b'[') => self.seq(visitor),
            _ => self.delegate_value(visitor, Extent::Number, |json, visitor| {
                json.deserialize_struct(name, fields, visitor)
            }),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.peek() {
            Some(b'{') => {
                let value = self.nested(|de| visitor.visit_enum(VariantEntry { de }))?;
                match self.peek() {
                    Some(b'}') => {
                        self.pos += 1;
                        Ok(value)
                    }
                    Some(_) => Err(syntax("expected value")),
                    None => Err(syntax("EOF while parsing an object")),
                }
            }
            Some(b'"') => visitor.visit_enum(UnitVariant { de: self }),
            Some(_) => Err(syntax("expected value")),
            None => Err(syntax("EOF while parsing a value")),
        }
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip()?;
        visitor.visit_unit()
    }
}

/// An array's elements.
struct Elements<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.de.peek() {
            Some(b']') => return Ok(None),
            Some(b',') if !self.first => self.de.pos += 1,
            Some(_) if self.first => self.first = false,
            Some(_) => return Err(syntax("expected `,` or `]`")),
            None => return Err(syntax("EOF while parsing a list")),
        }
        match self.de.peek() {
            Some(b']') => Err(syntax("trailing comma")),
            Some(_) => seed.deserialize(&mut *self.de).map(Some),
            None => Err(syntax("EOF while parsing a value")),
        }
    }
}

/// An object's entries.
struct Entries<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.de.peek() {
            Some(b'}') => return Ok(None),
            Some(b',') if !self.first => self.de.pos += 1,
            Some(_) if self.first => self.first = false,
            Some(_) => return Err(syntax("expected `,` or `}`")),
            None => return Err(syntax("EOF while parsing an object")),
        }
        match self.de.peek() {
            Some(b'"') => seed.deserialize(Key { de: &mut *self.de }).map(Some),
            Some(b'}') => Err(syntax("trailing comma")),
            Some(_) => Err(syntax("key must be a string")),
            None => Err(syntax("EOF while parsing a value")),
        }
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.de.colon()?;
        seed.deserialize(&mut *self.de)
    }
}

impl Deserializer<'_> {
    /// The `:` after an object's key.
    #[inline]
    fn colon(&mut self) -> Result<()> {
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(syntax("expected `:`")),
            None => Err(syntax("EOF while parsing an object")),
        }
    }
}

/// An object's key (`pos` at its opening quote), read as serde_json's `MapKey` reads it.
struct Key<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> Key<'_, 'de> {
    /// A number in the key's quotes, read by serde_json (`f` calls the method the visitor
    /// asked for); nothing else may be in the quotes.
    fn number<V: Visitor<'de>>(
        self,
        visitor: V,
        extent: Extent,
        f: impl FnOnce(&mut Json<'de>, V) -> Result<V::Value>,
    ) -> Result<V::Value> {
        /// serde_json's error for anything after the number.
        const NOT_CLOSED: &str = "expected `\"`";
        let bytes = self.de.text.as_bytes();
        let start = self.de.pos + 1;
        if !matches!(bytes.get(start), Some(b'0'..=b'9' | b'-')) {
            return Err(de::Error::custom(
                "invalid value: expected key to be a number in quotes",
            ));
        }
        let end = number_end(bytes, start, extent);
        self.de.pos = start;
        let value = self.de.delegate(end, |json| f(json, visitor))?;
        if self.de.text.as_bytes().get(end) != Some(&b'"') {
            return Err(de::Error::custom(NOT_CLOSED));
        }
        self.de.pos = end + 1;
        Ok(value)
    }
}

/// The key methods serde_json reads as a number in quotes.
macro_rules! numeric_keys {
    ($($method:ident: $extent:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
                self.number(visitor, Extent::$extent, |json, visitor| json.$method(visitor))
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Key<'_, 'de> {
    type Error = Error;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.de.string(visitor)
    }

    numeric_keys! {
        deserialize_i8: Number deserialize_i16: Number deserialize_i32: Number
        deserialize_i64: Number deserialize_i128: Integer deserialize_u8: Number
        deserialize_u16: Number deserialize_u32: Number deserialize_u64: Number
        deserialize_u128: Integer deserialize_f32: Number deserialize_f64: Number
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let start = self.de.pos + 1;
        let rest = self.de.text.get(start..).unwrap_or_default();
        for (word, value) in [("true\"", true), ("false\"", false)] {
            if rest.starts_with(word) {
                self.de.pos = start + word.len();
                return visitor.visit_bool(value);
            }
        }
        if rest.starts_with(['t', 'f']) {
            return Err(syntax("expected ident"));
        }
        // serde_json names the key without its first character here.
        let key = rest.split_once('"').map_or(rest, |(key, _)| key);
        let mut chars = key.chars();
        chars.next();
        Err(de::Error::invalid_type(
            Unexpected::Str(chars.as_str()),
            &visitor,
        ))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // Keys cannot be null.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if name == RAW_VALUE_TOKEN {
            return self.de.raw_value(name, visitor);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.de.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.de.deserialize_bytes(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.de.deserialize_bytes(visitor)
    }

    serde::forward_to_deserialize_any! {
        char str string unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// An enum as a one-key object, `{"Variant": value}`.
struct VariantEntry<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> de::EnumAccess<'de> for VariantEntry<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        match self.de.peek() {
            Some(b'"') => {}
            Some(b'}') => return Err(syntax("expected value")),
            Some(_) => return Err(syntax("key must be a string")),
            None => return Err(syntax("EOF while parsing an object")),
        }
        let variant = seed.deserialize(Key { de: &mut *self.de })?;
        self.de.colon()?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for VariantEntry<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        de::Deserialize::deserialize(self.de)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.de.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.de.deserialize_struct("", fields, visitor)
    }
}

/// An enum as a string, the name of a unit variant.
struct UnitVariant<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> de::EnumAccess<'de> for UnitVariant<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let variant = seed.deserialize(&mut *self.de)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"newtype variant",
        ))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"tuple variant",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"struct variant",
        ))
    }
}

#[cfg(test)]
mod tests;
