//! Run-time control of a real `localrpcd` process over its socket: systemd's `varlinkctl`
//! (262) calling `io.systemd.service` (`Ping`, `SetLogLevel`, `GetLogLevel`, the IDL byte for
//! byte as systemd serves it) and the daemon's stderr showing the per-call debug lines
//! afterwards; `io.localrpc.Control` (`SetLogFilter` with an invalid filter keeps the old one,
//! `GetStats` counters move, `GetHealth` says `draining` during a drain); `Reload` runs the
//! SIGHUP path (`RELOADING=1` … `READY=1`); a caller of another uid gets `PermissionDenied`
//! for the mutating methods; `--no-control` removes both interfaces.
//!
//! Every wait is bounded: a bug fails a test, it never hangs it.

mod support;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use localrpc_testkit::{Peer, require_peer, skip};
use serde_json::{Value, json};
use support::{
    Daemon, NotifyReceiver, TIMEOUT, connect, reachable_temp_dir, read_message, wait_exit,
    wait_until_read,
};

/// The uid of a caller that is neither root nor the daemon's user.
const NOBODY: u32 = 65534;
/// The per-call debug line (target `localrpc::call`).
const CALL_COMPLETED: &str = "call completed";

/// Starts a [`Daemon`] with `--socket-mode 0666 [args]` in a 0755 directory, so other uids
/// can connect (and `LOCALRPC_LOG=info`, no `NOTIFY_SOCKET`).
fn start_daemon(args: &[&str]) -> Daemon {
    start_daemon_in(reachable_temp_dir(), args, None)
}

/// [`start_daemon`] in `dir`, with `NOTIFY_SOCKET` set to `notify`'s address if given.
fn start_daemon_in(
    dir: tempfile::TempDir,
    args: &[&str],
    notify: Option<&NotifyReceiver>,
) -> Daemon {
    let args: Vec<&str> = ["--socket-mode", "0666"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    Daemon::start_in(dir, &args, notify)
}

/// What these tests ask of a [`Daemon`] besides the shared helpers.
trait DaemonExt {
    /// Lines of the log that contain `needle`.
    fn log_count(&self, needle: &str) -> usize;
    /// Calls `method` on a new connection and returns the whole reply.
    fn call(&self, method: &str, parameters: Value) -> Value;
    /// Calls Echo; the daemon writes the call's debug line before the reply, so once this
    /// returns the log shows it if the filter lets it through.
    fn echo(&self);
}

impl DaemonExt for Daemon {
    fn log_count(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }

    fn call(&self, method: &str, parameters: Value) -> Value {
        let mut stream = connect(&self.socket).expect("connect");
        call_on(&mut stream, method, parameters)
    }

    fn echo(&self) {
        let reply = self.call("io.localrpc.Echo.Echo", json!({"text": "hi"}));
        assert_eq!(reply, json!({"parameters": {"text": "hi"}}));
    }
}

fn message(method: &str, parameters: Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&json!({"method": method, "parameters": parameters}))
        .expect("serialize a call");
    bytes.push(0);
    bytes
}

fn call_on(stream: &mut std::os::unix::net::UnixStream, method: &str, parameters: Value) -> Value {
    stream
        .write_all(&message(method, parameters))
        .expect("send the call");
    reply_on(stream)
}

fn reply_on(stream: &mut std::os::unix::net::UnixStream) -> Value {
    let reply = read_message(stream, &mut Vec::new()).expect("read the reply");
    serde_json::from_slice(&reply[..reply.len() - 1]).expect("a JSON reply")
}

