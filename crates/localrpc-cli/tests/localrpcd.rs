//! `localrpc` against localrpcd: every verb, every call flag, and the exit codes.

mod common;

use std::time::{Duration, Instant};

use common::{daemon, localrpc, run_program, temp_dir, workspace_binary};

#[test]
fn info_lists_vendor_and_sorted_interfaces() {
    let (_dir, _daemon, address) = daemon();
    let run = localrpc(&["info", &address]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with("    Vendor: localrpc\n   Product: localrpcd\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with(
            "Interfaces: io.localrpc.Control\n            io.localrpc.Echo\n            \
                 io.systemd.service\n            org.varlink.service\n"
        ),
        "{}",
        run.stdout
    );
    let json = localrpc(&["info", "--json=short", &address]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["product"], "localrpcd");
}

#[test]
fn list_interfaces_and_methods() {
    let (_dir, _daemon, address) = daemon();
    assert_eq!(
        localrpc(&["list-interfaces", &address]).stdout,
        "io.localrpc.Control\nio.localrpc.Echo\nio.systemd.service\norg.varlink.service\n"
    );
    let methods = localrpc(&["list-methods", &address, "io.localrpc.Echo"]);
    assert_eq!(
        methods.stdout,
        "io.localrpc.Echo.Count\nio.localrpc.Echo.Echo\nio.localrpc.Echo.Fail\nio.localrpc.Echo.RawEcho\n\
         io.localrpc.Echo.Sleep\nio.localrpc.Echo.Unimplemented\n"
    );
    let all = localrpc(&["list-methods", &address]);
    assert!(
        all.stdout.contains("org.varlink.service.GetInfo\n"),
        "{all:?}"
    );
}

