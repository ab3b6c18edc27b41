//! The prechecked decoder against `serde_json::from_str`: the same value, or errors on both
//! sides naming the same field, for generated types, `Value`, maps, options, enums, every
//! integer width and floats; and no panic on text that is not JSON.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use super::from_str;

/// The code localrpc-build generates for its golden IDL, which uses every construct the
/// generator maps (renames, keywords, sets, optional sets, `object`, `any`, inline structs and
/// enums, recursion); the golden test keeps it equal to the generator's output.
#[allow(dead_code, unused_imports, clippy::all)]
mod golden {
    include!("../../../../localrpc-build/tests/golden/org_example_golden.rs");
}

/// localrpcd's `io.localrpc.Echo` inputs, as generated.
#[derive(Debug, PartialEq, Deserialize)]
struct EchoInput {
    text: String,
}

#[derive(Debug, PartialEq, Deserialize)]
struct CountInput {
    count: i64,
    #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
    text: Option<String>,
}

/// A serde enum of every variant kind (generated enums are strings; hand-written types may
/// use these).
#[derive(Debug, PartialEq, Deserialize)]
enum Shape {
    Unit,
    Newtype(i32),
    Tuple(u8, String),
    Struct { x: f64, y: Option<bool> },
}

#[derive(Debug, PartialEq, Deserialize)]
struct Mixed {
    shape: Shape,
    #[serde(default)]
    maybe: Option<Vec<Option<u16>>>,
    map: HashMap<String, Value>,
    #[serde(default)]
    numbers: BTreeMap<u32, bool>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict {
    a: i8,
    #[serde(default)]
    b: Option<String>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Flattened {
    id: u64,
    #[serde(flatten)]
    rest: HashMap<String, Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Number(i64),
    Text(String),
    Pair { a: Value, b: Value },
}

#[derive(Debug, Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    borrowed: &'a RawValue,
    boxed: Box<RawValue>,
}

/// A map with `f64` keys, in order (no map type takes them).
#[derive(Debug, PartialEq)]
struct FloatKeys(Vec<(f64, bool)>);

impl<'de> Deserialize<'de> for FloatKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = FloatKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map with number keys")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FloatKeys, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<f64>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(FloatKeys(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// The field a serde error message names in backquotes, as `Call::decode` reads it.
fn field_named_in(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

/// Both decoders agree on `text` for `T`.
fn same<T: DeserializeOwned + PartialEq + std::fmt::Debug>(text: &str) -> Result<(), String> {
    let expected = serde_json::from_str::<T>(text);
    let actual = from_str::<T>(text);
    match (expected, actual) {
        (Ok(e), Ok(a)) if e == a => Ok(()),
        (Err(e), Err(a)) => {
            let (e, a) = (e.to_string(), a.to_string());
            if field_named_in(&e) == field_named_in(&a) {
                Ok(())
            } else {
                Err(format!(
                    "{text}: errors name different fields: {e:?} / {a:?}"
                ))
            }
        }
        (e, a) => Err(format!(
            "{text} as {}: serde_json {e:?}, prechecked {a:?}",
            std::any::type_name::<T>()
        )),
    }
}

#[track_caller]
fn assert_same<T: DeserializeOwned + PartialEq + std::fmt::Debug>(text: &str) {
    if let Err(message) = same::<T>(text) {
        panic!("{message}");
    }
}

/// A JSON value, rendered to text later with escapes and whitespace chosen by a seed.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// A cheap random stream for rendering choices.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

fn render(json: &Json, seed: u64) -> String {
    let mut out = String::new();
    let mut choices = Choices(seed | 1);
    write(&mut out, json, &mut choices);
    out
}

fn space(out: &mut String, choices: &mut Choices) {
    if choices.one_in(6) {
        out.push_str([" ", "\n", "\t ", "\r\n  "][(choices.next() % 4) as usize]);
    }
}

fn write_string(out: &mut String, s: &str, choices: &mut Choices) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' if choices.one_in(2) => out.push_str("\\n"),
            '/' if choices.one_in(3) => out.push_str("\\/"),
            c if (c as u32) < 0x20 || choices.one_in(12) => {
                let mut units = [0; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write(out: &mut String, json: &Json, choices: &mut Choices) {
    space(out, choices);
    match json {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::Str(s) => write_string(out, s, choices),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, item, choices);
            }
            space(out, choices);
            out.push(']');
        }
        Json::Object(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(out, choices);
                write_string(out, key, choices);
                space(out, choices);
                out.push(':');
                write(out, value, choices);
            }
            space(out, choices);
            out.push('}');
        }
    }
    space(out, choices);
}

