//! Property tests of the IDL (proptest, modest case counts): a small generator of valid
//! interface syntax trees (every type form, named types, doc comments on declarations,
//! fields and enum values) checks that `parse(format(ast)) == ast`, that formatting is
//! idempotent, and that the lint and the value checker never panic on what it produces.

use std::collections::BTreeSet;

use localrpc_idl::{
    EnumVariant, ErrorDef, Field, Interface, Member, Method, Type, TypeDef, check_value, format,
    parse, systemd_lint,
};
use proptest::prelude::*;

fn doc() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec("[ -~]{0,40}", 1..3),
    ]
}

fn field_name() -> impl Strategy<Value = String> {
    "[A-Za-z](_?[A-Za-z0-9]){0,7}"
}

fn interface_name() -> impl Strategy<Value = String> {
    "[A-Za-z]([-]{0,2}[A-Za-z0-9]){0,6}(\\.[A-Za-z0-9]([-]{0,2}[A-Za-z0-9]){0,6}){1,3}"
}

/// Fields with distinct names.
fn fields(ty: BoxedStrategy<Type>, max: usize) -> impl Strategy<Value = Vec<Field>> {
    prop::collection::vec((field_name(), doc(), ty), 0..=max).prop_map(|items| {
        let mut seen = BTreeSet::new();
        items
            .into_iter()
            .filter(|(name, _, _)| seen.insert(name.clone()))
            .map(|(name, doc, ty)| Field { name, doc, ty })
            .collect()
    })
}

fn enum_type() -> impl Strategy<Value = Type> {
    prop::collection::vec((field_name(), doc()), 1..5).prop_map(|items| {
        let mut seen = BTreeSet::new();
        Type::Enum(
            items
                .into_iter()
                .filter(|(name, _)| seen.insert(name.clone()))
                .map(|(name, doc)| EnumVariant { name, doc })
                .collect(),
        )
    })
}

/// Any type expression; `Named` picks one of `names` (the interface's type declarations).
fn type_expr(names: Vec<String>) -> BoxedStrategy<Type> {
    let mut leaves = vec![
        Just(Type::Bool).boxed(),
        Just(Type::Int).boxed(),
        Just(Type::Float).boxed(),
        Just(Type::String).boxed(),
        Just(Type::Object).boxed(),
        Just(Type::Any).boxed(),
    ];
    if !names.is_empty() {
        leaves.push(prop::sample::select(names).prop_map(Type::Named).boxed());
    }
    let leaf = prop::strategy::Union::new(leaves);
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            fields(inner.clone(), 3).prop_map(Type::Struct),
            enum_type(),
            inner.clone().prop_map(|t| Type::Array(Box::new(t))),
            inner.clone().prop_map(|t| Type::Map(Box::new(t))),
            // `??T` does not exist: a nullable is never directly nullable again.
            inner.prop_map(|t| match t {
                Type::Nullable(t) => Type::Nullable(t),
                t => Type::Nullable(Box::new(t)),
            }),
        ]
    })
    .boxed()
}

/// A whole valid interface: distinct member names shared by types, methods and errors.
fn interface() -> impl Strategy<Value = Interface> {
    (
        prop::collection::btree_set("[A-Z][A-Za-z0-9]{0,8}", 1..8),
        0usize..4,
    )
        .prop_flat_map(|(names, type_count)| {
            let names: Vec<String> = names.into_iter().collect();
            let type_count = type_count.min(names.len());
            let type_names = names[..type_count].to_vec();
            let ty = type_expr(type_names.clone());
            let type_defs = type_names
                .iter()
                .map(|name| {
                    let name = name.clone();
                    (
                        doc(),
                        prop_oneof![fields(ty.clone(), 4).prop_map(Type::Struct), enum_type()],
                    )
                        .prop_map(move |(doc, ty)| {
                            Member::Type(TypeDef {
                                name: name.clone(),
                                doc,
                                ty,
                            })
                        })
                        .boxed()
                })
                .collect::<Vec<_>>();
            let others = names[type_count..]
                .iter()
                .map(|name| {
                    let name = name.clone();
                    (
                        any::<bool>(),
                        doc(),
                        fields(ty.clone(), 4),
                        fields(ty.clone(), 4),
                    )
                        .prop_map(move |(is_method, doc, input, output)| {
                            if is_method {
                                Member::Method(Method {
                                    name: name.clone(),
                                    doc,
                                    input,
                                    output,
                                })
                            } else {
                                Member::Error(ErrorDef {
                                    name: name.clone(),
                                    doc,
                                    parameters: input,
                                })
                            }
                        })
                        .boxed()
                })
                .collect::<Vec<_>>();
            (interface_name(), doc(), type_defs, others, any::<u64>())
        })
        .prop_map(|(name, doc, types, others, seed)| {
            // Interleave declarations deterministically from the seed: order is kept by
            // the formatter, so any order must round-trip.
            let mut members: Vec<Member> = types.into_iter().chain(others).collect();
            let len = members.len();
            if len > 1 {
                members.rotate_left((seed % len as u64) as usize);
            }
            Interface { name, doc, members }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn format_then_parse_round_trips(iface in interface()) {
        let text = format(&iface);
        let parsed = parse(&text).map_err(|e| {
            TestCaseError::fail(format!("formatted interface does not parse: {e}\n{text}"))
        })?;
        prop_assert_eq!(&parsed, &iface, "\n{}", text);
        prop_assert_eq!(format(&parsed), text);
        let _ = systemd_lint(&parsed);
    }

    /// The checker never panics on the generated types, whatever value it is given.
    #[test]
    fn check_value_does_not_panic(
        iface in interface(),
        value in prop_oneof![
            Just(serde_json::json!(null)),
            Just(serde_json::json!({})),
            Just(serde_json::json!([])),
            Just(serde_json::json!({"a": [1, "x", null, {"b": true}]})),
            Just(serde_json::json!("a")),
            Just(serde_json::json!(1.5)),
        ],
    ) {
        for member in &iface.members {
            match member {
                Member::Type(t) => {
                    let _ = check_value(&iface, &t.ty, &value);
                }
                Member::Method(m) => {
                    for field in m.input.iter().chain(&m.output) {
                        let _ = check_value(&iface, &field.ty, &value);
                    }
                }
                Member::Error(_) => {}
            }
        }
    }
}

/// Found by the `check_value` fuzz target (an oracle that was too strict, not a crash): an
/// undeclared key that is the empty string is reported with the empty path, i.e. the key
/// itself; the check does not panic and names the reason.
#[test]
fn undeclared_empty_key_is_reported_by_its_own_name() {
    let iface = parse("interface org.example.fuzz\nmethod Empty() -> ()\n").expect("parses");
    let Some(Member::Method(method)) = iface.members.first() else {
        panic!("one method");
    };
    let params = serde_json::json!({"": 1});
    let error = localrpc_idl::check_parameters(
        &iface,
        &method.input,
        params.as_object().expect("an object"),
    )
    .expect_err("an undeclared key is refused");
    assert_eq!(error.path, "");
    assert!(error.reason.starts_with("undeclared field"), "{error}");
}
