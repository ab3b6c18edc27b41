//! Interfaces the generator cannot map are rejected with errors that name the file and the
//! interface; nothing panics on input.

use localrpc_build::{Config, Error};

fn generate(idl: &str) -> Result<String, Error> {
    Config::new().generate(idl, "dir/org.example.bad.varlink")
}

fn message(idl: &str) -> String {
    generate(idl).expect_err("must be rejected").to_string()
}

#[test]
fn name_collisions_are_errors_naming_file_and_interface() {
    let cases = [
        // A method's parameter struct collides with a named type.
        (
            "interface org.example.bad\ntype GetInput (a: int)\nmethod Get() -> ()\n",
            "GetInput",
        ),
        // An inline type collides with a named type.
        (
            "interface org.example.bad\ntype AB (x: int)\ntype A (b: (c: int))\n",
            "AB",
        ),
        // Two fields map to the same Rust field.
        (
            "interface org.example.bad\ntype A (fooBar: int, foo_bar: int)\n",
            "foo_bar",
        ),
        // Two enum values map to the same variant.
        (
            "interface org.example.bad\ntype A (foo_bar, fooBar)\n",
            "FooBar",
        ),
        // A type named like generated code.
        (
            "interface org.example.bad\ntype Client (x: int)\n",
            "Client",
        ),
        // Two methods need the same client function.
        (
            "interface org.example.bad\nmethod Get() -> ()\nmethod GetOneway() -> ()\n",
            "get_oneway",
        ),
    ];
    for (idl, what) in cases {
        let text = message(idl);
        assert!(
            text.starts_with("dir/org.example.bad.varlink: interface org.example.bad: "),
            "{text}"
        );
        assert!(text.contains(what), "{text} should mention {what}");
    }
}

#[test]
fn parse_errors_name_the_file() {
    let text = message("interface org.example.bad\nmethod Get( -> ()\n");
    assert!(text.starts_with("dir/org.example.bad.varlink: "), "{text}");
}

#[test]
fn configured_streaming_for_unknown_methods_is_an_error() {
    let error = Config::new()
        .streaming("org.example.bad.Nope", localrpc_build::Streaming::Requires)
        .generate(
            "interface org.example.bad\nmethod Get() -> ()\n",
            "x.varlink",
        )
        .expect_err("unknown method");
    assert!(error.to_string().contains("Nope"), "{error}");
}

#[test]
fn configured_upgrade_for_unknown_methods_is_an_error() {
    let error = Config::new()
        .upgrade("org.example.bad.Nope", localrpc_build::Upgrade::Requires)
        .generate(
            "interface org.example.bad\nmethod Get() -> ()\n",
            "x.varlink",
        )
        .expect_err("unknown method");
    assert!(error.to_string().contains("Nope"), "{error}");
}

#[test]
fn a_method_cannot_both_stream_and_upgrade() {
    let idl = "interface org.example.bad\n# [Requires 'more' flag]\nmethod Get() -> ()\n";
    let error = Config::new()
        .upgrade("org.example.bad.Get", localrpc_build::Upgrade::Supports)
        .generate(idl, "x.varlink")
        .expect_err("more and upgrade");
    let text = error.to_string();
    assert!(
        text.contains("org.example.bad") && text.contains("Get"),
        "{text}"
    );
}

#[test]
fn configured_upgrade_overrides_the_markers() {
    let idl = "interface org.example.up\nmethod Attach() -> ()\n";
    let plain = Config::new().generate(idl, "x.varlink").expect("plain");
    assert!(plain.contains("Requires::Nothing"), "{plain}");
    assert!(plain.contains("fn attach_oneway("), "{plain}");
    let upgraded = Config::new()
        .upgrade("org.example.up.Attach", localrpc_build::Upgrade::Requires)
        .generate(idl, "x.varlink")
        .expect("upgrade");
    assert!(upgraded.contains("Requires::Upgrade"), "{upgraded}");
    assert!(upgraded.contains("UpgradeHandler"), "{upgraded}");
    assert!(
        upgraded.contains("::localrpc::transport::UpgradedStream"),
        "{upgraded}"
    );
    assert!(!upgraded.contains("fn attach_oneway("), "{upgraded}");
}

#[test]
fn keywords_and_reserved_method_names_are_escaped() {
    let code = generate(
        "interface org.example.bad\ntype A (type: int, self: string, match: (a, b))\nmethod Run(type: int) -> ()\n",
    )
    .expect("generates");
    for wanted in [
        "pub r#type: i64",
        "pub self_: ",
        "rename = \"self\"",
        "pub r#match: AMatch",
        "fn run_method(",
    ] {
        assert!(code.contains(wanted), "missing {wanted:?} in:\n{code}");
    }
}

#[test]
fn compile_writes_one_file_per_interface() {
    let dir = tempfile::tempdir().expect("temp dir");
    let idl = dir.path().join("a.varlink");
    std::fs::write(&idl, "interface org.example.a-b\nmethod Get() -> ()\n").expect("write");
    let written = Config::new()
        .emit_rerun_if_changed(false)
        .compile(&[&idl], dir.path())
        .expect("compile");
    assert_eq!(written, [dir.path().join("org_example_a_b.rs")]);
    let missing = Config::new()
        .emit_rerun_if_changed(false)
        .compile(&[dir.path().join("missing.varlink")], dir.path());
    assert!(matches!(missing, Err(Error::Read { .. })));
}
