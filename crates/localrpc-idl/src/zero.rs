//! Zero values for missing fields: the lenient mode some peers need.
//!
//! Go's varlink server decodes parameters into structs, so a missing string is `""` and the
//! Go client sends `null` for empty arrays and maps. A service that must answer such peers the
//! way they expect (e.g. rhc parity: a call without `input` is answered as if `input` were
//! `""`) can opt into [`fill_zero_values`] before checking. Strict checking stays the default.

use serde_json::{Map, Value};

use crate::ast::{Field, Interface, Type};

/// Nesting beyond which values are left alone (the checker reports them).
const MAX_DEPTH: usize = 64;

/// Gives every missing or `null` non-nullable field whose type has an obvious zero value
/// that value: `""`, `0`, `0.0`, `false`, `[]`, `{}` (for maps, sets and `object`), and
/// recurses into structs, arrays and maps present in `params`. Fields of struct, enum or `any`
/// type have no zero value and are left for the checker to report.
pub fn fill_zero_values(iface: &Interface, fields: &[Field], params: &mut Map<String, Value>) {
    fill_struct(iface, fields, params, 0);
}

fn fill_struct(iface: &Interface, fields: &[Field], object: &mut Map<String, Value>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for field in fields {
        match object.get_mut(&field.name) {
            Some(value) if !value.is_null() => fill_value(iface, &field.ty, value, depth + 1),
            _ => {
                if let Some(zero) = zero_value(iface, &field.ty) {
                    object.insert(field.name.clone(), zero);
                }
            }
        }
    }
}

fn fill_value(iface: &Interface, ty: &Type, value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match (ty, value) {
        (Type::Named(name), value) => {
            if let Some(def) = iface.type_def(name) {
                fill_value(iface, &def.ty, value, depth + 1);
            }
        }
        (Type::Struct(fields), Value::Object(object)) => fill_struct(iface, fields, object, depth),
        (Type::Nullable(inner), value) if !value.is_null() => {
            fill_value(iface, inner, value, depth + 1)
        }
        (Type::Array(element), Value::Array(items)) => {
            for item in items {
                fill_value(iface, element, item, depth + 1);
            }
        }
        (Type::Map(element), Value::Object(entries)) => {
            for item in entries.values_mut() {
                fill_value(iface, element, item, depth + 1);
            }
        }
        _ => {}
    }
}

fn zero_value(iface: &Interface, ty: &Type) -> Option<Value> {
    match ty {
        Type::Bool => Some(Value::Bool(false)),
        Type::Int => Some(Value::from(0)),
        Type::Float => Some(Value::from(0.0)),
        Type::String => Some(Value::String(String::new())),
        Type::Array(_) => Some(Value::Array(Vec::new())),
        Type::Map(_) | Type::Object => Some(Value::Object(Map::new())),
        Type::Named(name) => match iface.type_def(name).map(|d| &d.ty) {
            Some(Type::Struct(_)) | Some(Type::Enum(_)) | None => None,
            Some(other) => zero_value(iface, other),
        },
        Type::Nullable(_) | Type::Any | Type::Struct(_) | Type::Enum(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_missing_and_null_fields_with_zero_values() {
        let iface = crate::parse(
            "interface a.b\ntype P (tags: []string, n: int)\n\
             method M(s: string, i: int, f: float, b: bool, a: []int, m: [string]int, \
             o: object, p: P, ps: []P, opt: ?string, e: (x, y)) -> ()",
        )
        .expect("parses");
        let method = iface.method("M").expect("declared");
        let mut params = json!({"a": null, "ps": [{"tags": null}], "p": {"n": 1}})
            .as_object()
            .cloned()
            .expect("object");
        fill_zero_values(&iface, &method.input, &mut params);
        assert_eq!(
            Value::Object(params),
            json!({
                "a": [], "ps": [{"tags": [], "n": 0}], "p": {"n": 1, "tags": []},
                "s": "", "i": 0, "f": 0.0, "b": false, "m": {}, "o": {}
            })
        );
    }
}
