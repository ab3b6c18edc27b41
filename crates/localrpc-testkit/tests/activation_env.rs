//! The activation variables are removed from the environment whether or not they were valid
//! (LIFECYCLE.md), checked in a single-threaded probe process (`src/bin/activation-probe.rs`,
//! which calls `localrpc::transport::take_listen_fds` as a daemon's `main` does).

use std::path::PathBuf;
use std::process::Command;

/// The probe binary, built by Cargo for this package's tests.
fn probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_activation-probe"))
}

/// Runs the probe with `vars` (LISTEN_PID "self" means the probe's own pid, set by a shell)
/// and returns its output lines.
fn run(vars: &[(&str, &str)]) -> Vec<String> {
    let mut script = String::new();
    for (key, value) in vars {
        if *value == "self" {
            script.push_str(&format!("export {key}=$$; "));
        } else {
            script.push_str(&format!("export {key}='{value}'; "));
        }
    }
    // fd 3 is closed for the probe even when the test runner inherited one (flock(1), a CI
    // runner): the cases below mean "announced but not open" by it.
    script.push_str("exec 3>&-; exec \"$0\"");
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(probe())
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("LISTEN_PIDFDID")
        .output()
        .expect("run the probe");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn variables_are_removed_on_failure_too() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("LISTEN_PID", "self"), ("LISTEN_FDS", "0")],
            "error LISTEN_FDS=\"0\"",
        ),
        (
            &[("LISTEN_PID", "self"), ("LISTEN_FDS", "-1")],
            "error LISTEN_FDS=\"-1\"",
        ),
        (
            &[("LISTEN_PID", "self"), ("LISTEN_FDS", "junk")],
            "error LISTEN_FDS=\"junk\"",
        ),
        (
            &[("LISTEN_PID", "junk"), ("LISTEN_FDS", "1")],
            "error LISTEN_PID=\"junk\"",
        ),
        (
            &[
                ("LISTEN_PID", "self"),
                ("LISTEN_FDS", "2"),
                ("LISTEN_FDNAMES", "varlink"),
            ],
            "error LISTEN_FDNAMES has 1 names but LISTEN_FDS passes 2",
        ),
        // fd 3 is not open in the probe: announced but missing.
        (
            &[
                ("LISTEN_PID", "self"),
                ("LISTEN_FDS", "1"),
                ("LISTEN_FDNAMES", "varlink"),
            ],
            "error file descriptor 3",
        ),
    ];
    for (vars, expected) in cases {
        let lines = run(vars);
        assert!(
            lines.first().is_some_and(|l| l.starts_with(expected)),
            "{vars:?}: expected {expected:?}, got {lines:?}"
        );
        assert_eq!(lines.len(), 1, "{vars:?}: variables left behind: {lines:?}");
    }
}

#[test]
fn variables_are_removed_when_not_for_us_and_when_absent() {
    let lines = run(&[
        ("LISTEN_PID", "1"),
        ("LISTEN_FDS", "1"),
        ("LISTEN_FDNAMES", "varlink"),
        ("LISTEN_PIDFDID", "7"),
    ]);
    assert_eq!(lines, ["ok 0"], "a foreign pid: no fds, variables gone");
    assert_eq!(run(&[]), ["ok 0"], "no activation: nothing to do");
}
