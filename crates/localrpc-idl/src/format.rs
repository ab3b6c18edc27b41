//! The canonical text form of an [`Interface`].
//!
//! [`format`] follows the layout of the varlink reference formatter (`varlink_parser` of
//! varlink/rust, whose output the Python and Go packages ship), with an 80-column limit:
//!
//! - Doc comments come first, one `# text` line each (`#` alone for an empty line), then
//!   `interface <name>`; every declaration is preceded by exactly one blank line and keeps source
//!   order. The output ends with a newline; there are no trailing commas and no trailing spaces
//!   (except those inside doc text).
//! - `type Name <body>` and `error Name <body>` are one line when that line fits in 80 columns;
//!   otherwise the body is broken. `method Name(in) -> (out)` is one line if it fits; otherwise the
//!   output list is broken if `method Name(in) -> (` fits, else the input list is broken if
//!   `) -> (out)` fits, else both are broken.
//! - A broken struct puts one field per line, indented two spaces per level, with the closing `)`
//!   at the indentation of the line that opened it. Inside it, each field stays on one line if
//!   `indent + "name: type,"` fits in 80 columns; otherwise its type is broken the same way
//!   (recursively). A broken enum puts one value per line.
//! - A struct or enum whose fields/values (at any depth) carry doc comments is always broken, since
//!   comments need their own lines; a field's doc lines precede it at the field's indentation.
//!
//! The output is a pure function of the syntax tree, and [`crate::parse`] reads it back to an equal
//! tree, so formatting is idempotent. (Doc lines containing a newline, which the parser never
//! produces, are split into several lines.)

use std::fmt;

use crate::ast::{EnumVariant, Field, Interface, Member, Type};

/// The column limit of the canonical form.
pub const MAX_WIDTH: usize = 80;

/// One indentation level.
const INDENT: usize = 2;

/// Renders `iface` in the canonical form described in the module documentation.
pub fn format(iface: &Interface) -> String {
    let mut out = String::new();
    write_doc(&mut out, &iface.doc, 0);
    out.push_str("interface ");
    out.push_str(&iface.name);
    out.push('\n');
    for member in &iface.members {
        out.push('\n');
        match member {
            Member::Type(t) => {
                write_doc(&mut out, &t.doc, 0);
                out.push_str(&decl_line("type ", &t.name, &t.ty));
            }
            Member::Error(e) => {
                write_doc(&mut out, &e.doc, 0);
                let head = format!("error {} ", e.name);
                out.push_str(&head);
                out.push_str(&list_for_line(&e.parameters, head.len()));
            }
            Member::Method(m) => {
                write_doc(&mut out, &m.doc, 0);
                out.push_str(&method_line(&m.name, &m.input, &m.output));
            }
        }
        out.push('\n');
    }
    out
}

/// `Display` renders a type on one line, as it appears in a field (`?[]string`, `(a: int)`).
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&oneline(self))
    }
}

fn write_doc(out: &mut String, doc: &[String], indent: usize) {
    for line in doc.iter().flat_map(|l| l.split('\n')) {
        push_indent(out, indent);
        if line.is_empty() {
            out.push('#');
        } else {
            out.push_str("# ");
            out.push_str(line);
        }
        out.push('\n');
    }
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// The one-line rendering of a type.
pub(crate) fn oneline(ty: &Type) -> String {
    let mut s = String::new();
    write_oneline(&mut s, ty);
    s
}

fn write_oneline(s: &mut String, ty: &Type) {
    match ty {
        Type::Bool => s.push_str("bool"),
        Type::Int => s.push_str("int"),
        Type::Float => s.push_str("float"),
        Type::String => s.push_str("string"),
        Type::Object => s.push_str("object"),
        Type::Any => s.push_str("any"),
        Type::Named(n) => s.push_str(n),
        Type::Struct(fields) => write_fields_oneline(s, fields),
        Type::Enum(variants) => {
            s.push('(');
            for (i, v) in variants.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(&v.name);
            }
            s.push(')');
        }
        Type::Array(t) => {
            s.push_str("[]");
            write_oneline(s, t);
        }
        Type::Map(t) => {
            s.push_str("[string]");
            write_oneline(s, t);
        }
        Type::Nullable(t) => {
            s.push('?');
            write_oneline(s, t);
        }
    }
}

