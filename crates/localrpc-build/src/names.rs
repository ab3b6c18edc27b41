//! How varlink names become Rust names: snake_case fields and functions, UpperCamelCase
//! types and variants, escaped keywords, and the file name of each interface.

use heck::{ToSnakeCase, ToUpperCamelCase};

/// Rust keywords (strict and reserved, all editions) that cannot be used as plain identifiers.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "Self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "union", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Keywords that cannot even be raw identifiers; they get a trailing underscore instead.
const NOT_RAW: &[&str] = &["crate", "self", "Self", "super"];

/// A snake_case Rust identifier for a varlink field or method (`clientId` → `client_id`),
/// written `r#type` for keywords, or `self_` where a raw identifier is not allowed.
pub(crate) fn snake_ident(name: &str) -> String {
    escape(name.to_snake_case())
}

/// An UpperCamelCase Rust identifier (`foo_bar` → `FooBar`); `Self` becomes `SelfValue`.
pub(crate) fn camel_ident(name: &str) -> String {
    let camel = name.to_upper_camel_case();
    if camel == "Self" {
        "SelfValue".to_owned()
    } else {
        camel
    }
}

fn escape(ident: String) -> String {
    if NOT_RAW.contains(&ident.as_str()) {
        format!("{ident}_")
    } else if KEYWORDS.contains(&ident.as_str()) {
        format!("r#{ident}")
    } else {
        ident
    }
}

/// The identifier without a leading `r#`, for building longer names (`r#type` → `type`).
pub(crate) fn unraw(ident: &str) -> &str {
    ident.strip_prefix("r#").unwrap_or(ident)
}

/// The file written for an interface: `org.varlink.certification` →
/// `org_varlink_certification.rs`.
pub fn file_name(interface: &str) -> String {
    format!("{}.rs", interface.replace(['.', '-'], "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents() {
        assert_eq!(snake_ident("clientId"), "client_id");
        assert_eq!(snake_ident("client_id"), "client_id");
        assert_eq!(snake_ident("type"), "r#type");
        assert_eq!(snake_ident("self"), "self_");
        assert_eq!(camel_ident("nullable_array_struct"), "NullableArrayStruct");
        assert_eq!(camel_ident("self"), "SelfValue");
        assert_eq!(unraw("r#type"), "type");
        assert_eq!(
            file_name("io.systemd.SysUpdate.Notify"),
            "io_systemd_SysUpdate_Notify.rs"
        );
    }
}
