//! Validation of JSON values against varlink types.
//!
//! [`check_value`] and [`check_parameters`] report the *first* offending place as a [`CheckError`]
//! whose `path` names it and whose `reason` says what was expected and what was found.
//!
//! # Rules
//!
//! - `int`: a JSON integer that fits `i64` or `u64`. Numbers with a fraction or an exponent (`1.5`,
//!   `1.0`, `1e3`) are floats in serde_json and are rejected.
//! - `float`: any JSON number. `string`, `bool`: the JSON kind. `object`: any JSON object.
//! - `any`: any JSON value except `null`.
//! - struct (inline or named): an object whose keys are all declared, with every non-nullable field
//!   present and not `null`; nullable (`?T`) fields may be absent or `null`.
//! - enum: a string equal to one of the values.
//! - `[]T`: an array whose elements are `T`; `[string]T`: an object whose values are `T`.
//! - `[string]()` (a set): an object whose values are objects (their content is not checked, as
//!   the Python and Go implementations only look at the keys).
//!
//! Reasons read `expected int, found string`, `expected one of (a, b), found "c"`,
//! `expected Item (object), found array`, `missing required field (expected string)`,
//! `undeclared field (declared: a, b)` or `expected any non-null value, found null`.
//!
//! # Paths and order
//!
//! Paths are dotted with indexes: `config.items[3].name`; map keys are written as JSON strings:
//! `labels["key"]`. A top-level parameter is just its name (`text`); the value given to
//! [`check_value`] itself is the empty path. For an object checked against a struct, undeclared
//! keys are reported first (in the map's iteration order: insertion order with serde_json's
//! `preserve_order` feature, which this workspace enables, sorted by key without it), then the
//! declared fields in declaration order (missing, `null` or wrong type, descending into the first
//! wrong one). A duplicate key keeps its first position and takes its last value (what
//! serde_json's `Map` does with `preserve_order`).
//!
//! # On JSON text
//!
//! [`check_value_str`] and [`check_parameters_str`] check JSON text (for parameters: an object,
//! or `null` for none) with no `Value` and, on valid ordinary input, no allocation. Most valid
//! text is accepted by a hand-written scanner that never allocates; anything else goes through
//! one streaming pass of `serde_json::Deserializer` (strings are borrowed; escapes use
//! serde_json's scratch buffer, a map key with escapes is copied, a map of more than 16 entries
//! keeps its keys on the heap). They give exactly the verdict, path and reason of
//! `serde_json::from_str` into a `Map` (a `Value` for [`check_value_str`]) followed by
//! [`check_parameters`] ([`check_value`]): each object remembers its first undeclared key and the
//! last occurrence's verdict of each declared field or map key, and applies the order above at
//! its end; duplicates mean what they mean in the `Map`, and serde_json's raw-value token (an
//! object whose first key is `$serde_json::private::RawValue` stands for the JSON in its string)
//! is honoured where `Value` honours it. Struct field names are assumed unique, as
//! [`parse`](crate::parse) ensures. Text serde_json would not parse (syntax, trailing characters,
//! nesting beyond 128) gives the empty path and a reason starting with `invalid JSON`; parameters
//! that are neither an object nor `null` give `expected object, found ...`.
//!
//! # Who does what
//!
//! - This module: the tree checker ([`check_value`], [`check_parameters`]), the entry points on
//!   text, and the type walk of the streaming checker ([`resolve`], [`leaf_accepts`]).
//! - `fast`: the scanner, which only ever *accepts*: values (nested or not) whose keys and enum
//!   values have no escapes and whose other strings have only escapes serde_json takes, ordinary
//!   numbers, structs without duplicate keys. It walks the type as the tree checker does, with
//!   its own code, shaped for the common case. Anything else, and every error, makes it give up,
//!   and the text goes to `stream` from the start.
//! - `stream`: the complete checker on text, a serde_json streaming pass that owns every error,
//!   path and reason.

pub(crate) mod fast;
pub(crate) mod stream;

use serde_json::{Map, Value};

