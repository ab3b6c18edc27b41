//! Golden test: the code generated for `tests/data/org.example.golden.varlink` must equal the
//! checked-in `tests/golden/org_example_golden.rs`, so every change to the generator shows up
//! in review. On a difference the test prints a line diff; `LOCALRPC_BLESS=1` rewrites the
//! expected file instead.

use std::path::Path;

/// A minimal line diff (longest common subsequence), `-` expected, `+` generated.
fn diff(expected: &str, actual: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("{:>5} + {}\n", j + 1, b[j]));
            j += 1;
        } else {
            out.push_str(&format!("{:>5} - {}\n", i + 1, a[i]));
            i += 1;
        }
    }
    out
}

#[test]
fn generated_code_matches_the_golden_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let input = root.join("tests/data/org.example.golden.varlink");
    let expected_path = root.join("tests/golden/org_example_golden.rs");
    let idl = std::fs::read_to_string(&input).expect("read golden IDL");
    let generated = localrpc_build::Config::new()
        .generate(&idl, &input)
        .unwrap_or_else(|e| panic!("{e}"));
    if std::env::var_os("LOCALRPC_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&expected_path, &generated).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    assert!(
        expected == generated,
        "generated code differs from {} (rerun with LOCALRPC_BLESS=1 to accept):\n{}",
        expected_path.display(),
        diff(&expected, &generated)
    );
}
