//! Prints an interface the way systemd's `sd_varlink_idl_dump()` does (what `varlinkctl
//! introspect` and `varlinkctl validate-idl` print): one field per line, tab indentation,
//! `error Name(...)` without a space, doc comments as `# text`, and colours on a terminal.
//!
//! This is deliberately not `localrpc_idl::format` (the canonical varlink.org layout, used by
//! `localrpc format`): `introspect` output is meant to equal varlinkctl's.

use localrpc_idl::{EnumVariant, Field, Interface, Member, Type};

#[derive(Clone, Copy)]
pub struct Colors {
    on: bool,
}

impl Colors {
    pub fn new(on: bool) -> Self {
        Colors { on }
    }
    fn paint(&self, out: &mut String, code: &str, text: &str) {
        if self.on {
            out.push_str(code);
            out.push_str(text);
            out.push_str("\x1b[0m");
        } else {
            out.push_str(text);
        }
    }
}

const KEYWORD: &str = "\x1b[0;1;32m";
const SYMBOL: &str = "\x1b[0;1;34m";
const FIELD: &str = "\x1b[0;1m";
const TYPE: &str = "\x1b[0;32m";
const COMMENT: &str = "\x1b[0;38;5;245m";

/// The whole interface, ending in a newline.
pub fn dump(iface: &Interface, colors: Colors) -> String {
    let mut out = String::new();
    comments(&mut out, &iface.doc, "", colors);
    colors.paint(&mut out, KEYWORD, "interface");
    out.push(' ');
    colors.paint(&mut out, SYMBOL, &iface.name);
    out.push('\n');
    for member in &iface.members {
        out.push('\n');
        match member {
            Member::Type(t) => {
                comments(&mut out, &t.doc, "", colors);
                colors.paint(&mut out, KEYWORD, "type");
                out.push(' ');
                colors.paint(&mut out, SYMBOL, &t.name);
                match &t.ty {
                    Type::Enum(values) => enum_values(&mut out, values, "", colors),
                    Type::Struct(fields) => fields_list(&mut out, fields, "", colors),
                    other => {
                        out.push(' ');
                        type_name(&mut out, other, "", colors);
                    }
                }
            }
            Member::Method(m) => {
                comments(&mut out, &m.doc, "", colors);
                colors.paint(&mut out, KEYWORD, "method");
                out.push(' ');
                colors.paint(&mut out, SYMBOL, &m.name);
                fields_list(&mut out, &m.input, "", colors);
                out.push_str(" -> ");
                fields_list(&mut out, &m.output, "", colors);
            }
            Member::Error(e) => {
                comments(&mut out, &e.doc, "", colors);
                colors.paint(&mut out, KEYWORD, "error");
                out.push(' ');
                colors.paint(&mut out, SYMBOL, &e.name);
                fields_list(&mut out, &e.parameters, "", colors);
            }
        }
        out.push('\n');
    }
    out
}

fn comments(out: &mut String, doc: &[String], indent: &str, colors: Colors) {
    for line in doc.iter().flat_map(|l| l.split('\n')) {
        out.push_str(indent);
        let text = if line.is_empty() {
            "#".to_owned()
        } else {
            format!("# {line}")
        };
        colors.paint(out, COMMENT, &text);
        out.push('\n');
    }
}

fn fields_list(out: &mut String, fields: &[Field], indent: &str, colors: Colors) {
    out.push('(');
    if fields.is_empty() {
        out.push(')');
        return;
    }
    let inner = format!("{indent}\t");
    out.push('\n');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        comments(out, &field.doc, &inner, colors);
        out.push_str(&inner);
        colors.paint(out, FIELD, &field.name);
        out.push_str(": ");
        type_name(out, &field.ty, &inner, colors);
    }
    out.push('\n');
    out.push_str(indent);
    out.push(')');
}

fn enum_values(out: &mut String, values: &[EnumVariant], indent: &str, colors: Colors) {
    out.push('(');
    if values.is_empty() {
        out.push(')');
        return;
    }
    let inner = format!("{indent}\t");
    out.push('\n');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
        }
        comments(out, &value.doc, &inner, colors);
        out.push_str(&inner);
        colors.paint(out, FIELD, &value.name);
    }
    out.push('\n');
    out.push_str(indent);
    out.push(')');
}

fn type_name(out: &mut String, ty: &Type, indent: &str, colors: Colors) {
    match ty {
        Type::Nullable(inner) => {
            colors.paint(out, TYPE, "?");
            type_name(out, inner, indent, colors);
        }
        Type::Array(inner) => {
            colors.paint(out, TYPE, "[]");
            type_name(out, inner, indent, colors);
        }
        Type::Map(inner) => {
            colors.paint(out, TYPE, "[string]");
            type_name(out, inner, indent, colors);
        }
        Type::Struct(fields) => fields_list(out, fields, indent, colors),
        Type::Enum(values) => enum_values(out, values, indent, colors),
        Type::Bool => colors.paint(out, TYPE, "bool"),
        Type::Int => colors.paint(out, TYPE, "int"),
        Type::Float => colors.paint(out, TYPE, "float"),
        Type::String => colors.paint(out, TYPE, "string"),
        Type::Object => colors.paint(out, TYPE, "object"),
        Type::Any => colors.paint(out, TYPE, "any"),
        Type::Named(name) => colors.paint(out, SYMBOL, name),
    }
}
