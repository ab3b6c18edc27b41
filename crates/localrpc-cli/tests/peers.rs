//! `localrpc` against other implementations: the Python reference certification server and
//! systemd-creds (a real sd-varlink server) reached through `exec:`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, Peer, localrpc, require_peer, run_program, temp_dir, workspace_binary};

#[test]
fn python_certification_server() {
    let python = require_peer!(Peer::Python);
    let dir = temp_dir();
    let socket = dir.path().join("cert.sock");
    let child = Command::new(&python)
        .args(["-m", "varlink.tests.test_certification"])
        .arg(format!("--varlink=unix:{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the Python certification server");
    let _guard = ChildGuard(child);
    assert!(
        localrpc_testkit::wait_for_socket(&socket, Duration::from_secs(20)),
        "python server did not start"
    );
    let address = format!("unix:{}", socket.display());

    let info = localrpc(&["info", &address]);
    assert_eq!(info.code, 0, "{info:?}");
    assert!(
        info.stdout
            .contains("Interfaces: org.varlink.certification\n"),
        "{info:?}"
    );

    let idl = localrpc(&["introspect", &address, "org.varlink.certification"]);
    assert_eq!(idl.code, 0, "{idl:?}");
    assert!(
        idl.stdout
            .contains("method Start() -> (\n\tclient_id: string\n)\n"),
        "{}",
        idl.stdout
    );

    // varlinkctl cannot parse this interface (it rejects `[string]()`); localrpc lists it.
    let methods = localrpc(&["list-methods", &address, "org.varlink.certification"]);
    assert!(
        methods
            .stdout
            .contains("org.varlink.certification.Test01\n"),
        "{methods:?}"
    );

    let start = localrpc(&["call", &address, "org.varlink.certification.Start", "{}"]);
    assert_eq!(start.code, 0, "{start:?}");
    let reply: serde_json::Value = serde_json::from_str(&start.stdout).unwrap();
    let client_id = reply["client_id"].as_str().expect("client_id").to_owned();
    let test01 = localrpc(&[
        "call",
        &address,
        "org.varlink.certification.Test01",
        &format!(r#"{{"client_id":"{client_id}"}}"#),
    ]);
    assert_eq!(test01.stdout, "{\"bool\":true}\n", "{test01:?}");
    let wrong = localrpc(&[
        "call",
        &address,
        "org.varlink.certification.Test02",
        r#"{"client_id":"nope"}"#,
    ]);
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong
            .stderr
            .contains("Method call org.varlink.certification.Test02() failed: "),
        "{wrong:?}"
    );
}

#[test]
fn systemd_creds_through_exec_matches_varlinkctl() {
    let creds = require_peer!(Peer::SystemdCreds);
    let varlinkctl = require_peer!(Peer::Varlinkctl);
    let exec = format!("exec:{}", creds.display());
    let bare = creds.display().to_string();
    for args in [
        vec!["info", exec.as_str()],
        vec!["info", bare.as_str()],
        vec!["list-interfaces", exec.as_str()],
        vec!["list-methods", exec.as_str(), "io.systemd.Credentials"],
        vec!["introspect", exec.as_str(), "io.systemd.Credentials"],
        vec!["introspect", exec.as_str()],
    ] {
        let ours = localrpc(&args);
        let theirs = run_program(&varlinkctl, &args, b"");
        assert_eq!(ours.code, 0, "{args:?}: {ours:?}");
        assert_eq!(
            ours.stdout, theirs.stdout,
            "localrpc {args:?} differs from varlinkctl"
        );
    }
    let info = localrpc(&["info", &exec]);
    assert!(info.stdout.contains("io.systemd.Credentials"), "{info:?}");
}

/// Children of this process whose command name is `name` (zombies included).
fn children_named(name: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1) == Some(&me.as_str()) && comm.starts_with(name) {
            found.push(format!("{comm} {}", fields[0]));
        }
    }
    found
}

