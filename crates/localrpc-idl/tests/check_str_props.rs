//! The checker on JSON text against the checker on parsed values: random interfaces (nested
//! structs, enums, arrays, maps, sets, nullables, named and unknown types), random *near* valid
//! values (wrong kinds, extra, missing, `null` and duplicate keys, bad enum values, floats for
//! ints, u64::MAX, serde_json's raw-value token), written as text with shuffled keys, escapes
//! and whitespace, must get exactly the same verdict from `check_parameters_str` as from
//! `serde_json::from_str::<Map>` + `check_parameters` (and `check_value_str` against
//! `from_str::<Value>` + `check_value`).
//!
//! The checker has two halves, held to the reference each on its own as well: a fast scanner
//! that only accepts (escapes in string values only, ordinary numbers) and gives up on anything
//! else, and the streaming checker behind it. Most cases are written *plain* (no escapes), so
//! that the fast scanner decides them, and a share of those get random edits of their syntax
//! (stray commas, digits, signs, quotes, non-JSON whitespace...) so that it must refuse exactly
//! what serde_json refuses. Others are written with escapes, in keys and values: every kind JSON
//! has, `\u` in either case and surrogate pairs, and now and then one that serde_json refuses
//! (unknown, short, lone or reversed surrogates...), which the fast scanner must not take.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use localrpc_idl::__check_str::{accepts_parameters, accepts_value};
use localrpc_idl::{
    __check_str, CheckError, EnumVariant, Field, Interface, Member, Method, Type, TypeDef,
    accepts_parameters_prefix, check_parameters, check_parameters_str, check_value,
    check_value_str,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value};

const TOKEN: &str = "$serde_json::private::RawValue";

/// splitmix64: the values are drawn from a seed, so proptest shrinks the types and the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True with probability `n` in 100.
    fn percent(&mut self, n: usize) -> bool {
        self.below(100) < n
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// A JSON document as written: object entries in order, duplicates allowed, numbers as text.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

const FIELD_NAMES: &[&str] = &["a", "b", "c", "name", "count", "x_y", "Zz", "na"];

/// Longer field names (rarely drawn), compared otherwise by the fast scanner: 8, 9 to 16, more
/// than 16 bytes.
const LONG_FIELD_NAMES: &[&str] = &["exactly8", "a_longer_name", "an_even_longer_field"];

/// Field names `parse` refuses, which a hand-built interface may have (rarely drawn): the
/// text checker must still agree.
const ODD_FIELD_NAMES: &[&str] = &["x\"y", "back\\slash", "tab\tname", "ctl\u{1}", "é", TOKEN];

const STRINGS: &[&str] = &[
    "",
    "a",
    "name",
    "we\"ird.key",
    "back\\slash",
    "tab\there",
    "new\nline",
    "é",
    "日本",
    "😀 emoji",
    "/slash/",
    "\u{1}ctl",
    "\u{8}\u{c}\r",
    // Several of the scanner's eight-byte words.
    "a string longer than sixteen bytes, scanned eight at a time",
    "long enough for the eight-byte scan, then a quote \" and a tab\t",
    "fast",
    "FAST",
    "slow",
    TOKEN,
];

const INTS: &[&str] = &[
    "0",
    "7",
    "-5",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "9223372036854775808",
    "-9223372036854775807",
    "-1",
];

/// Floats in serde_json's eyes (including integers that fit neither i64 nor u64, and -0).
const FLOATS: &[&str] = &[
    "1.5",
    "1.0",
    "1e3",
    "-0",
    "-0.0",
    "2E-2",
    "0e5",
    "1E+99",
    "-0.5e-07",
    "18446744073709551616",
    "-9223372036854775809",
    "-18446744073709551615",
    "123456789012345678901234567890",
    // Beyond the fast scanner's limits (length 64, two exponent digits): still floats.
    "1234567890123456789012345678901234567890123456789012345678901234567890",
    "1e100",
    "1e-400",
];

/// Escapes inserted now and then in strings written with escapes: valid ones that are rare
/// otherwise, and ones serde_json refuses (in a string it parses whole).
const ESCAPES: &[&str] = &[
    "\\ud83d\\ude00",
    "\\uD800\\uDC00",
    "\\udbff\\udfff",
    "\\u0000",
    "\\uFFFF",
    "\\ud7ff",
    "\\ue000",
    "\\/",
    // Refused.
    "\\x",
    "\\U0041",
    "\\'",
    "\\u12",
    "\\u12g4",
    "\\u 123",
    "\\ud800",
    "\\udbff",
    "\\udc00",
    "\\uDFFF",
    "\\ud800\\u0041",
    "\\ud800\\ud800",
    "\\ud800\\n",
    "\\ud800x",
    "\\udc00\\ud800",
    "\\ud83d\\u",
    "\\ud83d\\ude0",
    "\\\u{1}",
    "\u{1f}",
    "\\",
];

/// Whether a string can be written without escapes.
fn is_plain(s: &str) -> bool {
    !s.contains(|c: char| c == '"' || c == '\\' || c < ' ')
}

struct Gen<'a> {
    iface: &'a Interface,
    rng: Rng,
    /// Chance in 100 of a mutation at each value.
    mutate: usize,
    /// Chance in 100 that plain text gets random syntax edits.
    edits: usize,
    /// How strings are drawn and written.
    how: How,
}

