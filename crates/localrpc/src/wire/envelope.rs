//! Call and reply envelopes: strict parsing of calls, canonical encoding of replies and calls.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::json_escape::{NEEDS_ESCAPE, escape_mask};
use super::search;

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

/// One parsed call: `{"method": "iface.Method", "parameters"?: {...}, flags...}`, borrowing
/// from the message's bytes. The parameters stay JSON text: the service checks them against
/// the IDL and decodes them once, straight into whatever the handler wants.
#[derive(Debug, Clone, PartialEq)]
pub struct CallMessage<'a> {
    /// Fully qualified method name, `interface.Method` (borrowed unless it had escapes).
    pub method: Cow<'a, str>,
    /// The parameters object as JSON text; absent and `null` both become `{}`.
    pub parameters: &'a str,
    /// oneway / more / upgrade.
    pub flags: CallFlags,
    /// The caller's operation id, from a well-formed `io.localrpc` vendor object
    /// (`"io.localrpc":{"op_id":"op-…"}`, see [`encode_call_with_op_id`]); anything else in
    /// that object, or a malformed one, is ignored like every vendor key.
    pub op_id: Option<u64>,
    /// Where the member starts in `method` (found while checking that the name is qualified).
    member_start: usize,
}

/// The vendor key under which localrpc peers pass their own call metadata.
const LOCALRPC_VENDOR_KEY: &str = "io.localrpc";

/// The op id in an `io.localrpc` vendor object's JSON text, if it holds a well-formed one.
fn op_id_from_extension(text: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Extension<'a> {
        #[serde(borrow, default)]
        op_id: Option<&'a str>,
    }
    let extension: Extension = serde_json::from_str(text).ok()?;
    parse_op_id(extension.op_id?)
}