fn write_fields_oneline(s: &mut String, fields: &[Field]) {
    s.push('(');
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&f.name);
        s.push_str(": ");
        write_oneline(s, &f.ty);
    }
    s.push(')');
}

fn fields_oneline(fields: &[Field]) -> String {
    let mut s = String::new();
    write_fields_oneline(&mut s, fields);
    s
}

/// Whether any struct field or enum value inside `ty` carries a doc comment.
fn has_docs(ty: &Type) -> bool {
    match ty {
        Type::Struct(fields) => fields_have_docs(fields),
        Type::Enum(variants) => variants.iter().any(|v| !v.doc.is_empty()),
        Type::Array(t) | Type::Map(t) | Type::Nullable(t) => has_docs(t),
        _ => false,
    }
}

fn fields_have_docs(fields: &[Field]) -> bool {
    fields.iter().any(|f| !f.doc.is_empty() || has_docs(&f.ty))
}

/// `type Name body` on one line if it fits, else with the body broken.
fn decl_line(keyword: &str, name: &str, ty: &Type) -> String {
    let head = format!("{keyword}{name} ");
    let one = oneline(ty);
    if !has_docs(ty) && width(&head) + width(&one) <= MAX_WIDTH {
        head + &one
    } else {
        head + &multiline(ty, 0)
    }
}

/// A parameter list that follows `used` columns of the same line.
fn list_for_line(fields: &[Field], used: usize) -> String {
    let one = fields_oneline(fields);
    if !fields_have_docs(fields) && used + width(&one) <= MAX_WIDTH {
        one
    } else {
        fields_multiline(fields, 0)
    }
}

fn method_line(name: &str, input: &[Field], output: &[Field]) -> String {
    let head = format!("method {name}");
    let in1 = fields_oneline(input);
    let out1 = fields_oneline(output);
    let in_ok = !fields_have_docs(input);
    let out_ok = !fields_have_docs(output);
    let head_w = width(&head);
    if in_ok && out_ok && head_w + width(&in1) + 4 + width(&out1) <= MAX_WIDTH {
        format!("{head}{in1} -> {out1}")
    } else if in_ok && (input.is_empty() || head_w + width(&in1) + 5 <= MAX_WIDTH) {
        format!("{head}{in1} -> {}", fields_multiline(output, 0))
    } else if out_ok && 5 + width(&out1) <= MAX_WIDTH {
        format!("{head}{} -> {out1}", fields_multiline(input, 0))
    } else {
        format!(
            "{head}{} -> {}",
            fields_multiline(input, 0),
            fields_multiline(output, 0)
        )
    }
}

/// The broken rendering of a type whose first line continues a line indented by `indent`.
fn multiline(ty: &Type, indent: usize) -> String {
    match ty {
        Type::Struct(fields) => fields_multiline(fields, indent),
        Type::Enum(variants) => enum_multiline(variants, indent),
        Type::Array(t) => format!("[]{}", multiline(t, indent)),
        Type::Map(t) => format!("[string]{}", multiline(t, indent)),
        Type::Nullable(t) => format!("?{}", multiline(t, indent)),
        other => oneline(other),
    }
}