impl Gen<'_> {
    fn pick_string(&mut self, plain: bool) -> &'static str {
        loop {
            let s = self.rng.pick(STRINGS);
            if !plain || is_plain(s) {
                return s;
            }
        }
    }

    fn some_string(&mut self, plain: bool) -> String {
        let mut s = self.pick_string(plain).to_string();
        if self.rng.percent(20) {
            s.push_str(self.pick_string(plain));
        }
        s
    }

    /// A string value.
    fn string(&mut self) -> String {
        self.some_string(self.how.plain)
    }

    /// An object key other than a field name.
    fn key(&mut self) -> String {
        self.some_string(self.how.plain || self.how.plain_keys)
    }

    fn int(&mut self) -> J {
        if self.rng.percent(50) {
            J::Num(self.rng.pick(INTS).to_string())
        } else {
            J::Num(((self.rng.next() as i64) >> self.rng.below(64)).to_string())
        }
    }

    /// Any JSON value, nesting at most `depth` more levels.
    fn arbitrary(&mut self, depth: usize) -> J {
        let kinds = if depth == 0 { 5 } else { 7 };
        match self.rng.below(kinds) {
            0 => J::Null,
            1 => J::Bool(self.rng.percent(50)),
            2 => {
                if self.rng.percent(50) {
                    self.int()
                } else {
                    J::Num(self.rng.pick(FLOATS).to_string())
                }
            }
            3 | 4 => J::Str(self.string()),
            5 => J::Arr(
                (0..self.rng.below(3))
                    .map(|_| self.arbitrary(depth - 1))
                    .collect(),
            ),
            _ => J::Obj(
                (0..self.rng.below(3))
                    .map(|_| {
                        let key = if self.rng.percent(50) {
                            self.rng.pick(FIELD_NAMES).to_string()
                        } else {
                            self.key()
                        };
                        (key, self.arbitrary(depth - 1))
                    })
                    .collect(),
            ),
        }
    }

    /// A value of `ty`, or near it.
    fn value(&mut self, ty: &Type, depth: usize) -> J {
        if depth > 8 {
            // Recursive types: stop somewhere (often wrong, which is fine).
            return J::Null;
        }
        let j = if self.rng.percent(self.mutate) {
            self.arbitrary(2)
        } else {
            self.valid(ty, depth)
        };
        // Rarer in plain text, where each one sends the whole text to the streaming checker.
        if self.rng.percent(if self.how.plain { 1 } else { 3 }) {
            self.raw_value_token(j)
        } else {
            j
        }
    }

    /// serde_json replaces an object whose first key is the raw-value token by the JSON text
    /// in its string value (or refuses the document when the value is not such a string or the
    /// object has more keys).
    fn raw_value_token(&mut self, j: J) -> J {
        let how = self.how;
        match self.rng.below(10) {
            0 => J::Obj(vec![(TOKEN.into(), j)]),
            1 => J::Obj(vec![
                (TOKEN.into(), J::Str(write(&j, &mut self.rng, how))),
                ("a".into(), J::Null),
            ]),
            2 => J::Obj(vec![("a".into(), J::Null), (TOKEN.into(), j)]),
            3 => J::Obj(vec![(TOKEN.into(), J::Str("[1,".into()))]),
            _ => J::Obj(vec![(TOKEN.into(), J::Str(write(&j, &mut self.rng, how)))]),
        }
    }

    fn valid(&mut self, ty: &Type, depth: usize) -> J {
        match ty {
            Type::Bool => J::Bool(self.rng.percent(50)),
            Type::Int => self.int(),
            Type::Float => {
                if self.rng.percent(50) {
                    self.int()
                } else {
                    J::Num(self.rng.pick(FLOATS).to_string())
                }
            }
            Type::String => J::Str(self.string()),
            Type::Object => J::Obj(
                (0..self.rng.below(3))
                    .map(|_| (self.key(), self.arbitrary(2)))
                    .collect(),
            ),
            Type::Any => {
                let j = self.arbitrary(2);
                if matches!(j, J::Null) {
                    J::Bool(true)
                } else {
                    j
                }
            }
            Type::Named(name) => match self.iface.type_def(name) {
                Some(def) => {
                    let ty = def.ty.clone();
                    self.valid(&ty, depth + 1)
                }
                None => self.arbitrary(1),
            },
            Type::Struct(fields) => J::Obj(self.fields(fields, depth)),
            Type::Enum(variants) => {
                if self.rng.percent(10) {
                    J::Str(self.string())
                } else {
                    J::Str(self.rng.pick(variants).name.clone())
                }
            }
            Type::Array(inner) => J::Arr(
                (0..self.rng.below(4))
                    .map(|_| self.value(inner, depth + 1))
                    .collect(),
            ),
            Type::Map(inner) => {
                let set = matches!(&**inner, Type::Struct(f) if f.is_empty());
                J::Obj(
                    (0..self.rng.below(5))
                        .map(|_| {
                            // A small key pool: duplicates come naturally.
                            let key = if self.rng.percent(60) {
                                self.rng.pick(&["a", "b", "c"]).to_string()
                            } else {
                                self.key()
                            };
                            let value = if set && !self.rng.percent(self.mutate) {
                                if self.rng.percent(70) {
                                    J::Obj(vec![])
                                } else {
                                    J::Obj(vec![("x".into(), J::Num("1".into()))])
                                }
                            } else {
                                self.value(inner, depth + 1)
                            };
                            (key, value)
                        })
                        .collect(),
                )
            }
            Type::Nullable(inner) => {
                if self.rng.percent(25) {
                    J::Null
                } else {
                    self.value(inner, depth + 1)
                }
            }
        }
    }

    /// A struct's entries: nullable fields sometimes absent or null; then mutations (drop a
    /// key, add an undeclared key, repeat a key with another value) and shuffling.
    fn fields(&mut self, fields: &[Field], depth: usize) -> Vec<(String, J)> {
        let mut entries = Vec::new();
        for field in fields {
            if matches!(field.ty, Type::Nullable(_)) {
                match self.rng.below(3) {
                    0 => continue,
                    1 => {
                        entries.push((field.name.clone(), J::Null));
                        continue;
                    }
                    _ => {}
                }
            }
            let value = self.value(&field.ty, depth + 1);
            entries.push((field.name.clone(), value));
        }
        if !entries.is_empty() && self.rng.percent(self.mutate) {
            let i = self.rng.below(entries.len());
            entries.remove(i);
        }
        if self.rng.percent(self.mutate) {
            for _ in 0..=self.rng.below(2) {
                let key = if self.rng.percent(90) {
                    self.rng.pick(FIELD_NAMES).to_string()
                } else {
                    self.key()
                };
                let value = self.arbitrary(1);
                let at = self.rng.below(entries.len() + 1);
                entries.insert(at, (key, value));
            }
        }
        if !entries.is_empty() && self.rng.percent(self.mutate * 2) {
            // A duplicate, valid or not.
            let i = self.rng.below(entries.len());
            let key = entries[i].0.clone();
            let value = match fields.iter().find(|f| f.name == key) {
                Some(f) if self.rng.percent(50) => self.value(&f.ty, depth + 1),
                _ => self.arbitrary(1),
            };
            entries.push((key, value));
        }
        if self.rng.percent(50) {
            for i in (1..entries.len()).rev() {
                let j = self.rng.below(i + 1);
                entries.swap(i, j);
            }
        }
        entries
    }
}

