//! Compact JSON serialization that writes exactly what `serde_json::to_writer` writes, with
//! strings escaped eight bytes at a time.
//!
//! serde_json escape-scans every string one byte at a time, and that scan cannot be replaced
//! from outside: a custom `serde_json::ser::Formatter` is only handed the pieces between escapes
//! after serde_json has found them. For large replies the scan was a quarter to a third of the
//! server's CPU time. So this is serde_json's compact serializer again, with every string
//! (values, map keys, chars, field and variant names) written by [`write_json_string`] instead:
//! 16 MiB strings 3–5× faster, small values as fast as serde_json or a little faster.
//!
//! Guarantee: for every `T: Serialize`, [`to_writer`] appends the same bytes as
//! `serde_json::to_writer` and fails where it fails. Only strings and punctuation are written
//! here; numbers, booleans and byte arrays are written by serde_json's own `CompactFormatter`,
//! and a `serde_json::value::RawValue` is handed to serde_json itself. One difference: for a map
//! key that is not a string, or a float key that is not finite, serde_json's own error cannot
//! be constructed outside serde_json, so the error is a `custom` one with the same message
//! (`classify()` says `Data` where serde_json's says `Syntax`). Errors raised by `Serialize`
//! implementations pass through unchanged.

use serde::Serialize;
use serde::ser::{self, Impossible, SerializeStruct as _};
use serde_json::Error;
use serde_json::ser::{CompactFormatter, Formatter as _};

use super::json_escape::{write_json_key, write_json_string};

type Result<T = ()> = std::result::Result<T, Error>;

/// The name, and its one field's name, of the struct as which `serde_json::value::RawValue`
/// serializes its text; serde_json writes that field's string verbatim.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Appends `value` as compact JSON to `out`: the same bytes as `serde_json::to_writer(out,
/// value)`, and the same failures. On failure, `out` may hold part of the value, as with
/// serde_json.
pub fn to_writer<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> std::result::Result<(), Error> {
    value.serialize(Writer(out))
}

/// The serializer: appends one value to the buffer.
///
/// Its non-generic methods, and those of its compounds, are `#[inline]` as serde_json's are:
/// they run from the crate of the serialized type, where a call per bracket costs more than
/// the bracket.
struct Writer<'a>(&'a mut Vec<u8>);

