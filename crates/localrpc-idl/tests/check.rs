//! The value checker: every type rule and path naming at depth.

use localrpc_idl::{CheckError, Interface, Type, check_parameters, check_value, parse};
use serde_json::{Value, json};

const IDL: &str = "\
interface org.example.check

type Item (name: string, count: ?int)

type Config (
  items: []Item,
  labels: [string]string,
  tags: [string](),
  mode: Mode,
  nested: ?(inner: (deep: []int))
)

type Mode (fast, slow)

method Set(text: string, config: ?Config, level: ?int) -> (ok: bool)

method Any(value: any, maybe: ?any) -> ()
";

fn iface() -> Interface {
    parse(IDL).expect("test IDL parses")
}

fn ty(src: &str) -> Type {
    // Parse a type through a throwaway method so named types resolve.
    let text = format!("{IDL}\nmethod Probe(x: {src}) -> ()\n");
    let iface = parse(&text).unwrap_or_else(|e| panic!("{src}: {e}"));
    iface.method("Probe").expect("probe").input[0].ty.clone()
}

fn check(src: &str, value: Value) -> Result<(), CheckError> {
    check_value(&iface(), &ty(src), &value)
}

fn err(path: &str, reason: &str) -> Result<(), CheckError> {
    Err(CheckError {
        path: path.into(),
        reason: reason.into(),
    })
}

#[test]
fn int() {
    assert_eq!(check("int", json!(0)), Ok(()));
    assert_eq!(check("int", json!(-5)), Ok(()));
    assert_eq!(check("int", json!(i64::MIN)), Ok(()));
    assert_eq!(check("int", json!(u64::MAX)), Ok(()));
    assert_eq!(
        check("int", json!(1.5)),
        err("", "expected int, found float")
    );
    // 1.0 is a float for serde_json: rejected.
    assert_eq!(
        check("int", json!(1.0)),
        err("", "expected int, found float")
    );
    let beyond_u64: Value = serde_json::from_str("18446744073709551616").expect("json");
    assert_eq!(
        check("int", beyond_u64),
        err("", "expected int, found float")
    );
    assert_eq!(
        check("int", json!("5")),
        err("", "expected int, found string")
    );
    assert_eq!(
        check("int", json!(null)),
        err("", "expected int, found null")
    );
}

#[test]
fn float_string_bool_object() {
    assert_eq!(check("float", json!(1.5)), Ok(()));
    assert_eq!(check("float", json!(3)), Ok(()));
    assert_eq!(check("float", json!(u64::MAX)), Ok(()));
    assert_eq!(
        check("float", json!("1.5")),
        err("", "expected float, found string")
    );
    assert_eq!(check("string", json!("")), Ok(()));
    assert_eq!(
        check("string", json!(1)),
        err("", "expected string, found int")
    );
    assert_eq!(check("bool", json!(false)), Ok(()));
    assert_eq!(check("bool", json!(0)), err("", "expected bool, found int"));
    assert_eq!(check("object", json!({})), Ok(()));
    assert_eq!(check("object", json!({"anything": [1, null]})), Ok(()));
    assert_eq!(
        check("object", json!([])),
        err("", "expected object, found array")
    );
    assert_eq!(
        check("object", json!(null)),
        err("", "expected object, found null")
    );
}

#[test]
fn any() {
    for v in [
        json!(1),
        json!("x"),
        json!([]),
        json!({}),
        json!(false),
        json!(0.5),
    ] {
        assert_eq!(check("any", v), Ok(()));
    }
    assert_eq!(
        check("any", json!(null)),
        err("", "expected any non-null value, found null")
    );
    assert_eq!(check("?any", json!(null)), Ok(()));
}

#[test]
fn nullable() {
    assert_eq!(check("?int", json!(null)), Ok(()));
    assert_eq!(check("?int", json!(3)), Ok(()));
    assert_eq!(
        check("?int", json!("3")),
        err("", "expected int, found string")
    );
    // [] and {} are not null, and must match the inner type.
    assert_eq!(check("?[]int", json!([])), Ok(()));
    assert_eq!(
        check("?[]int", json!({})),
        err("", "expected []int, found object")
    );
    assert_eq!(check("?[]?int", json!([1, null, 2])), Ok(()));
    assert_eq!(
        check("[]int", json!([1, null])),
        err("[1]", "expected int, found null")
    );
}