/// `op-` and 1 to 16 hex digits, as [`format_op_id`] writes them.
pub(crate) fn parse_op_id(text: &str) -> Option<u64> {
    let hex = text.strip_prefix("op-")?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The text form of an op id: `op-` and at least 12 hex digits.
pub(crate) fn format_op_id(f: &mut impl fmt::Write, op_id: u64) -> fmt::Result {
    write!(f, "op-{op_id:012x}")
}

/// The parameters text of a call without parameters.
const EMPTY_PARAMETERS: &str = "{}";

impl<'a> CallMessage<'a> {
    /// Parses one call message (without its NUL) with UAPI.20 strictness: invalid JSON, a
    /// non-object, a missing or unqualified `method`, a non-boolean or second true flag,
    /// non-object `parameters`, nesting deeper than [`MAX_JSON_DEPTH`], a number no `f64` can
    /// hold (see `validate_json`), or an unknown key that is not a vendor key (`org.example`)
    /// are errors. Vendor keys are ignored, but for the op id in `io.localrpc`
    /// ([`CallMessage::op_id`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ProtocolError> {
        let call = CallMessage::parse_envelope(bytes)?;
        validate_json(call.parameters)?;
        Ok(call)
    }

    /// Like [`CallMessage::parse`], but the parameters are only bracket-matched and their
    /// nesting depth checked: the service reads them anyway, in the same pass that checks them
    /// against the IDL, and must call [`validate_json`] on every other path.
    pub(crate) fn parse_envelope(bytes: &'a [u8]) -> Result<Self, ProtocolError> {
        CallMessage::parse_envelope_checking(bytes, |_, _| None).map(|(call, _)| call)
    }

    /// [`CallMessage::parse_envelope`] that lets the caller check the parameters as they are
    /// met, instead of only bracket-matching them here and reading them again later: when the
    /// method comes before an object-valued `parameters` (as every peer writes calls), `check`
    /// gets the method's name (not yet checked to be qualified) and the text from the
    /// parameters' `{` to the end of the message. It may return where the member starts in the
    /// name *if it knows the name as a qualified method* (`interface.Method`, as the IDL
    /// defines them), with the length of the object there *if it read it as valid JSON* (an
    /// object serde_json parses as a `Map`, nested at most [`MAX_JSON_DEPTH`]` - 1` levels).
    /// The envelope then takes the name as qualified without scanning it, and goes on after
    /// the object instead of bracket-matching it. The call is the same as
    /// `parse_envelope`'s either way (for valid JSON the bracket matching ends where the object
    /// does), and `true` comes with it only when `check`'s length was used: then
    /// `call.parameters` is exactly the text `check` accepted. With `false`, whatever `check`
    /// found must be forgotten (the message may have been read by serde_json instead).
    pub(crate) fn parse_envelope_checking(
        bytes: &'a [u8],
        check: impl FnOnce(&'a str, &'a str) -> Option<(usize, usize)>,
    ) -> Result<(Self, bool), ProtocolError> {
        CallMessage::parse_envelope_expecting(bytes, None, |method, _, parameters| {
            check(method, parameters)
        })
    }

    /// [`CallMessage::parse_envelope_checking`] for a message whose method is likely
    /// `expected` (a connection's last one): the name is compared in place with it first,
    /// rather than scanned for its end and escapes, and `check` learns whether it was
    /// `expected` (its second argument). `expected` must need no escape (no `"`, `\` or
    /// control byte), as every registered method name. The call is the same either way.
    pub(crate) fn parse_envelope_expecting(
        bytes: &'a [u8],
        expected: Option<&str>,
        check: impl FnOnce(&'a str, bool, &'a str) -> Option<(usize, usize)>,
    ) -> Result<(Self, bool), ProtocolError> {
        let text = message_text(bytes)?;
        if let Some(found) = scan_canonical(text, expected, check) {
            return Ok(found);
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let call = de
            .deserialize_map(CallVisitor)
            .and_then(|call| de.end().map(|()| call))
            .map_err(|e| ProtocolError::new(e.to_string()))?;
        // The call object is one level, the parameters object the next.
        if exceeds_depth(call.parameters.as_bytes(), MAX_JSON_DEPTH - 1) {
            return Err(ProtocolError::new(format!(
                "parameters nested deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        Ok((call, false))
    }

    /// The interface and member parts of the method name.
    pub fn split_method(&self) -> (&str, &str) {
        split_at_member(&self.method, self.member_start)
    }

    /// The interface part of the method name.
    pub fn interface(&self) -> &str {
        self.split_method().0
    }

    /// The member part of the method name.
    pub fn member(&self) -> &str {
        self.split_method().1
    }

    /// The parameters parsed into a map (for tools and tests; the service does not build one).
    pub fn parameters_map(&self) -> Map<String, Value> {
        // The text was parsed as a JSON object already, so this cannot fail.
        serde_json::from_str(self.parameters).unwrap_or_default()
    }
}

/// `iface.Method` as `iface` and `Method`, the member starting at `member_start` (from
/// [`qualified_member_start`]).
fn split_at_member(method: &str, member_start: usize) -> (&str, &str) {
    let (interface, dot_member) = method.split_at(member_start - 1);
    (interface, &dot_member[1..])
}

/// The message as text. Calls are nearly always ASCII, and checking that is several times
/// cheaper than full UTF-8 validation on short messages.
fn message_text(bytes: &[u8]) -> Result<&str, ProtocolError> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|e| ProtocolError::new(format!("message is not UTF-8: {e}")))
}

/// True when valid JSON `text` nests arrays and objects deeper than `limit`.
///
/// serde_json skips over a raw value without a depth limit (iteratively, so safely), while
/// everything that later decodes the parameters has a recursion limit; checking here keeps
/// "too deep" a protocol error of the envelope, as for every other malformed message.
/// Strings are skipped with memchr, so a large message costs little; text shorter than
/// `2 * limit` bytes cannot nest that deep and is not scanned at all.
fn exceeds_depth(text: &[u8], limit: usize) -> bool {
    if text.len() <= 2 * limit {
        return false;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                loop {
                    match search::memchr2(b'"', b'\\', &text[i..]) {
                        Some(j) if text[i + j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j + 1;
                            break;
                        }
                        None => return false,
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// Checks that `parameters` (from [`CallMessage::parse_envelope`]) is JSON that serde_json
/// reads as a map of values: valid syntax, every number within `f64`'s range, serde_json's
/// raw-value token honoured. (`1e400` is valid JSON syntax but no `f64`; the IDL check, and any
/// handler reading the value, fail on it as on a syntax error, so a call carrying one closes
/// the connection whichever method it names.)
pub(crate) fn validate_json(parameters: &str) -> Result<(), ProtocolError> {
    let mut de = serde_json::Deserializer::from_str(parameters);
    // The parameters are a `Map`, whose own keys serde_json never takes for its raw-value
    // token; every value in it is a `Value`, where it does.
    de.deserialize_map(ParametersMap)
        .and_then(|()| de.end())
        .map_err(|e| ProtocolError::new(format!("invalid parameters: {e}")))
}

/// serde_json's raw-value token (its `raw_value` feature is on in this workspace): an object
/// read into a `Value` whose *first* key is this stands for the JSON text in its string value,
/// parsed in its place; no other key may follow.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// The parameters object, read as serde_json reads a `Map<String, Value>`.
struct ParametersMap;

impl<'de> Visitor<'de> for ParametersMap {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, AnyValue>()?.is_some() {}
        Ok(())
    }
}

/// Any JSON value, read the way serde_json reads one into a `Value` (numbers parsed, strings
/// unescaped, the raw-value token honoured) but kept nowhere. `IgnoredAny` checks none of that.
struct AnyValue;

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyValue)
    }
}

impl<'de> Visitor<'de> for AnyValue {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_i64<E>(self, _: i64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_u64<E>(self, _: u64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_f64<E>(self, _: f64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_str<E>(self, _: &str) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_unit<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        while seq.next_element::<AnyValue>()?.is_some() {}
        Ok(AnyValue)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let Some(first_is_token) = map.next_key_seed(IsRawValueToken)? else {
            return Ok(AnyValue);
        };
        if first_is_token {
            // As `Value` does: the string is JSON text read in place of the object (serde_json
            // then fails on any further key when the map ends).
            let CowStr(text) = map.next_value()?;
            let mut de = serde_json::Deserializer::from_str(&text);
            AnyValue::deserialize(&mut de)
                .and_then(|AnyValue| de.end())
                .map_err(de::Error::custom)?;
            return Ok(AnyValue);
        }
        map.next_value::<AnyValue>()?;
        while map.next_entry::<IgnoredAny, AnyValue>()?.is_some() {}
        Ok(AnyValue)
    }
}

/// A map key: whether it is [`RAW_VALUE_TOKEN`] once unescaped (as serde_json compares it).
struct IsRawValueToken;

impl<'de> de::DeserializeSeed<'de> for IsRawValueToken {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsRawValueToken {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == RAW_VALUE_TOKEN)
    }
}

/// The fast path of envelope parsing, for calls as real peers write them: an object whose keys
/// are `method`, `parameters` and the flags, each once, without escapes, with any JSON
/// whitespace. The parameters object is only bracket-matched here (strings skipped with
/// memchr), or taken at the length `check` read it to; its syntax is checked by whoever reads
/// it next, or was by `check`. Anything else (vendor keys, escapes,
/// errors of any kind) returns `None` and goes through the serde_json parser, which decides.
///
/// Hand-written because this runs for every call and serde_json's general machinery costs
/// several times more on these few bytes (it validates and scans each key separately).
///
/// `check` is [`CallMessage::parse_envelope_checking`]'s; the flag returned says whether its
/// length was used.
fn scan_canonical<'a>(
    text: &'a str,
    expected: Option<&str>,
    check: impl FnOnce(&'a str, bool, &'a str) -> Option<(usize, usize)>,
) -> Option<(CallMessage<'a>, bool)> {
    let bytes = text.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    let mut method: Option<&str> = None;
    // Whether the method is `expected`.
    let mut as_expected = false;
    // Where the member starts in the method name: from `check`, or found at the end.
    let mut member_start = None;
    let mut check = Some(check);
    let mut checked = false;
    let mut parameters: Option<&str> = None;
    let mut seen_parameters = false;
    let (mut oneway, mut more, mut upgrade) = (None, None, None);
    let mut op_id = None;
    let mut seen_extension = false;
    loop {
        at = skip_whitespace(bytes, at + 1);
        let (key, after) = known_key(bytes, at)?;
        at = skip_whitespace(bytes, after);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = skip_whitespace(bytes, at + 1);
        at = match key {
            Key::Method if method.is_none() => {
                let (name, after) = match expected.and_then(|name| quoted_at(text, at, name)) {
                    Some(found) => {
                        as_expected = true;
                        found
                    }
                    None => plain_string(text, at)?,
                };
                method = Some(name);
                after
            }
            Key::Parameters if !seen_parameters => {
                seen_parameters = true;
                if bytes[at..].starts_with(b"null") {
                    at + 4
                } else {
                    // The caller's check, where it can run: the method known, and an object
                    // (then its length, and only then, stands in for the bracket matching).
                    let checked_end = match (method, check.take()) {
                        (Some(name), Some(check)) if bytes.get(at) == Some(&b'{') => {
                            check(name, as_expected, &text[at..]).map(|(start, len)| {
                                debug_assert_eq!(Some(start), qualified_member_start(name));
                                member_start = Some(start);
                                at + len
                            })
                        }
                        _ => None,
                    };
                    let end = match checked_end {
                        Some(end) => {
                            checked = true;
                            end
                        }
                        None => skip_object(bytes, at, MAX_JSON_DEPTH - 1)?,
                    };
                    // (`get(..end)`, then `get(at..)`: each inlined, unlike `get(at..end)`.)
                    parameters = Some(text.get(..end)?.get(at..)?);
                    end
                }
            }
            Key::Oneway if oneway.is_none() => literal_bool(bytes, at, &mut oneway)?,
            Key::More if more.is_none() => literal_bool(bytes, at, &mut more)?,
            Key::Upgrade if upgrade.is_none() => literal_bool(bytes, at, &mut upgrade)?,
            Key::Extension if !seen_extension => {
                seen_extension = true;
                let end = skip_object(bytes, at, MAX_JSON_DEPTH - 1)?;
                op_id = op_id_from_extension(&text[at..end]);
                end
            }
            _ => return None,
        };
        at = skip_whitespace(bytes, at);
        match bytes.get(at) {
            Some(b',') => continue,
            Some(b'}') => break,
            _ => return None,
        }
    }
    if skip_whitespace(bytes, at + 1) != bytes.len() {
        return None;
    }
    let method = method?;
    let member_start = match member_start {
        Some(start) => start,
        None => qualified_member_start(method)?,
    };
    let flags = CallFlags {
        oneway: oneway.unwrap_or(false),
        more: more.unwrap_or(false),
        upgrade: upgrade.unwrap_or(false),
    };
    if u8::from(flags.oneway) + u8::from(flags.more) + u8::from(flags.upgrade) > 1 {
        return None;
    }
    let call = CallMessage {
        method: Cow::Borrowed(method),
        parameters: parameters.unwrap_or(EMPTY_PARAMETERS),
        flags,
        op_id,
        member_start,
    };
    Some((call, checked))
}

/// The keys of a call the fast path reads.
#[derive(Clone, Copy)]
enum Key {
    Method,
    Parameters,
    Oneway,
    More,
    Upgrade,
    /// [`LOCALRPC_VENDOR_KEY`].
    Extension,
}

/// [`LOCALRPC_VENDOR_KEY`] as a JSON string.
const QUOTED_VENDOR_KEY: &[u8; 13] = b"\"io.localrpc\"";

/// The key at `at` if it is one of the [`Key`]s written without escapes, and the index after
/// its closing quote; `None` for any other key (which the fast path does not read). The bytes
/// are compared in place, with no scan for the key's end: a plain string equal to a key is
/// exactly that key between quotes. (Each comparison has a constant length, so it is a few
/// word compares rather than a call to `memcmp`.)
fn known_key(bytes: &[u8], at: usize) -> Option<(Key, usize)> {
    let rest = bytes.get(at..)?;
    let (key, len) = match rest.get(1..3)? {
        b"me" if rest.starts_with(b"\"method\"") => (Key::Method, 8),
        b"pa" if rest.starts_with(b"\"parameters\"") => (Key::Parameters, 12),
        b"on" if rest.starts_with(b"\"oneway\"") => (Key::Oneway, 8),
        b"mo" if rest.starts_with(b"\"more\"") => (Key::More, 6),
        b"up" if rest.starts_with(b"\"upgrade\"") => (Key::Upgrade, 9),
        b"io" if rest.starts_with(QUOTED_VENDOR_KEY) => (Key::Extension, QUOTED_VENDOR_KEY.len()),
        _ => return None,
    };
    Some((key, at + len))
}

/// The index of the first byte at or after `at` that is not JSON whitespace.
fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// `"name"` at `at`: `name` as it is in `text`, and the index after its closing quote; what
/// [`plain_string`] returns there when `name` needs no escape.
fn quoted_at<'a>(text: &'a str, at: usize, name: &str) -> Option<(&'a str, usize)> {
    debug_assert!(!name.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]));
    let end = at + 1 + name.len();
    let [b'"', inside @ .., b'"'] = text.as_bytes().get(at..=end)? else {
        return None;
    };
    if !same_bytes(inside, name.as_bytes()) {
        return None;
    }
    // Between two quotes (ASCII, so on character boundaries).
    Some((text.get(at + 1..end)?, end + 1))
}