use crate::ast::{Field, Interface, Type};

/// Maximum nesting the checker descends before giving up (values parsed by serde_json are limited
/// to 128 levels anyway).
const MAX_CHECK_DEPTH: usize = 512;

/// A value does not match its type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CheckError {
    /// Where: `name`, `config.items[3].name`, `labels["key"]`; empty for the checked value itself.
    pub path: String,
    /// What was expected and what was found, e.g. `expected int, found string`.
    pub reason: String,
}

/// Checks `value` against `ty`, resolving named types through `iface`.
pub fn check_value(iface: &Interface, ty: &Type, value: &Value) -> Result<(), CheckError> {
    let mut path = String::new();
    Checker { iface }.value(ty, value, &mut path, 0)
}

/// Checks a method's input or output parameters (or an error's parameters) against `fields`:
/// undeclared keys, missing non-nullable fields, `null` in non-nullable fields and type mismatches.
pub fn check_parameters(
    iface: &Interface,
    fields: &[Field],
    params: &Map<String, Value>,
) -> Result<(), CheckError> {
    let mut path = String::new();
    Checker { iface }.object(fields, params, &mut path, 0)
}

/// Like [`check_value`], on JSON text, without building a `Value`.
///
/// Text that is not one JSON value (a syntax error, trailing characters, nesting beyond
/// serde_json's limit of 128) gives a [`CheckError`] with an empty path and a reason starting
/// with `invalid JSON`.
#[inline] // the fast path's call, inlined into the caller
pub fn check_value_str(iface: &Interface, ty: &Type, json: &str) -> Result<(), CheckError> {
    // Most valid text is accepted by the fast scanner; the rest (and every error) is decided by
    // the streaming checker, from the start.
    if fast::accepts_value(iface, ty, json) {
        return Ok(());
    }
    stream::check_value_str(iface, ty, json)
}

/// Like [`check_parameters`], on the parameters' JSON text: an object, or `null` meaning the
/// empty object. Another kind of value gives an error with the empty path (`expected object,
/// found array`); text that is not JSON gives an error as in [`check_value_str`].
#[inline] // the fast path's call, inlined into the caller
pub fn check_parameters_str(
    iface: &Interface,
    fields: &[Field],
    json: &str,
) -> Result<(), CheckError> {
    if fast::accepts_parameters(iface, fields, json) {
        return Ok(());
    }
    stream::check_parameters_str(iface, fields, json)
}

/// The fast half of [`check_parameters_str`] for parameters followed by other text (a call
/// message's own keys, say): if `json` starts with an object (no whitespace before it) that is
/// surely valid parameters for `fields`, the length of that object's text, so that
/// `check_parameters_str(iface, fields, &json[..len])` is `Ok`. Nothing after the object is
/// read. `None` says nothing about validity: ask [`check_parameters_str`] on the object's text.
#[inline] // one call of the scanner, inlined into the caller
pub fn accepts_parameters_prefix(iface: &Interface, fields: &[Field], json: &str) -> Option<usize> {
    fast::parameters_end(iface, fields, json)
}

/// The JSON kind of a value: `int` is a number that serde_json parsed as an `i64` or `u64`,
/// `float` any other number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    String,
    Array,
    Object,
}

impl Kind {
    fn of(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Int,
            Value::Number(_) => Kind::Float,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }

    /// As named in error reasons.
    fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
        }
    }
}

/// The JSON kind of a value, as named in error reasons.
fn found(value: &Value) -> &'static str {
    Kind::of(value).name()
}

/// The reason given for a key that `fields` do not declare.
fn undeclared_reason(fields: &[Field]) -> String {
    if fields.is_empty() {
        "undeclared field (no fields are declared)".to_string()
    } else {
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        format!("undeclared field (declared: {})", names.join(", "))
    }
}