impl Gen<'_> {
    /// The text of `j`: plain text is sometimes edited, any text sometimes damaged.
    fn text(&mut self, j: &J) -> String {
        let text = write(j, &mut self.rng, self.how);
        let text = if self.how.plain && self.rng.percent(self.edits) {
            edit(text, &mut self.rng)
        } else {
            text
        };
        damage(text, &mut self.rng)
    }
}

/// How strings are written.
#[derive(Debug, Clone, Copy)]
struct How {
    /// Strings drawn among those that need no escapes, and written without.
    plain: bool,
    /// The same for keys only.
    plain_keys: bool,
    /// Chance in 100 that a string written with escapes gets one of [`ESCAPES`].
    escapes: usize,
    /// Where written without escapes: chance in 100 that a string that needs some is written
    /// as it is (mostly not JSON then; or another key than the string, for odd field names).
    raw: usize,
}

/// JSON text with random whitespace and (unless `plain`) random escapes.
fn write(j: &J, rng: &mut Rng, how: How) -> String {
    let mut out = String::new();
    write_into(j, rng, how, &mut out);
    out
}

fn ws(rng: &mut Rng, out: &mut String) {
    if rng.percent(10) {
        out.push_str(rng.pick(&[" ", "\n", "\t ", "\r\n  "]));
    }
}