/// Serializer methods that hand their number to serde_json's compact formatter.
macro_rules! formatted {
    ($($method:ident($ty:ty) => $write:ident;)*) => {$(
        #[inline]
        fn $method(self, value: $ty) -> Result {
            CompactFormatter.$write(self.0, value).map_err(Error::io)
        }
    )*};
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Struct<'a>;
    type SerializeStructVariant = Compound<'a>;

    formatted! {
        serialize_bool(bool) => write_bool;
        serialize_i8(i8) => write_i8;
        serialize_i16(i16) => write_i16;
        serialize_i32(i32) => write_i32;
        serialize_i64(i64) => write_i64;
        serialize_i128(i128) => write_i128;
        serialize_u8(u8) => write_u8;
        serialize_u16(u16) => write_u16;
        serialize_u32(u32) => write_u32;
        serialize_u64(u64) => write_u64;
        serialize_u128(u128) => write_u128;
        serialize_bytes(&[u8]) => write_byte_array;
    }

    #[inline]
    fn serialize_f32(self, value: f32) -> Result {
        if !value.is_finite() {
            return self.serialize_unit();
        }
        CompactFormatter.write_f32(self.0, value).map_err(Error::io)
    }

    #[inline]
    fn serialize_f64(self, value: f64) -> Result {
        if !value.is_finite() {
            return self.serialize_unit();
        }
        CompactFormatter.write_f64(self.0, value).map_err(Error::io)
    }

    #[inline]
    fn serialize_char(self, value: char) -> Result {
        self.serialize_str(value.encode_utf8(&mut [0; 4]))
    }

    #[inline]
    fn serialize_str(self, value: &str) -> Result {
        write_json_string(self.0, value);
        Ok(())
    }

    #[inline]
    fn serialize_unit(self) -> Result {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        self.serialize_unit()
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        begin_variant(self.0, variant);
        value.serialize(Writer(&mut *self.0))?;
        self.0.push(b'}');
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a>> {
        Ok(Compound::open(self.0, *b"[]", len, false))
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>> {
        self.serialize_seq(Some(len))
    }

    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>> {
        self.serialize_seq(Some(len))
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>> {
        begin_variant(self.0, variant);
        Ok(Compound::open(self.0, *b"[]", Some(len), true))
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a>> {
        Ok(Compound::open(self.0, *b"{}", len, false))
    }

    #[inline]
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Struct<'a>> {
        if name == RAW_VALUE_TOKEN {
            return Ok(Struct::RawValue(self.0));
        }
        self.serialize_map(Some(len)).map(Struct::Object)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>> {
        begin_variant(self.0, variant);
        Ok(Compound::open(self.0, *b"{}", Some(len), true))
    }
}

/// Writes the start of an enum variant with contents: `{"Name":`.
#[inline]
fn begin_variant(out: &mut Vec<u8>, variant: &str) {
    out.push(b'{');
    write_json_string(out, variant);
    out.push(b':');
}

/// An array or object being written: its opening bracket is written already.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    state: State,
    /// The closing bracket: `]` or `}`.
    close: u8,
    /// Whether this is the contents of a variant's `{"Name":…}`, which `end` closes too.
    in_variant: bool,
}

/// serde_json's states of a container, which decide its commas and closing bracket.
#[derive(PartialEq)]
enum State {
    /// Announced with length 0, so closed already when opened.
    Empty,
    /// Nothing written inside yet: the next element or entry gets no comma.
    First,
    /// Something written inside.
    Rest,
}

impl<'a> Compound<'a> {
    /// Writes the opening bracket of `brackets` (`[]` or `{}`).
    #[inline]
    fn open(
        out: &'a mut Vec<u8>,
        [open, close]: [u8; 2],
        len: Option<usize>,
        in_variant: bool,
    ) -> Self {
        out.push(open);
        let state = if len == Some(0) {
            out.push(close);
            State::Empty
        } else {
            State::First
        };
        Compound {
            out,
            state,
            close,
            in_variant,
        }
    }

    /// Writes the comma before an element or entry, unless it is the first. (A container
    /// announced as empty gets one before each element anyway, and a second closing bracket.)
    #[inline]
    fn separate(&mut self) {
        if self.state != State::First {
            self.out.push(b',');
        }
        self.state = State::Rest;
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.separate();
        value.serialize(Writer(&mut *self.out))
    }

    /// Writes a struct field: inlined, so that its name, a constant, is written as one.
    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result {
        let comma = self.state != State::First;
        self.state = State::Rest;
        write_json_key(self.out, comma, key);
        value.serialize(Writer(&mut *self.out))
    }

    #[inline]
    fn close(self) -> Result {
        if self.state != State::Empty {
            self.out.push(self.close);
        }
        if self.in_variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    #[inline]
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    #[inline]
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    #[inline]
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    #[inline]
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        self.separate();
        key.serialize(MapKey(&mut *self.out))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.out.push(b':');
        value.serialize(Writer(&mut *self.out))
    }

    #[inline]
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.field(key, value)
    }

    #[inline]
    fn end(self) -> Result {
        self.close()
    }
}

/// A struct being written: an object, or a `RawValue`'s text.
enum Struct<'a> {
    Object(Compound<'a>),
    RawValue(&'a mut Vec<u8>),
}

impl ser::SerializeStruct for Struct<'_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        match self {
            Struct::Object(object) => object.field(key, value),
            // serde_json writes the text (and rejects anything else) itself.
            Struct::RawValue(out) => serde_json::to_writer(&mut **out, &RawValueField(key, value)),
        }
    }

    #[inline]
    fn end(self) -> Result {
        match self {
            Struct::Object(object) => object.close(),
            Struct::RawValue(_) => Ok(()),
        }
    }
}

/// One field of a `RawValue`'s struct, to be serialized as such a struct by serde_json.
struct RawValueField<'a, T: ?Sized>(&'static str, &'a T);

impl<T: Serialize + ?Sized> Serialize for RawValueField<'_, T> {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut raw = serializer.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        raw.serialize_field(self.0, self.1)?;
        raw.end()
    }
}

