//! `localrpcd` as a real process: the default socket under `$XDG_RUNTIME_DIR` (run as an
//! unprivileged user through `setpriv` when the tests run as root), socket file modes
//! (0600 by default, `--socket-mode 0660`), a stale socket is replaced, a live one is refused
//! with a clear error while the first daemon keeps serving, a directory or regular file at
//! the path is refused and left intact, and SIGTERM exits 0 and removes the socket file.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::wait_exit;
use localrpc_testkit::socket::mode_of;
use localrpc_testkit::{ChildGuard, spawn_localrpcd, temp_dir, wait_for_socket, workspace_binary};

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const NOBODY: u32 = 65534;

/// One Echo round trip with the blocking std socket (bounded by socket timeouts).
fn echo_over(socket: &Path, text: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("set write timeout");
    stream
        .write_all(format!("{}\0", common::echo_call(text)).as_bytes())
        .expect("send Echo");
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = stream.read(&mut byte).expect("read the Echo reply");
        assert!(
            n == 1,
            "connection closed before the reply ended: {:?}",
            String::from_utf8_lossy(&reply)
        );
        if byte[0] == 0 {
            break;
        }
        reply.push(byte[0]);
    }
    String::from_utf8(reply).expect("UTF-8 reply")
}

fn assert_serves(socket: &Path) {
    assert_eq!(echo_over(socket, "ping"), common::echo_reply("ping"));
}

/// Runs `localrpcd --listen unix:<socket> [args]`, expecting it to exit on its own; returns
/// (exit success, stderr).
fn run_expecting_exit(socket: &Path, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(workspace_binary("localrpcd"))
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start localrpcd");
    let status = wait_exit(&mut child, EXIT_TIMEOUT);
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr pipe")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.success(), stderr)
}

#[test]
fn default_socket_is_under_xdg_runtime_dir_with_mode_0600() {
    let dir = temp_dir();
    let runtime_dir = dir.path().join("runtime");
    std::fs::create_dir(&runtime_dir).expect("create runtime dir");
    let as_root = rustix::process::geteuid().is_root();
    let mut command = if as_root {
        // As root localrpcd uses /run/localrpc (system state): run it as nobody instead.
        let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
        else {
            localrpc_testkit::skip(module_path!(), "running as root and setpriv is unavailable");
            return;
        };
        std::os::unix::fs::chown(&runtime_dir, Some(NOBODY), Some(NOBODY))
            .expect("chown runtime dir");
        std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod runtime dir");
        // The temp dir is root's 0700: nobody needs to traverse it, and a copy of the binary
        // it can execute.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod temp dir");
        let binary = dir.path().join("localrpcd");
        std::fs::copy(workspace_binary("localrpcd"), &binary).expect("copy localrpcd");
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
            .expect("chmod binary");
        let mut command = Command::new(setpriv);
        command
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ])
            .arg(binary);
        command
    } else {
        Command::new(workspace_binary("localrpcd"))
    };
    let child = command
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start localrpcd without --listen");
    let mut daemon = ChildGuard(child);
    let socket = runtime_dir.join("localrpc").join("localrpcd.sock");
    assert!(
        wait_for_socket(&socket, EXIT_TIMEOUT),
        "localrpcd did not listen on {}",
        socket.display()
    );
    assert_serves(&socket);
    assert_eq!(mode_of(&socket), 0o600, "default socket mode");
    if as_root {
        let owner = std::fs::symlink_metadata(&socket)
            .expect("stat socket")
            .uid();
        assert_eq!(
            owner, NOBODY,
            "the socket belongs to the user running the daemon"
        );
    }
    let status = daemon
        .terminate(EXIT_TIMEOUT)
        .expect("localrpcd did not exit on SIGTERM");
    assert!(status.success(), "SIGTERM exit status {status:?}");
    assert!(!socket.exists(), "the socket file is removed on SIGTERM");
}

#[test]
fn socket_mode_defaults_to_0600_and_is_configurable() {
    let dir = temp_dir();
    let default_socket = dir.path().join("default.sock");
    let _default = spawn_localrpcd(&default_socket, &[]);
    assert_eq!(mode_of(&default_socket), 0o600);
    let group_socket = dir.path().join("group.sock");
    let _group = spawn_localrpcd(&group_socket, &["--socket-mode", "0660"]);
    assert_eq!(mode_of(&group_socket), 0o660);
    assert_serves(&group_socket);
    // A bad mode is refused up front.
    let (ok, stderr) = run_expecting_exit(&dir.path().join("bad.sock"), &["--socket-mode", "0999"]);
    assert!(!ok, "an invalid --socket-mode must fail");
    assert!(
        stderr.contains("0999"),
        "the error names the bad mode: {stderr}"
    );
    assert!(!dir.path().join("bad.sock").exists());
}

/// localrpcd defines `pow` itself (see main.rs), so libm.so is neither linked nor mapped: a
/// new use of another libm function would bring it back, with its start-up cost and memory.
/// Likewise libgcc_s.so, where build.rs linked libgcc's unwinder statically (wherever the C
/// compiler has a libgcc_eh.a, as Debian's gcc does).
#[test]
fn serves_without_mapping_libm_or_libgcc_s() {
    let dir = temp_dir();
    let socket = dir.path().join("nolibm.sock");
    let daemon = spawn_localrpcd(&socket, &[]);
    assert_serves(&socket);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", daemon.0.id()))
        .expect("read the daemon's memory map");
    assert!(
        maps.contains("libc.so"),
        "the map lists shared libraries: {maps}"
    );
    assert!(!maps.contains("libm.so"), "libm.so is mapped: {maps}");
    if cfg!(static_unwinder) {
        assert!(!maps.contains("libgcc_s"), "libgcc_s.so is mapped: {maps}");
    }
}