fn write_str(s: &str, key: bool, rng: &mut Rng, how: How, out: &mut String) {
    out.push('"');
    let plain = how.plain || (key && how.plain_keys);
    if plain && (is_plain(s) || rng.percent(how.raw)) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let escape_some = rng.percent(30);
    // Where one of `ESCAPES` goes, if one does.
    let odd_at = rng
        .percent(how.escapes)
        .then(|| rng.below(s.chars().count() + 1));
    for (i, c) in s.chars().enumerate() {
        if odd_at == Some(i) {
            out.push_str(rng.pick(ESCAPES));
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' if rng.percent(50) => out.push_str("\\n"),
            '\t' if rng.percent(50) => out.push_str("\\t"),
            '\r' if rng.percent(50) => out.push_str("\\r"),
            '\u{8}' if rng.percent(50) => out.push_str("\\b"),
            '\u{c}' if rng.percent(50) => out.push_str("\\f"),
            '/' if rng.percent(50) => out.push_str("\\/"),
            c if (c as u32) < 0x20
                || (escape_some && rng.percent(30))
                || (c > '\u{ffff}' && rng.percent(50)) =>
            {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    if rng.percent(50) {
                        let _ = write!(out, "\\u{unit:04x}");
                    } else {
                        let _ = write!(out, "\\u{unit:04X}");
                    }
                }
            }
            c => out.push(c),
        }
    }
    if odd_at == Some(s.chars().count()) {
        out.push_str(rng.pick(ESCAPES));
    }
    out.push('"');
}

fn write_into(j: &J, rng: &mut Rng, how: How, out: &mut String) {
    ws(rng, out);
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(n) => out.push_str(n),
        J::Str(s) => write_str(s, false, rng, how, out),
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_into(item, rng, how, out);
            }
            ws(rng, out);
            out.push(']');
        }
        J::Obj(entries) => {
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                write_str(key, true, rng, how, out);
                ws(rng, out);
                out.push(':');
                write_into(value, rng, how, out);
            }
            ws(rng, out);
            out.push('}');
        }
    }
    ws(rng, out);
}

