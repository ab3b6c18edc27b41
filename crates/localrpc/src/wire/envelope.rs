//! Call and reply envelopes: strict parsing of calls, canonical encoding of replies and calls.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Deepest JSON nesting accepted in a message, counting the call object itself: set by
/// serde_json's fixed recursion limit (128). Deeper input (e.g. 10 000 `[`) fails to parse, so
/// the connection is closed as for any malformed message; nothing recurses without bound.
pub const MAX_JSON_DEPTH: usize = 127;

/// A message that breaks the protocol; the connection it came from must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol violation: {reason}")]
pub struct ProtocolError {
    /// What was wrong, for logs.
    pub reason: String,
}

impl ProtocolError {
    fn new(reason: impl Into<String>) -> Self {
        ProtocolError {
            reason: reason.into(),
        }
    }
}

/// The flags of a call; at most one is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallFlags {
    /// The caller wants no reply at all.
    pub oneway: bool,
    /// The caller accepts several replies (`continues`).
    pub more: bool,
    /// The caller wants the connection turned into a raw stream after the reply.
    pub upgrade: bool,
}

/// One parsed call: `{"method": "iface.Method", "parameters"?: {...}, flags...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallMessage {
    /// Fully qualified method name, `interface.Method`.
    pub method: String,
    /// The parameters; absent and `null` both become an empty object.
    pub parameters: Map<String, Value>,
    /// oneway / more / upgrade.
    pub flags: CallFlags,
}

impl CallMessage {
    /// Parses one call message (without its NUL) with UAPI.20 strictness: invalid JSON, a
    /// non-object, a missing or unqualified `method`, a non-boolean or second true flag,
    /// non-object `parameters`, or an unknown key that is not a vendor key (`org.example`)
    /// are errors. Vendor keys are ignored.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let call = CallMessage::deserialize(&mut de)
            .and_then(|call| de.end().map(|()| call))
            .map_err(|e| ProtocolError::new(e.to_string()))?;
        Ok(call)
    }

    /// The interface part of the method name.
    pub fn interface(&self) -> &str {
        split_method(&self.method).0
    }

    /// The member part of the method name.
    pub fn member(&self) -> &str {
        split_method(&self.method).1
    }
}

/// Splits `a.b.Method` into (`a.b`, `Method`); validated names always contain a dot.
fn split_method(method: &str) -> (&str, &str) {
    method.rsplit_once('.').unwrap_or(("", method))
}

impl<'de> Deserialize<'de> for CallMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(CallVisitor)
    }
}

/// Hand-written because the rules (vendor keys ignored, other unknown keys fatal, strict
/// flags, `null` parameters) do not fit serde's derive attributes without buffering.
struct CallVisitor;

impl<'de> Visitor<'de> for CallVisitor {
    type Value = CallMessage;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a varlink call object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CallMessage, A::Error> {
        let mut method: Option<String> = None;
        let mut parameters: Option<Map<String, Value>> = None;
        let mut seen_parameters = false;
        let (mut oneway, mut more, mut upgrade) = (None, None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "method" => set_once(&mut method, map.next_value()?, "method")?,
                "parameters" => {
                    if std::mem::replace(&mut seen_parameters, true) {
                        return Err(de::Error::custom("duplicate key \"parameters\""));
                    }
                    parameters = map
                        .next_value::<Option<Map<String, Value>>>()
                        .map_err(|_| {
                            de::Error::custom("\"parameters\" must be an object or null")
                        })?;
                }
                "oneway" => set_once(&mut oneway, flag(&mut map, "oneway")?, "oneway")?,
                "more" => set_once(&mut more, flag(&mut map, "more")?, "more")?,
                "upgrade" => set_once(&mut upgrade, flag(&mut map, "upgrade")?, "upgrade")?,
                vendor if vendor.contains('.') => {
                    map.next_value::<IgnoredAny>()?;
                }
                other => return Err(de::Error::custom(format!("unknown key \"{other}\""))),
            }
        }
        let method = method.ok_or_else(|| de::Error::custom("missing \"method\""))?;
        if !is_qualified_method(&method) {
            return Err(de::Error::custom(format!(
                "method \"{method}\" is not a fully qualified name (interface.Method)"
            )));
        }
        let flags = CallFlags {
            oneway: oneway.unwrap_or(false),
            more: more.unwrap_or(false),
            upgrade: upgrade.unwrap_or(false),
        };
        if [flags.oneway, flags.more, flags.upgrade]
            .iter()
            .filter(|f| **f)
            .count()
            > 1
        {
            return Err(de::Error::custom(
                "at most one of oneway, more and upgrade may be true",
            ));
        }
        Ok(CallMessage {
            method,
            parameters: parameters.unwrap_or_default(),
            flags,
        })
    }
}

