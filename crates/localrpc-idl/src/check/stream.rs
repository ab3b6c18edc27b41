//! The complete checker on JSON text, for what the scanner in `fast` does not accept: one
//! streaming pass of `serde_json::Deserializer` driven by [`DeserializeSeed`]/[`Visitor`]
//! implementations parameterised by the IDL type, with no `serde_json::Value` built.
//!
//! It must give exactly the verdict of "parse into a `Map`/`Value`, then run the tree checker",
//! while it sees keys in document order. So each object remembers what the tree checker would
//! look at once the object is complete, and decides at its end:
//!
//! - struct: the first undeclared key (document order is the map's order, as a duplicate keeps
//!   its first position), the set of declared fields present and, per declared field, the
//!   verdict of its *last* occurrence (a later duplicate replaces the earlier value, as in the
//!   map); then the declaration-order scan of the tree checker runs on that summary.
//! - map / set: every key in document order (inline for small maps) and the errors by entry;
//!   only when there is an error are duplicates resolved (last occurrence's verdict, at the
//!   first occurrence's position), so the success path does no key comparisons.
//! - array: the first wrong element, the rest is still parsed.
//!
//! Everything after a decided error is still parsed, with the same visitors (never
//! `deserialize_ignored_any`, whose string validation is laxer than the parser's), so that a
//! syntax error anywhere wins as it does for `serde_json::from_str`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{CheckError, Kind, Resolved, expected, leaf_accepts, resolve, undeclared_reason};
use crate::ast::{Field, Interface, Type};

/// The key serde_json (with its `raw_value` feature, which the workspace enables) treats
/// specially when it builds a `Value` from an object: if it is the object's *first* key, its
/// value must be a string holding JSON text, and the object is replaced by that text parsed (and
/// must have no other key). Matched here so that verdicts stay identical.
pub(super) const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Keys of a `[string]T` object kept without allocating.
const INLINE_KEYS: usize = 16;

/// Boxed, so that verdicts travel through the deserializer's frames in registers.
type Verdict = Result<(), Box<CheckError>>;

/// [`check_value_str`](super::check_value_str) without the fast path.
#[inline(never)] // keeps the fast path's caller small
pub fn check_value_str(iface: &Interface, ty: &Type, json: &str) -> Result<(), CheckError> {
    let root = Path::Root;
    run(
        json,
        Seed {
            iface,
            path: &root,
            what: What::Value {
                ty,
                depth: 0,
                null_ok: false,
            },
        },
    )
}

/// [`check_parameters_str`](super::check_parameters_str) without the fast path.
#[inline(never)] // keeps the fast path's caller small
pub fn check_parameters_str(
    iface: &Interface,
    fields: &[Field],
    json: &str,
) -> Result<(), CheckError> {
    let root = Path::Root;
    run(
        json,
        Seed {
            iface,
            path: &root,
            what: What::Params(fields),
        },
    )
}

fn run(json: &str, seed: Seed<'_, '_>) -> Result<(), CheckError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let verdict = seed
        .deserialize(&mut de)
        .and_then(|verdict| de.end().map(|()| verdict))
        .map_err(|e| CheckError {
            path: String::new(),
            reason: format!("invalid JSON: {e}"),
        })?;
    verdict.map_err(|e| *e)
}