#[test]
fn enums() {
    assert_eq!(check("Mode", json!("fast")), Ok(()));
    assert_eq!(check("(a, b)", json!("b")), Ok(()));
    assert_eq!(
        check("Mode", json!("medium")),
        err("", "expected one of (fast, slow), found \"medium\"")
    );
    assert_eq!(
        check("Mode", json!(1)),
        err("", "expected one of (fast, slow), found int")
    );
    assert_eq!(
        check("Mode", json!("FAST")),
        err("", "expected one of (fast, slow), found \"FAST\"")
    );
}

#[test]
fn arrays_and_maps() {
    assert_eq!(check("[]string", json!(["a", "b"])), Ok(()));
    assert_eq!(
        check("[]string", json!(["a", 2])),
        err("[1]", "expected string, found int")
    );
    assert_eq!(
        check("[]string", json!("a")),
        err("", "expected []string, found string")
    );
    assert_eq!(check("[string]int", json!({"a": 1, "b": 2})), Ok(()));
    assert_eq!(
        check("[string]int", json!({"a": 1, "b": "2"})),
        err("[\"b\"]", "expected int, found string")
    );
    assert_eq!(
        check("[string]int", json!([1])),
        err("", "expected [string]int, found array")
    );
    assert_eq!(
        check("[][]int", json!([[1], [2, "x"]])),
        err("[1][1]", "expected int, found string")
    );
    // Keys are quoted as JSON strings.
    assert_eq!(
        check("[string]int", json!({"we\"ird.key": true})),
        err("[\"we\\\"ird.key\"]", "expected int, found bool")
    );
}

#[test]
fn sets() {
    assert_eq!(check("[string]()", json!({"a": {}, "b": {}})), Ok(()));
    // Lenient: any object value is accepted.
    assert_eq!(check("[string]()", json!({"a": {"x": 1}})), Ok(()));
    assert_eq!(
        check("[string]()", json!({"a": {}, "b": true})),
        err("[\"b\"]", "expected {} (set entry), found bool")
    );
    assert_eq!(
        check("[string]()", json!(["a"])),
        err("", "expected [string](), found array")
    );
}

#[test]
fn structs() {
    assert_eq!(check("Item", json!({"name": "x"})), Ok(()));
    assert_eq!(check("Item", json!({"name": "x", "count": null})), Ok(()));
    assert_eq!(check("Item", json!({"name": "x", "count": 2})), Ok(()));
    assert_eq!(
        check("Item", json!({"count": 2})),
        err("name", "missing required field (expected string)")
    );
    assert_eq!(
        check("Item", json!({"name": null})),
        err("name", "expected string, found null")
    );
    assert_eq!(
        check("Item", json!({"name": "x", "extra": 1})),
        err("extra", "undeclared field (declared: name, count)")
    );
    assert_eq!(
        check("Item", json!("x")),
        err("", "expected Item (object), found string")
    );
    assert_eq!(
        check("(a: int)", json!([])),
        err("", "expected object, found array")
    );
    assert_eq!(check("()", json!({})), Ok(()));
    assert_eq!(
        check("()", json!({"a": 1})),
        err("a", "undeclared field (no fields are declared)")
    );
}

#[test]
fn struct_check_order_is_stable() {
    // Undeclared keys come first, even when a declared field is also wrong.
    assert_eq!(
        check("Item", json!({"name": 1, "zzz": 1})),
        err("zzz", "undeclared field (declared: name, count)")
    );
    // Then declared fields in declaration order (name before count).
    assert_eq!(
        check("Item", json!({"count": "x", "name": 1})),
        err("name", "expected string, found int")
    );
    assert_eq!(
        check("Item", json!({"count": "x"})),
        err("name", "missing required field (expected string)")
    );
}