fn flag<'de, A: MapAccess<'de>>(map: &mut A, name: &str) -> Result<bool, A::Error> {
    map.next_value::<bool>()
        .map_err(|_| de::Error::custom(format!("\"{name}\" must be a boolean")))
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::custom(format!("duplicate key \"{name}\"")));
    }
    Ok(())
}

/// `iface.Method` where the member starts with an uppercase letter and the interface is
/// non-empty; the interface name is resolved later (unknown names get InterfaceNotFound).
fn is_qualified_method(method: &str) -> bool {
    match method.rsplit_once('.') {
        Some((iface, member)) => {
            !iface.is_empty()
                && member.starts_with(|c: char| c.is_ascii_uppercase())
                && member.chars().all(|c| c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// One reply as a client receives it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ReplyMessage {
    /// Reply or error parameters (absent and `null` become empty).
    #[serde(deserialize_with = "null_as_empty")]
    pub parameters: Map<String, Value>,
    /// More replies follow for this call.
    pub continues: bool,
    /// The error name, for error replies.
    pub error: Option<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default())
}

impl ReplyMessage {
    /// Parses a reply (without its NUL). Unknown keys are ignored, as UAPI.20 allows for
    /// forward compatibility; anything that is not a reply object is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProtocolError> {
        // serde's derived struct deserializer would also accept a JSON array.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ProtocolError::new("invalid reply: not a JSON object"));
        }
        serde_json::from_slice(bytes).map_err(|e| ProtocolError::new(format!("invalid reply: {e}")))
    }
}

/// Appends one canonical reply and its NUL to `out`: empty parameters are omitted and
/// `continues` appears only when true.
pub fn encode_reply<P: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    parameters: &P,
    continues: bool,
    error: Option<&str>,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    out.push(b'{');
    let mut first = write_parameters(out, parameters).inspect_err(|_| out.truncate(start))?;
    if continues {
        out.extend_from_slice(if first {
            b"\"continues\":true"
        } else {
            b",\"continues\":true"
        });
        first = false;
    }
    if let Some(error) = error {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"error\":");
        serde_json::to_writer(&mut *out, error)?;
    }
    out.extend_from_slice(b"}\0");
    Ok(())
}

/// Appends one call and its NUL to `out`, as varlinkctl writes it: no false flags and no empty
/// parameters.
pub fn encode_call<P: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    method: &str,
    parameters: &P,
    flags: CallFlags,
) -> Result<(), serde_json::Error> {
    let start = out.len();
    out.extend_from_slice(b"{\"method\":");
    serde_json::to_writer(&mut *out, method)?;
    out.push(b',');
    write_parameters(out, parameters).inspect_err(|_| out.truncate(start))?;
    // Drop the separator again if no parameters were written.
    if out.last() == Some(&b',') {
        out.pop();
    }
    for (set, name) in [
        (flags.oneway, "oneway"),
        (flags.more, "more"),
        (flags.upgrade, "upgrade"),
    ] {
        if set {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":true");
        }
    }
    out.extend_from_slice(b"}\0");
    Ok(())
}

