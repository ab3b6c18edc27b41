//! A cheap deterministic stand-in for fuzzing: mutate the corpus files byte-wise and check that the
//! parser never panics, and that whatever parses also formats and re-parses to an equal tree.

use std::path::Path;

use localrpc_idl::{format, parse, systemd_lint};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "(",
    ")",
    ",",
    ":",
    "?",
    "[]",
    "[string]",
    "->",
    "#",
    "# doc\n",
    "\n",
    "\n\n",
    " ",
    "\t",
    "\r\n",
    "int",
    "string",
    "any",
    "object",
    "type",
    "method",
    "error",
    "interface",
    "Foo",
    "foo",
    "a_b",
    "()",
    "é",
    "-",
    ".",
    "[",
    "]",
    "??",
];

fn check_one(text: &str) {
    if let Ok(iface) = parse(text) {
        let out = format(&iface);
        let again = parse(&out)
            .unwrap_or_else(|e| panic!("formatted text does not parse: {e}\n{out}\nfrom:\n{text}"));
        assert_eq!(
            again, iface,
            "round trip differs for:\n{text}\nformatted:\n{out}"
        );
        assert_eq!(format(&again), out);
        let _ = systemd_lint(&iface);
    }
}

#[test]
fn mutated_corpus_never_panics_and_roundtrips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut seeds = Vec::new();
    for name in [
        "org.varlink.certification.varlink",
        "org.example.complex.varlink",
        "org.varlink.service.varlink",
    ] {
        seeds.push(std::fs::read_to_string(dir.join(name)).expect("read seed"));
    }
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut parsed = 0;
    for round in 0..3000 {
        let seed = &seeds[round % seeds.len()];
        let mut text: Vec<char> = seed.chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 if !text.is_empty() => {
                    let end = (at + 1 + rng.below(8)).min(text.len());
                    text.drain(at.min(end)..end);
                }
                1 => {
                    let piece = PIECES[rng.below(PIECES.len())];
                    for (i, c) in piece.chars().enumerate() {
                        text.insert((at + i).min(text.len()), c);
                    }
                }
                _ if !text.is_empty() => {
                    let i = at.min(text.len() - 1);
                    text[i] = PIECES[rng.below(PIECES.len())]
                        .chars()
                        .next()
                        .unwrap_or(' ');
                }
                _ => {}
            }
        }
        let text: String = text.into_iter().collect();
        if parse(&text).is_ok() {
            parsed += 1;
        }
        check_one(&text);
    }
    // Some mutations must survive, or the test checks nothing about round trips.
    assert!(parsed > 100, "only {parsed} mutants parsed");
}

#[test]
fn pathological_inputs() {
    let cases = [
        "(".repeat(100_000),
        format!("interface a.b\nmethod F({}) -> ()", "a: (".repeat(50_000)),
        format!("interface a.b\ntype T (x: {}int)", "?[]".repeat(50_000)),
        format!(
            "interface a.b\ntype T (x: {}int)",
            "[string]".repeat(50_000)
        ),
        format!("interface a.b\n{}", "#\n".repeat(100_000)),
        format!(
            "interface a.b\nerror E ({})",
            (0..5000)
                .map(|i| format!("f{i}: int"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        "interface a.b\nmethod F() -> ()".to_string() + &"\0".repeat(10),
        "\u{feff}interface a.b\nerror E ()".to_string(),
    ];
    for text in &cases {
        check_one(text);
    }
    assert!(
        parse(&cases[1])
            .expect_err("too deep")
            .message
            .contains("too deep")
    );
    assert!(
        parse(&cases[2])
            .expect_err("too deep")
            .message
            .contains("too deep")
    );
    assert!(parse(&cases[5]).is_ok());
}
