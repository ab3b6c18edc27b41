//! `localrpc stats`, `health` and `log-level` end to end: against a real localrpcd process
//! (output, exit codes, PermissionDenied for another uid, a daemon without the control
//! interfaces), and against in-process services that play a daemon reporting `draining` and a
//! systemd daemon that only has `io.systemd.service` (the `log-level` fallback).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{Run, daemon, localrpc, spawn_localrpcd, temp_dir, workspace_binary};
use localrpc::service::{InterfaceBuilder, Reply, Service};
use localrpc_testkit::InProcessServer;
use serde_json::{Value, json};

#[test]
fn stats_prints_a_table_and_json() {
    let (_dir, _daemon, address) = daemon();
    let table = localrpc(&["stats", &address]);
    assert_eq!(table.code, 0, "{table:?}");
    for label in [
        "Connections accepted: ",
        "    Connections open: ",
        "               Calls: ",
        "     Protocol errors: 0\n",
        "              Uptime: ",
    ] {
        assert!(
            table.stdout.contains(label),
            "{label:?} in\n{}",
            table.stdout
        );
    }
    let json = localrpc(&["stats", "--json=short", &address]);
    assert_eq!(json.code, 0, "{json:?}");
    let stats: Value = serde_json::from_str(&json.stdout).expect("JSON stats");
    assert!(
        stats["calls"].as_u64() >= Some(2),
        "two GetStats calls: {stats}"
    );
    // This connection, and perhaps the start-up probe's if the daemon has not seen it close.
    assert!(
        (1..=2).contains(&stats["connections_open"].as_u64().unwrap_or(0)),
        "open connections: {stats}"
    );
}

#[test]
fn health_is_ready_and_exits_0() {
    let (_dir, daemon, address) = daemon();
    let run = localrpc(&["health", &address]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with(&format!(
            "ready name=localrpcd pid={} uptime=",
            daemon.0.id()
        )),
        "{run:?}"
    );
    let quiet = localrpc(&["health", "-q", &address]);
    assert_eq!((quiet.code, quiet.stdout.as_str()), (0, ""), "{quiet:?}");
    let json = localrpc(&["health", "--json=short", &address]);
    let health: Value = serde_json::from_str(&json.stdout).expect("JSON health");
    assert_eq!(health["state"], "ready");
}

#[test]
fn health_of_a_missing_daemon_exits_69() {
    let dir = temp_dir();
    let address = format!("unix:{}", dir.path().join("none.sock").display());
    let run = localrpc(&["health", &address]);
    assert_eq!(run.code, 69, "{run:?}");
}

#[test]
fn log_level_shows_sets_and_resets_the_filter() {
    let (_dir, _daemon, address) = daemon();
    let show = |expected: &str| {
        let run = localrpc(&["log-level", &address]);
        assert_eq!((run.code, run.stdout.as_str()), (0, expected), "{run:?}");
    };
    show("info\n");
    for (given, filter) in [
        ("debug", "debug\n"),
        ("4", "warn\n"),
        ("warning", "warn\n"),
        ("info,localrpc::call=debug", "info,localrpc::call=debug\n"),
    ] {
        let set = localrpc(&["log-level", &address, given]);
        assert_eq!(set.code, 0, "{given}: {set:?}");
        show(filter);
    }
    let bad = localrpc(&["log-level", &address, "info,localrpc=loud"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr.contains("io.localrpc.Control.InvalidLogFilter")
            && bad.stderr.contains("\"localrpc=loud\" is not valid"),
        "{bad:?}"
    );
    show("info,localrpc::call=debug\n");
    let reset = localrpc(&["log-level", "--reset", &address]);
    assert_eq!(reset.code, 0, "{reset:?}");
    show("info\n");
}

/// `localrpc` as uid 65534 (a socket it may connect to): reading works, changing the log
/// level exits 77 with advice.
#[test]
fn log_level_as_another_uid_exits_77_with_advice() {
    if !rustix::process::geteuid().is_root() {
        localrpc_testkit::skip(module_path!(), "needs root to run localrpc as another uid");
        return;
    }
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temp dir");
    let socket = dir.path().join("d.sock");
    let _daemon = spawn_localrpcd(&socket, &["--socket-mode", "0666"]);
    let address = format!("unix:{}", socket.display());
    let as_nobody = |args: &[&str]| -> Run {
        Command::new(workspace_binary("localrpc"))
            .args(args)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .output()
            .expect("run localrpc as uid 65534")
            .into()
    };
    let set = as_nobody(&["log-level", &address, "debug"]);
    assert_eq!(set.code, 77, "{set:?}");
    assert!(
        set.stderr.contains("PermissionDenied") && set.stderr.contains("run as root"),
        "{set:?}"
    );
    let show = as_nobody(&["log-level", &address]);
    assert_eq!((show.code, show.stdout.as_str()), (0, "info\n"), "{show:?}");
    assert_eq!(as_nobody(&["health", "-q", &address]).code, 0);
}

#[test]
fn a_daemon_without_the_control_interface_is_named_as_such() {
    let dir = temp_dir();
    let socket = dir.path().join("d.sock");
    let _daemon = spawn_localrpcd(&socket, &["--no-control"]);
    let address = format!("unix:{}", socket.display());
    let stats = localrpc(&["stats", &address]);
    assert_eq!(stats.code, 1, "{stats:?}");
    assert!(
        stats
            .stderr
            .contains("does not offer io.localrpc.Control, so its counters cannot be shown"),
        "{stats:?}"
    );
    let level = localrpc(&["log-level", &address, "debug"]);
    assert_eq!(level.code, 1, "{level:?}");
    assert!(
        level
            .stderr
            .contains("offers neither io.localrpc.Control nor io.systemd.service"),
        "{level:?}"
    );
}

/// Runs `localrpc args` off the runtime's thread (the in-process server needs it).
async fn localrpc_async(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        localrpc(&args)
    })
    .await
    .expect("run localrpc")
}