/// The serializer of a map key, with serde_json's rules: strings, chars and unit variants as
/// they are, integers, booleans and finite floats in quotes, anything else an error.
struct MapKey<'a>(&'a mut Vec<u8>);

impl MapKey<'_> {
    /// Writes a scalar as `Writer` does, in quotes.
    #[inline]
    fn quoted(self, write: impl FnOnce(Writer<'_>) -> Result) -> Result {
        self.0.push(b'"');
        write(Writer(&mut *self.0))?;
        self.0.push(b'"');
        Ok(())
    }
}

// serde_json's own errors for these cannot be constructed here: custom ones with its messages.
#[cold]
fn key_must_be_a_string() -> Error {
    ser::Error::custom("key must be a string")
}

#[cold]
fn float_key_must_be_finite() -> Error {
    ser::Error::custom("float key must be finite (got NaN or +/-inf)")
}

/// Map key methods that write their scalar in quotes.
macro_rules! quoted {
    ($($method:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method(self, value: $ty) -> Result {
            self.quoted(|writer| ser::Serializer::$method(writer, value))
        }
    )*};
}

/// Map key methods for the kinds of values serde_json rejects as keys.
macro_rules! rejected {
    ($($method:ident($($arg:ty),*) -> $ok:ty;)*) => {$(
        fn $method(self, $(_: $arg),*) -> Result<$ok> {
            Err(key_must_be_a_string())
        }
    )*};
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    quoted! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
    }

    #[inline]
    fn serialize_f32(self, value: f32) -> Result {
        if !value.is_finite() {
            return Err(float_key_must_be_finite());
        }
        self.quoted(|writer| ser::Serializer::serialize_f32(writer, value))
    }

    #[inline]
    fn serialize_f64(self, value: f64) -> Result {
        if !value.is_finite() {
            return Err(float_key_must_be_finite());
        }
        self.quoted(|writer| ser::Serializer::serialize_f64(writer, value))
    }

    #[inline]
    fn serialize_char(self, value: char) -> Result {
        self.serialize_str(value.encode_utf8(&mut [0; 4]))
    }

    #[inline]
    fn serialize_str(self, value: &str) -> Result {
        write_json_string(self.0, value);
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result {
        Err(key_must_be_a_string())
    }

    rejected! {
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_seq(Option<usize>) -> Impossible<(), Error>;
        serialize_tuple(usize) -> Impossible<(), Error>;
        serialize_tuple_struct(&'static str, usize) -> Impossible<(), Error>;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Impossible<(), Error>;
        serialize_map(Option<usize>) -> Impossible<(), Error>;
        serialize_struct(&'static str, usize) -> Impossible<(), Error>;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Impossible<(), Error>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::ser::{SerializeMap as _, SerializeSeq as _, SerializeTupleVariant as _};
    use serde_json::value::RawValue;
    use serde_json::{Number, Value};
    use std::collections::{BTreeMap, BTreeSet};

    /// What `to_writer` appends, or its error's message.
    fn ours<T: Serialize + ?Sized>(value: &T) -> std::result::Result<String, String> {
        let mut out = b"before ".to_vec();
        to_writer(&mut out, value).map_err(|error| error.to_string())?;
        let written = out
            .strip_prefix(b"before ")
            .expect("appended, not overwritten");
        Ok(String::from_utf8(written.to_vec()).expect("UTF-8"))
    }

    /// What serde_json writes, or its error's message.
    fn theirs<T: Serialize + ?Sized>(value: &T) -> std::result::Result<String, String> {
        serde_json::to_string(value).map_err(|error| error.to_string())
    }

    #[track_caller]
    fn assert_same<T: Serialize + ?Sized>(value: &T) {
        assert_eq!(ours(value), theirs(value));
    }

    /// Serializes as bytes (`serialize_bytes`), not as a sequence of numbers.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Bytes(Vec<u8>);

    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    /// Serializes through `collect_str`.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Displayed(String);

    impl Serialize for Displayed {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.collect_str(&self.0)
        }
    }

    /// A map of any keys, keys not restricted to `Ord` types (floats, unit, sequences).
    #[derive(Debug, Clone)]
    struct Pairs<K, V>(Vec<(K, V)>);

    impl<K: Serialize, V: Serialize> Serialize for Pairs<K, V> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }

    #[derive(Serialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct UnitStruct;

    #[derive(Serialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    struct Newtype(String);

    #[derive(Serialize, Debug, Clone)]
    struct TupleStruct(i8, String, ());

    #[derive(Serialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        First,
        #[serde(rename = "sec\"ond")]
        Second,
    }

    #[derive(Serialize, Debug, Clone)]
    enum Variant {
        Unit,
        #[serde(rename = "new\ttype")]
        Newtype(String),
        Tuple(i32, Option<String>, Vec<u8>),
        EmptyTuple(),
        Struct {
            a: f64,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            b: Vec<String>,
        },
        EmptyStruct {},
    }

    #[derive(Serialize, Debug, Clone)]
    #[serde(tag = "kind")]
    enum Tagged {
        Plain { x: u8 },
        Wrapped(BTreeMap<String, i32>),
    }

    #[derive(Serialize, Debug, Clone)]
    #[serde(untagged)]
    enum Untagged {
        Number(f32),
        Text(String),
    }

    #[derive(Serialize, Debug)]
    struct Everything {
        text: String,
        #[serde(rename = "re\"named\n")]
        renamed: i32,
        optional: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped_if_none: Option<u8>,
        #[serde(skip)]
        _never: u8,
        variants: Vec<Variant>,
        tagged: Tagged,
        untagged: Vec<Untagged>,
        int_keys: BTreeMap<i64, String>,
        wide_keys: BTreeMap<i128, u128>,
        char_keys: BTreeMap<char, ()>,
        bool_keys: BTreeMap<bool, f32>,
        variant_keys: BTreeMap<Key, i8>,
        newtype_keys: BTreeMap<Newtype, u16>,
        option_keys: BTreeMap<Option<u8>, UnitStruct>,
        displayed_keys: BTreeMap<Displayed, Displayed>,
        float_keys: Pairs<f64, f32>,
        set: BTreeSet<String>,
        nested: Vec<Vec<u32>>,
        tuple: (u8, i16, u64, i128, f32, f64),
        character: char,
        bytes: Vec<u8>,
        raw_bytes: Bytes,
        unit: (),
        unit_struct: UnitStruct,
        newtype: Newtype,
        tuple_struct: TupleStruct,
        raw: Box<RawValue>,
        raws: Vec<Option<Box<RawValue>>>,
        value: Value,
        #[serde(flatten)]
        flattened: BTreeMap<String, Value>,
    }

    /// Strings full of what JSON escapes.
    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(crate::wire::json_escape::tests::interesting_char(), 0..40)
            .prop_map(|chars| chars.into_iter().collect())
    }

    /// Floats with the awkward ones often, non-finite ones included.
    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => any::<f64>(),
            1 => prop::sample::select(vec![
                0.0,
                -0.0,
                1e300,
                -1e300,
                f64::MIN_POSITIVE,
                5e-324,
                f64::MAX,
                f64::MIN,
                0.1,
                1e15,
                1e16,
                1e-7,
                123_456_789.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ]),
        ]
    }

    fn number() -> impl Strategy<Value = Number> {
        prop_oneof![
            any::<i64>().prop_map(Number::from),
            any::<u64>().prop_map(Number::from),
            prop::sample::select(vec![u64::MAX, 0, 1 << 53]).prop_map(Number::from),
            prop::sample::select(vec![i64::MIN, -1, i64::MAX]).prop_map(Number::from),
            float().prop_filter_map("JSON numbers are finite", Number::from_f64),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number().prop_map(Value::Number),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((text(), inner), 0..8)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// A `RawValue` holding a value's pretty text: its whitespace must be kept.
    fn raw_value() -> impl Strategy<Value = Box<RawValue>> {
        json_value().prop_map(|value| {
            RawValue::from_string(serde_json::to_string_pretty(&value).unwrap()).unwrap()
        })
    }

    fn variant() -> impl Strategy<Value = Variant> {
        prop_oneof![
            Just(Variant::Unit),
            text().prop_map(Variant::Newtype),
            (any::<i32>(), prop::option::of(text()), any::<Vec<u8>>())
                .prop_map(|(a, b, c)| Variant::Tuple(a, b, c)),
            Just(Variant::EmptyTuple()),
            (float(), prop::collection::vec(text(), 0..3))
                .prop_map(|(a, b)| Variant::Struct { a, b }),
            Just(Variant::EmptyStruct {}),
        ]
    }

    fn tagged() -> impl Strategy<Value = Tagged> {
        prop_oneof![
            any::<u8>().prop_map(|x| Tagged::Plain { x }),
            prop::collection::btree_map(text(), any::<i32>(), 0..3).prop_map(Tagged::Wrapped),
        ]
    }

    fn untagged() -> impl Strategy<Value = Untagged> {
        prop_oneof![
            any::<f32>().prop_map(Untagged::Number),
            text().prop_map(Untagged::Text),
        ]
    }

    fn everything() -> impl Strategy<Value = Everything> {
        let scalars = (
            text(),
            any::<i32>(),
            prop::option::of(text()),
            any::<Option<u8>>(),
            (
                any::<u8>(),
                any::<i16>(),
                any::<u64>(),
                any::<i128>(),
                any::<f32>(),
                float(),
            ),
            any::<char>(),
            any::<Vec<u8>>(),
            any::<Vec<u8>>().prop_map(Bytes),
            (text(), any::<i8>(), text()),
        );
        let enums = (
            prop::collection::vec(variant(), 0..6),
            tagged(),
            prop::collection::vec(untagged(), 0..3),
        );
        let maps = (
            prop::collection::btree_map(any::<i64>(), text(), 0..4),
            prop::collection::btree_map(any::<i128>(), any::<u128>(), 0..3),
            prop::collection::btree_map(any::<char>(), Just(()), 0..3),
            prop::collection::btree_map(any::<bool>(), any::<f32>(), 0..2),
            prop::collection::btree_map(
                prop_oneof![Just(Key::First), Just(Key::Second)],
                any::<i8>(),
                0..2,
            ),
            prop::collection::btree_map(text().prop_map(Newtype), any::<u16>(), 0..3),
            prop::collection::btree_map(any::<u8>().prop_map(Some), Just(UnitStruct), 0..3),
            prop::collection::btree_map(
                text().prop_map(Displayed),
                text().prop_map(Displayed),
                0..3,
            ),
            prop::collection::vec(
                (
                    float().prop_filter("finite keys", |f| f.is_finite()),
                    any::<f32>(),
                ),
                0..3,
            ),
            prop::collection::btree_set(text(), 0..4),
        );
        let rest = (
            prop::collection::vec(prop::collection::vec(any::<u32>(), 0..4), 0..4),
            raw_value(),
            prop::collection::vec(prop::option::of(raw_value()), 0..3),
            json_value(),
            prop::collection::btree_map(text(), json_value(), 0..3),
        );
        (scalars, enums, maps, rest).prop_map(
            |(
                (text, renamed, optional, skipped_if_none, tuple, character, bytes, raw_bytes, ts),
                (variants, tagged, untagged),
                (
                    int_keys,
                    wide_keys,
                    char_keys,
                    bool_keys,
                    variant_keys,
                    newtype_keys,
                    option_keys,
                    displayed_keys,
                    float_keys,
                    set,
                ),
                (nested, raw, raws, value, flattened),
            )| Everything {
                text: text.clone(),
                renamed,
                optional,
                skipped_if_none,
                _never: 0,
                variants,
                tagged,
                untagged,
                int_keys,
                wide_keys,
                char_keys,
                bool_keys,
                variant_keys,
                newtype_keys,
                option_keys,
                displayed_keys,
                float_keys: Pairs(float_keys),
                set,
                nested,
                tuple,
                character,
                bytes,
                raw_bytes,
                unit: (),
                unit_struct: UnitStruct,
                newtype: Newtype(text),
                tuple_struct: TupleStruct(ts.1, ts.0 + &ts.2, ()),
                raw,
                raws,
                value,
                // serde_json errors on keys the struct's fields already use; avoid them.
                flattened: flattened
                    .into_iter()
                    .map(|(k, v)| (format!("x{k}"), v))
                    .collect(),
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn same_bytes_as_serde_json_for_any_value(value in json_value()) {
            prop_assert_eq!(ours(&value), theirs(&value));
        }

        #[test]
        fn same_bytes_as_serde_json_for_derived_types(value in everything()) {
            let written = ours(&value);
            prop_assert!(written.is_ok(), "{written:?}");
            prop_assert_eq!(written, theirs(&value));
        }

        #[test]
        fn same_bytes_as_serde_json_for_scalars(
            (i, u, f, g) in (any::<i128>(), any::<u128>(), any::<f32>(), float()),
        ) {
            prop_assert_eq!(ours(&(i, u, f, g)), theirs(&(i, u, f, g)));
            // As map keys (failing alike when not finite).
            let keys = (Pairs(vec![(i, 0)]), Pairs(vec![(u, 1)]), Pairs(vec![(f, 2)]));
            prop_assert_eq!(ours(&keys), theirs(&keys));
            let keys = (Pairs(vec![(g, ())]), Pairs(vec![(g as f32, ())]));
            prop_assert_eq!(ours(&keys), theirs(&keys));
        }
    }

    #[test]
    fn numbers_at_their_limits() {
        assert_same(&(u64::MAX, i64::MIN, i128::MIN, i128::MAX, u128::MAX));
        assert_same(&(
            -0.0f64,
            1e300,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            0.1,
            1e16,
        ));
        assert_same(&(-0.0f32, f32::MIN_POSITIVE, f32::MAX, 0.1f32, 16_777_217f32));
        assert_same(&(f64::NAN, f64::INFINITY, f32::NEG_INFINITY));
        assert_eq!(ours(&(f64::NAN, -0.0)).unwrap(), "[null,-0.0]");
    }

    #[test]
    fn empty_containers() {
        assert_same(&(
            Vec::<u8>::new(),
            BTreeMap::<u8, u8>::new(),
            (),
            Bytes(Vec::new()),
        ));
        assert_same(&[Variant::EmptyTuple(), Variant::EmptyStruct {}]);
        assert_same(&Variant::Struct {
            a: 1.0,
            b: Vec::new(),
        });
        assert_eq!(
            ours(&Variant::EmptyTuple()).unwrap(),
            r#"{"EmptyTuple":[]}"#
        );
    }

    #[test]
    fn raw_values_are_written_verbatim() {
        let raw = RawValue::from_string("{ \"a\" : [1, 2.50, \"\\u0041\"] }".to_owned()).unwrap();
        assert_same(&raw);
        assert_same(&BTreeMap::from([("raw", &raw)]));
        assert_eq!(
            ours(&[&raw, &raw]).unwrap(),
            "[{ \"a\" : [1, 2.50, \"\\u0041\"] },{ \"a\" : [1, 2.50, \"\\u0041\"] }]"
        );
        let borrowed: &RawValue = serde_json::from_str(" [ 1 ] ").unwrap();
        assert_same(&Some(borrowed));
    }

    /// A struct named like `RawValue`'s, not holding one string field named like it.
    struct FakeRawValue<T>(&'static str, T);

    impl<T: Serialize> Serialize for FakeRawValue<T> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut fake = s.serialize_struct(RAW_VALUE_TOKEN, 1)?;
            fake.serialize_field(self.0, &self.1)?;
            fake.end()
        }
    }

    /// Asserts that both serializers fail with the same message, and returns it.
    #[track_caller]
    fn both_fail<T: Serialize + ?Sized>(value: &T) -> String {
        match (ours(value), theirs(value)) {
            (Err(ours), Err(theirs)) if ours == theirs => ours,
            other => panic!("expected the same error from both: {other:?}"),
        }
    }

    #[test]
    fn malformed_raw_values_fail_as_in_serde_json() {
        both_fail(&FakeRawValue(RAW_VALUE_TOKEN, 1));
        both_fail(&FakeRawValue("other", "1"));
        assert_same(&FakeRawValue(RAW_VALUE_TOKEN, "not even JSON"));
    }

    #[test]
    fn keys_that_are_not_strings_fail_as_in_serde_json() {
        let not_a_string = "key must be a string";
        assert_eq!(both_fail(&BTreeMap::from([((), 1)])), not_a_string);
        assert_eq!(both_fail(&BTreeMap::from([(UnitStruct, 1)])), not_a_string);
        assert_eq!(both_fail(&BTreeMap::from([(None::<u8>, 1)])), not_a_string);
        assert_eq!(both_fail(&BTreeMap::from([(vec![1], 1)])), not_a_string);
        assert_eq!(both_fail(&BTreeMap::from([((1, 2), 1)])), not_a_string);
        assert_eq!(
            both_fail(&BTreeMap::from([(Bytes(vec![1]), 1)])),
            not_a_string
        );
        assert_eq!(
            both_fail(&Pairs(vec![(BTreeMap::from([(1, 2)]), 1)])),
            not_a_string
        );
        assert_eq!(
            both_fail(&Pairs(vec![(Variant::Newtype("x".into()), 1)])),
            not_a_string
        );
        assert_eq!(
            both_fail(&Pairs(vec![(Variant::EmptyTuple(), 1)])),
            not_a_string
        );
        assert_eq!(
            both_fail(&Pairs(vec![(Variant::EmptyStruct {}, 1)])),
            not_a_string
        );
        assert_eq!(
            both_fail(&Pairs(vec![(TupleStruct(1, "x".into(), ()), 1)])),
            not_a_string
        );
        for float in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            both_fail(&Pairs(vec![(float, 1)]));
            both_fail(&Pairs(vec![(float as f32, 1)]));
        }
        // The kinds that are accepted, in quotes where they are not strings.
        let keys = (
            BTreeMap::from([(Some(Newtype("n".into())), 1)]),
            BTreeMap::from([(Key::Second, 1)]),
            BTreeMap::from([(false, 1)]),
            Pairs(vec![(-0.0, 1)]),
        );
        assert_eq!(
            ours(&keys).unwrap(),
            r#"[{"n":1},{"sec\"ond":1},{"false":1},{"-0.0":1}]"#
        );
        assert_same(&keys);
    }

    /// Fails with a custom error after writing part of itself.
    struct Failing;

    impl Serialize for Failing {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(None)?;
            seq.serialize_element(&1)?;
            Err(ser::Error::custom("boom at the second element"))
        }
    }

    #[test]
    fn errors_of_serialize_impls_pass_through() {
        let nested = BTreeMap::from([("a", vec![Some(Failing)])]);
        assert_eq!(ours(&nested), Err("boom at the second element".to_owned()));
        assert_same(&nested);
        assert_same(&Pairs(vec![(Displayed("k".into()), Failing)]));
    }

    /// Announces no elements and writes some anyway, in a sequence, a map and a variant.
    struct LyingLength;

    impl Serialize for LyingLength {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(0))?;
            seq.serialize_element(&1)?;
            seq.serialize_element(&BTreeMap::from([(1, 2)]).iter().collect::<Lying<_>>())?;
            seq.serialize_element(&LyingVariant)?;
            seq.end()
        }
    }

    struct Lying<T>(Vec<T>);

    impl<T> FromIterator<T> for Lying<T> {
        fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
            Lying(iter.into_iter().collect())
        }
    }

    impl<K: Serialize, V: Serialize> Serialize for Lying<(K, V)> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(0))?;
            for (k, v) in &self.0 {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }

    struct LyingVariant;

    impl Serialize for LyingVariant {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            let mut variant = s.serialize_tuple_variant("E", 0, "V", 0)?;
            variant.serialize_field(&"x")?;
            variant.end()
        }
    }

    #[test]
    fn wrong_lengths_give_what_serde_json_gives() {
        assert_same(&LyingLength);
        assert_eq!(
            ours(&LyingLength).unwrap(),
            r#"[],1,{},"1":2},{"V":[],"x"]}]"#
        );
    }

    #[test]
    fn long_strings() {
        let mut long = "clean text é ".repeat(100_000);
        long.push_str("\"\\\n\u{1}");
        assert_same(&long);
        assert_same(&BTreeMap::from([(&long, &long)]));
        assert_same(&Displayed(long));
    }
}