/// Where a value is, as a chain on the stack; turned into text only for an error.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root,
    /// `.name` (no dot at the start).
    Field(&'p Path<'p>, &'p str),
    /// `[3]`
    Index(&'p Path<'p>, usize),
    /// `["key"]`
    Key(&'p Path<'p>, &'p str),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match *self {
            Path::Root => {}
            Path::Field(parent, name) => {
                parent.render_into(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Path::Index(parent, i) => {
                parent.render_into(out);
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
            Path::Key(parent, key) => {
                parent.render_into(out);
                out.push('[');
                out.push_str(&quote(key));
                out.push(']');
            }
        }
    }

    #[cold]
    fn error(&self, reason: String) -> Box<CheckError> {
        Box::new(CheckError {
            path: self.render(),
            reason,
        })
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// What the value at hand is checked as.
#[derive(Clone, Copy)]
enum What<'a> {
    /// Parsed and dropped.
    Skip,
    /// A value of a `[string]()` set: any object (content not checked).
    SetEntry,
    /// The parameters object (or `null`) at the root, with the tree checker's depth 0.
    Params(&'a [Field]),
    /// A value of type `ty`, at the tree checker's `depth`. `null_ok`: a struct field of a
    /// nullable type, for which `null` is accepted before the depth is looked at.
    Value {
        ty: &'a Type,
        depth: usize,
        null_ok: bool,
    },
}

#[derive(Clone, Copy)]
struct Seed<'a, 'p> {
    iface: &'a Interface,
    path: &'p Path<'p>,
    what: What<'a>,
}

/// [`Resolved`], with the error built.
enum Walked<'a> {
    /// Decided without looking further (the content of a container is still to be parsed).
    Done(Verdict),
    /// A type that is none of nullable, named or `any`, at this tree-checker depth.
    Check(&'a Type, usize),
}

/// How an object's entries are taken.
enum Plan<'a> {
    /// Parse and drop all entries; the verdict is known.
    Drain(Verdict),
    /// A struct's fields; the object is at this tree-checker depth.
    Struct(&'a [Field], usize),
    /// A `[string]T` map of the given value type; the map value is at this depth.
    Map(&'a Type, usize),
}

/// An object key as the object's plan needs it.
enum Key<'de> {
    /// The first key is [`RAW_VALUE_TOKEN`].
    Token,
    /// A declared field of the struct, by index.
    Field(usize),
    /// The key itself (a map key, or an undeclared key when one is still wanted).
    Name(Cow<'de, str>),
    /// Not needed.
    Other,
}

struct KeySeed<'a> {
    /// Look for [`RAW_VALUE_TOKEN`] (the first key of an object that is not the root map).
    token: bool,
    /// A struct's fields: return [`Key::Field`] for declared keys.
    fields: Option<&'a [Field]>,
    /// Return [`Key::Name`] for keys that are not declared fields.
    keep_name: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl KeySeed<'_> {
    fn classify<'de>(&self, s: &str, name: impl FnOnce() -> Cow<'de, str>) -> Key<'de> {
        if self.token && s == RAW_VALUE_TOKEN {
            return Key::Token;
        }
        if let Some(fields) = self.fields
            && let Some(i) = fields.iter().position(|f| f.name == s)
        {
            return Key::Field(i);
        }
        if self.keep_name {
            Key::Name(name())
        } else {
            Key::Other
        }
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(self.classify(s, || Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(self.classify(s, || Cow::Owned(s.to_owned())))
    }
}

/// A string value, borrowed unless it has escapes.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrSeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("raw value")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

fn is_nullable(ty: &Type) -> bool {
    matches!(ty, Type::Nullable(_))
}

impl<'a, 'p> Seed<'a, 'p> {
    fn at<'q>(&self, path: &'q Path<'q>, what: What<'a>) -> Seed<'a, 'q>
    where
        'p: 'q,
    {
        Seed {
            iface: self.iface,
            path,
            what,
        }
    }

    fn skip<'q>(&self) -> Seed<'a, 'q>
    where
        'p: 'q,
    {
        self.at(self.path, What::Skip)
    }

    /// Walks `?T`, named types and `any` for a value of `kind`, as the tree checker does.
    fn resolve(&self, ty: &'a Type, depth: usize, null_ok: bool, kind: Kind) -> Walked<'a> {
        match resolve(self.iface, ty, depth, null_ok, kind) {
            Resolved::Accept => Walked::Done(Ok(())),
            Resolved::Reject(why) => Walked::Done(Err(self.path.error(why.reason(kind)))),
            Resolved::Check(ty, depth) => Walked::Check(ty, depth),
        }
    }

    /// A value of `kind` against a resolved type, without descending (`s`: the string, if any).
    fn leaf(&self, ty: &Type, kind: Kind, s: Option<&str>) -> Verdict {
        if leaf_accepts(ty, kind, s.map(str::as_bytes)) {
            return Ok(());
        }
        match (ty, s) {
            (Type::Enum(_), Some(s)) => {
                Err(self
                    .path
                    .error(format!("expected {}, found {}", expected(ty), quote(s))))
            }
            _ => Err(self.mismatch(ty, kind)),
        }
    }

    fn mismatch(&self, ty: &Type, kind: Kind) -> Box<CheckError> {
        self.path
            .error(format!("expected {}, found {}", expected(ty), kind.name()))
    }

    fn set_entry_error(&self, kind: Kind) -> Box<CheckError> {
        self.path
            .error(format!("expected {{}} (set entry), found {}", kind.name()))
    }

    /// A scalar value (`s`: the string, if it is one).
    fn scalar(&self, kind: Kind, s: Option<&str>) -> Verdict {
        match self.what {
            What::Skip => Ok(()),
            What::SetEntry => Err(self.set_entry_error(kind)),
            What::Params(fields) if kind == Kind::Null => {
                self.fields_verdict(fields, &Bits::new(fields.len()), None, Vec::new())
            }
            What::Params(_) => Err(self.mismatch(&Type::Object, kind)),
            What::Value { ty, depth, null_ok } => match self.resolve(ty, depth, null_ok, kind) {
                Walked::Done(verdict) => verdict,
                Walked::Check(ty, _) => self.leaf(ty, kind, s),
            },
        }
    }

    /// The tree checker's declaration-order scan, on what an object showed: undeclared key
    /// first, then per field missing or its (last) value's error.
    fn fields_verdict(
        &self,
        fields: &[Field],
        seen: &Bits,
        undeclared: Option<Box<CheckError>>,
        mut errors: Vec<(usize, Box<CheckError>)>,
    ) -> Verdict {
        if let Some(e) = undeclared {
            return Err(e);
        }
        for (i, field) in fields.iter().enumerate() {
            if !seen.get(i) {
                if is_nullable(&field.ty) {
                    continue;
                }
                let at = Path::Field(self.path, &field.name);
                return Err(at.error(format!(
                    "missing required field (expected {})",
                    expected(&field.ty)
                )));
            }
            if let Some(pos) = errors.iter().position(|(j, _)| *j == i) {
                return Err(errors.swap_remove(pos).1);
            }
        }
        Ok(())
    }

    /// Runs a struct's fields over the object's entries (`first`: its first key, already read).
    fn struct_entries<'de, A: MapAccess<'de>>(
        &self,
        fields: &'a [Field],
        depth: usize,
        first: Key<'de>,
        map: &mut A,
    ) -> Result<Verdict, A::Error> {
        let mut undeclared: Option<Box<CheckError>> = None;
        let mut seen = Bits::new(fields.len());
        // Errors of declared fields by field index, for the last occurrence of each.
        let mut errors: Vec<(usize, Box<CheckError>)> = Vec::new();
        let mut key = Some(first);
        while let Some(k) = key {
            match k {
                Key::Field(i) if undeclared.is_none() => {
                    let field = &fields[i];
                    let at = Path::Field(self.path, &field.name);
                    let verdict = map.next_value_seed(self.at(
                        &at,
                        What::Value {
                            ty: &field.ty,
                            depth: depth + 1,
                            null_ok: is_nullable(&field.ty),
                        },
                    ))?;
                    if seen.set(i) && !errors.is_empty() {
                        // A duplicate: its value replaces the earlier one.
                        errors.retain(|(j, _)| *j != i);
                    }
                    if let Err(e) = verdict {
                        errors.push((i, e));
                    }
                }
                Key::Name(name) if undeclared.is_none() => {
                    let at = Path::Field(self.path, &name);
                    undeclared = Some(at.error(undeclared_reason(fields)));
                    errors = Vec::new();
                    let _ = map.next_value_seed(self.skip())?;
                }
                _ => {
                    let _ = map.next_value_seed(self.skip())?;
                }
            }
            key = map.next_key_seed(KeySeed {
                token: false,
                fields: Some(fields),
                keep_name: undeclared.is_none(),
            })?;
        }
        Ok(self.fields_verdict(fields, &seen, undeclared, errors))
    }

    /// Runs a map's value type over the object's entries (`first`: its first key).
    fn map_entries<'de, A: MapAccess<'de>>(
        &self,
        inner: &'a Type,
        depth: usize,
        first: Key<'de>,
        map: &mut A,
    ) -> Result<Verdict, A::Error> {
        let set = matches!(inner, Type::Struct(f) if f.is_empty());
        let mut keys = KeyList::new();
        // Errors by entry index (document order).
        let mut errors: Vec<(usize, Box<CheckError>)> = Vec::new();
        let mut key = Some(first);
        while let Some(k) = key {
            let name = match k {
                Key::Name(name) => name,
                // Not produced for maps (keep_name is set); parse the value all the same.
                _ => Cow::Borrowed(""),
            };
            let at = Path::Key(self.path, &name);
            let what = if set {
                What::SetEntry
            } else {
                What::Value {
                    ty: inner,
                    depth: depth + 1,
                    null_ok: false,
                }
            };
            if let Err(e) = map.next_value_seed(self.at(&at, what))? {
                errors.push((keys.len(), e));
            }
            keys.push(name);
            key = map.next_key_seed(KeySeed {
                token: false,
                fields: None,
                keep_name: true,
            })?;
        }
        if errors.is_empty() {
            return Ok(Ok(()));
        }
        Ok(keys.first_error(errors))
    }

    /// Parses and drops the rest of an object.
    fn drain_map<'de, A: MapAccess<'de>>(&self, map: &mut A) -> Result<(), A::Error> {
        while map
            .next_key_seed(KeySeed {
                token: false,
                fields: None,
                keep_name: false,
            })?
            .is_some()
        {
            let _ = map.next_value_seed(self.skip())?;
        }
        Ok(())
    }

    /// Checks the JSON text inside a [`RAW_VALUE_TOKEN`] object in place of the object.
    fn nested<E: de::Error>(self, text: &str) -> Result<Verdict, E> {
        let mut de = serde_json::Deserializer::from_str(text);
        let verdict = self.deserialize(&mut de).map_err(E::custom)?;
        de.end().map_err(E::custom)?;
        Ok(verdict)
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = Verdict;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Verdict, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'a> Visitor<'de> for Seed<'a, '_> {
    type Value = Verdict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Verdict, E> {
        Ok(self.scalar(Kind::Null, None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Verdict, E> {
        Ok(self.scalar(Kind::Bool, None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Verdict, E> {
        Ok(self.scalar(Kind::Int, None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Verdict, E> {
        Ok(self.scalar(Kind::Int, None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Verdict, E> {
        Ok(self.scalar(Kind::Float, None))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Verdict, E> {
        Ok(self.scalar(Kind::String, Some(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Verdict, A::Error> {
        let (verdict, inner) = match self.what {
            What::Skip => (Ok(()), None),
            What::SetEntry => (Err(self.set_entry_error(Kind::Array)), None),
            What::Params(_) => (Err(self.mismatch(&Type::Object, Kind::Array)), None),
            What::Value { ty, depth, null_ok } => {
                match self.resolve(ty, depth, null_ok, Kind::Array) {
                    Walked::Done(verdict) => (verdict, None),
                    Walked::Check(Type::Array(inner), depth) => (Ok(()), Some((&**inner, depth))),
                    Walked::Check(ty, _) => (self.leaf(ty, Kind::Array, None), None),
                }
            }
        };
        if let Some((inner, depth)) = inner {
            let mut i = 0;
            loop {
                let at = Path::Index(self.path, i);
                let item = self.at(
                    &at,
                    What::Value {
                        ty: inner,
                        depth: depth + 1,
                        null_ok: false,
                    },
                );
                match seq.next_element_seed(item)? {
                    None => return Ok(Ok(())),
                    Some(Ok(())) => i += 1,
                    Some(Err(e)) => {
                        while seq.next_element_seed(self.skip())?.is_some() {}
                        return Ok(Err(e));
                    }
                }
            }
        }
        while seq.next_element_seed(self.skip())?.is_some() {}
        Ok(verdict)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Verdict, A::Error> {
        let plan = match self.what {
            What::Skip | What::SetEntry => Plan::Drain(Ok(())),
            What::Params(fields) => Plan::Struct(fields, 0),
            What::Value { ty, depth, null_ok } => {
                match self.resolve(ty, depth, null_ok, Kind::Object) {
                    Walked::Done(verdict) => Plan::Drain(verdict),
                    Walked::Check(Type::Struct(fields), depth) => Plan::Struct(fields, depth + 1),
                    Walked::Check(Type::Map(inner), depth) => Plan::Map(inner, depth),
                    Walked::Check(ty, _) => Plan::Drain(self.leaf(ty, Kind::Object, None)),
                }
            }
        };
        // serde_json builds a `Value` from the text inside the token object, except for the
        // root map of the parameters (deserialized as a `Map`, not a `Value`).
        let token = !matches!(self.what, What::Params(_));
        let first = map.next_key_seed(KeySeed {
            token,
            fields: match plan {
                Plan::Struct(fields, _) => Some(fields),
                _ => None,
            },
            keep_name: !matches!(plan, Plan::Drain(_)),
        })?;
        let Some(first) = first else {
            // The empty object.
            return Ok(match plan {
                Plan::Drain(verdict) => verdict,
                Plan::Struct(fields, _) => {
                    self.fields_verdict(fields, &Bits::new(fields.len()), None, Vec::new())
                }
                Plan::Map(..) => Ok(()),
            });
        };
        if let Key::Token = first {
            let text = map.next_value_seed(StrSeed)?;
            // Any further entry is a syntax error, reported by serde_json after this returns.
            return self.nested(&text);
        }
        match plan {
            Plan::Drain(verdict) => {
                let _ = map.next_value_seed(self.skip())?;
                self.drain_map(&mut map)?;
                Ok(verdict)
            }
            Plan::Struct(fields, depth) => self.struct_entries(fields, depth, first, &mut map),
            Plan::Map(inner, depth) => self.map_entries(inner, depth, first, &mut map),
        }
    }
}

/// Which declared fields an object has; inline up to 64 fields.
enum Bits {
    Small(u64),
    Large(Vec<bool>),
}

impl Bits {
    fn new(len: usize) -> Bits {
        if len <= 64 {
            Bits::Small(0)
        } else {
            Bits::Large(vec![false; len])
        }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Bits::Small(bits) => bits & (1 << i) != 0,
            Bits::Large(bits) => bits[i],
        }
    }

    /// Sets bit `i`, returning whether it was set already.
    fn set(&mut self, i: usize) -> bool {
        match self {
            Bits::Small(bits) => {
                let was = *bits & (1 << i) != 0;
                *bits |= 1 << i;
                was
            }
            Bits::Large(bits) => std::mem::replace(&mut bits[i], true),
        }
    }
}

/// A map's keys in document order: inline for the first [`INLINE_KEYS`], then on the heap.
struct KeyList<'de> {
    inline: [Cow<'de, str>; INLINE_KEYS],
    len: usize,
    spill: Vec<Cow<'de, str>>,
}

impl<'de> KeyList<'de> {
    fn new() -> KeyList<'de> {
        KeyList {
            inline: [const { Cow::Borrowed("") }; INLINE_KEYS],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, key: Cow<'de, str>) {
        if self.len < INLINE_KEYS {
            self.inline[self.len] = key;
        } else {
            self.spill.push(key);
        }
        self.len += 1;
    }

    fn get(&self, i: usize) -> &str {
        if i < INLINE_KEYS {
            &self.inline[i]
        } else {
            &self.spill[i - INLINE_KEYS]
        }
    }

    /// The map's verdict from the errors of its entries (by entry index), as for a `Map` built
    /// from these entries: a key's last occurrence gives its value, its first one its position.
    fn first_error(&self, errors: Vec<(usize, Box<CheckError>)>) -> Verdict {
        let mut first_last: HashMap<&str, (usize, usize)> = HashMap::new();
        for i in 0..self.len {
            first_last
                .entry(self.get(i))
                .and_modify(|(_, last)| *last = i)
                .or_insert((i, i));
        }
        errors
            .into_iter()
            .filter_map(|(i, e)| {
                let (first, last) = first_last[self.get(i)];
                (last == i).then_some((first, e))
            })
            .min_by_key(|(first, _)| *first)
            .map_or(Ok(()), |(_, e)| Err(e))
    }
}
