//! The `certification` program against the reference implementations, both ways: its server
//! certified by the Python and Go clients, its client certifying the Python and Go servers.
//! A missing peer skips visibly (localrpc-testkit).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use localrpc_testkit::{
    ChildGuard, Peer, require_peer, temp_dir, wait_for_socket, workspace_binary,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `command` to completion (killed after [`LIMIT`]); its output goes through files so
/// a chatty peer can never block on a full pipe.
fn run(command: &mut Command) -> Output {
    let dir = temp_dir();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let file = |path: &Path| std::fs::File::create(path).expect("create output file");
    let child = command
        .stdin(Stdio::null())
        .stdout(file(&out))
        .stderr(file(&err))
        .spawn();
    let mut guard = ChildGuard(child.unwrap_or_else(|e| panic!("cannot start {command:?}: {e}")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{command:?} did not finish within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |path: &Path| std::fs::read(path).expect("read output file");
    Output {
        status,
        stdout: read(&out),
        stderr: read(&err),
    }
}

fn text(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Starts a server process and waits until `socket` accepts connections.
fn start_server(command: &mut Command, socket: &Path) -> ChildGuard {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn();
    let guard = ChildGuard(child.unwrap_or_else(|e| panic!("cannot start {command:?}: {e}")));
    assert!(
        wait_for_socket(socket, Duration::from_secs(20)),
        "{command:?} did not listen on {}",
        socket.display()
    );
    guard
}

fn our_server(socket: &Path) -> ChildGuard {
    start_server(
        Command::new(workspace_binary("certification"))
            .arg(format!("--varlink=unix:{}", socket.display())),
        socket,
    )
}

fn our_client(socket: &Path) -> Output {
    run(Command::new(workspace_binary("certification"))
        .arg("--client")
        .arg(format!("--varlink=unix:{}", socket.display())))
}

#[test]
fn python_client_certifies_our_server() {
    let python = require_peer!(Peer::Python);
    let dir = temp_dir();
    let socket = dir.path().join("cert.sock");
    let _server = our_server(&socket);
    let output = run(Command::new(python)
        .args(["-m", "varlink.tests.test_certification", "--client"])
        .arg(format!("--varlink=unix:{}", socket.display())));
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("Certification passed"), "{log}");
}

#[test]
fn go_client_certifies_our_server() {
    let go = require_peer!(Peer::GoCertification);
    let dir = temp_dir();
    let socket = dir.path().join("cert.sock");
    let _server = our_server(&socket);
    let output = run(Command::new(go)
        .arg("--client")
        .arg(format!("--varlink=unix:{}", socket.display())));
    let log = text(&output);
    // The Go client exits 0 even on failure: its last line tells.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("End: 'true'"),
        "{log}"
    );
}

#[test]
fn our_client_certifies_the_python_server() {
    let python = require_peer!(Peer::Python);
    let dir = temp_dir();
    let socket = dir.path().join("cert.sock");
    let _server = start_server(
        Command::new(python)
            .args(["-m", "varlink.tests.test_certification"])
            .arg(format!("--varlink=unix:{}", socket.display())),
        &socket,
    );
    let output = our_client(&socket);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("Certification passed"), "{log}");
}

#[test]
fn our_client_certifies_the_go_server() {
    let go = require_peer!(Peer::GoCertification);
    let dir = temp_dir();
    let socket = dir.path().join("cert.sock");
    let _server = start_server(
        Command::new(go).arg(format!("--varlink=unix:{}", socket.display())),
        &socket,
    );
    let output = our_client(&socket);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("Certification passed"), "{log}");
}

#[test]
fn our_client_fails_when_no_server_listens() {
    let dir = temp_dir();
    let socket = dir.path().join("nothing.sock");
    let output = our_client(&socket);
    assert!(!output.status.success(), "{}", text(&output));
}