/// SIGTERM sent the moment the socket file appears still gets the clean exit (status 0, socket
/// removed): the signal handlers are installed before any socket exists.
#[test]
fn sigterm_right_after_the_socket_appears_exits_zero() {
    let dir = temp_dir();
    for round in 0..20 {
        let socket = dir.path().join(format!("early{round}.sock"));
        let mut daemon = ChildGuard(
            Command::new(workspace_binary("localrpcd"))
                .arg("--listen")
                .arg(format!("unix:{}", socket.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start localrpcd"),
        );
        let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "localrpcd did not create its socket"
            );
            std::thread::yield_now();
        }
        localrpc_testkit::process::signal(daemon.0.id(), rustix::process::Signal::TERM);
        let status = wait_exit(&mut daemon.0, EXIT_TIMEOUT);
        assert!(
            status.success(),
            "round {round}: exit status after an early SIGTERM: {status:?}"
        );
        assert!(
            !socket.exists(),
            "round {round}: the socket file is removed"
        );
    }
}

#[test]
fn stale_socket_is_replaced() {
    let dir = temp_dir();
    let socket = dir.path().join("stale.sock");
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind a soon-stale socket"));
    assert!(socket.exists());
    let _daemon = spawn_localrpcd(&socket, &[]);
    assert_serves(&socket);
    assert_eq!(mode_of(&socket), 0o600);
}

#[test]
fn live_socket_is_refused_and_the_first_daemon_keeps_serving() {
    let dir = temp_dir();
    let socket = dir.path().join("live.sock");
    let _first = spawn_localrpcd(&socket, &[]);
    let (ok, stderr) = run_expecting_exit(&socket, &[]);
    assert!(!ok, "a second daemon on a live socket must fail");
    assert!(
        stderr.contains(&socket.display().to_string()),
        "the error names the path: {stderr}"
    );
    assert!(
        stderr.contains("already"),
        "the error says another instance is already there: {stderr}"
    );
    assert_serves(&socket);
    assert_eq!(
        mode_of(&socket),
        0o600,
        "the first daemon's socket is untouched"
    );
}

#[test]
fn socket_of_another_live_server_is_refused_and_kept() {
    let dir = temp_dir();
    let socket = dir.path().join("other.sock");
    // A live server that is not localrpcd (so no instance lock is involved).
    let other = std::os::unix::net::UnixListener::bind(&socket).expect("bind another server");
    let (ok, stderr) = run_expecting_exit(&socket, &[]);
    assert!(!ok, "a live socket must not be taken over");
    assert!(
        stderr.contains(&socket.display().to_string()),
        "the error names the path: {stderr}"
    );
    assert!(
        stderr.contains("already listening"),
        "the error says why: {stderr}"
    );
    assert!(socket.exists(), "the live socket file is left in place");
    // The other server still owns its socket: a new client reaches it.
    let _client =
        std::os::unix::net::UnixStream::connect(&socket).expect("connect to the other server");
    other.set_nonblocking(true).expect("nonblocking");
    let mut accepted = 0;
    while other.accept().is_ok() {
        accepted += 1;
    }
    assert!(
        accepted >= 1,
        "the other server's listener still receives connections"
    );
}

#[test]
fn directory_or_regular_file_at_the_path_is_refused_and_left_intact() {
    let dir = temp_dir();
    let directory = dir.path().join("a-directory");
    std::fs::create_dir(&directory).expect("mkdir");
    std::fs::write(directory.join("keep"), b"inside").expect("write file in directory");
    let (ok, stderr) = run_expecting_exit(&directory, &[]);
    assert!(!ok, "a directory at the socket path must be refused");
    assert!(
        stderr.contains(&directory.display().to_string()),
        "the error names the path: {stderr}"
    );
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert!(directory.is_dir());
    assert_eq!(
        std::fs::read(directory.join("keep")).expect("file still there"),
        b"inside"
    );

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"precious data").expect("write regular file");
    let (ok, stderr) = run_expecting_exit(&file, &[]);
    assert!(!ok, "a regular file at the socket path must be refused");
    assert!(
        stderr.contains(&file.display().to_string()),
        "the error names the path: {stderr}"
    );
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(
        std::fs::read(&file).expect("file still there"),
        b"precious data"
    );
}

#[test]
fn sigterm_exits_zero_promptly_and_removes_the_socket_with_idle_clients() {
    let dir = temp_dir();
    let socket = dir.path().join("term.sock");
    let mut daemon = spawn_localrpcd(&socket, &[]);
    // Idle clients must not hold up shutdown (the drain timeout is 10 s): one that made a
    // call and keeps its connection open, one that never sent anything.
    use std::io::{Read, Write};
    let mut used = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    used.set_read_timeout(Some(EXIT_TIMEOUT))
        .expect("read timeout");
    used.write_all(format!("{}\0", common::echo_call("x")).as_bytes())
        .expect("send Echo");
    let mut reply = [0u8; 64];
    let n = used.read(&mut reply).expect("read Echo reply");
    assert_eq!(
        &reply[..n],
        format!("{}\0", common::echo_reply("x")).as_bytes()
    );
    let _silent =
        std::os::unix::net::UnixStream::connect(&socket).expect("connect a silent client");
    let start = std::time::Instant::now();
    let status = daemon
        .terminate(EXIT_TIMEOUT)
        .expect("localrpcd did not exit on SIGTERM");
    let took = start.elapsed();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM with only idle clients took {took:?} (idle connections must close at once)"
    );
    assert!(!socket.exists(), "the socket file is removed on SIGTERM");
    // The idle client sees its connection closed.
    let n = used.read(&mut reply).expect("read EOF");
    assert_eq!(n, 0, "expected EOF on the idle connection");
}
