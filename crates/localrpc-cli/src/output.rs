//! Printing JSON the way varlinkctl (sd-json) does.
//!
//! - short: compact, one value per line (`{"a":1}`), as serde_json writes it;
//! - pretty: tab indentation, `"key" : value`, empty objects and arrays as `{}` / `[]`;
//! - a `--more` call prints a JSON text sequence (RFC 7464): `0x1E` before every reply.
//!
//! Colours (keys, strings, numbers, literals) only when writing to a terminal.

use std::io::{self, IsTerminal, Write};

use serde_json::Value;

/// How to print JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStyle {
    pub pretty: bool,
    pub color: bool,
    /// Prefix each value with the RS character (JSON-SEQ).
    pub seq: bool,
}

/// The `--json=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JsonMode {
    /// Indented, one field per line (default on a terminal).
    Pretty,
    /// One line per value (default otherwise).
    Short,
}

impl JsonStyle {
    /// The style for stdout: `mode` if given, else pretty on a terminal.
    pub fn for_stdout(mode: Option<JsonMode>) -> JsonStyle {
        let tty = io::stdout().is_terminal();
        let pretty = match mode {
            Some(JsonMode::Pretty) => true,
            Some(JsonMode::Short) => false,
            None => tty,
        };
        JsonStyle {
            pretty,
            color: tty && color_allowed(),
            seq: false,
        }
    }
}

/// `NO_COLOR` (and `SYSTEMD_COLORS=0`) turn colours off.
pub fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("SYSTEMD_COLORS")
            .map_or(true, |v| !matches!(v.as_str(), "0" | "no" | "false"))
}

const RESET: &str = "\x1b[0m";
const KEY: &str = "\x1b[0;1;34m";
const STRING: &str = "\x1b[0;32m";
const NUMBER: &str = "\x1b[0;35m";
const LITERAL: &str = "\x1b[0;36m";

/// Renders one value followed by a newline.
pub fn render(value: &Value, style: JsonStyle) -> String {
    let mut out = String::new();
    if style.seq {
        out.push('\u{1e}');
    }
    if style.pretty {
        pretty(&mut out, value, 0, style.color);
    } else if style.color {
        short_colored(&mut out, value);
    } else {
        out.push_str(&serde_json::to_string(value).unwrap_or_default());
    }
    out.push('\n');
    out
}

/// Writes one value to stdout.
pub fn print(value: &Value, style: JsonStyle) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(render(value, style).as_bytes())?;
    stdout.flush()
}

fn scalar(out: &mut String, value: &Value, color: bool) {
    let text = serde_json::to_string(value).unwrap_or_default();
    let code = match value {
        Value::String(_) => STRING,
        Value::Number(_) => NUMBER,
        _ => LITERAL,
    };
    if color {
        out.push_str(code);
        out.push_str(&text);
        out.push_str(RESET);
    } else {
        out.push_str(&text);
    }
}

fn key(out: &mut String, name: &str, color: bool) {
    let text = serde_json::to_string(name).unwrap_or_default();
    if color {
        out.push_str(KEY);
        out.push_str(&text);
        out.push_str(RESET);
    } else {
        out.push_str(&text);
    }
}

fn tabs(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n('\t', n));
}

fn pretty(out: &mut String, value: &Value, depth: usize, color: bool) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push_str("{\n");
            for (i, (name, field)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                tabs(out, depth + 1);
                key(out, name, color);
                out.push_str(" : ");
                pretty(out, field, depth + 1, color);
            }
            out.push('\n');
            tabs(out, depth);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                tabs(out, depth + 1);
                pretty(out, item, depth + 1, color);
            }
            out.push('\n');
            tabs(out, depth);
            out.push(']');
        }
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        other => scalar(out, other, color),
    }
}

fn short_colored(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            out.push('{');
            for (i, (name, field)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                key(out, name, true);
                out.push(':');
                short_colored(out, field);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                short_colored(out, item);
            }
            out.push(']');
        }
        other => scalar(out, other, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pretty_matches_sd_json() {
        let style = JsonStyle {
            pretty: true,
            color: false,
            seq: false,
        };
        let value = json!({"a": 1, "b": [], "c": {}, "d": ["x", {"e": null}]});
        assert_eq!(
            render(&value, style),
            "{\n\t\"a\" : 1,\n\t\"b\" : [],\n\t\"c\" : {},\n\t\"d\" : [\n\t\t\"x\",\n\t\t{\n\t\t\t\"e\" : null\n\t\t}\n\t]\n}\n"
        );
    }

    #[test]
    fn seq_prefixes_record_separator() {
        let style = JsonStyle {
            pretty: false,
            color: false,
            seq: true,
        };
        assert_eq!(render(&json!({"index": 0}), style), "\u{1e}{\"index\":0}\n");
    }
}