/// Now and then, text that is not (or no longer) one JSON value.
fn damage(text: String, rng: &mut Rng) -> String {
    if !rng.percent(4) {
        return text;
    }
    match rng.below(3) {
        0 => {
            let mut cut = rng.below(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_string()
        }
        1 => text + rng.pick(&["x", ",", "}", "]", " 1", "\"", "\\"]),
        _ => format!("{}{text}", rng.pick(&["[", "{", ",", "x"])),
    }
}

/// Characters that matter to JSON syntax, and some that look like whitespace but are not.
const EDITS: &[char] = &[
    '{', '}', '[', ']', ',', ':', '"', '\\', '/', '0', '1', '9', '-', '+', '.', 'e', 'E', 't', 'n',
    'x', ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{a0}', '\u{1}', '\u{0}', 'é',
];

/// One to three random edits (insert, replace or delete a character) anywhere: mostly invalid
/// text, sometimes valid text of another meaning.
fn edit(text: String, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..=rng.below(3) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 => chars.insert(at, rng.pick(EDITS)),
            1 if at < chars.len() => chars[at] = rng.pick(EDITS),
            _ if at < chars.len() => {
                chars.remove(at);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn invalid(result: &Result<(), CheckError>) -> bool {
    matches!(result, Err(e) if e.path.is_empty() && e.reason.starts_with("invalid JSON"))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The verdict the text checker must give for parameters `text`; `None`: invalid JSON.
fn reference_parameters(
    iface: &Interface,
    fields: &[Field],
    text: &str,
) -> Option<Result<(), CheckError>> {
    if let Ok(map) = serde_json::from_str::<Map<String, Value>>(text) {
        return Some(check_parameters(iface, fields, &map));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Null) => Some(check_parameters(iface, fields, &Map::new())),
        Ok(other) => Some(Err(CheckError {
            path: String::new(),
            reason: format!("expected object, found {}", kind(&other)),
        })),
        Err(_) => None,
    }
}

/// The verdict of the whole checker and of the streaming checker alone must be `expected`; the
/// fast scanner may accept only what is valid.
fn assert_all(
    text: &str,
    what: &str,
    expected: Option<Result<(), CheckError>>,
    whole: Result<(), CheckError>,
    stream: Result<(), CheckError>,
    fast: bool,
) -> Result<(), TestCaseError> {
    prop_assert!(
        !fast || expected == Some(Ok(())),
        "{what}: the fast scanner accepts, expected {expected:?}\ntext: {text}"
    );
    assert_same(text, what, expected.clone(), whole)?;
    assert_same(text, &format!("{what} (streaming only)"), expected, stream)
}

fn assert_same(
    text: &str,
    what: &str,
    expected: Option<Result<(), CheckError>>,
    got: Result<(), CheckError>,
) -> Result<(), TestCaseError> {
    match expected {
        None => prop_assert!(
            invalid(&got),
            "{what}: invalid JSON expected, got {got:?}\ntext: {text}"
        ),
        Some(expected) => {
            prop_assert_eq!(&got, &expected, "{}: verdicts differ\ntext: {}", what, text)
        }
    }
    Ok(())
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        50 => prop::sample::select(FIELD_NAMES),
        5 => prop::sample::select(LONG_FIELD_NAMES),
        1 => prop::sample::select(ODD_FIELD_NAMES),
    ]
    .prop_map(str::to_string)
}

fn fields(ty: BoxedStrategy<Type>, max: usize) -> impl Strategy<Value = Vec<Field>> {
    prop::collection::vec((field_name(), ty), 0..=max).prop_map(|items| {
        let mut seen = BTreeSet::new();
        items
            .into_iter()
            .filter(|(name, _)| seen.insert(name.clone()))
            .map(|(name, ty)| Field {
                name,
                doc: vec![],
                ty,
            })
            .collect()
    })
}

fn enum_type() -> impl Strategy<Value = Type> {
    prop::collection::btree_set(prop::sample::select(&["fast", "slow", "a", "é"][..]), 1..4)
        .prop_map(|names| {
            Type::Enum(
                names
                    .into_iter()
                    .map(|name| EnumVariant {
                        name: name.to_string(),
                        doc: vec![],
                    })
                    .collect(),
            )
        })
}

/// Type expressions over the type names `names` (and, rarely, an undeclared one).
fn type_expr(names: Vec<String>) -> BoxedStrategy<Type> {
    let mut leaves = vec![
        (2, Just(Type::Bool).boxed()),
        (3, Just(Type::Int).boxed()),
        (2, Just(Type::Float).boxed()),
        (3, Just(Type::String).boxed()),
        (1, Just(Type::Object).boxed()),
        (1, Just(Type::Any).boxed()),
        (1, Just(Type::Named("Nope".into())).boxed()),
    ];
    if !names.is_empty() {
        leaves.push((4, prop::sample::select(names).prop_map(Type::Named).boxed()));
    }
    let leaf = prop::strategy::Union::new_weighted(leaves);
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            3 => fields(inner.clone(), 4).prop_map(Type::Struct),
            1 => enum_type(),
            2 => inner.clone().prop_map(|t| Type::Array(Box::new(t))),
            2 => inner.clone().prop_map(|t| Type::Map(Box::new(t))),
            1 => Just(Type::Map(Box::new(Type::Struct(vec![])))),
            2 => inner.prop_map(|t| match t {
                Type::Nullable(t) => Type::Nullable(t),
                t => Type::Nullable(Box::new(t)),
            }),
        ]
    })
    .boxed()
}

