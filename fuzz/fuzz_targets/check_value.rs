//! The value checker: JSON against one type of a fixed interface that uses every kind of
//! type (named structs and enums, nesting, recursion, nullables, maps, sets, object, any,
//! structs of 64 and 65 fields, names of every length the fast scanner compares by word).
//!
//! Input: byte 0 selects what to check: below [`PARAM_SELECTORS`] a method's whole input
//! (parameters), else one type expression of the interface (every sub-expression of every
//! declared type and input, each named type, and an unknown name); the rest is JSON text.
//! Bytes that are not UTF-8 are not JSON (serde_json refuses them too) and are skipped.
//!
//! Oracles, on UTF-8 input:
//! - the tree checker (`check_parameters` on `serde_json::from_str` into a `Map`, `null` as
//!   the empty map; `check_value` on `from_str` into a `Value`) does not panic and is
//!   deterministic; for parameters, an error's path starts with the offending parameter;
//! - the text checkers (`check_parameters_str`, `check_value_str`) give exactly the tree
//!   checker's verdict, path and reason, as documented: parameters that are another kind of
//!   value than an object or `null` give `expected object, found ...` at the empty path, and
//!   text serde_json does not parse gives the empty path and a reason starting with
//!   `invalid JSON`;
//! - their two halves (`localrpc_idl::__check_str`): the fast scanner accepts only what the
//!   tree checker accepts, and the streaming checker alone gives the tree checker's verdict.

#![no_main]

use std::fmt::Write as _;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use localrpc_idl::{
    __check_str, CheckError, Field, Interface, Member, Type, check_parameters,
    check_parameters_str, check_value, check_value_str, parse,
};
use serde_json::{Map, Value};

const IDL: &str = "\
interface org.example.fuzz

type Node (name: string, children: ?[]Node, attrs: [string]string, kind: ?Kind)

type Kind (leaf, branch, root)

type Everything (
  b: bool,
  i: int,
  f: float,
  s: string,
  o: object,
  a: any,
  nb: ?bool,
  list: []int,
  nested: [][]?string,
  map: [string]Node,
  set: [string](),
  inline: (x: int, y: ?(z: [](w: float))),
  mode: (read, write),
  maybe_list: ?[]?int
)

method Take(e: Everything, n: ?Node, k: Kind) -> ()

method Empty() -> ()

# Recursion as deep in the tree checker's walk as JSON nesting allows (4 levels per object).
type R (r: ?R, s: ?string)

# Field names of 1 to 24 bytes (the fast scanner compares up to 8 and up to 16 bytes as
# words), some alike at both ends.
type VeryLongTypeNameForPlainEq (
  a: ?int,
  bb: ?string,
  ccc: ?bool,
  dddd: ?float,
  eeeee: ?Kind,
  abcdefgh: ?[]int,
  abcdefghi: ?string,
  abcdXefghi: ?int,
  abcdefghijklmnop: ?(x: int),
  abcdefghijklmnopq: ?[string]int,
  abcdefghijklmnopqrstuvwx: ?object,
  me: ?VeryLongTypeNameForPlainEq
)

type Mixed (
  kinds: []Kind,
  kind_map: [string]Kind,
  nodes: ?[]Node,
  any_list: []any,
  any_map: [string]any,
  obj_map: [string]object,
  maybe_any: ?any,
  maybe_obj: ?object,
  maybe_set: ?[string](),
  set_list: [][string](),
  map_of_maps: [string][string]?int,
  floats: [string]float,
  long_enum: (a_very_long_enum_value_name, short, abcdefgh, abcdefghi, x),
  deep: ?[]?[]?[]?[]?(v: ?[string]?[]?R)
)

method Deep(r: ?R, n: ?Node) -> ()

method Mix(m: Mixed, l: ?VeryLongTypeNameForPlainEq) -> ()
";

/// Selectors below this check a method's input (6 per method); the others a type.
const PARAM_SELECTORS: usize = 36;

/// `n` fields `{prefix}0`.. of assorted types: the first, the middle one and the last
/// required, the others nullable.
fn wide_fields(prefix: &str, n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let ty = if i == 0 {
            "int"
        } else if i == n / 2 {
            "bool"
        } else if i == n - 1 {
            "string"
        } else {
            ["?int", "?string", "?Kind", "?[]int"][i % 4]
        };
        let _ = write!(out, "{}{prefix}{i}: {ty}", if i == 0 { "" } else { ", " });
    }
    out
}

static IFACE: LazyLock<Interface> = LazyLock::new(|| {
    let idl = format!(
        "{IDL}\ntype Wide64 ({})\n\ntype Wide65 ({})\n\n\
         method Wide(z: ?Wide64, w: ?Wide65) -> ()\n\nmethod Many({}) -> ()\n",
        wide_fields("f", 64),
        wide_fields("f", 65),
        wide_fields("p", 65),
    );
    parse(&idl).expect("the fixed IDL parses")
});

/// `ty` and every type expression inside it (named types are not followed).
fn collect(ty: &Type, out: &mut Vec<Type>) {
    if !out.contains(ty) {
        out.push(ty.clone());
    }
    match ty {
        Type::Struct(fields) => fields.iter().for_each(|f| collect(&f.ty, out)),
        Type::Array(inner) | Type::Map(inner) | Type::Nullable(inner) => collect(inner, out),
        _ => {}
    }
}

