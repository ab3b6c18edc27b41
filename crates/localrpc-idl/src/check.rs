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
//! `preserve_order` feature, which this workspace enables, sorted by key without it), then the declared fields in declaration order (missing, `null` or wrong type,
//! descending into the first wrong one).

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

/// The JSON kind of a value, as named in error reasons.
fn found(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
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
                let reason = if fields.is_empty() {
                    "undeclared field (no fields are declared)".to_string()
                } else {
                    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                    format!("undeclared field (declared: {})", names.join(", "))
                };
                let err = CheckError {
                    path: path.clone(),
                    reason,
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