/// Numbers at the edges of every integer width and of `f64`, and ordinary ones.
fn number() -> impl Strategy<Value = String> {
    let edges = prop::sample::select(vec![
        "0",
        "-0",
        "1",
        "-1",
        "127",
        "128",
        "-128",
        "-129",
        "255",
        "256",
        "32767",
        "32768",
        "-32768",
        "-32769",
        "65535",
        "65536",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "340282366920938463463374607431768211455",
        "340282366920938463463374607431768211456",
        "0.0",
        "-0.0",
        "1.0",
        "1e5",
        "1E+2",
        "1e-2",
        "1.5e300",
        "1e308",
        "1.7976931348623157e308",
        "2.2250738585072014e-308",
        "5e-324",
        "0.1",
        "0.30000000000000004",
        "3.4028235e38",
        "3.4028236e38",
        "123456789012345678901234567890",
        "1e400",
        "-1e400",
        "1e-400",
    ]);
    prop_oneof![
        edges.prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i8>().prop_map(|n| n.to_string()),
        any::<u16>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::to_string(&f).unwrap_or_default()),
        (any::<i32>(), -30i32..30).prop_map(|(m, e)| format!("{m}e{e}")),
    ]
}

/// Strings with quotes, backslashes, control characters, non-ASCII and astral characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]{0,12}",
        2 => "[a-zA-Z0-9 _\\-\"\\\\/\n\t\u{1}\u{1f}é€😀]{0,20}",
        1 => any::<String>(),
        1 => prop::sample::select(vec!["text", "count", "shape", "map", "a", "b", "id", "Unit",
            "Newtype", "Tuple", "Struct", "x", "y", "1", "-1", "4294967296", "true", "false",
            "$serde_json::private::RawValue", "a`b`c", "`"]).prop_map(str::to_owned),
    ]
}

/// Any JSON value.
fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        text().prop_map(Json::Str),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((text(), inner), 0..6).prop_map(Json::Object),
        ]
    })
}

/// A JSON object whose keys are often the given field names.
fn object_with(fields: &'static [&'static str]) -> impl Strategy<Value = Json> {
    let key = prop_oneof![4 => prop::sample::select(fields).prop_map(str::to_owned), 1 => text()];
    prop::collection::vec((key, json()), 0..8).prop_map(Json::Object)
}

