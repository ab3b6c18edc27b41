//! Checks for IDL that is valid varlink but that systemd's sd-varlink IDL parser rejects.
//!
//! systemd reads a field type as `?` (optional), then at most one `[]` or `[string]`, then a base
//! type (`bool`, `int`, `float`, `string`, `object`, `any`, a type name or a non-empty `(...)`).
//! Hence [`systemd_lint`] reports:
//!
//! - an empty `()` used as a type, including `[string]()` (systemd: "ambiguous empty () enum/struct"),
//!   and `type Name ()`;
//! - a nullable element of an array or map (`[]?T`, `?[]?T`, `[string]?T`);
//! - a container directly inside a container (`[][]T`, `[string][]T`);
//! - an interface name containing `--` (systemd allows only single dashes).

use crate::ast::{Field, Interface, Member, Type};

/// Returns one human-readable finding per construct systemd's IDL parser would reject, each naming
/// the declaration and field (e.g. `method Test09 input "set": ...`). Empty when compatible.
pub fn systemd_lint(iface: &Interface) -> Vec<String> {
    let mut out = Vec::new();
    if iface.name.contains("--") {
        out.push(format!(
            "interface {}: the name contains \"--\"; systemd allows only single '-' inside name parts",
            iface.name
        ));
    }
    for member in &iface.members {
        match member {
            Member::Type(t) => {
                let loc = format!("type {}", t.name);
                match &t.ty {
                    Type::Struct(fields) if fields.is_empty() => out.push(format!(
                        "{loc}: an empty \"()\" type is rejected by systemd (ambiguous empty enum/struct)"
                    )),
                    Type::Struct(fields) => lint_fields(&mut out, &loc, "field", "", fields),
                    _ => {}
                }
            }
            Member::Method(m) => {
                let loc = format!("method {}", m.name);
                lint_fields(&mut out, &loc, "input", "", &m.input);
                lint_fields(&mut out, &loc, "output", "", &m.output);
            }
            Member::Error(e) => {
                lint_fields(
                    &mut out,
                    &format!("error {}", e.name),
                    "field",
                    "",
                    &e.parameters,
                );
            }
        }
    }
    out
}

fn lint_fields(out: &mut Vec<String>, loc: &str, role: &str, prefix: &str, fields: &[Field]) {
    for f in fields {
        let path = if prefix.is_empty() {
            f.name.clone()
        } else {
            format!("{prefix}.{}", f.name)
        };
        lint_field_type(out, loc, role, &path, &f.ty);
    }
}

/// Lints one field's type following systemd's `?` → container → base layout.
fn lint_field_type(out: &mut Vec<String>, loc: &str, role: &str, path: &str, ty: &Type) {
    let mut problems: Vec<&str> = Vec::new();
    let mut t = ty;
    if let Type::Nullable(inner) = t {
        t = inner;
    }
    let mut in_map = false;
    if let Type::Array(inner) | Type::Map(inner) = t {
        in_map = matches!(t, Type::Map(_));
        t = inner;
        match t {
            Type::Nullable(_) => {
                problems.push("a nullable array/map element (\"[]?T\", \"[string]?T\")")
            }
            Type::Array(_) | Type::Map(_) => {
                problems.push("an array/map directly inside an array/map")
            }
            _ => {}
        }
    }
    if matches!(t, Type::Struct(fields) if fields.is_empty()) {
        problems.push(if in_map {
            "a set \"[string]()\" (empty \"()\" is ambiguous)"
        } else {
            "an empty \"()\" type"
        });
    }
    for what in problems {
        out.push(format!(
            "{loc} {role} \"{path}\": type {ty}: {what} is rejected by systemd"
        ));
    }
    match t {
        Type::Struct(fields) => lint_fields(out, loc, role, path, fields),
        // Look further into what systemd would not even reach, so that fixing the first problem
        // does not reveal another.
        Type::Nullable(inner) | Type::Array(inner) | Type::Map(inner) => {
            lint_field_type(out, loc, role, path, inner)
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn clean_interface_has_no_findings() {
        let iface = parse(
            "interface io.systemd.Example\ntype T (a: ?[]string, b: [string]int, c: ?(x: int), d: (one, two))\n\
             method F(t: T, m: ?[string]object) -> (x: any)\nerror E ()",
        )
        .unwrap();
        assert_eq!(systemd_lint(&iface), Vec::<String>::new());
    }

    #[test]
    fn findings_name_member_and_field() {
        let iface = parse(
            "interface a--b.c\ntype Empty ()\ntype T (s: [string](), e: (), n: (deep: []?int))\n\
             method F(x: ?[]?string) -> (y: [][]int)\nerror E (z: [string]?bool)",
        )
        .unwrap();
        let found = systemd_lint(&iface);
        let expected = [
            "interface a--b.c: the name contains \"--\"; systemd allows only single '-' inside name parts",
            "type Empty: an empty \"()\" type is rejected by systemd (ambiguous empty enum/struct)",
            "type T field \"s\": type [string](): a set \"[string]()\" (empty \"()\" is ambiguous) is rejected by systemd",
            "type T field \"e\": type (): an empty \"()\" type is rejected by systemd",
            "type T field \"n.deep\": type []?int: a nullable array/map element (\"[]?T\", \"[string]?T\") is rejected by systemd",
            "method F input \"x\": type ?[]?string: a nullable array/map element (\"[]?T\", \"[string]?T\") is rejected by systemd",
            "method F output \"y\": type [][]int: an array/map directly inside an array/map is rejected by systemd",
            "error E field \"z\": type [string]?bool: a nullable array/map element (\"[]?T\", \"[string]?T\") is rejected by systemd",
        ];
        assert_eq!(found, expected);
    }
}