#[test]
fn paths_at_depth() {
    let config = json!({
        "items": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": 4}],
        "labels": {"key": "v"},
        "tags": {},
        "mode": "fast",
    });
    let params = json!({"text": "hi", "config": config});
    let iface = iface();
    let set = iface.method("Set").expect("Set");
    let Value::Object(map) = &params else {
        unreachable!()
    };
    assert_eq!(
        check_parameters(&iface, &set.input, map),
        err("config.items[3].name", "expected string, found int")
    );

    let mut p = params.clone();
    p["config"]["items"][3]["name"] = json!("d");
    p["config"]["labels"]["key"] = json!(5);
    let Value::Object(map) = &p else {
        unreachable!()
    };
    assert_eq!(
        check_parameters(&iface, &set.input, map),
        err("config.labels[\"key\"]", "expected string, found int")
    );

    p["config"]["labels"]["key"] = json!("ok");
    p["config"]["nested"] = json!({"inner": {"deep": [1, 2, "three"]}});
    let Value::Object(map) = &p else {
        unreachable!()
    };
    assert_eq!(
        check_parameters(&iface, &set.input, map),
        err("config.nested.inner.deep[2]", "expected int, found string")
    );

    p["config"]["nested"] = json!({"inner": {"deep": [], "bogus": 1}});
    let Value::Object(map) = &p else {
        unreachable!()
    };
    assert_eq!(
        check_parameters(&iface, &set.input, map),
        err(
            "config.nested.inner.bogus",
            "undeclared field (declared: deep)"
        )
    );

    p["config"]["nested"] = json!(null);
    p["config"]["mode"] = json!("warp");
    let Value::Object(map) = &p else {
        unreachable!()
    };
    assert_eq!(
        check_parameters(&iface, &set.input, map),
        err(
            "config.mode",
            "expected one of (fast, slow), found \"warp\""
        )
    );

    p["config"]["mode"] = json!("slow");
    let Value::Object(map) = &p else {
        unreachable!()
    };
    assert_eq!(check_parameters(&iface, &set.input, map), Ok(()));

    // Through check_value the root is the empty path.
    assert_eq!(
        check_value(
            &iface,
            &Type::Named("Config".into()),
            &json!({"items": [{}]})
        ),
        err("items[0].name", "missing required field (expected string)")
    );
}

#[test]
fn parameters() {
    let iface = iface();
    let set = iface.method("Set").expect("Set");
    let obj = |v: Value| match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    assert_eq!(
        check_parameters(&iface, &set.input, &obj(json!({"text": "x"}))),
        Ok(())
    );
    assert_eq!(
        check_parameters(
            &iface,
            &set.input,
            &obj(json!({"text": "x", "config": null, "level": null}))
        ),
        Ok(())
    );
    assert_eq!(
        check_parameters(&iface, &set.input, &obj(json!({}))),
        err("text", "missing required field (expected string)")
    );
    assert_eq!(
        check_parameters(&iface, &set.input, &obj(json!({"text": 1}))),
        err("text", "expected string, found int")
    );
    assert_eq!(
        check_parameters(&iface, &set.input, &obj(json!({"text": "x", "txt": 1}))),
        err("txt", "undeclared field (declared: text, config, level)")
    );
    assert_eq!(
        check_parameters(&iface, &set.input, &obj(json!({"text": "x", "level": 1.5}))),
        err("level", "expected int, found float")
    );
    assert_eq!(
        check_parameters(&iface, &set.output, &obj(json!({"ok": true}))),
        Ok(())
    );
    assert_eq!(
        check_parameters(&iface, &set.output, &obj(json!({}))),
        err("ok", "missing required field (expected bool)")
    );

    let any = iface.method("Any").expect("Any");
    assert_eq!(
        check_parameters(&iface, &any.input, &obj(json!({"value": 0}))),
        Ok(())
    );
    assert_eq!(
        check_parameters(&iface, &any.input, &obj(json!({}))),
        err("value", "missing required field (expected any)")
    );
    assert_eq!(
        check_parameters(&iface, &any.input, &obj(json!({"value": null}))),
        err("value", "expected any non-null value, found null")
    );

    // An empty field list accepts only an empty object.
    assert_eq!(check_parameters(&iface, &[], &obj(json!({}))), Ok(()));
    assert_eq!(
        check_parameters(&iface, &[], &obj(json!({"x": 1}))),
        err("x", "undeclared field (no fields are declared)")
    );
}

#[test]
fn display_of_check_error() {
    let e = CheckError {
        path: "config.items[3].name".into(),
        reason: "expected string, found int".into(),
    };
    assert_eq!(
        e.to_string(),
        "config.items[3].name: expected string, found int"
    );
}

#[test]
fn unknown_named_type_is_an_error_not_a_panic() {
    assert_eq!(
        check_value(&iface(), &Type::Named("Nope".into()), &json!({})),
        err("", "unknown type \"Nope\"")
    );
}

#[test]
fn deep_values_do_not_overflow() {
    // A recursive type and a value nested far deeper than serde_json would parse.
    let iface = parse("interface org.example.r\ntype Node (next: ?Node)").expect("parse");
    let mut v = json!({});
    for _ in 0..1000 {
        v = json!({ "next": v });
    }
    let r = check_value(&iface, &Type::Named("Node".into()), &v);
    assert!(
        matches!(&r, Err(e) if e.reason == "value is nested too deeply"),
        "{r:?}"
    );
    // (Much deeper Values overflow serde_json's own recursive Drop, so the test stays at 1000.)
}