/// The outcome of walking `?T`, named types and `any` for a value of a known kind, as the tree
/// checker does (for the streaming checker, which knows the kind before the value is complete).
enum Resolved<'a> {
    /// Accepted without looking further (the content of a container is still to be parsed).
    Accept,
    /// Rejected, for this reason.
    Reject(Rejection<'a>),
    /// A type that is none of nullable, named or `any`, at this tree-checker depth.
    Check(&'a Type, usize),
}

/// Why [`resolve`] rejected a value.
enum Rejection<'a> {
    TooDeep,
    NullForAny,
    /// A named struct type, for a value that is not an object.
    NotObject(&'a str),
    Unknown(&'a str),
}

impl Rejection<'_> {
    fn reason(&self, kind: Kind) -> String {
        match self {
            Rejection::TooDeep => "value is nested too deeply".into(),
            Rejection::NullForAny => "expected any non-null value, found null".into(),
            Rejection::NotObject(name) => {
                format!("expected {name} (object), found {}", kind.name())
            }
            Rejection::Unknown(name) => format!("unknown type \"{name}\""),
        }
    }
}

/// Walks `?T`, named types and `any` for a value of `kind` at tree-checker `depth`.
/// `null_ok`: a struct field of a nullable type, for which `null` is accepted before the depth
/// is looked at.
#[inline] // mostly a single step
fn resolve<'a>(
    iface: &'a Interface,
    mut ty: &'a Type,
    mut depth: usize,
    null_ok: bool,
    kind: Kind,
) -> Resolved<'a> {
    if null_ok && kind == Kind::Null {
        return Resolved::Accept;
    }
    loop {
        if depth > MAX_CHECK_DEPTH {
            return Resolved::Reject(Rejection::TooDeep);
        }
        match ty {
            Type::Nullable(inner) => {
                if kind == Kind::Null {
                    return Resolved::Accept;
                }
                ty = inner;
                depth += 1;
            }
            Type::Any if kind == Kind::Null => return Resolved::Reject(Rejection::NullForAny),
            Type::Any => return Resolved::Accept,
            Type::Named(name) => match iface.type_def(name) {
                Some(def) if matches!(def.ty, Type::Struct(_)) && kind != Kind::Object => {
                    return Resolved::Reject(Rejection::NotObject(name));
                }
                Some(def) => {
                    ty = &def.ty;
                    depth += 1;
                }
                None => return Resolved::Reject(Rejection::Unknown(name)),
            },
            _ => return Resolved::Check(ty, depth),
        }
    }
}

/// Whether a value of `kind` (`s`: the string's bytes, if it is one) matches a type [`resolve`]
/// returned, as far as can be told without descending (containers: the kind only).
#[inline]
fn leaf_accepts(ty: &Type, kind: Kind, s: Option<&[u8]>) -> bool {
    match ty {
        Type::Bool => kind == Kind::Bool,
        Type::Int => kind == Kind::Int,
        Type::Float => matches!(kind, Kind::Int | Kind::Float),
        Type::String => kind == Kind::String,
        Type::Object | Type::Struct(_) | Type::Map(_) => kind == Kind::Object,
        Type::Array(_) => kind == Kind::Array,
        Type::Enum(variants) => s.is_some_and(|s| variants.iter().any(|v| v.name.as_bytes() == s)),
        Type::Nullable(_) | Type::Any | Type::Named(_) => false,
    }
}

/// How an expected type is named in error reasons.
fn expected(ty: &Type) -> String {
    match ty {
        Type::Struct(_) => "object".into(),
        Type::Enum(variants) => {
            let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
            format!("one of ({})", names.join(", "))
        }
        other => other.to_string(),
    }
}

fn mismatch(path: &str, ty: &Type, value: &Value) -> CheckError {
    CheckError {
        path: path.to_string(),
        reason: format!("expected {}, found {}", expected(ty), found(value)),
    }
}

struct Checker<'a> {
    iface: &'a Interface,
}

/// Appends `.name` (or `name` at the root) to `path`, returning the previous length.
fn push_field(path: &mut String, name: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
    len
}

