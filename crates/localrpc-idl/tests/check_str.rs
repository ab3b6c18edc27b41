//! The checker on JSON text: hand-written cases for the order of reports, escaped keys,
//! duplicates, invalid text and depth, each compared with the checker on the parsed value; the
//! streaming checker alone must agree too, and the fast scanner may accept only valid text.

use localrpc_idl::{
    __check_str, CheckError, Field, Interface, Type, check_parameters, check_parameters_str,
    check_value, check_value_str, parse,
};
use serde_json::{Map, Value};

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

method Echo(text: string) -> (text: string)

method Counts(counts: [string]int) -> ()
";

fn iface() -> Interface {
    parse(IDL).expect("test IDL parses")
}

fn input(iface: &Interface, method: &str) -> Vec<Field> {
    iface.method(method).expect("method").input.clone()
}

fn err(path: &str, reason: &str) -> Result<(), CheckError> {
    Err(CheckError {
        path: path.into(),
        reason: reason.into(),
    })
}

/// `check_parameters_str` on `text`, asserted equal to parse-then-`check_parameters` (and to
/// the streaming checker alone; the fast scanner accepts only if that is `Ok`).
fn params(method: &str, text: &str) -> Result<(), CheckError> {
    let iface = iface();
    let fields = input(&iface, method);
    let got = check_parameters_str(&iface, &fields, text);
    assert_eq!(
        got,
        __check_str::check_parameters_str(&iface, &fields, text),
        "{text}"
    );
    if __check_str::accepts_parameters(&iface, &fields, text) {
        assert_eq!(got, Ok(()), "the fast scanner accepts {text}");
    }
    // `null` means no parameters.
    let parsed = match serde_json::from_str::<Value>(text) {
        Ok(Value::Null) => Ok(Map::new()),
        _ => serde_json::from_str::<Map<String, Value>>(text),
    };
    match parsed {
        Ok(map) => assert_eq!(got, check_parameters(&iface, &fields, &map), "{text}"),
        Err(_) => assert!(is_invalid(&got), "{text}: {got:?}"),
    }
    got
}

/// `check_value_str` on `text`, asserted equal to parse-then-`check_value` (and to the streaming
/// checker alone; the fast scanner accepts only if that is `Ok`).
fn value(iface: &Interface, ty: &Type, text: &str) -> Result<(), CheckError> {
    let got = check_value_str(iface, ty, text);
    assert_eq!(got, __check_str::check_value_str(iface, ty, text), "{text}");
    if __check_str::accepts_value(iface, ty, text) {
        assert_eq!(got, Ok(()), "the fast scanner accepts {text}");
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) => assert_eq!(got, check_value(iface, ty, &v), "{text}"),
        Err(_) => assert!(is_invalid(&got), "{text}: {got:?}"),
    }
    got
}

/// Whether the fast scanner decides `text` for `ty` on its own.
fn fast(ty: &Type, text: &str) -> bool {
    __check_str::accepts_value(&iface(), ty, text)
}

fn named(name: &str) -> Type {
    Type::Named(name.into())
}

fn is_invalid(result: &Result<(), CheckError>) -> bool {
    matches!(result, Err(e) if e.path.is_empty() && e.reason.starts_with("invalid JSON"))
}

#[test]
fn valid_parameters() {
    assert_eq!(params("Echo", r#"{"text":"hello"}"#), Ok(()));
    assert_eq!(
        params(
            "Set",
            r#"{"level": 3, "config": {"mode": "slow", "tags": {"a": {}},
                "labels": {"k": "v"}, "items": [{"name": "x", "count": null}],
                "nested": {"inner": {"deep": [1, -2, 18446744073709551615]}}}, "text": ""}"#
        ),
        Ok(())
    );
}