/// Every type expression to check against, plus the method inputs as field lists.
static TARGETS: LazyLock<(Vec<Type>, Vec<Vec<Field>>)> = LazyLock::new(|| {
    let named = |name: &str| Type::Named(name.into());
    // First, so that the seeds of fuzz/corpus/check_value keep their meaning: selector 0x28
    // is `Node`, 0x29 `Kind`, 0x2a `int`, 0x2b `float`, 0x2c `string`, 0x2d `any`, 0x2e
    // `?Node`, 0x2f `object`.
    let mut types = vec![
        named("Everything"),
        named("R"),
        named("Mixed"),
        named("Wide65"),
        named("Node"),
        named("Kind"),
        Type::Int,
        Type::Float,
        Type::String,
        Type::Any,
        Type::Nullable(Box::new(named("Node"))),
        Type::Object,
    ];
    let mut inputs = Vec::new();
    for member in &IFACE.members {
        match member {
            Member::Type(t) => {
                collect(&Type::Named(t.name.clone()), &mut types);
                collect(&t.ty, &mut types);
            }
            Member::Method(m) => {
                m.input.iter().for_each(|f| collect(&f.ty, &mut types));
                inputs.push(m.input.clone());
            }
            Member::Error(_) => {}
        }
    }
    collect(&Type::Named("Missing".into()), &mut types);
    assert!(
        PARAM_SELECTORS % inputs.len() == 0,
        "{} methods",
        inputs.len()
    );
    assert!(
        types.len() <= 256 - PARAM_SELECTORS,
        "{} types: some cannot be selected",
        types.len()
    );
    (types, inputs)
});

/// The tree checker's verdict on a text, which the text checkers must give; `None` for text
/// serde_json does not parse, for which they must give the empty path and `invalid JSON...`.
type Expected = Option<Result<(), CheckError>>;

fn assert_verdict(what: &str, got: &Result<(), CheckError>, expected: &Expected, text: &str) {
    match expected {
        Some(expected) => assert_eq!(
            got, expected,
            "{what} differs from the tree checker on {text:?}"
        ),
        None => assert!(
            matches!(got, Err(e) if e.path.is_empty() && e.reason.starts_with("invalid JSON")),
            "{what} on text serde_json does not parse ({text:?}): {got:?}"
        ),
    }
}

fn check_params_text(fields: &[Field], text: &str) {
    let expected: Expected = match serde_json::from_str::<Map<String, Value>>(text) {
        Ok(params) => {
            let verdict = check_parameters(&IFACE, fields, &params);
            assert_eq!(verdict, check_parameters(&IFACE, fields, &params));
            if let Err(error) = &verdict {
                // The path starts with the offending parameter: a key of the object or a
                // declared field (a key may be "", so the path may be too).
                let names_one = |name: &str| {
                    error.path == name
                        || error
                            .path
                            .strip_prefix(name)
                            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
                };
                assert!(
                    params.keys().any(|k| names_one(k))
                        || fields.iter().any(|f| names_one(&f.name)),
                    "the path names no parameter: {error}"
                );
            }
            Some(verdict)
        }
        Err(_) => match serde_json::from_str::<Value>(text) {
            // `null`: no parameters.
            Ok(Value::Null) => Some(check_parameters(&IFACE, fields, &Map::new())),
            // Another kind of value: `expected object, found ...`, named as the tree checker
            // names kinds.
            Ok(value) if !value.is_object() => Some(check_value(&IFACE, &Type::Object, &value)),
            _ => None,
        },
    };
    if __check_str::accepts_parameters(&IFACE, fields, text) {
        assert!(
            matches!(expected, Some(Ok(()))),
            "the fast scanner accepts parameters {text:?} that the tree checker does not: {expected:?}"
        );
    }
    assert_verdict(
        "the streaming checker (parameters)",
        &__check_str::check_parameters_str(&IFACE, fields, text),
        &expected,
        text,
    );
    assert_verdict(
        "check_parameters_str",
        &check_parameters_str(&IFACE, fields, text),
        &expected,
        text,
    );
}

fn check_value_text(ty: &Type, text: &str) {
    let expected: Expected = serde_json::from_str::<Value>(text).ok().map(|value| {
        let verdict = check_value(&IFACE, ty, &value);
        assert_eq!(verdict, check_value(&IFACE, ty, &value));
        verdict
    });
    if __check_str::accepts_value(&IFACE, ty, text) {
        assert!(
            matches!(expected, Some(Ok(()))),
            "the fast scanner accepts {text:?} as {ty} but the tree checker does not: {expected:?}"
        );
    }
    assert_verdict(
        "the streaming checker (value)",
        &__check_str::check_value_str(&IFACE, ty, text),
        &expected,
        text,
    );
    assert_verdict(
        "check_value_str",
        &check_value_str(&IFACE, ty, text),
        &expected,
        text,
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    // serde_json parses no text that is not UTF-8 (and the text checkers take `&str`).
    let Ok(text) = std::str::from_utf8(json) else {
        return;
    };
    let (types, inputs) = &*TARGETS;
    let selector = usize::from(selector);
    if selector < PARAM_SELECTORS {
        check_params_text(&inputs[selector % inputs.len()], text);
    } else {
        check_value_text(&types[(selector - PARAM_SELECTORS) % types.len()], text);
    }
});