/// An interface with up to three named types (structs or enums, possibly recursive) and a
/// method `M` whose input is the parameters under test.
fn interface() -> impl Strategy<Value = Interface> {
    (0usize..=3)
        .prop_flat_map(|count| {
            let names: Vec<String> = ["A", "B", "C"][..count]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let ty = type_expr(names.clone());
            let defs = names
                .into_iter()
                .map(|name| {
                    prop_oneof![
                        4 => fields(ty.clone(), 4).prop_map(Type::Struct),
                        1 => enum_type(),
                    ]
                    .prop_map(move |ty| {
                        Member::Type(TypeDef {
                            name: name.clone(),
                            doc: vec![],
                            ty,
                        })
                    })
                })
                .collect::<Vec<_>>();
            (defs, fields(ty, 5))
        })
        .prop_map(|(mut members, input)| {
            members.push(Member::Method(Method {
                name: "M".into(),
                doc: vec![],
                input,
                output: vec![],
            }));
            Interface {
                name: "org.example.props".into(),
                doc: vec![],
                members,
            }
        })
}

fn all_types(iface: &Interface) -> Vec<Type> {
    let mut types = Vec::new();
    for member in &iface.members {
        match member {
            Member::Type(def) => {
                types.push(Type::Named(def.name.clone()));
                types.push(def.ty.clone());
            }
            Member::Method(m) => {
                types.extend(m.input.iter().map(|f| f.ty.clone()));
                types.push(Type::Struct(m.input.clone()));
            }
            Member::Error(_) => {}
        }
    }
    types
}

/// How a case writes its texts.
#[derive(Debug, Clone, Copy)]
struct Style {
    /// Chance in 100 of a mutation at each value.
    mutate: usize,
    /// Chance in 100 that plain text gets random syntax edits.
    edits: usize,
    /// How strings are written (see [`Gen::how`]).
    how: How,
}

/// Everything: mutations of all rates, plain and escaped text.
fn any_style() -> impl Strategy<Value = Style> {
    (
        prop::sample::select(&[0usize, 5, 15, 30][..]),
        any::<bool>(),
        prop::sample::select(&[0usize, 2, 10][..]),
    )
        .prop_map(|(mutate, plain, escapes)| Style {
            mutate,
            edits: 20,
            how: How {
                plain,
                plain_keys: false,
                escapes,
                raw: 5,
            },
        })
}

/// Mostly valid plain text, for the fast scanner to decide (and now and then to refuse).
fn fast_style() -> impl Strategy<Value = Style> {
    prop::sample::select(&[0usize, 0, 0, 0, 5, 15][..]).prop_map(|mutate| Style {
        mutate,
        edits: 10,
        how: How {
            plain: true,
            plain_keys: true,
            escapes: 0,
            raw: 10,
        },
    })
}

/// Mostly valid text with escapes in values (keys plain where they can be), some of them
/// refused by serde_json: the fast scanner takes escapes in string values, and must take only
/// those serde_json takes.
fn escaped_style() -> impl Strategy<Value = Style> {
    (
        prop::sample::select(&[0usize, 0, 0, 5][..]),
        prop::sample::select(&[0usize, 3, 10][..]),
    )
        .prop_map(|(mutate, escapes)| Style {
            mutate,
            edits: 0,
            how: How {
                plain: false,
                plain_keys: true,
                escapes,
                raw: 0,
            },
        })
}