fn fields_multiline(fields: &[Field], indent: usize) -> String {
    if fields.is_empty() {
        return "()".into();
    }
    let inner = indent + INDENT;
    let mut s = String::from("(\n");
    for (i, f) in fields.iter().enumerate() {
        write_doc(&mut s, &f.doc, inner);
        push_indent(&mut s, inner);
        s.push_str(&f.name);
        s.push_str(": ");
        let one = oneline(&f.ty);
        // `name: type,` at this indentation.
        let line_width = inner + width(&f.name) + ": ".len() + width(&one) + ",".len();
        if !has_docs(&f.ty) && line_width <= MAX_WIDTH {
            s.push_str(&one);
        } else {
            s.push_str(&multiline(&f.ty, inner));
        }
        if i + 1 < fields.len() {
            s.push(',');
        }
        s.push('\n');
    }
    push_indent(&mut s, indent);
    s.push(')');
    s
}

fn enum_multiline(variants: &[EnumVariant], indent: usize) -> String {
    if variants.is_empty() {
        return "()".into();
    }
    let inner = indent + INDENT;
    let mut s = String::from("(\n");
    for (i, v) in variants.iter().enumerate() {
        write_doc(&mut s, &v.doc, inner);
        push_indent(&mut s, inner);
        s.push_str(&v.name);
        if i + 1 < variants.len() {
            s.push(',');
        }
        s.push('\n');
    }
    push_indent(&mut s, indent);
    s.push(')');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn roundtrip(text: &str) -> String {
        let iface = parse(text).unwrap();
        let out = format(&iface);
        assert_eq!(parse(&out).unwrap(), iface, "re-parse of:\n{out}");
        assert_eq!(format(&parse(&out).unwrap()), out);
        out
    }

    #[test]
    fn short_declarations_stay_on_one_line() {
        let out = roundtrip(
            "interface org.example.a\ntype T(a:int,b:?[]string)\nmethod F(x:(one,two))->()\nerror E()\nerror E2(\n  a: int\n)",
        );
        assert_eq!(
            out,
            "interface org.example.a\n\ntype T (a: int, b: ?[]string)\n\nmethod F(x: (one, two)) -> ()\n\n\
             error E ()\n\nerror E2 (a: int)\n"
        );
    }

    #[test]
    fn long_method_breaks_output_first() {
        let out = roundtrip(
            "interface org.varlink.service\nmethod GetInfo() -> (vendor: string, product: string, version: string, url: string, interfaces: []string)",
        );
        assert_eq!(
            out,
            "interface org.varlink.service\n\nmethod GetInfo() -> (\n  vendor: string,\n  product: string,\n  \
             version: string,\n  url: string,\n  interfaces: []string\n)\n"
        );
    }

    #[test]
    fn long_input_breaks_input() {
        let out = roundtrip(
            "interface a.b\nmethod Test06(client_id: string, bool: bool, int: int, float: float, string: string) -> (x: int)",
        );
        assert_eq!(
            out,
            "interface a.b\n\nmethod Test06(\n  client_id: string,\n  bool: bool,\n  int: int,\n  float: float,\n  \
             string: string\n) -> (x: int)\n"
        );
    }

    #[test]
    fn nested_long_struct_breaks_recursively() {
        let long = (0..12)
            .map(|i| format!("field{i}: string"))
            .collect::<Vec<_>>()
            .join(", ");
        let out = roundtrip(&format!(
            "interface a.b\ntype T (short: (a: int), long: []({long}))"
        ));
        assert!(
            out.contains("type T (\n  short: (a: int),\n  long: [](\n    field0: string,\n"),
            "{out}"
        );
        assert!(out.contains("    field11: string\n  )\n)\n"), "{out}");
    }

    #[test]
    fn docs_force_breaks() {
        let out =
            roundtrip("interface a.b\n# T doc\ntype T (\n# a doc\na: int, b: (\n# x doc\nx, y))\n");
        assert_eq!(
            out,
            "interface a.b\n\n# T doc\ntype T (\n  # a doc\n  a: int,\n  b: (\n    # x doc\n    x,\n    y\n  )\n)\n"
        );
    }

    #[test]
    fn display_type() {
        let ty = Type::Nullable(Box::new(Type::Map(Box::new(Type::Struct(vec![])))));
        assert_eq!(ty.to_string(), "?[string]()");
    }
}