/// What a program printed and how it exited.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `program args`, as `uid` when given (no supplementary groups), bounded by a timeout.
fn run(program: &Path, args: &[&str], uid: Option<u32>) -> Run {
    let mut command = Command::new(program);
    command
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(uid) = uid {
        // std drops the supplementary groups (setgroups(0)) when root changes uid.
        command.uid(uid).gid(uid);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let status = wait_exit(&mut child, TIMEOUT);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut stdout);
    }
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    Run {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// `varlinkctl` (systemd 262) against localrpcd: `Ping`, `SetLogLevel` 7 turns the per-call
/// debug lines on, `GetLogLevel` says 7, `SetLogLevel` null goes back to the start filter,
/// out-of-range levels are refused as systemd refuses them, and `introspect` prints
/// systemd's own IDL of io.systemd.service.
#[test]
fn varlinkctl_sets_the_log_level_of_a_running_localrpcd() {
    let varlinkctl = require_peer!(Peer::Varlinkctl);
    let daemon = start_daemon(&[]);
    let address = daemon.address();
    let varlinkctl_call = |method: &str, parameters: &str| {
        run(
            &varlinkctl,
            &["call", "--json=short", &address, method, parameters],
            None,
        )
    };

    let ping = varlinkctl_call("io.systemd.service.Ping", "{}");
    assert_eq!(
        (ping.code, ping.stdout.as_str()),
        (Some(0), "{}\n"),
        "{ping:?}"
    );

    daemon.echo();
    assert_eq!(
        daemon.log_count(CALL_COMPLETED),
        0,
        "at info, no per-call line:\n{}",
        daemon.log_text()
    );

    let set = varlinkctl_call("io.systemd.service.SetLogLevel", r#"{"level":7}"#);
    assert_eq!(set.code, Some(0), "{set:?}");
    daemon.echo();
    let log = daemon.log_text();
    let line = log
        .lines()
        .find(|line| line.contains(CALL_COMPLETED))
        .unwrap_or_else(|| panic!("no per-call debug line after SetLogLevel 7:\n{log}"));
    assert!(
        line.contains("DEBUG")
            && line.contains("localrpc::call")
            && line.contains("io.localrpc.Echo.Echo"),
        "{line}"
    );
    assert!(log.contains("log filter changed"), "{log}");

    let level = varlinkctl_call("io.systemd.service.GetLogLevel", "{}");
    assert_eq!(level.stdout, "{\"level\":7}\n", "{level:?}");

    for refused in [r#"{"level":8}"#, r#"{"level":-1}"#, "{}"] {
        let run = varlinkctl_call("io.systemd.service.SetLogLevel", refused);
        assert_eq!(run.code, Some(1), "{refused}: {run:?}");
        assert!(
            run.stdout.contains(r#""parameter":"level""#),
            "{refused}: {run:?}"
        );
    }

    let reset = varlinkctl_call("io.systemd.service.SetLogLevel", r#"{"level":null}"#);
    assert_eq!(reset.code, Some(0), "{reset:?}");
    let before = daemon.log_count(CALL_COMPLETED);
    daemon.echo();
    assert_eq!(
        daemon.log_count(CALL_COMPLETED),
        before,
        "SetLogLevel null goes back to info:\n{}",
        daemon.log_text()
    );

    let idl = run(
        &varlinkctl,
        &["introspect", &address, "io.systemd.service"],
        None,
    );
    assert_eq!(idl.code, Some(0), "{idl:?}");
    assert_eq!(idl.stdout, localrpc::daemon::control::SYSTEMD_SERVICE_IDL);
    // systemd's IDL parser accepts io.localrpc.Control too.
    let control = run(
        &varlinkctl,
        &["introspect", &address, "io.localrpc.Control"],
        None,
    );
    assert_eq!(control.code, Some(0), "{control:?}");
    assert!(
        control.stdout.contains("method SetLogFilter("),
        "{control:?}"
    );
}

/// `SetLogFilter` with an invalid filter gets the declared error naming the bad directive,
/// and the filter in force is kept; a valid one replaces it.
#[test]
fn set_log_filter_refuses_an_invalid_filter_and_keeps_the_old_one() {
    let daemon = start_daemon(&[]);
    let bad = daemon.call(
        "io.localrpc.Control.SetLogFilter",
        json!({"filter": "info,localrpc=loud"}),
    );
    assert_eq!(
        bad["error"], "io.localrpc.Control.InvalidLogFilter",
        "{bad}"
    );
    assert_eq!(bad["parameters"]["filter"], "info,localrpc=loud");
    let reason = bad["parameters"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("\"localrpc=loud\"") && reason.contains("error, warn, info, debug"),
        "{reason}"
    );
    let kept = daemon.call("io.localrpc.Control.GetLogFilter", json!({}));
    assert_eq!(
        kept,
        json!({"parameters": {"filter": "info", "initial_filter": "info"}})
    );
    daemon.echo();
    assert_eq!(daemon.log_count(CALL_COMPLETED), 0);

    let set = daemon.call(
        "io.localrpc.Control.SetLogFilter",
        json!({"filter": "info,localrpc::call=debug"}),
    );
    assert_eq!(set, json!({}));
    let now = daemon.call("io.localrpc.Control.GetLogFilter", json!({}));
    assert_eq!(now["parameters"]["filter"], "info,localrpc::call=debug");
    daemon.echo();
    assert_eq!(
        daemon.log_count("call completed method=io.localrpc.Echo.Echo"),
        1,
        "{}",
        daemon.log_text()
    );
    // Only that target: the server's own debug lines stay off.
    assert_eq!(
        daemon.log_count("DEBUG localrpc::server"),
        0,
        "{}",
        daemon.log_text()
    );

    let reset = daemon.call("io.localrpc.Control.SetLogFilter", json!({"filter": null}));
    assert_eq!(reset, json!({}));
    let back = daemon.call("io.localrpc.Control.GetLogFilter", json!({}));
    assert_eq!(back["parameters"]["filter"], "info");
}

/// A caller of another uid (65534) gets PermissionDenied for SetLogLevel, Reload,
/// GetEnvironment and SetLogFilter, from varlinkctl and from raw calls, while Ping,
/// GetStats, GetHealth and GetLogFilter stay open to it; the filter is unchanged.
#[test]
fn another_uid_may_read_but_not_change_anything() {
    if !rustix::process::geteuid().is_root() {
        skip(module_path!(), "needs root to run a caller as another uid");
        return;
    }
    let daemon = start_daemon(&[]);
    let address = daemon.address();
    let client = support::workspace_binary("localrpc");
    let as_nobody = |method: &str, parameters: &str| {
        run(
            &client,
            &["call", "--json=short", &address, method, parameters],
            Some(NOBODY),
        )
    };
    for (method, parameters) in [
        ("io.systemd.service.SetLogLevel", r#"{"level":7}"#),
        ("io.systemd.service.Reload", "{}"),
        ("io.systemd.service.GetEnvironment", "{}"),
        ("io.localrpc.Control.SetLogFilter", r#"{"filter":"debug"}"#),
    ] {
        let run = as_nobody(method, parameters);
        assert_eq!(run.code, Some(1), "{method}: {run:?}");
        assert!(
            run.stderr.contains("org.varlink.service.PermissionDenied"),
            "{method}: {run:?}"
        );
    }
    for method in [
        "io.systemd.service.Ping",
        "io.localrpc.Control.GetStats",
        "io.localrpc.Control.GetHealth",
        "io.localrpc.Control.GetLogFilter",
    ] {
        let run = as_nobody(method, "{}");
        assert_eq!(run.code, Some(0), "{method}: {run:?}");
    }
    if let Some(varlinkctl) = localrpc_testkit::peer(Peer::Varlinkctl) {
        let run = run(
            &varlinkctl,
            &[
                "call",
                &address,
                "io.systemd.service.SetLogLevel",
                r#"{"level":7}"#,
            ],
            Some(NOBODY),
        );
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(run.stderr.contains("Permission denied"), "{run:?}");
    }
    let filter = daemon.call("io.localrpc.Control.GetLogFilter", json!({}));
    assert_eq!(filter["parameters"]["filter"], "info");
    // Root (the daemon's own uid here) may.
    let environment = daemon.call("io.systemd.service.GetEnvironment", json!({}));
    let environment = environment["parameters"]["environment"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        environment.contains(&json!("LOCALRPC_LOG=info")),
        "{environment:?}"
    );
}

/// GetStats: calls, connections and protocol errors count up; uptime grows.
#[test]
fn get_stats_counters_move_after_calls() {
    let daemon = start_daemon(&[]);
    let first = daemon.call("io.localrpc.Control.GetStats", json!({}))["parameters"].clone();
    for key in [
        "connections_accepted",
        "connections_open",
        "connections_refused",
        "calls",
        "oversized_messages",
        "protocol_errors",
        "timeouts",
        "sequential_sessions",
        "uptime_usec",
    ] {
        assert!(first[key].is_u64(), "{key} in {first}");
    }
    let mut stream = connect(&daemon.socket).expect("connect");
    for _ in 0..5 {
        let reply = call_on(&mut stream, "io.localrpc.Echo.Echo", json!({"text": "x"}));
        assert!(reply.get("error").is_none(), "{reply}");
    }
    // A malformed message closes its own connection and counts as a protocol error.
    let mut bad = connect(&daemon.socket).expect("connect");
    bad.write_all(b"{not json\0").expect("send garbage");
    let mut partial = Vec::new();
    assert!(
        read_message(&mut bad, &mut partial).is_err(),
        "closed without a reply"
    );
    let second =
        call_on(&mut stream, "io.localrpc.Control.GetStats", json!({}))["parameters"].clone();
    let grew = |key: &str| second[key].as_u64().unwrap_or(0) - first[key].as_u64().unwrap_or(0);
    // 5 Echo calls and the second GetStats itself.
    assert!(grew("calls") >= 6, "{first} -> {second}");
    assert!(grew("connections_accepted") >= 2, "{first} -> {second}");
    assert_eq!(grew("protocol_errors"), 1, "{first} -> {second}");
    assert!(second["connections_open"].as_u64() >= Some(1), "{second}");
    assert!(
        second["uptime_usec"].as_u64() > first["uptime_usec"].as_u64(),
        "{first} -> {second}"
    );
}

/// GetHealth says ready, and draining when answered during the drain: a Sleep and a
/// GetHealth sent together before SIGTERM are both answered, the second after the drain
/// began.
#[test]
fn get_health_reports_ready_then_draining() {
    let mut daemon = start_daemon(&[]);
    let ready = daemon.call("io.localrpc.Control.GetHealth", json!({}))["parameters"].clone();
    assert_eq!(ready["state"], "ready", "{ready}");
    assert_eq!(ready["name"], "localrpcd");
    assert_eq!(ready["pid"], daemon.pid());

    let mut stream = connect(&daemon.socket).expect("connect");
    let mut both = message("io.localrpc.Echo.Sleep", json!({"milliseconds": 1500}));
    both.extend(message("io.localrpc.Control.GetHealth", json!({})));
    stream.write_all(&both).expect("send Sleep and GetHealth");
    wait_until_read(&stream);
    support::signal(daemon.pid(), rustix::process::Signal::TERM);
    assert_eq!(
        reply_on(&mut stream),
        json!({}),
        "Sleep finishes during the drain"
    );
    let health = reply_on(&mut stream);
    assert_eq!(health["parameters"]["state"], "draining", "{health}");
    let status = wait_exit(&mut daemon.child.0, TIMEOUT);
    assert!(status.success(), "{status:?}\n{}", daemon.log_text());
}

/// io.systemd.service.Reload runs the SIGHUP path: RELOADING=1 (with MONOTONIC_USEC), then
/// READY=1, before its reply.
#[test]
fn reload_sends_reloading_then_ready() {
    let dir = reachable_temp_dir();
    let notify = NotifyReceiver::path(dir.path(), "control");
    let daemon = start_daemon_in(dir, &[], Some(&notify));
    notify.expect_ready();
    let reply = daemon.call("io.systemd.service.Reload", json!({}));
    assert_eq!(reply, json!({}));
    // Queued before the reply was sent.
    let reloading = notify
        .recv_within(Duration::ZERO)
        .unwrap_or_else(|| panic!("no RELOADING=1 before the reply"));
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    let ready = notify
        .recv_within(Duration::ZERO)
        .unwrap_or_else(|| panic!("no READY=1 before the reply"));
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(
        daemon
            .log_text()
            .contains("io.systemd.service.Reload called, reloading")
    );
}

/// Both interfaces are listed after the daemon's own; `--no-control` removes them.
#[test]
fn control_interfaces_are_on_by_default_and_no_control_removes_them() {
    let daemon = start_daemon(&[]);
    let info = daemon.call("org.varlink.service.GetInfo", json!({}));
    assert_eq!(
        info["parameters"]["interfaces"],
        json!([
            "org.varlink.service",
            "io.localrpc.Echo",
            "io.systemd.service",
            "io.localrpc.Control"
        ])
    );
    drop(daemon);

    let daemon = start_daemon(&["--no-control"]);
    let info = daemon.call("org.varlink.service.GetInfo", json!({}));
    assert_eq!(
        info["parameters"]["interfaces"],
        json!(["org.varlink.service", "io.localrpc.Echo"])
    );
    for method in ["io.localrpc.Control.GetStats", "io.systemd.service.Ping"] {
        let reply = daemon.call(method, json!({}));
        assert_eq!(
            reply["error"], "org.varlink.service.InterfaceNotFound",
            "{reply}"
        );
    }
}