impl Checker<'_> {
    fn value(
        &self,
        ty: &Type,
        value: &Value,
        path: &mut String,
        depth: usize,
    ) -> Result<(), CheckError> {
        if depth > MAX_CHECK_DEPTH {
            return Err(CheckError {
                path: path.clone(),
                reason: "value is nested too deeply".into(),
            });
        }
        let ok = match ty {
            Type::Nullable(inner) => {
                return if value.is_null() {
                    Ok(())
                } else {
                    self.value(inner, value, path, depth + 1)
                };
            }
            Type::Bool => value.is_boolean(),
            Type::Int => matches!(value, Value::Number(n) if n.is_i64() || n.is_u64()),
            Type::Float => value.is_number(),
            Type::String => value.is_string(),
            Type::Object => value.is_object(),
            Type::Any => {
                if value.is_null() {
                    return Err(CheckError {
                        path: path.clone(),
                        reason: "expected any non-null value, found null".into(),
                    });
                }
                true
            }
            Type::Named(name) => {
                return match self.iface.type_def(name) {
                    Some(def) if matches!(def.ty, Type::Struct(_)) && !value.is_object() => {
                        Err(CheckError {
                            path: path.clone(),
                            reason: format!("expected {name} (object), found {}", found(value)),
                        })
                    }
                    Some(def) => self.value(&def.ty, value, path, depth + 1),
                    None => Err(CheckError {
                        path: path.clone(),
                        reason: format!("unknown type \"{name}\""),
                    }),
                };
            }
            Type::Struct(fields) => {
                return match value {
                    Value::Object(map) => self.object(fields, map, path, depth + 1),
                    _ => Err(mismatch(path, ty, value)),
                };
            }
            Type::Enum(variants) => {
                if let Value::String(s) = value {
                    if variants.iter().any(|v| v.name == *s) {
                        return Ok(());
                    }
                    let quoted = serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"));
                    return Err(CheckError {
                        path: path.clone(),
                        reason: format!("expected {}, found {quoted}", expected(ty)),
                    });
                }
                false
            }
            Type::Array(inner) => {
                let Value::Array(items) = value else {
                    return Err(mismatch(path, ty, value));
                };
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.value(inner, item, path, depth + 1)?;
                    path.truncate(len);
                }
                return Ok(());
            }
            Type::Map(inner) => {
                let Value::Object(map) = value else {
                    return Err(mismatch(path, ty, value));
                };
                let is_set = matches!(&**inner, Type::Struct(f) if f.is_empty());
                for (key, item) in map {
                    let len = path.len();
                    let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"));
                    path.push('[');
                    path.push_str(&quoted);
                    path.push(']');
                    if is_set {
                        if !item.is_object() {
                            return Err(CheckError {
                                path: path.clone(),
                                reason: format!("expected {{}} (set entry), found {}", found(item)),
                            });
                        }
                    } else {
                        self.value(inner, item, path, depth + 1)?;
                    }
                    path.truncate(len);
                }
                return Ok(());
            }
        };
        if ok {
            Ok(())
        } else {
            Err(mismatch(path, ty, value))
        }
    }

    fn object(
        &self,
        fields: &[Field],
        map: &Map<String, Value>,
        path: &mut String,
        depth: usize,
    ) -> Result<(), CheckError> {
        for key in map.keys() {
            if !fields.iter().any(|f| f.name == *key) {
                let len = push_field(path, key);
                let err = CheckError {
                    path: path.clone(),
                    reason: undeclared_reason(fields),
                };
                path.truncate(len);
                return Err(err);
            }
        }
        for field in fields {
            let nullable = matches!(field.ty, Type::Nullable(_));
            let len = push_field(path, &field.name);
            match map.get(&field.name) {
                None | Some(Value::Null) if nullable => {}
                None => {
                    return Err(CheckError {
                        path: path.clone(),
                        reason: format!(
                            "missing required field (expected {})",
                            expected(&field.ty)
                        ),
                    });
                }
                Some(v) => self.value(&field.ty, v, path, depth + 1)?,
            }
            path.truncate(len);
        }
        Ok(())
    }
}