#[test]
fn undeclared_keys_come_first_in_document_order() {
    // The bad declared field comes first in the text, the undeclared key still wins.
    assert_eq!(
        params("Echo", r#"{"text": 1, "zzz": 1, "yyy": 2}"#),
        err("zzz", "undeclared field (declared: text)")
    );
    assert_eq!(
        params("Echo", r#"{"yyy": 2, "text": 1, "zzz": 1}"#),
        err("yyy", "undeclared field (declared: text)")
    );
    // Also an undeclared key after a missing field.
    assert_eq!(
        params("Set", r#"{"level": 1, "zzz": 1}"#),
        err("zzz", "undeclared field (declared: text, config, level)")
    );
    // And deep inside: the nested undeclared key wins over an earlier bad sibling field.
    assert_eq!(
        value(
            &iface(),
            &named("Item"),
            r#"{"count": "x", "name": 1, "extra": true}"#
        ),
        err("extra", "undeclared field (declared: name, count)")
    );
}

#[test]
fn declared_fields_in_declaration_order() {
    // count is wrong first in the text, but name is declared first.
    assert_eq!(
        value(&iface(), &named("Item"), r#"{"count": "x", "name": 1}"#),
        err("name", "expected string, found int")
    );
    // A missing field before a wrong one in declaration order.
    assert_eq!(
        value(&iface(), &named("Item"), r#"{"count": "x"}"#),
        err("name", "missing required field (expected string)")
    );
    // A wrong field before a missing one.
    assert_eq!(
        params("Set", r#"{"level": "x"}"#),
        err("text", "missing required field (expected string)")
    );
    assert_eq!(
        params("Set", r#"{"level": "x", "text": "t"}"#),
        err("level", "expected int, found string")
    );
    // Descending into the first wrong field only, wherever the others are.
    assert_eq!(
        params(
            "Set",
            r#"{"level": 1.5, "config": {"mode": "warp", "items": [{"name": 1}]}, "text": "t"}"#
        ),
        err("config.items[0].name", "expected string, found int")
    );
    // Within an array the first wrong element wins.
    assert_eq!(
        params(
            "Set",
            r#"{"text": "t", "config": {"items": [{"name": "a"}, {"count": 1}, {"name": 2}],
                "labels": {}, "tags": {}, "mode": "fast"}}"#
        ),
        err(
            "config.items[1].name",
            "missing required field (expected string)"
        )
    );
}

#[test]
fn escaped_keys_and_strings() {
    assert_eq!(
        value(&iface(), &named("Item"), r#"{"na\u006de": 1}"#),
        err("name", "expected string, found int")
    );
    assert_eq!(
        value(&iface(), &named("Item"), r#"{"na\u006de": "\u0078"}"#),
        Ok(())
    );
    assert_eq!(
        value(
            &iface(),
            &named("Item"),
            r#"{"name": "x", "e\u0078tra": 1}"#
        ),
        err("extra", "undeclared field (declared: name, count)")
    );
    assert_eq!(value(&iface(), &named("Mode"), r#""f\u0061st""#), Ok(()));
    assert_eq!(
        value(&iface(), &named("Mode"), r#""f\u0061st\n""#),
        err("", "expected one of (fast, slow), found \"fast\\n\"")
    );
    // Map keys are unescaped, then quoted as JSON in the path.
    assert_eq!(
        params(
            "Counts",
            r#"{"counts": {"k\u00e9y": 1, "\ud83d\ude00\"": "x"}}"#
        ),
        err("counts[\"😀\\\"\"]", "expected int, found string")
    );
}

#[test]
fn duplicate_keys_take_the_last_value_at_the_first_position() {
    assert_eq!(params("Echo", r#"{"text": 1, "text": "x"}"#), Ok(()));
    assert_eq!(
        params("Echo", r#"{"text": "x", "text": 1}"#),
        err("text", "expected string, found int")
    );
    assert_eq!(params("Echo", r#"{"te\u0078t": 1, "text": "x"}"#), Ok(()));
    // A fixed duplicate lets the next error in declaration order through.
    assert_eq!(
        params("Set", r#"{"text": 1, "level": "x", "text": "x"}"#),
        err("level", "expected int, found string")
    );
    // In a map: the last value counts, at the position of the first occurrence.
    assert_eq!(
        params(
            "Counts",
            r#"{"counts": {"b": 1, "a": 1, "a": "x", "b": "x"}}"#
        ),
        err("counts[\"b\"]", "expected int, found string")
    );
    assert_eq!(
        params("Counts", r#"{"counts": {"a": "x", "b": "y", "a": 1}}"#),
        err("counts[\"b\"]", "expected int, found string")
    );
    assert_eq!(
        params("Counts", r#"{"counts": {"a": "x", "a": 1}}"#),
        Ok(())
    );
    // More keys than are kept inline.
    let mut entries: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
    entries[3] = "\"k3\": \"bad\"".into();
    entries.push("\"k3\": 3".into());
    entries[30] = "\"k30\": null".into();
    let text = format!("{{\"counts\": {{{}}}}}", entries.join(", "));
    assert_eq!(
        params("Counts", &text),
        err("counts[\"k30\"]", "expected int, found null")
    );
    entries.push("\"k20\": []".into());
    let text = format!("{{\"counts\": {{{}}}}}", entries.join(", "));
    assert_eq!(
        params("Counts", &text),
        err("counts[\"k20\"]", "expected int, found array")
    );
}

#[test]
fn numbers_as_serde_json_classifies_them() {
    let iface = iface();
    for (text, found) in [
        ("0", None),
        ("-9223372036854775808", None),
        ("18446744073709551615", None),
        ("1.0", Some("float")),
        ("-0", Some("float")),
        ("1e3", Some("float")),
        ("18446744073709551616", Some("float")),
        ("-9223372036854775809", Some("float")),
        ("\"1\"", Some("string")),
    ] {
        let expected = match found {
            None => Ok(()),
            Some(kind) => err("", &format!("expected int, found {kind}")),
        };
        assert_eq!(value(&iface, &Type::Int, text), expected, "{text}");
        assert_eq!(
            value(&iface, &Type::Float, text).is_ok(),
            found != Some("string")
        );
    }
    assert!(is_invalid(&value(&iface, &Type::Float, "1e400")));
}

#[test]
fn parameters_null_and_other_kinds() {
    assert_eq!(
        params("Echo", "null"),
        err("text", "missing required field (expected string)")
    );
    let iface = iface();
    assert_eq!(check_parameters_str(&iface, &[], " null "), Ok(()));
    assert_eq!(
        check_parameters_str(&iface, &[], "[]"),
        err("", "expected object, found array")
    );
    assert_eq!(
        check_parameters_str(&iface, &[], "\"x\""),
        err("", "expected object, found string")
    );
    // A syntax error after the kind is known still makes the text invalid.
    assert!(is_invalid(&check_parameters_str(&iface, &[], "[1,]")));
}

#[test]
fn invalid_json() {
    for text in [
        "",
        "{",
        "{\"text\": \"x\"",
        "{\"text\": \"x\"} x",
        "{\"text\": \"x\"}}",
        "{\"text\": \"x\",}",
        "{\"text\": 'x'}",
        "{\"text\": \"\\ud800\"}",
        "{\"text\": \"tab\there\"}",
        "{\"text\": 01}",
        // After a decided error, the rest is still parsed.
        "{\"zzz\": 1, \"text\": [1, 2,]}",
        "{\"text\": 1, \"text\": \"\\x\"}",
        // Also where the value is only parsed, not checked (serde_json's ignore path would
        // accept a lone surrogate).
        "{\"zzz\": \"\\ud800\"}",
        "{\"zzz\": 1, \"text\": \"\\udc00\"}",
        "{\"text\": [\"\\ud800\"]}",
    ] {
        assert!(is_invalid(&params("Echo", text)), "{text}");
    }
    // serde_json's recursion limit.
    let iface = iface();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(is_invalid(&value(&iface, &Type::Any, &deep)));
    let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert_eq!(value(&iface, &Type::Any, &ok), Ok(()));
}

#[test]
fn sets_maps_any_object() {
    let iface = iface();
    let set = Type::Map(Box::new(Type::Struct(vec![])));
    assert_eq!(value(&iface, &set, r#"{"a": {}, "b": {"x": [1]}}"#), Ok(()));
    assert_eq!(
        value(&iface, &set, r#"{"a": {}, "b": true, "a": 1}"#),
        err("[\"a\"]", "expected {} (set entry), found int")
    );
    assert_eq!(
        value(&iface, &Type::Any, "null"),
        err("", "expected any non-null value, found null")
    );
    assert_eq!(value(&iface, &Type::Any, "[null]"), Ok(()));
    assert_eq!(
        value(&iface, &Type::Object, "[]"),
        err("", "expected object, found array")
    );
    assert_eq!(
        value(&iface, &named("Nope"), "{}"),
        err("", "unknown type \"Nope\"")
    );
}

#[test]
fn serde_json_raw_value_token() {
    // serde_json (raw_value feature) builds a `Value` from the JSON text in the string of an
    // object whose first key is this token; the checker on text does the same.
    let iface = iface();
    let token = "$serde_json::private::RawValue";
    assert_eq!(
        value(&iface, &Type::Int, &format!(r#"{{"{token}": "5"}}"#)),
        Ok(())
    );
    assert_eq!(
        value(&iface, &Type::Object, &format!(r#"{{"{token}": "[1]"}}"#)),
        err("", "expected object, found array")
    );
    assert_eq!(
        params(
            "Echo",
            &format!(r#"{{"text": {{"{token}": "{{\"{token}\": \"\\\"hi\\\"\"}}"}}}}"#)
        ),
        Ok(())
    );
    // Not at the root of the parameters, which is a `Map`.
    assert_eq!(
        params("Echo", &format!(r#"{{"{token}": "{{}}"}}"#)),
        err(token, "undeclared field (declared: text)")
    );
    // Not as a later key.
    assert_eq!(
        value(
            &iface,
            &Type::Int,
            &format!(r#"{{"a": 1, "{token}": "5"}}"#)
        ),
        err("", "expected int, found object")
    );
    for bad in [
        format!(r#"{{"{token}": 5}}"#),
        format!(r#"{{"{token}": "5", "a": 1}}"#),
        format!(r#"{{"{token}": "[1,"}}"#),
        format!(r#"{{"{token}": "5 5"}}"#),
    ] {
        assert!(is_invalid(&value(&iface, &Type::Int, &bad)), "{bad}");
    }
}

#[test]
fn fast_scanner_takes_the_common_shapes() {
    let iface = iface();
    for (method, text) in [
        ("Echo", r#"{"text":"hello"}"#),
        ("Echo", " {\t\"text\" :\r\n \"héllo 😀\" } \n"),
        (
            "Set",
            r#"{"level": null, "text": "", "config": {"mode": "fast", "tags": {"a": {"b": [1]}},
                "labels": {}, "items": [{"count": -9223372036854775808, "name": "x"}]}}"#,
        ),
    ] {
        assert_eq!(params(method, text), Ok(()), "{text}");
        let fields = input(&iface, method);
        assert!(
            __check_str::accepts_parameters(&iface, &fields, text),
            "{text}"
        );
    }
    assert!(__check_str::accepts_parameters(&iface, &[], "null"));
    let long = format!(r#"{{"text": "{}"}}"#, "long text ".repeat(100));
    assert!(__check_str::accepts_parameters(
        &iface,
        &input(&iface, "Echo"),
        &long
    ));
    for (ty, text) in [
        (Type::Int, "0"),
        (Type::Int, "-7"),
        (Type::Int, "18446744073709551615"),
        (Type::Float, "-0"),
        (Type::Float, "1.5e-07"),
        (Type::Float, "18446744073709551616"),
        (Type::Any, r#"[{"a": [true, false, null]}, "x", 1E+2]"#),
        (Type::Object, r#"{"a": {}, "a": 1}"#),
        // Escapes in string values, whose content does not matter.
        (Type::String, r#""esc\naped""#),
        (Type::String, r#""\"\\\/\b\f\n\r\t""#),
        (Type::String, r#""\u00e9\u00E9\u0000\uFFFF\ud7ff\ue000""#),
        (Type::String, r#""\ud83d\ude00 \uD800\uDC00\uDBFF\uDFFF""#),
        (
            Type::String,
            r#""a string long enough for eight bytes at a time, \"quoted\" \u00e9""#,
        ),
        (Type::Any, r#"{"a": ["\n", {"b": "\ud83d\ude00"}]}"#),
        (Type::Object, r#"{"a": "\t"}"#),
        (
            Type::Map(Box::new(Type::String)),
            r#"{"a": "\n", "b": "\u0041"}"#,
        ),
    ] {
        assert_eq!(value(&iface, &ty, text), Ok(()), "{text}");
        assert!(fast(&ty, text), "{text}");
    }
    let escaped = r#"{"text":"hel\nlo \"world\" \ud83d\ude00"}"#;
    assert_eq!(params("Echo", escaped), Ok(()));
    assert!(__check_str::accepts_parameters(
        &iface,
        &input(&iface, "Echo"),
        escaped
    ));
}

#[test]
fn fast_scanner_leaves_the_rest_to_serde_json() {
    let iface = iface();
    // Valid, but decided by the streaming checker.
    for (ty, text) in [
        // Escapes where the content matters: keys, enum values.
        (named("Item"), r#"{"na\u006de": "x"}"#),
        (Type::Object, r#"{"\n": 1}"#),
        (Type::Map(Box::new(Type::Int)), r#"{"\u0061": 1}"#),
        (named("Mode"), r#""f\u0061st""#),
        (Type::Float, "1e100"),
        (Type::Float, "1e-400"),
        (Type::Float, &"1".repeat(65)),
        (Type::Object, r#"{"$serde_json::private::RawValue": "{}"}"#),
        (named("Item"), r#"{"name": "a", "name": "b"}"#),
    ] {
        assert_eq!(value(&iface, &ty, text), Ok(()), "{text}");
        assert!(!fast(&ty, text), "{text}");
    }
    let deep = format!("{}{}", "[".repeat(101), "]".repeat(101));
    assert_eq!(value(&iface, &Type::Any, &deep), Ok(()));
    assert!(!fast(&Type::Any, &deep));
    // Not JSON, or not what serde_json accepts: the scanner must not accept any of these.
    for text in [
        "",
        " ",
        "-",
        "+1",
        "01",
        "-01",
        "1.",
        ".5",
        "1e",
        "1e+",
        "1.5.5",
        "0x1",
        "1 2",
        "tru",
        "truex",
        "nul",
        "NaN",
        "\"abc",
        "\"a\u{1}b\"",
        "\"a\tb\"",
        "\"\\x\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\uDFFF\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud800\\ud800\"",
        "\"\\ud800\\n\"",
        "\"\\ud800x\"",
        "\"\\ud800\\\"",
        "\"\\ud800\\u\"",
        "\"\\ud800\\udc0\"",
        "\"\\udc00\\ud800\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"\\u 123\"",
        "\"\\U0041\"",
        "\"\\a\"",
        "\"\\'\"",
        "\"\\",
        "\"\\\"",
        "\"\\n",
        "\"\\u0041",
        "\"\\n\u{1}\"",
        "1e400",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\" 1}",
        "{\"a\":}",
        "{,}",
        "{\"a\":1,}",
        "{1:2}",
        "[1]]",
        "[\u{c}1]",
        "[\u{b}1]",
        "[\u{a0}1]",
        "1\u{0}",
    ] {
        assert!(!fast(&Type::Any, text), "{text:?}");
        let _ = value(&iface, &Type::Any, text);
    }
}

/// The scanner reads strings eight bytes at a time (near the end of the text, the last eight
/// shifted): a quote, a backslash, a control character or an escape at every offset of strings
/// of many lengths.
#[test]
fn strings_of_every_length() {
    let iface = iface();
    for len in 0..48 {
        for at in 0..len {
            for special in ['"', '\\', '\u{0}', '\u{1f}', ' ', '\u{7f}', 'é', '😀'] {
                let mut s: Vec<char> = vec!['x'; len];
                s[at] = special;
                let s: String = s.into_iter().collect();
                // Raw, then with whatever follows a string inside an object.
                let _ = value(&iface, &Type::String, &format!("\"{s}\""));
                let _ = value(&iface, &Type::Object, &format!("{{\"{s}\": \"{s}\"}}"));
            }
            // Escapes, valid or not, anywhere in the eight-byte words.
            for escape in [r"\n", r"\u00e9", r"\ud83d\ude00", r"\ud83d", r"\q", "\\"] {
                let (head, tail) = ("x".repeat(at), "x".repeat(len - at));
                let text = format!("\"{head}{escape}{tail}\"");
                let valid = !matches!(escape, r"\ud83d" | r"\q" | "\\");
                assert_eq!(value(&iface, &Type::String, &text).is_ok(), valid, "{text}");
                assert_eq!(fast(&Type::String, &text), valid, "{text}");
            }
        }
        let plain = "é".repeat(len);
        assert!(fast(&Type::String, &format!("\"{plain}\"")));
        assert!(!fast(&Type::String, &format!("\"{plain}")));
    }
}

/// `?` wrapped `n` times around `ty` (deeper than the parser allows, for the depth limit).
fn wrapped(n: usize, ty: Type) -> Type {
    (0..n).fold(ty, |ty, _| Type::Nullable(Box::new(ty)))
}

#[test]
fn depth_limit_as_the_tree_checker() {
    let iface = iface();
    assert_eq!(value(&iface, &wrapped(512, Type::Int), "1"), Ok(()));
    assert_eq!(
        value(&iface, &wrapped(513, Type::Int), "1"),
        err("", "value is nested too deeply")
    );
    assert_eq!(value(&iface, &wrapped(513, Type::Int), "null"), Ok(()));
    // A nullable field's null is accepted before the depth is looked at; another value is not.
    let item = Type::Struct(vec![Field {
        name: "x".into(),
        doc: vec![],
        ty: Type::Nullable(Box::new(Type::Int)),
    }]);
    for n in [510, 511, 512] {
        let ty = wrapped(n, item.clone());
        let _ = value(&iface, &ty, r#"{"x": null}"#);
        let _ = value(&iface, &ty, r#"{"x": 1}"#);
        let _ = value(&iface, &ty, r#"{"y": 1}"#);
        let _ = value(&iface, &ty, r#"{}"#);
    }
    assert_eq!(
        value(&iface, &wrapped(511, item.clone()), r#"{"x": 1}"#),
        err("x", "value is nested too deeply")
    );
    assert_eq!(value(&iface, &wrapped(511, item), r#"{"x": null}"#), Ok(()));

    // A recursive type as deep as serde_json parses.
    let iface = parse("interface org.example.r\ntype Node (next: ?Node, n: int)").expect("parse");
    let mut text = String::from(r#"{"n": 1}"#);
    for _ in 0..126 {
        text = format!(r#"{{"next": {text}, "n": 1}}"#);
    }
    assert_eq!(value(&iface, &named("Node"), &text), Ok(()));
    let bad = text.replacen(r#"{"n": 1}"#, r#"{"n": 1.5}"#, 1);
    assert!(value(&iface, &named("Node"), &bad).is_err());
    let deeper = format!(r#"{{"next": {text}, "n": 1}}"#);
    assert!(is_invalid(&value(&iface, &named("Node"), &deeper)));
}

/// Not a benchmark: `cargo test --release -p localrpc-idl --test check_str -- --ignored
/// --nocapture` prints how the text checker compares with parse-then-check.
#[test]
#[ignore]
fn timings() {
    use std::hint::black_box;
    use std::time::Instant;

    let iface = iface();
    let echo = input(&iface, "Echo");
    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(1 << 20));
    for (label, text, rounds) in [
        (
            "{\"text\":\"hello\"}",
            r#"{"text":"hello"}"#.to_string(),
            2_000_000,
        ),
        ("1 MiB string", big, 200),
    ] {
        let start = Instant::now();
        for _ in 0..rounds {
            check_parameters_str(&iface, &echo, black_box(&text)).expect("valid");
        }
        let streamed = start.elapsed() / rounds;
        let start = Instant::now();
        for _ in 0..rounds {
            let map: Map<String, Value> = serde_json::from_str(black_box(&text)).expect("json");
            check_parameters(&iface, &echo, &map).expect("valid");
        }
        let parsed = start.elapsed() / rounds;
        println!(
            "{label}: check_parameters_str {streamed:?}, from_str + check_parameters {parsed:?}"
        );
    }
}