/// Writes `"parameters":{...}` unless the value serializes to an empty object or null.
/// Returns true when nothing was written (so the caller knows whether a comma is needed).
fn write_parameters<P: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    parameters: &P,
) -> Result<bool, serde_json::Error> {
    let start = out.len();
    out.extend_from_slice(b"\"parameters\":");
    let value_start = out.len();
    serde_json::to_writer(&mut *out, parameters)?;
    let written = &out[value_start..];
    if written == b"{}" || written == b"null" {
        out.truncate(start);
        return Ok(true);
    }
    if written.first() != Some(&b'{') {
        out.truncate(start);
        return Err(serde::ser::Error::custom(
            "parameters must serialize to a JSON object",
        ));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<CallMessage, ProtocolError> {
        CallMessage::parse(s.as_bytes())
    }

    #[test]
    fn parses_minimal_and_python_style_calls() {
        let c = parse(r#"{"method":"a.b.C"}"#).unwrap();
        assert_eq!((c.interface(), c.member()), ("a.b", "C"));
        assert!(c.parameters.is_empty());
        let c = parse(r#"{"method": "a.b.C", "more": false, "parameters": {}}"#).unwrap();
        assert_eq!(c.flags, CallFlags::default());
        let c = parse(r#" {"parameters":null,"method":"a.b.C","more":true} "#).unwrap();
        assert!(c.flags.more);
        let c = parse(r#"{"method":"a.b.C","org.example":{"x":1}}"#).unwrap();
        assert_eq!(c.method, "a.b.C");
    }

    #[test]
    fn rejects_every_malformed_envelope() {
        for bad in [
            "",
            "nope",
            "[]",
            "42",
            r#"{"parameters":{}}"#,
            r#"{"method":1}"#,
            r#"{"method":"Method"}"#,
            r#"{"method":"a.b.lower"}"#,
            r#"{"method":".Method"}"#,
            r#"{"method":"a.b.C","more":true,"oneway":true}"#,
            r#"{"method":"a.b.C","more":"yes"}"#,
            r#"{"method":"a.b.C","more":null}"#,
            r#"{"method":"a.b.C","parameters":[]}"#,
            r#"{"method":"a.b.C","parameters":"x"}"#,
            r#"{"method":"a.b.C","bogus":1}"#,
            r#"{"method":"a.b.C","method":"a.b.D"}"#,
            r#"{"method":"a.b.C"} {}"#,
            r#"{"method":"a.b.C""#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn encodes_canonical_replies() {
        let mut out = Vec::new();
        encode_reply(&mut out, &json!({}), false, None).unwrap();
        encode_reply(&mut out, &json!({"a":1}), true, None).unwrap();
        encode_reply(&mut out, &json!({"method":"a.b.C"}), false, Some("x.y.E")).unwrap();
        encode_reply(&mut out, &Value::Null, true, Some("x.y.E")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{}\0{\"parameters\":{\"a\":1},\"continues\":true}\0\
             {\"parameters\":{\"method\":\"a.b.C\"},\"error\":\"x.y.E\"}\0\
             {\"continues\":true,\"error\":\"x.y.E\"}\0"
        );
    }

    #[test]
    fn encodes_calls_like_varlinkctl() {
        let mut out = Vec::new();
        encode_call(&mut out, "a.b.C", &json!({}), CallFlags::default()).unwrap();
        let more = CallFlags {
            more: true,
            ..Default::default()
        };
        encode_call(&mut out, "a.b.C", &json!({"x":"y"}), more).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"method\":\"a.b.C\"}\0{\"method\":\"a.b.C\",\"parameters\":{\"x\":\"y\"},\"more\":true}\0"
        );
        let mut out = Vec::new();
        assert!(encode_call(&mut out, "a.b.C", &json!([1]), CallFlags::default()).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn parses_replies_leniently() {
        let r = ReplyMessage::parse(br#"{"parameters":null,"continues":false,"x":1}"#).unwrap();
        assert_eq!(r, ReplyMessage::default());
        assert!(ReplyMessage::parse(b"[]").is_err());
    }
}

#[cfg(test)]
mod depth_tests {
    use super::*;

    #[test]
    fn nesting_up_to_the_limit_parses_and_deeper_is_rejected() {
        let nested = |depth: usize| {
            format!(
                "{{\"method\":\"a.b.C\",\"parameters\":{{\"v\":{}1{}}}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        let deepest_ok = (0..MAX_JSON_DEPTH + 2)
            .take_while(|d| CallMessage::parse(nested(*d).as_bytes()).is_ok())
            .last();
        // The call object and the parameters object take two of the levels.
        assert_eq!(
            deepest_ok.map(|d| d + 2),
            Some(MAX_JSON_DEPTH),
            "{deepest_ok:?}"
        );
        assert!(CallMessage::parse(nested(10_000).as_bytes()).is_err());
    }
}
