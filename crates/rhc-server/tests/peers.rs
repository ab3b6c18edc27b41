//! Parity R2 through real peers: systemd 262's `varlinkctl` (the exact command of the
//! original's documentation) and the Python reference implementation (PyPI `varlink`).
//! Visible skips when a peer is not installed (`scripts/peers`).

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use localrpc_testkit::{Peer, require_peer};
use support::*;

/// Runs a peer program to completion, bounded by [`TIMEOUT`].
fn run(program: &Path, args: &[&str]) -> Output {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.expect("peer output"),
        Err(_) => {
            signal(pid, rustix::process::Signal::KILL);
            panic!(
                "{} {args:?} did not finish within {TIMEOUT:?}",
                program.display()
            );
        }
    }
}

fn show(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn r2_varlinkctl_call_test() {
    let varlinkctl = require_peer!(Peer::Varlinkctl);
    let dir = temp_dir();
    let socket = dir.path().join("com.redhat.rhc");
    let mut server = spawn(&socket, &[]);
    let address = format!("unix:{}", socket.display());

    let out = run(
        &varlinkctl,
        &[
            "call",
            &address,
            "com.redhat.rhc.internal.Test",
            "{\"input\": \"Helloo!\"}",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(
        reply,
        serde_json::json!({"output": "Echo from rhc-server: Helloo!"}),
        "{}",
        show(&out)
    );

    // Missing parameters (R3), through the reference client.
    let out = run(
        &varlinkctl,
        &["call", &address, "com.redhat.rhc.internal.Test", "{}"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        reply,
        serde_json::json!({"output": "Echo from rhc-server: "})
    );

    // Introspection: the interface list and the IDL as varlinkctl understands it.
    let out = run(&varlinkctl, &["list-interfaces", &address]);
    assert!(out.status.success(), "{}", show(&out));
    // varlinkctl prints the list sorted; the raw GetInfo order is checked in R5.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        [
            "com.redhat.rhc.internal",
            "io.localrpc.Control",
            "io.systemd.service",
            "org.varlink.service"
        ]
    );
    let out = run(
        &varlinkctl,
        &["introspect", &address, "com.redhat.rhc.internal"],
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("method Test(") && text.contains("error InvalidParameter"),
        "{text}"
    );

    // A wrong type: an error reply (varlinkctl exits non-zero naming it), not a hang-up.
    let out = run(
        &varlinkctl,
        &[
            "call",
            &address,
            "com.redhat.rhc.internal.Test",
            "{\"input\": 5}",
        ],
    );
    // varlinkctl 262 maps org.varlink.service.InvalidParameter to EINVAL ("Invalid
    // argument") and prints the error's parameters.
    assert!(!out.status.success(), "{}", show(&out));
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(
        error,
        serde_json::json!({"parameter": "input"}),
        "{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid argument"),
        "{}",
        show(&out)
    );
    assert!(server.terminate().success());
}

const PY_CLIENT: &str = r#"
import json, sys, varlink
client = varlink.Client(address=sys.argv[1])
with client.open("com.redhat.rhc.internal") as con:
    out = {"test": con.Test(input="Helloo!"), "empty": con.Test(input="")}
with client.open("org.varlink.service") as svc:
    out["info"] = svc.GetInfo()
print(json.dumps(out))
"#;

#[test]
fn r2_python_client_and_cli_call_test() {
    let python = require_peer!(Peer::Python);
    let dir = temp_dir();
    let socket = dir.path().join("com.redhat.rhc");
    let mut server = spawn(&socket, &[]);
    let address = format!("unix:{}", socket.display());

    let out = run(&python, &["-c", PY_CLIENT, &address]);
    assert!(out.status.success(), "{}", show(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(
        value["test"],
        serde_json::json!({"output": "Echo from rhc-server: Helloo!"})
    );
    assert_eq!(
        value["empty"],
        serde_json::json!({"output": "Echo from rhc-server: "})
    );
    assert_eq!(
        value["info"]["interfaces"],
        serde_json::json!([
            "org.varlink.service",
            "com.redhat.rhc.internal",
            "io.systemd.service",
            "io.localrpc.Control"
        ])
    );

    let out = run(
        &python,
        &[
            "-m",
            "varlink.cli",
            "call",
            &format!("{address}/com.redhat.rhc.internal.Test"),
            "{\"input\": \"Helloo!\"}",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(
        reply,
        serde_json::json!({"output": "Echo from rhc-server: Helloo!"})
    );
    assert!(server.terminate().success());
}