/// A value for the golden `Item` type: mostly well formed, sometimes not.
fn item(depth: u32) -> BoxedStrategy<Json> {
    let s = || text().prop_map(Json::Str);
    let kind = || {
        prop_oneof![
            prop::sample::select(vec!["plain", "fancy_one", "unknown", "other"])
                .prop_map(|k| Json::Str(k.to_owned())),
            json(),
        ]
    };
    let set = || prop::collection::vec((text(), Just(Json::Object(vec![]))), 0..4);
    let origin = (s(), number().prop_map(Json::Number), kind()).prop_map(|(h, p, k)| {
        Json::Object(vec![
            ("host".into(), h),
            ("port".into(), p),
            ("proto".into(), k),
        ])
    });
    let parent = if depth == 0 {
        Just(Json::Null).boxed()
    } else {
        prop_oneof![Just(Json::Null), item(depth - 1)].boxed()
    };
    let fields = (
        (kind(), s(), number(), number(), any::<bool>()),
        (
            prop::collection::vec(s(), 0..3),
            prop::collection::vec((text(), s()), 0..3),
            set(),
            prop::option::of(set()),
        ),
        (json(), json(), prop::option::of(origin), parent),
    );
    (
        fields,
        prop::collection::vec(any::<u8>(), 15),
        prop::option::of((text(), json())),
    )
        .prop_map(|((basic, collections, rest), drops, extra)| {
            let (kind, name, count, ratio, enabled) = basic;
            let (tags, labels, flags, maybe_flags) = collections;
            let (extra_value, anything, origin, parent) = rest;
            let mut entries = vec![
                ("type".to_owned(), kind),
                ("displayName".into(), name),
                ("count".into(), Json::Number(count)),
                ("ratio".into(), Json::Number(ratio)),
                ("enabled".into(), Json::Bool(enabled)),
                ("tags".into(), Json::Array(tags)),
                ("labels".into(), Json::Object(labels)),
                ("flags".into(), Json::Object(flags)),
                (
                    "maybeFlags".into(),
                    maybe_flags.map_or(Json::Null, Json::Object),
                ),
                ("extra".into(), extra_value),
                ("anything".into(), anything),
                ("origin".into(), origin.unwrap_or(Json::Null)),
                ("parent".into(), parent),
            ];
            // Now and then a field is left out or an unknown one is added; fields are rotated.
            let mut kept: Vec<_> = entries
                .drain(..)
                .zip(&drops)
                .filter(|(_, drop)| **drop > 12)
                .map(|(entry, _)| entry)
                .collect();
            if let Some(entry) = extra {
                kept.push(entry);
            }
            let turn = usize::from(drops[14]) % kept.len().max(1);
            kept.rotate_left(turn);
            Json::Object(kept)
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn any_json_decodes_the_same(json in json(), seed in any::<u64>()) {
        let text = render(&json, seed);
        let wrapped = format!("{{\"text\": {text}, \"count\": {text}}}");
        for text in [text.as_str(), wrapped.as_str()] {
            for result in [
                same::<Value>(text),
                same::<HashMap<String, Value>>(text),
                same::<BTreeMap<String, Option<String>>>(text),
                same::<HashMap<u32, Value>>(text),
                same::<Vec<Option<i64>>>(text),
                same::<EchoInput>(text),
                same::<CountInput>(text),
                same::<Option<EchoInput>>(text),
                same::<Shape>(text),
                same::<Untagged>(text),
                same::<Flattened>(text),
                same::<String>(text),
                same::<(bool, String)>(text),
                same::<golden::Kind>(text),
            ] {
                prop_assert!(result.is_ok(), "{}", result.unwrap_err());
            }
        }
    }

    #[test]
    fn numbers_decode_the_same_at_every_width(number in number()) {
        let field = format!("{{\"v\":{number}}}");
        for text in [number.as_str(), field.as_str()] {
            for result in [
                same::<Value>(text), same::<HashMap<String, i8>>(text),
                same::<HashMap<String, i16>>(text), same::<HashMap<String, i32>>(text),
                same::<HashMap<String, i64>>(text), same::<HashMap<String, i128>>(text),
                same::<HashMap<String, u8>>(text), same::<HashMap<String, u16>>(text),
                same::<HashMap<String, u32>>(text), same::<HashMap<String, u64>>(text),
                same::<HashMap<String, u128>>(text), same::<HashMap<String, f32>>(text),
                same::<HashMap<String, f64>>(text), same::<i8>(text), same::<i16>(text),
                same::<i32>(text), same::<i64>(text), same::<i128>(text), same::<u8>(text),
                same::<u16>(text), same::<u32>(text), same::<u64>(text), same::<u128>(text),
                same::<f32>(text), same::<f64>(text), same::<Option<u32>>(text),
            ] {
                prop_assert!(result.is_ok(), "{}", result.unwrap_err());
            }
        }
        // As a map key, in quotes.
        let key = format!("{{\"{number}\":true}}");
        for result in [
            same::<HashMap<i8, bool>>(&key), same::<HashMap<u64, bool>>(&key),
            same::<HashMap<i128, bool>>(&key), same::<BTreeMap<u128, bool>>(&key),
            same::<Vec<(String, bool)>>(&key), same::<HashMap<String, bool>>(&key),
            same::<FloatKeys>(&key),
        ] {
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }

    #[test]
    fn objects_with_known_fields_decode_the_same(
        json in object_with(&["shape", "maybe", "map", "numbers", "a", "b", "id", "text",
            "count", "Unit", "Newtype", "Tuple", "Struct"]),
        seed in any::<u64>(),
    ) {
        let text = render(&json, seed);
        for result in [
            same::<Mixed>(&text), same::<Strict>(&text), same::<Flattened>(&text),
            same::<EchoInput>(&text), same::<CountInput>(&text), same::<Shape>(&text),
            same::<Untagged>(&text), same::<golden::ListInput>(&text),
            same::<golden::TunnelInput>(&text), same::<golden::GetInput>(&text),
        ] {
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }

    #[test]
    fn generated_items_decode_the_same(json in item(2), seed in any::<u64>()) {
        let text = render(&json, seed);
        let output = format!("{{\"item\":{text}}}");
        for result in [
            same::<golden::Item>(&text), same::<golden::GetOutput>(&output),
            same::<golden::ListOutput>(&output), same::<Value>(&output),
        ] {
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }

    #[test]
    fn malformed_text_fails_as_serde_json_fails(
        json in json(),
        seed in any::<u64>(),
        at in any::<prop::sample::Index>(),
        cut in 0usize..3,
        insert in prop::sample::select(vec!["", ",", "]", "}", "\"", ":", "\\", "x", "-", "n",
            "{", "[", "\u{1}", "é", " "]),
    ) {
        let text = render(&json, seed);
        let wrapped = format!("{{\"text\":{text}}}");
        let mut chars: Vec<char> = wrapped.chars().collect();
        let at = at.index(chars.len());
        chars.splice(at..(at + cut).min(chars.len()), insert.chars());
        let text: String = chars.into_iter().collect();
        for result in [
            same::<Value>(&text), same::<EchoInput>(&text), same::<Mixed>(&text),
            same::<HashMap<String, Value>>(&text), same::<golden::Item>(&text),
        ] {
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
        // Whatever the text, nothing panics.
        let _ = from_str::<IgnoredAnyWrapper>(&text);
    }
}

/// Every value of an object skipped, as for unknown fields.
#[derive(Debug, Deserialize)]
struct IgnoredAnyWrapper {}

#[test]
fn edge_cases_decode_the_same() {
    for text in [
        r#"{"text":"hello"}"#,
        r#"{"text":"hello","unknown":[1,{"a":[]},"x\n",-0.5e3,null,true]}"#,
        r#"  {"text" : "h\u00e9llo"}  "#,
        r#"{"text":"hello"} x"#,
        r#"{"text":"hello",}"#,
        r#"{"text":"hello""#,
        r#"{"text":"hel"#,
        r#"{"text":"a\u0000b"}"#,
        r#"{"text":"\ud83d\ude00"}"#,
        r#"{"text":"\ud83d"}"#,
        r#"{"text":"tab	inside"}"#,
        r#"{"text":1}"#,
        r#"{"text":null}"#,
        r#"{"text":["a"]}"#,
        r#"{"text":{}}"#,
        r#"{"txt":"a"}"#,
        r#"{"text":"a","text":"b"}"#,
        r#"["hello"]"#,
        r#"["hello", 1]"#,
        "",
        "{",
        "nul",
        "[]",
        "{}",
    ] {
        assert_same::<EchoInput>(text);
        assert_same::<CountInput>(text);
        assert_same::<Value>(text);
        assert_same::<Strict>(text);
    }
    for text in [
        r#""Unit""#,
        r#"{"Unit":null}"#,
        r#"{"Unit":1}"#,
        r#"{"Newtype":5}"#,
        r#"{"Newtype":5,"Unit":null}"#,
        r#"{"Tuple":[1,"a"]}"#,
        r#"{"Tuple":[1,"a",2]}"#,
        r#"{"Struct":{"x":1.5}}"#,
        r#"{"Struct":[2,true]}"#,
        r#""Newtype""#,
        r#""Tuple""#,
        r#""Struct""#,
        r#""Other""#,
        r#"{}"#,
        r#"[1]"#,
        r#"3"#,
    ] {
        assert_same::<Shape>(text);
        assert_same::<Untagged>(text);
    }
    for text in [
        r#"{"1":true,"-2":false}"#,
        r#"{"1 ":true}"#,
        r#"{"+1":true}"#,
        r#"{"1e2":true}"#,
        r#"{"\u0031":true}"#,
        r#"{"x":true}"#,
        r#"{"":true}"#,
    ] {
        assert_same::<HashMap<i32, bool>>(text);
        assert_same::<FloatKeys>(text);
    }
    for text in [r#"{"true":1,"false":2}"#, r#"{"tru":1}"#, r#"{"yes":1}"#] {
        assert_same::<HashMap<bool, i32>>(text);
    }
    // serde_json's own hook for raw values inside a `Value`.
    assert_same::<Value>(r#"{"$serde_json::private::RawValue":"[1, 2]"}"#);
    assert_same::<Value>(r#"{"$serde_json::private::RawValue":"[1, "}"#);
}

#[test]
fn nesting_fails_where_serde_json_fails() {
    for depth in [126, 127, 128, 129, 1000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_same::<Value>(&nested);
        let wrapped = format!("{{\"text\":{nested}}}");
        assert_same::<Value>(&wrapped);
        // Ignored values have no limit in serde_json either.
        let ignored = format!("{{\"text\":\"a\",\"deep\":{nested}}}");
        assert_same::<EchoInput>(&ignored);
        assert_same::<HashMap<String, Value>>(&ignored);
    }
}

#[test]
fn raw_values_are_serde_json_s() {
    let text = r#"{"borrowed" : [1, {"a": "\n"}] , "boxed":  "x\u0041" , "other": 1}"#;
    let expected: Raw<'_> = serde_json::from_str(text).expect("serde_json decodes it");
    let actual: Raw<'_> = from_str(text).expect("prechecked decodes it");
    assert_eq!(expected.borrowed.get(), actual.borrowed.get());
    assert_eq!(expected.boxed.get(), actual.boxed.get());
    assert!(from_str::<Raw<'_>>(r#"{"borrowed": [1,], "boxed": 1}"#).is_err());
}

#[test]
fn errors_name_the_field_as_serde_json_does() {
    let error = from_str::<EchoInput>("{}").expect_err("missing field");
    assert_eq!(field_named_in(&error.to_string()), Some("text"));
    let error = from_str::<Strict>(r#"{"a":1,"c":2}"#).expect_err("unknown field");
    assert_eq!(field_named_in(&error.to_string()), Some("c"));
    // Only the position differs (serde_json's own errors for a token count within it).
    let without_position = |e: serde_json::Error| {
        let message = e.to_string();
        message
            .split(" at line")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let text = r#"{"a":1000}"#;
    assert_eq!(
        without_position(from_str::<Strict>(text).expect_err("out of range")),
        without_position(serde_json::from_str::<Strict>(text).expect_err("out of range"))
    );
}