/// Whether `a` and `b` are equal, compared eight bytes at a time when both have eight or more
/// (the last eight overlapping the ones before): for method names, of 10 to 40 bytes, the
/// set-up of a call to `bcmp` costs as much as the comparison.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    match (a.last_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(a_last), Some(b_last)) if a.len() == b.len() => {
            a_last == b_last
                && (a.as_chunks::<8>().0.iter())
                    .zip(b.as_chunks::<8>().0)
                    .all(|(a, b)| a == b)
        }
        // A byte at a time: a call to `bcmp` here would make every call of the function save
        // and restore registers.
        _ => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a == b),
    }
}

/// A string at `at` without escapes or control characters, and the index after its closing
/// quote; `None` for anything else. (Method names are short, 10 to 40 bytes: eight bytes at a
/// time while eight remain, then a byte at a time, beats memchr's set-up here.)
fn plain_string(text: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let mut end = start;
    while let Some(word) = bytes.get(end..).and_then(<[u8]>::first_chunk::<8>) {
        let special = escape_mask(u64::from_le_bytes(*word));
        if special != 0 {
            // The first byte that needs an escape: a quote ends the string.
            end += special.trailing_zeros() as usize / 8;
            return (bytes[end] == b'"').then(|| (&text[start..end], end + 1));
        }
        end += 8;
    }
    while let Some(&byte) = bytes.get(end) {
        if !NEEDS_ESCAPE[usize::from(byte)] {
            end += 1;
            continue;
        }
        return (byte == b'"').then(|| (&text[start..end], end + 1));
    }
    None
}