/// How many texts a case checked, and which the fast scanner accepted.
#[derive(Debug, Default)]
struct Coverage {
    texts: usize,
    fast: usize,
    valid: usize,
    valid_fast: usize,
    /// Valid texts with an escape, and those of them the fast scanner accepted.
    escaped: usize,
    escaped_fast: usize,
}

impl Coverage {
    fn add(&mut self, text: &str, expected: &Option<Result<(), CheckError>>, fast: bool) {
        let valid = *expected == Some(Ok(()));
        let escaped = valid && text.contains('\\');
        self.texts += 1;
        self.fast += usize::from(fast);
        self.valid += usize::from(valid);
        self.valid_fast += usize::from(valid && fast);
        self.escaped += usize::from(escaped);
        self.escaped_fast += usize::from(escaped && fast);
    }

    fn total(&mut self, other: &Coverage) {
        self.texts += other.texts;
        self.fast += other.fast;
        self.valid += other.valid;
        self.valid_fast += other.valid_fast;
        self.escaped += other.escaped;
        self.escaped_fast += other.escaped_fast;
    }
}

/// `accepts_parameters_prefix` on `text` (without the whitespace around it) followed by what
/// may follow parameters in a call: it takes the object exactly when `accepts_parameters` takes
/// `text`, and whatever length it gives is text the whole check accepts.
fn check_prefix(
    iface: &Interface,
    input: &[Field],
    text: &str,
    fast: bool,
) -> Result<(), TestCaseError> {
    let object = text.trim_matches([' ', '\t', '\n', '\r']);
    for suffix in ["", "}", ",\"more\":true}", " }", "x", "\"}", "]}"] {
        let joined = format!("{object}{suffix}");
        let prefix = accepts_parameters_prefix(iface, input, &joined);
        if fast && object.starts_with('{') {
            prop_assert_eq!(prefix, Some(object.len()), "{:?}", joined);
        }
        if let Some(len) = prefix {
            let taken = &joined[..len];
            prop_assert!(accepts_parameters(iface, input, taken), "{:?}", joined);
            prop_assert!(
                check_parameters_str(iface, input, taken).is_ok(),
                "{:?}",
                joined
            );
        }
    }
    Ok(())
}

/// Three parameter texts and two value texts from `seed`, each checked by both checkers on
/// text and the fast scanner against the reference.
fn check_case(iface: &Interface, seed: u64, style: Style) -> Result<Coverage, TestCaseError> {
    let mut coverage = Coverage::default();
    let mut generator = Gen {
        iface,
        rng: Rng(seed),
        mutate: style.mutate,
        edits: style.edits,
        how: style.how,
    };
    let input = iface.method("M").expect("M").input.clone();
    for _ in 0..3 {
        let j = match generator.rng.below(100) {
            0..5 => generator.arbitrary(1),
            // The root map is a `Map`, to which serde_json gives the token no meaning.
            5..8 => {
                let j = J::Obj(generator.fields(&input, 0));
                generator.raw_value_token(j)
            }
            _ => J::Obj(generator.fields(&input, 0)),
        };
        let text = generator.text(&j);
        let expected = reference_parameters(iface, &input, &text);
        let fast = accepts_parameters(iface, &input, &text);
        coverage.add(&text, &expected, fast);
        check_prefix(iface, &input, &text, fast)?;
        assert_all(
            &text,
            "check_parameters_str",
            expected,
            check_parameters_str(iface, &input, &text),
            __check_str::check_parameters_str(iface, &input, &text),
            fast,
        )?;
    }
    let types = all_types(iface);
    for _ in 0..2 {
        let ty = generator.rng.pick(&types);
        let j = generator.value(&ty, 0);
        let text = generator.text(&j);
        let expected = serde_json::from_str::<Value>(&text)
            .ok()
            .map(|value| check_value(iface, &ty, &value));
        let fast = accepts_value(iface, &ty, &text);
        coverage.add(&text, &expected, fast);
        assert_all(
            &text,
            &format!("check_value_str({ty})"),
            expected,
            check_value_str(iface, &ty, &text),
            __check_str::check_value_str(iface, &ty, &text),
            fast,
        )?;
    }
    Ok(coverage)
}

