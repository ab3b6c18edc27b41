//! Instruction counts of `check_parameters_str` on small calls, for callgrind:
//!
//! ```text
//! cargo build --release -p localrpc-idl --example check_str_cost
//! valgrind --tool=callgrind target/release/examples/check_str_cost echo 100000
//! valgrind --tool=callgrind target/release/examples/check_str_cost echo 0
//! ```
//!
//! The difference of the two totals divided by 100 000 is the cost of one call. Cases: `echo`
//! (`{"text":"hello"}`), `set` (six scalar fields), `escaped` (a string value with an escape),
//! `nested` (an array of structs), `big` (a
//! 1 MiB string; use a smaller count). A third argument `stream` runs the streaming checker
//! alone (what every call cost before the fast scanner).

use std::hint::black_box;

use localrpc_idl::{__check_str, check_parameters_str, parse};

const IDL: &str = "\
interface org.example.cost

type Mode (fast, slow)

type Item (name: string, count: ?int)

method Echo(text: string) -> (text: string)

method Set(name: string, count: int, level: ?float, on: bool, mode: Mode, note: ?string) -> ()

method Items(items: []Item, labels: [string]string) -> ()
";

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "echo".into());
    let count: usize = args.next().map_or(100_000, |n| n.parse().expect("a count"));
    let stream_only = args.next().as_deref() == Some("stream");
    let iface = parse(IDL).expect("parses");
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(1 << 20));
    let (method, text) = match case.as_str() {
        "big" => ("Echo", big.as_str()),
        "echo" => ("Echo", r#"{"text":"hello"}"#),
        "escaped" => ("Echo", r#"{"text":"hel\nlo"}"#),
        "set" => (
            "Set",
            concat!(
                r#"{"name": "widget", "count": 42, "level": 1.5, "on": true, "mode": "fast", "#,
                r#""note": null}"#
            ),
        ),
        "nested" => (
            "Items",
            concat!(
                r#"{"items": [{"name": "a", "count": 1}, {"name": "b"}, "#,
                r#"{"name": "c", "count": null}], "labels": {"x": "1", "y": "2"}}"#
            ),
        ),
        other => panic!("unknown case {other}"),
    };
    let fields = &iface.method(method).expect("method").input;
    for _ in 0..count {
        let result = if stream_only {
            __check_str::check_parameters_str(black_box(&iface), black_box(fields), black_box(text))
        } else {
            check_parameters_str(black_box(&iface), black_box(fields), black_box(text))
        };
        assert!(result.is_ok());
    }
}