/// `true` or `false` at `at` into `slot`; the index after it.
fn literal_bool(bytes: &[u8], at: usize, slot: &mut Option<bool>) -> Option<usize> {
    if bytes[at..].starts_with(b"true") {
        *slot = Some(true);
        Some(at + 4)
    } else if bytes[at..].starts_with(b"false") {
        *slot = Some(false);
        Some(at + 5)
    } else {
        None
    }
}

/// The index after the object that starts at `at`, matching brackets outside strings; `None`
/// if it does not start with `{`, is unterminated, or nests deeper than `limit`.
fn skip_object(bytes: &[u8], at: usize, limit: usize) -> Option<usize> {
    let mut rest = bytes.get(at..)?.iter();
    if rest.next() != Some(&b'{') {
        return None;
    }
    let mut depth = 1usize;
    // An iterator rather than indexing: this runs over every byte of every call's parameters,
    // and the bounds checks of `bytes[i]` cost as much as the scan.
    while let Some(&byte) = rest.next() {
        match byte {
            b'"' => rest = skip_string(rest)?,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return None;
                }
            }
            b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(bytes.len() - rest.as_slice().len());
                }
            }
            _ => {}
        }
    }
    None
}

/// The bytes after the closing quote of the string whose contents `rest` starts with.
fn skip_string(mut rest: std::slice::Iter<'_, u8>) -> Option<std::slice::Iter<'_, u8>> {
    // Most strings are short: look at a few bytes directly before paying memchr's set-up.
    for _ in 0..16 {
        match rest.next()? {
            b'"' => return Some(rest),
            b'\\' => {
                rest.next()?;
            }
            _ => {}
        }
    }
    let mut rest = rest.as_slice();
    loop {
        let found = search::memchr2(b'"', b'\\', rest)?;
        if rest[found] == b'\\' {
            rest = rest.get(found + 2..)?;
        } else {
            return Some(rest[found + 1..].iter());
        }
    }
}

/// A string borrowed from the input when it has no escapes (serde's own `Cow<str>` always
/// copies).
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Hand-written because the rules (vendor keys ignored, other unknown keys fatal, strict
/// flags, `null` parameters) do not fit serde's derive attributes without buffering.
struct CallVisitor;

impl<'de> Visitor<'de> for CallVisitor {
    type Value = CallMessage<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a varlink call object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CallMessage<'de>, A::Error> {
        let mut method: Option<Cow<'de, str>> = None;
        let mut parameters: Option<&'de RawValue> = None;
        let mut seen_parameters = false;
        let (mut oneway, mut more, mut upgrade) = (None, None, None);
        let mut op_id = None;
        while let Some(CowStr(key)) = map.next_key::<CowStr<'de>>()? {
            match &*key {
                "method" => {
                    let CowStr(name) = map
                        .next_value()
                        .map_err(|_| de::Error::custom("\"method\" must be a string"))?;
                    set_once(&mut method, name, "method")?;
                }
                "parameters" => {
                    if std::mem::replace(&mut seen_parameters, true) {
                        return Err(de::Error::custom("duplicate key \"parameters\""));
                    }
                    let raw: &'de RawValue = map.next_value()?;
                    match raw.get().as_bytes().first() {
                        Some(b'{') => parameters = Some(raw),
                        Some(b'n') => {}
                        _ => {
                            return Err(de::Error::custom(
                                "\"parameters\" must be an object or null",
                            ));
                        }
                    }
                }
                "oneway" => set_once(&mut oneway, flag(&mut map, "oneway")?, "oneway")?,
                "more" => set_once(&mut more, flag(&mut map, "more")?, "more")?,
                "upgrade" => set_once(&mut upgrade, flag(&mut map, "upgrade")?, "upgrade")?,
                LOCALRPC_VENDOR_KEY if op_id.is_none() => {
                    let extension: &'de RawValue = map.next_value()?;
                    op_id = op_id_from_extension(extension.get());
                }
                vendor if vendor.contains('.') => {
                    map.next_value::<IgnoredAny>()?;
                }
                other => return Err(de::Error::custom(format!("unknown key \"{other}\""))),
            }
        }
        let method = method.ok_or_else(|| de::Error::custom("missing \"method\""))?;
        let Some(member_start) = qualified_member_start(&method) else {
            return Err(de::Error::custom(format!(
                "method \"{method}\" is not a fully qualified name (interface.Method)"
            )));
        };
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
            parameters: parameters.map_or(EMPTY_PARAMETERS, RawValue::get),
            flags,
            op_id,
            member_start,
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

/// For `iface.Method`, where the member starts, provided the member starts with an uppercase
/// letter and the interface is non-empty; `None` for any other name. The interface name is
/// resolved later (unknown names get InterfaceNotFound).
fn qualified_member_start(method: &str) -> Option<usize> {
    let bytes = method.as_bytes();
    // The member: alphanumerics back to the last other byte, which must be the dot.
    let member_start = bytes
        .iter()
        .rposition(|c| !c.is_ascii_alphanumeric())
        .map_or(0, |i| i + 1);
    let qualified = member_start >= 2
        && bytes[member_start - 1] == b'.'
        && bytes.get(member_start).is_some_and(u8::is_ascii_uppercase);
    qualified.then_some(member_start)
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
    encode_call_with_op_id(out, method, parameters, flags, None)
}

/// [`encode_call`], and with an op id the vendor object that carries it to the server:
/// `"io.localrpc":{"op_id":"op-…"}`. varlink servers ignore vendor keys (UAPI.20); a localrpc
/// server adopts the id for the call ([`CallMessage::op_id`]), so that one id names the call
/// in the logs of every daemon it passes through.
pub fn encode_call_with_op_id<P: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    method: &str,
    parameters: &P,
    flags: CallFlags,
    op_id: Option<u64>,
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
    if let Some(op_id) = op_id {
        let mut text = String::with_capacity(24);
        // Writing to a String cannot fail.
        let _ = format_op_id(&mut text, op_id);
        out.extend_from_slice(b",\"");
        out.extend_from_slice(LOCALRPC_VENDOR_KEY.as_bytes());
        out.extend_from_slice(b"\":{\"op_id\":\"");
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\"}");
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
    super::to_writer(out, parameters)?;
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

    fn parse(s: &str) -> Result<CallMessage<'_>, ProtocolError> {
        CallMessage::parse(s.as_bytes())
    }

    #[test]
    fn parses_minimal_and_python_style_calls() {
        let c = parse(r#"{"method":"a.b.C"}"#).unwrap();
        assert_eq!((c.interface(), c.member()), ("a.b", "C"));
        assert_eq!(c.parameters, "{}");
        let c = parse(r#"{"method": "a.b.C", "more": false, "parameters": {}}"#).unwrap();
        assert_eq!(c.flags, CallFlags::default());
        let c = parse(r#" {"parameters":null,"method":"a.b.C","more":true} "#).unwrap();
        assert!(c.flags.more);
        let c = parse(r#"{"method":"a.b.C","org.example":{"x":1}}"#).unwrap();
        assert_eq!(c.method, "a.b.C");
    }

    #[test]
    fn adopts_the_op_id_of_an_io_localrpc_vendor_object_on_both_paths() {
        // Canonical (the scanner), then an escaped key and extra fields (serde_json).
        for text in [
            r#"{"method":"a.b.C","io.localrpc":{"op_id":"op-00000000abcd"}}"#,
            r#"{"method":"a.b.C","io\u002elocalrpc":{"x":[1],"op_id":"op-00000000abcd"}}"#,
        ] {
            assert_eq!(parse(text).unwrap().op_id, Some(0xabcd), "{text}");
        }
        let mut out = Vec::new();
        encode_call_with_op_id(
            &mut out,
            "a.b.C",
            &json!({"x": 1}),
            CallFlags::default(),
            Some(7),
        )
        .unwrap();
        assert_eq!(
            out,
            b"{\"method\":\"a.b.C\",\"parameters\":{\"x\":1},\"io.localrpc\":{\"op_id\":\"op-000000000007\"}}\0"
        );
        assert_eq!(
            parse(std::str::from_utf8(&out[..out.len() - 1]).unwrap())
                .unwrap()
                .op_id,
            Some(7)
        );
    }

    #[test]
    fn ignores_a_malformed_io_localrpc_vendor_object() {
        for extension in [
            r#""x""#,
            r#"{"op_id":5}"#,
            r#"{"op_id":"op-"}"#,
            r#"{"op_id":"op-12345678901234567"}"#,
            r#"{"op_id":"0x12"}"#,
            r#"{"op_id":"op-1\u0032"}"#,
            r#"null"#,
        ] {
            let text = format!(r#"{{"method":"a.b.C","io.localrpc":{extension}}}"#);
            let call = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(call.op_id, None, "{text}");
        }
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

#[cfg(test)]
mod fast_path_tests {
    use super::*;
    use proptest::prelude::*;

    /// The serde_json parser alone, as the reference for the fast path.
    fn reference(text: &str) -> Result<CallMessage<'_>, ProtocolError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let call = de
            .deserialize_map(CallVisitor)
            .and_then(|call| de.end().map(|()| call))
            .map_err(|e| ProtocolError::new(e.to_string()))?;
        if exceeds_depth(call.parameters.as_bytes(), MAX_JSON_DEPTH - 1) {
            return Err(ProtocolError::new("too deep"));
        }
        validate_json(call.parameters)?;
        Ok(call)
    }

    /// Envelope pieces as peers write them, plus near misses.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""method":"a.b.C""#.to_owned()),
            Just(r#""method":"io.x.Echo2""#.to_owned()),
            Just(r#""method":"a.b.c""#.to_owned()),
            Just(r#""method":"a\u002eb.C""#.to_owned()),
            Just(r#""method":"Method""#.to_owned()),
            Just(r#""method":1"#.to_owned()),
            Just(r#""parameters":{}"#.to_owned()),
            Just(r#""parameters":null"#.to_owned()),
            Just(r#""parameters":nul"#.to_owned()),
            Just(r#""parameters":[]"#.to_owned()),
            Just(r#""parameters":{"text":"he\"}llo","n":[1,{"a":"]"}]}"#.to_owned()),
            Just(r#""parameters":{"a":]}"#.to_owned()),
            Just(r#""parameters":{"a":[}"#.to_owned()),
            Just(r#""parameters": { "x" : "\\" } "#.to_owned()),
            Just(r#""more":true"#.to_owned()),
            Just(r#""more":false"#.to_owned()),
            Just(r#""oneway":true"#.to_owned()),
            Just(r#""upgrade":true"#.to_owned()),
            Just(r#""more":truex"#.to_owned()),
            Just(r#""more":"yes""#.to_owned()),
            Just(r#""org.example.vendor":{"x":[1]}"#.to_owned()),
            Just(r#""bogus":1"#.to_owned()),
            Just(r#""met\u0068od":"a.b.C""#.to_owned()),
            Just("\"method\":\"a.b\u{1}.C\"".to_owned()),
            Just("\"method\":\"ä.b.Ç\"".to_owned()),
            Just("\"method\":\"ä.b.C\"".to_owned()),
            Just("\"parameters\":{\"t\":\"é\"}".to_owned()),
        ]
    }

    fn envelope() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(piece(), 0..5),
            prop::sample::select(vec!["", " ", "\n\t ", "\r"]),
            prop::sample::select(vec!["", "}", ",", " x", "{"]),
        )
            .prop_map(|(pieces, ws, tail)| {
                let sep = format!("{ws},{ws}");
                format!("{ws}{{{ws}{}{ws}}}{tail}", pieces.join(&sep))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever the fast path accepts, the serde_json parser accepts identically, and
        /// `parse` (fast path + syntax check) agrees with the reference on every input.
        #[test]
        fn fast_path_agrees_with_serde_json(text in envelope()) {
            if let Some((fast, _)) = scan_canonical(&text, None, |_, _, _| None) {
                let slow = reference(&text);
                // The fast path leaves the parameters' syntax to later: compare only where
                // they are valid JSON, and otherwise `parse` must still fail.
                if validate_json(fast.parameters).is_ok() {
                    prop_assert_eq!(Ok(fast), slow);
                } else {
                    prop_assert!(slow.is_err(), "reference accepted {text:?}");
                }
            }
            prop_assert_eq!(CallMessage::parse(text.as_bytes()).is_ok(), reference(&text).is_ok(),
                "{:?}", text);
            if let (Ok(a), Ok(b)) = (CallMessage::parse(text.as_bytes()), reference(&text)) {
                prop_assert_eq!(a, b);
            }
        }
    }

    /// A check as the service's keeps its promise: the length of an object serde_json reads
    /// as a `Map`, nested within the limit; `None` for anything else.
    fn honest_check(rest: &str) -> Option<usize> {
        let mut objects =
            serde_json::Deserializer::from_str(rest).into_iter::<Map<String, Value>>();
        objects.next()?.ok()?;
        let len = objects.byte_offset();
        (!exceeds_depth(&rest.as_bytes()[..len], MAX_JSON_DEPTH - 1)).then_some(len)
    }

    /// `parse_envelope_checking` with [`honest_check`]: the call (or error) `parse_envelope`
    /// gives, and with `true` only when the parameters are exactly the text the check took.
    fn check_agrees(text: &str) -> Result<(), TestCaseError> {
        let mut taken = None;
        let mut asked = None;
        let with = CallMessage::parse_envelope_checking(text.as_bytes(), |method, rest| {
            asked = Some(method.to_owned());
            let start = qualified_member_start(method)?;
            let len = honest_check(rest)?;
            taken = Some(&rest[..len]);
            Some((start, len))
        });
        let without = CallMessage::parse_envelope(text.as_bytes());
        prop_assert_eq!(with.clone().map(|(call, _)| call), without, "{:?}", text);
        if let Ok((call, checked)) = with {
            if let Some(asked) = asked {
                prop_assert_eq!(asked, &*call.method);
            }
            if checked {
                prop_assert_eq!(Some(call.parameters), taken, "{:?}", text);
                prop_assert!(validate_json(call.parameters).is_ok());
            }
        }
        // Expecting a method, the right one or a near miss, changes nothing either; the check
        // learns it was the expected one exactly when it was.
        for expected in ["a.b.C", "a.b.Cx", "a.b.", "io.x.Echo2", "ä.b.C"] {
            let mut asked = None;
            let expecting = CallMessage::parse_envelope_expecting(
                text.as_bytes(),
                Some(expected),
                |method, as_expected, rest| {
                    asked = Some((method.to_owned(), as_expected));
                    Some((qualified_member_start(method)?, honest_check(rest)?))
                },
            );
            let checking = CallMessage::parse_envelope_checking(text.as_bytes(), |method, rest| {
                Some((qualified_member_start(method)?, honest_check(rest)?))
            });
            prop_assert_eq!(&expecting, &checking, "{:?} expecting {}", text, expected);
            if let Some((method, as_expected)) = asked {
                prop_assert_eq!(as_expected, method == expected, "{:?}", text);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Parameters checked while the envelope is read (and not bracket-matched then) give
        /// the same call or error as `parse_envelope`, wherever they are among the keys and
        /// whatever follows them.
        #[test]
        fn checking_in_passing_changes_no_verdict(text in envelope()) {
            check_agrees(&text)?;
        }
    }

    #[test]
    fn checking_in_passing_keeps_the_edge_cases() {
        let nested = |depth: usize, tail: &str| {
            format!(
                "{{\"method\":\"a.b.C\",\"parameters\":{{\"v\":{}1{}}}{tail}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        let mut texts = vec![
            r#"{"method":"a.b.C","parameters":{"x":{"y":[1,{"z":"}"}]}}}"#.to_owned(),
            r#" { "method" : "a.b.C" , "parameters" : { "x" : 1 } , "more" : true } "#.to_owned(),
            r#"{"method":"a.b.C","parameters":{},"org.example.v":{}}"#.to_owned(),
            r#"{"method":"a.b.C","parameters":{},"io.localrpc":{"op_id":"op-1"}}"#.to_owned(),
            r#"{"method":"a.b.C","parameters":{},"method":"a.b.C"}"#.to_owned(),
            r#"{"method":"a.b.C","parameters":{},"parameters":{}}"#.to_owned(),
            r#"{"method":"a.b.C","parameters":{}} {}"#.to_owned(),
            r#"{"method":"a.b.C","parameters":{}"#.to_owned(),
            r#"{"method":"a.b.C","parameters":"#.to_owned(),
            r#"{"method":"a.b.C","parameters":{"x":1e400}}"#.to_owned(),
            r#"{"method":"a.b.c","parameters":{}}"#.to_owned(),
            r#"{"parameters":{"x":1},"method":"a.b.C"}"#.to_owned(),
        ];
        for depth in [
            MAX_JSON_DEPTH - 3,
            MAX_JSON_DEPTH - 2,
            MAX_JSON_DEPTH - 1,
            1000,
        ] {
            texts.push(nested(depth, ""));
            texts.push(nested(depth, r#","more":true"#));
        }
        for text in &texts {
            check_agrees(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        // The common shapes take the check's length (another vendor key goes to serde_json).
        for text in [&texts[0], &texts[1], &texts[3]] {
            let parsed = CallMessage::parse_envelope_checking(text.as_bytes(), |method, rest| {
                Some((qualified_member_start(method)?, honest_check(rest)?))
            });
            assert!(matches!(parsed, Ok((_, true))), "{text}");
        }
        // A check that accepts nothing, and a method after the parameters: not asked, or asked
        // in vain, the verdict is the same.
        for text in &texts {
            let (with, without) = (
                CallMessage::parse_envelope_checking(text.as_bytes(), |_, _| None),
                CallMessage::parse_envelope(text.as_bytes()),
            );
            assert_eq!(with, without.map(|c| (c, false)));
        }
    }

    #[test]
    fn a_number_out_of_range_is_malformed_on_both_paths() {
        for text in [
            r#"{"method":"a.b.C","parameters":{"x":1e400}}"#,
            r#"{"org.example.v":1,"method":"a.b.C","parameters":{"x":{"y":[-2e308]}}}"#,
        ] {
            let error = CallMessage::parse(text.as_bytes()).expect_err(text);
            assert!(error.reason.contains("number out of range"), "{error}");
        }
        assert!(CallMessage::parse(br#"{"method":"a.b.C","parameters":{"x":1e300}}"#).is_ok());
    }

    /// `same_bytes` is equality, for lengths around the word size and method names' lengths,
    /// with a different byte anywhere; and `quoted_at` finds a name only between its quotes.
    #[test]
    fn same_bytes_is_equality() {
        for len in 0..=41u8 {
            let name: Vec<u8> = (0..len).map(|i| b'a' + i % 26).collect();
            assert!(same_bytes(&name, &name));
            for at in 0..name.len() {
                let mut other = name.clone();
                other[at] ^= 0x20;
                assert!(!same_bytes(&other, &name), "{other:?}");
                assert!(!same_bytes(&name, &other), "{other:?}");
            }
        }
        let name = "io.localrpc.Echo.Echo";
        let text = format!(r#""{name}","#);
        assert_eq!(quoted_at(&text, 0, name), Some((name, name.len() + 2)));
        for bad in [
            format!(r#""{name}x""#),
            format!(r#"x{name}""#),
            format!(r#""{name}"#),
            r#""io.localrpc.Echo.Ech0""#.to_string(),
        ] {
            assert_eq!(quoted_at(&bad, 0, name), None, "{bad}");
        }
    }

    /// `plain_string` against a byte-at-a-time reference, for strings around the word size
    /// with a special byte (or a non-ASCII one) anywhere, and text after them.
    #[test]
    fn plain_strings_end_at_their_first_special_byte() {
        fn reference(text: &str) -> Option<(&str, usize)> {
            let end = 1 + text[1..]
                .bytes()
                .position(|b| NEEDS_ESCAPE[usize::from(b)])?;
            (text.as_bytes()[end] == b'"').then(|| (&text[1..end], end + 1))
        }
        for len in 0..26 {
            let plain: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            for tail in ["", "\"", "\",\"parameters\":{}}", "x"] {
                let text = format!("\"{plain}{tail}");
                assert_eq!(plain_string(&text, 0), reference(&text), "{text:?}");
                for at in 0..len {
                    for special in ['"', '\\', '\u{1}', '\u{1f}', 'é', ' ', '~', '\u{7f}'] {
                        let mut chars: Vec<char> = plain.chars().collect();
                        chars[at] = special;
                        let text = format!("\"{}{tail}", chars.iter().collect::<String>());
                        assert_eq!(plain_string(&text, 0), reference(&text), "{text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn known_keys_are_exactly_the_keys_they_name() {
        assert_eq!(
            QUOTED_VENDOR_KEY,
            format!("\"{LOCALRPC_VENDOR_KEY}\"").as_bytes()
        );
        for (key, known) in [
            ("method", true),
            ("parameters", true),
            ("oneway", true),
            ("more", true),
            ("upgrade", true),
            ("io.localrpc", true),
            ("methods", false),
            ("meth", false),
            ("mor", false),
            ("more\\", false),
            ("io.localrpc.x", false),
            ("io", false),
            ("m", false),
            ("", false),
            ("paramEters", false),
        ] {
            let text = format!("\"{key}\":1");
            let found = known_key(text.as_bytes(), 0);
            assert_eq!(found.is_some(), known, "{key}");
            if let Some((_, after)) = found {
                assert_eq!(after, key.len() + 2, "{key}");
            }
        }
        assert!(known_key(b"\"mo", 0).is_none());
        assert!(known_key(b"\"more", 0).is_none());
        assert!(known_key(b"more\"", 0).is_none());
    }

    #[test]
    fn canonical_calls_take_the_fast_path() {
        for text in [
            r#"{"method":"a.b.C"}"#,
            r#"{"method":"a.b.C","parameters":{"text":"hello"}}"#,
            r#" { "parameters" : null , "method" : "a.b.C" , "more" : true } "#,
            r#"{"method":"a.b.C","parameters":{"x":"\"}"},"oneway":true}"#,
        ] {
            let (fast, _) = scan_canonical(text, None, |_, _, _| None)
                .unwrap_or_else(|| panic!("slow path for {text}"));
            assert_eq!(Ok(fast), reference(text));
        }
    }
}