#[test]
fn introspect_prints_systemd_layout() {
    let (_dir, _daemon, address) = daemon();
    let run = localrpc(&["introspect", &address, "io.localrpc.Echo"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("method Echo(\n\ttext: string\n) -> (\n\ttext: string\n)\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("error Failed(\n\treason: string\n)\n"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("\x1b["),
        "no colours when not on a terminal"
    );
    let missing = localrpc(&["introspect", &address, "io.example.Nope"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("org.varlink.service.InterfaceNotFound"),
        "{missing:?}"
    );
}

#[test]
fn call_prints_reply_and_reads_parameters_from_stdin() {
    let (_dir, _daemon, address) = daemon();
    let run = localrpc(&[
        "call",
        &address,
        "io.localrpc.Echo.Echo",
        r#"{"text":"hi"}"#,
    ]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "{\"text\":\"hi\"}\n"),
        "{run:?}"
    );
    let bin = workspace_binary("localrpc");
    let piped = run_program(
        &bin,
        &["call", &address, "io.localrpc.Echo.Echo"],
        br#"{"text":"in"}"#,
    );
    assert_eq!(piped.stdout, "{\"text\":\"in\"}\n", "{piped:?}");
    let dash = run_program(
        &bin,
        &["call", &address, "io.localrpc.Echo.Echo", "-"],
        br#"{"text":"dash"}"#,
    );
    assert_eq!(dash.stdout, "{\"text\":\"dash\"}\n", "{dash:?}");
    let pretty = localrpc(&[
        "call",
        "--json=pretty",
        &address,
        "io.localrpc.Echo.Echo",
        r#"{"text":"hi"}"#,
    ]);
    assert_eq!(pretty.stdout, "{\n\t\"text\" : \"hi\"\n}\n");
    let quiet = localrpc(&[
        "call",
        "-q",
        &address,
        "io.localrpc.Echo.Echo",
        r#"{"text":"hi"}"#,
    ]);
    assert_eq!((quiet.code, quiet.stdout.as_str()), (0, ""));
}

#[test]
fn more_prints_json_seq_and_collect_an_array() {
    let (_dir, _daemon, address) = daemon();
    let more = localrpc(&[
        "call",
        "--more",
        &address,
        "io.localrpc.Echo.Count",
        r#"{"count":3}"#,
    ]);
    assert_eq!(
        more.stdout, "\u{1e}{\"index\":0}\n\u{1e}{\"index\":1}\n\u{1e}{\"index\":2}\n",
        "{more:?}"
    );
    let collect = localrpc(&[
        "call",
        "--collect",
        &address,
        "io.localrpc.Echo.Count",
        r#"{"count":3}"#,
    ]);
    assert_eq!(
        collect.stdout, "[{\"index\":0},{\"index\":1},{\"index\":2}]\n",
        "{collect:?}"
    );
    let without = localrpc(&["call", &address, "io.localrpc.Echo.Count", r#"{"count":3}"#]);
    assert_eq!(without.code, 1);
    assert!(
        without.stderr.contains("org.varlink.service.ExpectedMore"),
        "{without:?}"
    );
    assert!(
        without.stderr.contains("--more"),
        "hint names the fix: {without:?}"
    );
}

#[test]
fn oneway_prints_nothing() {
    let (_dir, _daemon, address) = daemon();
    let run = localrpc(&[
        "call",
        "--oneway",
        &address,
        "io.localrpc.Echo.Echo",
        r#"{"text":"x"}"#,
    ]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
}

#[test]
fn upgrade_pipes_stdin_and_stdout() {
    let (_dir, _daemon, address) = daemon();
    let run = run_program(
        &workspace_binary("localrpc"),
        &[
            "call",
            "--upgrade",
            &address,
            "io.localrpc.Echo.RawEcho",
            "{}",
        ],
        b"raw bytes\n\x00\x01",
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "raw bytes\n\x00\x01"),
        "{run:?}"
    );
}

#[test]
fn error_reply_exits_1_with_its_name() {
    let (_dir, _daemon, address) = daemon();
    let run = localrpc(&[
        "call",
        &address,
        "io.localrpc.Echo.Fail",
        r#"{"reason":"why"}"#,
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "{\"reason\":\"why\"}\n");
    assert!(
        run.stderr
            .starts_with("Method call io.localrpc.Echo.Fail() failed: io.localrpc.Echo.Failed\n"),
        "{run:?}"
    );
    let quiet = localrpc(&[
        "call",
        "-q",
        &address,
        "io.localrpc.Echo.Fail",
        r#"{"reason":"why"}"#,
    ]);
    assert_eq!((quiet.code, quiet.stdout.as_str()), (1, ""));
    let graceful = localrpc(&[
        "call",
        "--graceful=io.localrpc.Echo.Failed",
        &address,
        "io.localrpc.Echo.Fail",
        r#"{"reason":"why"}"#,
    ]);
    assert_eq!(graceful.code, 0, "{graceful:?}");
    assert!(
        graceful
            .stderr
            .contains("returned expected error: io.localrpc.Echo.Failed")
    );
    let invalid = localrpc(&["call", &address, "io.localrpc.Echo.Echo", r#"{"text":3}"#]);
    assert_eq!(
        (invalid.code, invalid.stdout.as_str()),
        (1, "{\"parameter\":\"text\"}\n")
    );
    assert!(
        invalid
            .stderr
            .contains("org.varlink.service.InvalidParameter"),
        "{invalid:?}"
    );
}

#[test]
fn unreachable_socket_exits_69_with_a_hint() {
    let dir = temp_dir();
    let socket = dir.path().join("x.sock");
    let run = localrpc(&["info", &format!("unix:{}", socket.display())]);
    assert_eq!(run.code, 69, "{run:?}");
    assert!(
        run.stderr.contains("is x.socket running? try: systemctl")
            || run.stderr.contains("Is x.socket running? try: systemctl"),
        "{run:?}"
    );
    // A stale socket file: nobody accepts.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(listener);
    let stale = localrpc(&["call", &format!("unix:{}", socket.display()), "a.b.C", "{}"]);
    assert_eq!(stale.code, 69, "{stale:?}");
    assert!(stale.stderr.contains("nobody accepts"), "{stale:?}");
}

#[test]
fn permission_error_is_not_reported_as_unreachable() {
    let dir = temp_dir();
    let program = dir.path().join("not-executable");
    std::fs::write(&program, "#!/bin/sh\n").unwrap();
    let run = localrpc(&["info", &format!("exec:{}", program.display())]);
    // execve needs an x bit even for root, so this is EACCES for everyone.
    assert_eq!(run.code, 77, "{run:?}");
    assert!(run.stderr.contains("permission denied"), "{run:?}");
}

#[test]
fn bad_usage_exits_64() {
    let (_dir, _daemon, address) = daemon();
    for args in [
        vec!["bogus"],
        vec!["call", &address],
        vec!["call", &address, "notqualified", "{}"],
        vec!["call", &address, "io.localrpc.Echo.Echo", "[1]"],
        vec!["call", &address, "io.localrpc.Echo.Echo", "{not json"],
        vec!["call", "--more", "--oneway", &address, "a.b.C"],
        vec!["info", "relative-without-scheme"],
    ] {
        let run = localrpc(&args);
        assert_eq!(run.code, 64, "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty());
    }
}

#[test]
fn timeout_exits_75() {
    let (_dir, _daemon, address) = daemon();
    let start = Instant::now();
    let run = localrpc(&[
        "call",
        "--timeout",
        "0.2",
        &address,
        "io.localrpc.Echo.Sleep",
        r#"{"milliseconds":5000}"#,
    ]);
    assert_eq!(run.code, 75, "{run:?}");
    assert!(run.stderr.contains("no reply"), "{run:?}");
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn bare_socket_path_connects() {
    let (dir, _daemon, _address) = daemon();
    let run = localrpc(&[
        "list-interfaces",
        dir.path().join("echo.sock").to_str().unwrap(),
    ]);
    assert_eq!(
        run.stdout,
        "io.localrpc.Control\nio.localrpc.Echo\nio.systemd.service\norg.varlink.service\n",
        "{run:?}"
    );
}

#[test]
fn bridge_connects_stdio_to_an_address() {
    let (_dir, _daemon, address) = daemon();
    let call = b"{\"method\":\"io.localrpc.Echo.Echo\",\"parameters\":{\"text\":\"b\"}}\0";
    let run = run_program(&workspace_binary("localrpc"), &["bridge", &address], call);
    assert_eq!(run.stdout, "{\"parameters\":{\"text\":\"b\"}}\0", "{run:?}");
}

#[test]
fn validate_idl_and_format() {
    let dir = temp_dir();
    let good = dir.path().join("good.varlink");
    std::fs::write(
        &good,
        "interface a.b\n# Doc.\nmethod X(a: int, b: ?[]string) -> ()\n",
    )
    .unwrap();
    let run = localrpc(&["validate-idl", good.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "interface a.b\n\n# Doc.\nmethod X(\n\ta: int,\n\tb: ?[]string\n) -> ()\n"
    );
    let formatted = localrpc(&["format", good.to_str().unwrap()]);
    assert_eq!(formatted.code, 0, "{formatted:?}");
    assert!(
        formatted
            .stdout
            .contains("method X(a: int, b: ?[]string) -> ()"),
        "{formatted:?}"
    );

    let bad = dir.path().join("bad.varlink");
    std::fs::write(&bad, "interface a.b\nmethod x() -> ()\n").unwrap();
    let run = localrpc(&["validate-idl", bad.to_str().unwrap()]);
    assert_eq!(run.code, 65, "{run:?}");
    assert!(run.stderr.contains("bad.varlink:2:"), "{run:?}");

    let sd = dir.path().join("set.varlink");
    std::fs::write(&sd, "interface a.b\nmethod X(s: [string]()) -> ()\n").unwrap();
    assert_eq!(
        localrpc(&["validate-idl", "-q", sd.to_str().unwrap()]).code,
        0
    );
    let lint = localrpc(&["validate-idl", "--systemd", "-q", sd.to_str().unwrap()]);
    assert_eq!(lint.code, 1, "{lint:?}");
    assert!(lint.stderr.contains("systemd"), "{lint:?}");
    assert_eq!(localrpc(&["validate-idl", "/nonexistent.varlink"]).code, 66);
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let run = localrpc(&["completions", shell]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains("introspect"), "{shell}");
    }
    let man = localrpc(&["man"]);
    assert!(
        man.stdout.contains(".TH localrpc"),
        "{}",
        &man.stdout[..200.min(man.stdout.len())]
    );
    let help = localrpc(&["--help"]);
    assert!(
        help.stdout.contains("Exit codes:") && help.stdout.contains("69"),
        "{help:?}"
    );
}
