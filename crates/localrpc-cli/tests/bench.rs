//! `localrpc bench` against localrpcd: the JSON report, pipelining and several connections,
//! and a first call that fails. Speed is never asserted: only that calls were made.

mod common;

use common::{daemon, localrpc};

fn bench_json(args: &[&str]) -> serde_json::Value {
    let run = localrpc(args);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

#[test]
fn json_report_has_rate_and_latency_percentiles() {
    let (_dir, _daemon, address) = daemon();
    let report = bench_json(&[
        "bench",
        &address,
        "io.localrpc.Echo.Echo",
        r#"{"text":"hello"}"#,
        "--duration",
        "0.3",
        "--json",
    ]);
    assert!(report["calls_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["calls"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let p50 = report["p50_us"].as_f64().unwrap();
    let p99 = report["p99_us"].as_f64().unwrap();
    assert!(p50 > 0.0 && p99 >= p50, "{report}");
    assert!(report["p999_us"].as_f64().unwrap() >= p99, "{report}");
    assert_eq!(report["connections"], 1);
    assert_eq!(report["pipeline"], 1);
    // On a Unix socket the server's pid is known from SO_PEERCRED.
    assert!(report["server_pid"].as_u64().unwrap() > 0, "{report}");
    assert!(report["client_cpu_us_per_call"].is_number(), "{report}");
}

#[test]
fn pipelined_calls_on_several_connections() {
    let (_dir, _daemon, address) = daemon();
    let report = bench_json(&[
        "bench",
        &address,
        "io.localrpc.Echo.Echo",
        r#"{"text":"x"}"#,
        "--connections",
        "3",
        "--pipeline",
        "8",
        "--duration",
        "0.3",
        "--json",
    ]);
    assert_eq!(report["connections"], 3);
    assert_eq!(report["pipeline"], 8);
    assert!(report["calls_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
}

#[test]
fn table_output_without_json() {
    let (_dir, _daemon, address) = daemon();
    let run = localrpc(&[
        "bench",
        &address,
        "io.localrpc.Echo.Echo",
        r#"{"text":"hi"}"#,
        "-d",
        "0.2",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    for label in [
        "calls/s",
        "latency p50",
        "p99.9",
        "client CPU",
        "server CPU",
    ] {
        assert!(run.stdout.contains(label), "{label}: {}", run.stdout);
    }
    // No progress bar when stderr is not a terminal.
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn error_reply_to_the_first_call_fails_clearly() {
    let (_dir, _daemon, address) = daemon();
    let run = localrpc(&[
        "bench",
        &address,
        "io.localrpc.Echo.Fail",
        r#"{"reason":"no"}"#,
        "--duration",
        "0.2",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.contains("first call") && run.stderr.contains("io.localrpc.Echo.Failed"),
        "{}",
        run.stderr
    );
    let bad = localrpc(&["bench", &address, "io.localrpc.Echo.Echo", "[1]"]);
    assert_eq!(bad.code, 64, "{bad:?}");
}

#[test]
fn unreachable_address_exits_69() {
    let dir = common::temp_dir();
    let socket = dir.path().join("nobody.sock");
    let run = localrpc(&[
        "bench",
        &format!("unix:{}", socket.display()),
        "io.localrpc.Echo.Echo",
        "-d",
        "0.1",
    ]);
    assert_eq!(run.code, 69, "{run:?}");
}
