//! Property tests of the wire layer (proptest, modest case counts so the suite stays fast):
//! - `encode_call` → `CallMessage::parse` gives back the method, parameters and flags, for
//!   any method name (JSON-escaped interface part), any parameter object and any flag;
//!   spaced and pretty-printed encodings with explicit false flags parse the same;
//! - `encode_reply` → `ReplyMessage::parse` gives back parameters, `continues` and error;
//! - the `Framer` yields the same messages for any split of a byte stream into reads, and
//!   fails exactly at the first message longer than its limit.

use localrpc::wire::{CallFlags, CallMessage, Framer, ReplyMessage, encode_call, encode_reply};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Any JSON value (finite floats only: JSON has no NaN/inf), nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn parameters() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((any::<String>(), json_value()), 0..6)
        .prop_map(|entries| entries.into_iter().collect())
}

/// `interface.Member`: the interface part is any non-empty string (routing rejects unknown
/// ones later; the envelope only needs it non-empty), the member `[A-Z][A-Za-z0-9]*`.
fn method_name() -> impl Strategy<Value = String> {
    (any::<String>(), "[A-Z][A-Za-z0-9]{0,15}")
        .prop_filter("non-empty interface", |(iface, _)| !iface.is_empty())
        .prop_map(|(iface, member)| format!("{iface}.{member}"))
}

fn flags() -> impl Strategy<Value = CallFlags> {
    prop_oneof![
        Just(CallFlags::default()),
        Just(CallFlags {
            oneway: true,
            ..CallFlags::default()
        }),
        Just(CallFlags {
            more: true,
            ..CallFlags::default()
        }),
        Just(CallFlags {
            upgrade: true,
            ..CallFlags::default()
        }),
    ]
}

/// One framed message: the bytes before the NUL, which must contain none.
fn without_nul(bytes: &[u8]) -> &[u8] {
    let (last, body) = bytes.split_last().expect("a message");
    assert_eq!(*last, 0, "a message ends with NUL");
    assert!(!body.contains(&0), "no NUL inside a message");
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn call_encode_parse_round_trips(
        method in method_name(),
        params in parameters(),
        flags in flags(),
    ) {
        let mut out = Vec::new();
        encode_call(&mut out, &method, &params, flags).expect("encode_call");
        let parsed = CallMessage::parse(without_nul(&out)).expect("CallMessage::parse");
        prop_assert_eq!(&parsed.method, &method);
        prop_assert_eq!(&parsed.parameters_map(), &params);
        prop_assert_eq!(parsed.flags, flags);
        // What varlinkctl writes: no false flag, no empty parameters.
        let text = std::str::from_utf8(&out[..out.len() - 1]).expect("UTF-8");
        let object: Value = serde_json::from_str(text).expect("JSON");
        for flag in ["oneway", "more", "upgrade"] {
            prop_assert!(
                object.get(flag).is_none_or(|v| *v == Value::Bool(true)),
                "{}", text
            );
        }
        if params.is_empty() {
            prop_assert!(object.get("parameters").is_none(), "{}", text);
        }
    }

    /// The Python reference client's style (spaces, explicit false flags) and pretty
    /// printing parse to the same call.
    #[test]
    fn spaced_calls_parse_the_same(
        method in method_name(),
        params in parameters(),
        flags in flags(),
    ) {
        let object = serde_json::json!({
            "method": method,
            "parameters": params,
            "oneway": flags.oneway,
            "more": flags.more,
            "upgrade": flags.upgrade,
        });
        for text in [
            serde_json::to_string_pretty(&object).expect("pretty"),
            format!(" \n{object}\t "),
        ] {
            let parsed = CallMessage::parse(text.as_bytes()).expect("CallMessage::parse");
            prop_assert_eq!(&parsed.method, &method);
            prop_assert_eq!(&parsed.parameters_map(), &params);
            prop_assert_eq!(parsed.flags, flags);
        }
    }

    #[test]
    fn reply_encode_parse_round_trips(
        params in parameters(),
        continues in any::<bool>(),
        error in prop::option::of(any::<String>()),
    ) {
        let mut out = Vec::new();
        encode_reply(&mut out, &params, continues, error.as_deref()).expect("encode_reply");
        let parsed = ReplyMessage::parse(without_nul(&out)).expect("ReplyMessage::parse");
        prop_assert_eq!(
            parsed,
            ReplyMessage { parameters: params.clone(), continues, error }
        );
        let text = std::str::from_utf8(&out[..out.len() - 1]).expect("UTF-8");
        prop_assert!(!text.contains("\"continues\":false"), "{}", text);
        if params.is_empty() {
            prop_assert!(!text.contains("\"parameters\""), "{}", text);
        }
    }

    /// Messages (any bytes but NUL) and a trailing partial message, split into arbitrary
    /// reads: the framer yields exactly the complete messages and keeps the partial one.
    #[test]
    fn framer_yields_the_same_messages_for_any_split(
        messages in prop::collection::vec(
            prop::collection::vec(1u8..=255, 0..300), 0..12),
        partial in prop::collection::vec(1u8..=255, 0..50),
        reads in prop::collection::vec(1usize..400, 1..40),
    ) {
        let mut stream = Vec::new();
        for message in &messages {
            stream.extend_from_slice(message);
            stream.push(0);
        }
        stream.extend_from_slice(&partial);
        let mut framer = Framer::new(300);
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut sizes = reads.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().expect("cycle")).min(rest.len());
            framer.buffer_mut().extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(message) = framer.next_message().expect("within the limit") {
                got.push(message.to_vec());
            }
        }
        prop_assert_eq!(got, messages);
        prop_assert_eq!(framer.buffered(), &partial[..]);
    }

    /// With a limit, the framer yields every message up to the first one longer than the
    /// limit (complete or still partial), then fails; never earlier, never later.
    #[test]
    fn framer_fails_exactly_at_the_first_oversized_message(
        messages in prop::collection::vec(
            prop::collection::vec(1u8..=255, 0..120), 1..10),
        partial in prop::collection::vec(1u8..=255, 0..120),
        max in 0usize..120,
        reads in prop::collection::vec(1usize..200, 1..20),
    ) {
        let mut stream = Vec::new();
        for message in &messages {
            stream.extend_from_slice(message);
            stream.push(0);
        }
        stream.extend_from_slice(&partial);
        let fitting: Vec<Vec<u8>> =
            messages.iter().take_while(|m| m.len() <= max).cloned().collect();
        let must_fail = fitting.len() < messages.len() || partial.len() > max;

        let mut framer = Framer::new(max);
        let mut got = Vec::new();
        let mut failed = false;
        let mut rest = &stream[..];
        let mut sizes = reads.iter().cycle();
        'feed: while !rest.is_empty() {
            let n = (*sizes.next().expect("cycle")).min(rest.len());
            framer.buffer_mut().extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match framer.next_message() {
                    Ok(Some(message)) => got.push(message.to_vec()),
                    Ok(None) => break,
                    Err(too_large) => {
                        prop_assert_eq!(too_large.max, max);
                        failed = true;
                        break 'feed;
                    }
                }
            }
        }
        prop_assert_eq!(failed, must_fail);
        prop_assert_eq!(got, fitting);
    }
}