proptest! {
    // XorShift: the default ChaCha generator dominates the run time in debug builds.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    })]

    #[test]
    fn text_checker_agrees_with_value_checker(
        iface in interface(),
        seed in any::<u64>(),
        style in any_style(),
    ) {
        check_case(&iface, seed, style)?;
    }

    #[test]
    fn fast_scanner_agrees_with_value_checker(
        iface in interface(),
        seed in any::<u64>(),
        style in fast_style(),
    ) {
        check_case(&iface, seed, style)?;
    }

    #[test]
    fn escaped_text_agrees_with_value_checker(
        iface in interface(),
        seed in any::<u64>(),
        style in escaped_style(),
    ) {
        check_case(&iface, seed, style)?;
    }
}

/// The generator must produce both verdicts, every kind of reason and duplicates, or the
/// property above checks little.
#[test]
fn generator_covers_the_interesting_cases() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (interface(), any::<u64>());
    let mut reasons = BTreeSet::new();
    let (mut ok, mut invalid_json, mut duplicates, mut escaped) = (0, 0, 0, 0);
    for _ in 0..500 {
        let (iface, seed) = strategy.new_tree(&mut runner).expect("a value").current();
        let mut generator = Gen {
            iface: &iface,
            rng: Rng(seed),
            mutate: 15,
            edits: 0,
            how: How {
                plain: false,
                plain_keys: false,
                escapes: 0,
                raw: 0,
            },
        };
        let input = iface.method("M").expect("M").input.clone();
        let j = J::Obj(generator.fields(&input, 0));
        if let J::Obj(entries) = &j {
            let keys: BTreeSet<&String> = entries.iter().map(|(k, _)| k).collect();
            if keys.len() < entries.len() {
                duplicates += 1;
            }
        }
        let text = write(&j, &mut generator.rng, generator.how);
        if text.contains("\\u") {
            escaped += 1;
        }
        match check_parameters_str(&iface, &input, &text) {
            Ok(()) => ok += 1,
            Err(e) if e.reason.starts_with("invalid JSON") => invalid_json += 1,
            Err(e) => {
                let reason = e
                    .reason
                    .split([',', '(', '"'])
                    .next()
                    .unwrap_or("")
                    .to_string();
                reasons.insert(reason);
            }
        }
    }
    assert!(ok > 50, "ok: {ok}");
    assert!(duplicates > 10, "duplicates: {duplicates}");
    assert!(escaped > 50, "escaped: {escaped}");
    assert!(invalid_json > 0, "invalid JSON: {invalid_json}");
    for expected in [
        "expected int",
        "expected string",
        "missing required field ",
        "undeclared field ",
        "expected one of ",
        "unknown type ",
    ] {
        assert!(reasons.contains(expected), "no {expected:?} in {reasons:?}");
    }
}

/// In the fast scanner's property, most texts, and nearly all valid ones without escapes (which
/// there are only in the keys of odd field names), must be accepted by the fast scanner, or
/// that property says little about it.
#[test]
fn fast_scanner_takes_most_cases() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (interface(), any::<u64>(), fast_style());
    let mut total = Coverage::default();
    for _ in 0..500 {
        let (iface, seed, style) = strategy.new_tree(&mut runner).expect("a value").current();
        total.total(&check_case(&iface, seed, style).expect("agrees"));
    }
    eprintln!("{total:?}");
    assert!(total.fast * 2 > total.texts, "{total:?}");
    assert!(
        total.valid_fast * 10 > (total.valid - total.escaped) * 9,
        "{total:?}"
    );
}

/// In the escaped property, many valid texts with escapes (in string values) must be accepted
/// by the fast scanner, or that property says little about its escapes; and refused escapes
/// must make many texts invalid.
#[test]
fn fast_scanner_takes_escaped_values() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (interface(), any::<u64>(), escaped_style());
    let mut total = Coverage::default();
    for _ in 0..500 {
        let (iface, seed, style) = strategy.new_tree(&mut runner).expect("a value").current();
        total.total(&check_case(&iface, seed, style).expect("agrees"));
    }
    eprintln!("{total:?}");
    assert!(total.escaped_fast * 4 > total.escaped, "{total:?}");
    assert!(total.valid * 10 < total.texts * 9, "{total:?}");
}