/// A daemon whose GetHealth says draining: `health` prints it and exits 3.
#[tokio::test]
async fn health_exits_3_when_the_daemon_is_not_ready() {
    let idl = localrpc::daemon::control::CONTROL_IDL;
    let control = InterfaceBuilder::new(idl)
        .expect("the control IDL parses")
        .method("GetHealth", |_call| {
            Box::pin(async {
                Reply::with(json!({"state": "draining", "name": "fake", "pid": 1,
                                   "uptime_usec": 1_000_000, "connections_open": 1}))
            })
        });
    let service = Service::builder()
        .interface(control)
        .build()
        .expect("build");
    let server = InProcessServer::start(service).await;
    let run = localrpc_async(&["health", &server.address()]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stdout.starts_with("draining name=fake pid=1"),
        "{run:?}"
    );
}

/// A systemd daemon (only io.systemd.service, with systemd's IDL): `log-level LEVEL` falls
/// back to SetLogLevel with the syslog level, `log-level` shows GetLogLevel, `health` uses
/// Ping, and a full filter is refused with advice.
#[tokio::test]
async fn log_level_falls_back_to_systemds_set_log_level() {
    let levels: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = levels.clone();
    let systemd = InterfaceBuilder::new(localrpc::daemon::control::SYSTEMD_SERVICE_IDL)
        .expect("systemd's IDL parses")
        .method("Ping", |_call| Box::pin(async { Ok(Reply::empty()) }))
        .method("GetLogLevel", |_call| {
            Box::pin(async { Reply::with(json!({"level": 6})) })
        })
        .method("SetLogLevel", move |call| {
            let level = call.parameters().get("level").cloned();
            record
                .lock()
                .expect("levels")
                .push(level.unwrap_or(Value::Bool(false)));
            Box::pin(async { Ok(Reply::empty()) })
        });
    let service = Service::builder()
        .interface(systemd)
        .build()
        .expect("build");
    let server = InProcessServer::start(service).await;
    let address = server.address();

    let set = localrpc_async(&["log-level", &address, "debug"]).await;
    assert_eq!(set.code, 0, "{set:?}");
    let set = localrpc_async(&["log-level", &address, "warning"]).await;
    assert_eq!(set.code, 0, "{set:?}");
    let reset = localrpc_async(&["log-level", "--reset", &address]).await;
    assert_eq!(reset.code, 0, "{reset:?}");
    assert_eq!(
        *levels.lock().expect("levels"),
        vec![json!(7), json!(4), Value::Null]
    );
    let show = localrpc_async(&["log-level", &address]).await;
    assert_eq!(
        (show.code, show.stdout.as_str()),
        (0, "6 (info)\n"),
        "{show:?}"
    );
    let filter = localrpc_async(&["log-level", &address, "info,x=debug"]).await;
    assert_eq!(filter.code, 1, "{filter:?}");
    assert!(filter.stderr.contains("give a plain level"), "{filter:?}");
    let health = localrpc_async(&["health", &address]).await;
    assert_eq!(health.code, 0, "{health:?}");
    assert!(
        health.stdout.contains("from io.systemd.service.Ping"),
        "{health:?}"
    );
}