#[test]
fn exec_child_is_reaped_when_the_connection_is_dropped() {
    let creds = require_peer!(Peer::SystemdCreds);
    let runtime = runtime();
    runtime.block_on(async {
        let mut connection =
            localrpc::client::Connection::connect(&format!("exec:{}", creds.display()))
                .await
                .expect("exec: connect");
        let info = connection
            .call("org.varlink.service.GetInfo", serde_json::json!({}))
            .await
            .unwrap();
        assert!(
            info["interfaces"]
                .to_string()
                .contains("io.systemd.Credentials")
        );
        assert!(
            !children_named("systemd-creds").is_empty(),
            "the child runs while connected"
        );
        drop(connection);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !children_named("systemd-creds").is_empty() {
            assert!(
                Instant::now() < deadline,
                "child not reaped: {:?}",
                children_named("systemd-creds")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Why `Connection::set_op_id` is for localrpc peers only: sd-varlink closes the connection on
/// the `io.localrpc` vendor key that carries the op id, though varlink servers are asked to
/// ignore vendor keys. Without it, calls to sd-varlink work as always.
#[test]
fn sd_varlink_refuses_the_op_id_vendor_key() {
    let creds = require_peer!(Peer::SystemdCreds);
    let runtime = runtime();
    let address = format!("exec:{}", creds.display());
    runtime.block_on(async {
        for op_id in [None, Some(localrpc::service::OpId::mint())] {
            let mut connection = localrpc::client::Connection::connect(&address)
                .await
                .expect("exec: connect");
            connection.set_op_id(op_id);
            let info = connection
                .call("org.varlink.service.GetInfo", serde_json::json!({}))
                .await;
            if op_id.is_some() {
                assert!(
                    matches!(info, Err(localrpc::client::Error::ConnectionLost(_))),
                    "systemd-creds took the vendor key now ({info:?}): revisit the advice on \
                     Connection::set_op_id"
                );
            } else {
                assert!(info.is_ok(), "{info:?}");
            }
        }
    });
}

#[test]
fn exec_child_that_ignores_eof_is_killed() {
    // A "server" that never reads fd 3 and never exits by itself.
    let dir = temp_dir();
    let script = dir.path().join("stubborn");
    std::fs::write(&script, "#!/bin/sh\ntest \"$LISTEN_FDS\" = 1 && test \"$LISTEN_PID\" = $$ && test \"$LISTEN_FDNAMES\" = varlink && exec sleep 1000\nexit 3\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        let connection =
            localrpc::client::Connection::connect(&format!("exec:{}", script.display()))
                .await
                .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            children_named("sleep").len(),
            1,
            "LISTEN_* variables were set (else the script exits 3)"
        );
        drop(connection);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !children_named("sleep").is_empty() {
            assert!(
                Instant::now() < deadline,
                "child not killed: {:?}",
                children_named("sleep")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn ssh_addresses_use_the_sd_varlink_command_lines() {
    // A fake ssh (via $LOCALRPC_SSH) that checks its arguments and connects with localrpc bridge.
    let dir = temp_dir();
    let socket = dir.path().join("echo.sock");
    let _daemon = localrpc_testkit::spawn_localrpcd(&socket, &[]);
    let fake = dir.path().join("ssh");
    let bin = workspace_binary("localrpc");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -W ]; then [ \"$3\" = myhost ] || exit 9; exec {bin} bridge unix:\"$2\"; fi\n\
             [ \"$1 $2 $3 $4 $5 $6\" = \"-e none -T myhost env SYSTEMD_VARLINK_LISTEN=-\" ] || exit 9\nshift 6\nexec \"$@\"\n",
            bin = bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = |address: String| {
        let out = Command::new(&bin)
            .args([
                "call",
                &address,
                "io.localrpc.Echo.Echo",
                r#"{"text":"via ssh"}"#,
            ])
            .env("LOCALRPC_SSH", &fake)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(format!("ssh-unix:myhost:{}", socket.display()));
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "{\"text\":\"via ssh\"}\n"),
        "{stderr}"
    );
    let (code, stdout, stderr) = run(format!(
        "ssh-exec:myhost:{} bridge 'unix:{}'",
        bin.display(),
        socket.display()
    ));
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "{\"text\":\"via ssh\"}\n"),
        "{stderr}"
    );
}

/// A single-threaded runtime for the tests that use the client library directly.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
