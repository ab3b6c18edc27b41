//! The value checker: a JSON value against one type of a fixed interface that uses every
//! kind of type (named structs and enums, nesting, nullables, maps, sets, object, any).
//!
//! Input: byte 0 selects the type (a method's whole input, or one field's type); the rest
//! is JSON. Oracles: no panic; checking is deterministic; for a parameter object, an
//! error's path starts with the offending parameter's name.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use localrpc_idl::{Field, Interface, Member, Type, check_parameters, check_value, parse};
use serde_json::Value;

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
";

static IFACE: LazyLock<Interface> = LazyLock::new(|| parse(IDL).expect("the fixed IDL parses"));

/// Every type expression to check against, plus the method inputs as field lists.
static TARGETS: LazyLock<(Vec<Type>, Vec<Vec<Field>>)> = LazyLock::new(|| {
    let mut types = Vec::new();
    let mut inputs = Vec::new();
    for member in &IFACE.members {
        match member {
            Member::Type(t) => {
                types.push(t.ty.clone());
                if let Type::Struct(fields) = &t.ty {
                    types.extend(fields.iter().map(|f| f.ty.clone()));
                }
            }
            Member::Method(m) => {
                types.extend(m.input.iter().map(|f| f.ty.clone()));
                inputs.push(m.input.clone());
            }
            Member::Error(_) => {}
        }
    }
    (types, inputs)
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let (types, inputs) = &*TARGETS;
    let selector = usize::from(selector);
    if selector < inputs.len() * 16 {
        let fields = &inputs[selector % inputs.len()];
        if let Value::Object(params) = &value {
            let first = check_parameters(&IFACE, fields, params);
            assert_eq!(first, check_parameters(&IFACE, fields, params));
            if let Err(error) = first {
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
        }
    } else {
        let ty = &types[selector % types.len()];
        let first = check_value(&IFACE, ty, &value);
        assert_eq!(first, check_value(&IFACE, ty, &value));
    }
});
