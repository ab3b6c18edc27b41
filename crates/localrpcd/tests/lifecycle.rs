//! Daemon lifecycle of `localrpcd` started standalone (not socket-activated): the socket and
//! lock file it creates (R1), the sd_notify sequence of a start, a reload and a drain, a
//! second instance refused while the first stays untouched (R7), recovery after `kill -9`
//! (R8), SIGTERM draining a call in flight and removing the self-made socket (R9), and a
//! directory at the socket path that is never removed (R12).
//!
//! Readiness comes from the notify socket (`READY=1`) or `wait_for_socket`; "the call is in
//! flight" from SIOCOUTQ reaching 0 (the daemon has read the request). Every wait is bounded.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use support::*;

/// Starts `localrpcd --listen unix:<socket> [args]` with `NOTIFY_SOCKET` when given; stderr
/// piped. Does not wait for readiness.
fn start(socket: &Path, args: &[&str], notify: Option<&NotifyReceiver>) -> ChildGuard {
    let mut command = Command::new(localrpcd());
    command
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .args(args)
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(notify) = notify {
        command.env("NOTIFY_SOCKET", &notify.address);
    }
    ChildGuard(command.spawn().expect("start localrpcd"))
}

/// Starts a daemon and waits until its socket accepts.
fn start_ready(socket: &Path, args: &[&str]) -> ChildGuard {
    let child = start(socket, args, None);
    assert!(
        wait_for_socket(socket, TIMEOUT),
        "localrpcd did not start listening on {}",
        socket.display()
    );
    child
}

fn lock_of(socket: &Path) -> std::path::PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

fn pid_in(lock: &Path) -> String {
    std::fs::read_to_string(lock)
        .unwrap_or_else(|e| panic!("read {}: {e}", lock.display()))
        .trim()
        .to_owned()
}

fn exit_and_stderr(child: &mut Child) -> (std::process::ExitStatus, String) {
    let status = wait_exit_pidfd(child);
    (status, stderr_of(child))
}

/// Sends `request` and waits until the daemon has read it: the call is in flight.
fn send_in_flight(socket: &Path, request: &[u8]) -> std::os::unix::net::UnixStream {
    let mut stream = connect(socket).expect("connect");
    stream.write_all(request).expect("send the call");
    wait_until_read(&stream);
    stream
}

#[test]
fn r1_standalone_start_creates_the_runtime_dir_the_socket_with_its_mode_and_the_lock_file() {
    let dir = temp_dir();
    // A runtime directory that does not exist yet: created with an explicit mode (0755).
    let socket = dir.path().join("run/localrpc/d.sock");
    let mut daemon = start_ready(&socket, &["--socket-mode", "0640"]);
    assert_eq!(
        mode_of(socket.parent().expect("dir")),
        0o755,
        "runtime dir mode"
    );
    assert_eq!(mode_of(&socket), 0o640, "socket mode as configured");
    let lock = lock_of(&socket);
    assert!(lock.is_file(), "the lock file {} exists", lock.display());
    assert_eq!(
        pid_in(&lock),
        daemon.0.id().to_string(),
        "the lock file records the daemon's pid"
    );
    assert_answers(&socket);
    signal(daemon.0.id(), Signal::TERM);
    let (status, stderr) = exit_and_stderr(&mut daemon.0);
    assert!(status.success(), "SIGTERM exits 0: {status}; {stderr}");
    assert!(
        !socket.exists(),
        "the self-made socket is removed on SIGTERM"
    );
    assert!(
        lock.is_file(),
        "the lock file is never unlinked (unlinking after unlock races)"
    );

    // The default mode is 0600.
    let socket = dir.path().join("default.sock");
    let _daemon = start_ready(&socket, &[]);
    assert_eq!(mode_of(&socket), 0o600, "default socket mode");
}

#[test]
fn notify_standalone_path_socket_start_reload_and_drain() {
    let dir = temp_dir();
    let socket = dir.path().join("d.sock");
    let notify = NotifyReceiver::path(dir.path(), "standalone");
    let mut daemon = start(&socket, &[], Some(&notify));

    // Start: READY=1 with a STATUS, and the socket accepts the moment READY arrives (one
    // connect, no retry).
    let ready = notify.expect_ready();
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=serving on unix:{}", socket.display())
    );
    let mut stream = connect(&socket).expect("the socket accepts as soon as READY=1 arrives");
    assert_eq!(
        call_on(&mut stream, ECHO_CALL),
        Outcome::Answered(ECHO_REPLY.to_vec())
    );

    // Reload: RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC, between our readings), then
    // READY=1.
    let before = localrpc::daemon::monotonic_usec();
    signal(daemon.0.id(), Signal::HUP);
    let usec = notify.expect_reloading();
    let after = localrpc::daemon::monotonic_usec();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC {usec} is the time of the reload ({before}..{after})"
    );
    let ready = notify.recv();
    assert!(
        ready.starts_with("READY=1\n"),
        "READY=1 follows RELOADING=1, got {ready:?}"
    );
    assert_eq!(
        call_on(&mut stream, ECHO_CALL),
        Outcome::Answered(ECHO_REPLY.to_vec()),
        "still serving after reload"
    );

    // Drain: a 500 ms Sleep is in flight when SIGTERM arrives.
    let mut sleeping = send_in_flight(&socket, &sleep_call(500));
    let sent = Instant::now();
    signal(daemon.0.id(), Signal::TERM);
    let stopping = notify.recv();
    assert!(
        stopping.starts_with("STOPPING=1\nSTATUS="),
        "STOPPING=1 on SIGTERM, got {stopping:?}"
    );
    let extend = notify.recv();
    let extend_usec: u64 = extend
        .strip_prefix("EXTEND_TIMEOUT_USEC=")
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("EXTEND_TIMEOUT_USEC= while draining, got {extend:?}"));
    assert!(
        extend_usec >= 10_000_000,
        "the extension covers the 10 s drain timeout: {extend_usec}"
    );
    assert_eq!(
        read_message(&mut sleeping, &mut Vec::new()).expect("the in-flight call gets its reply"),
        EMPTY_REPLY
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(450),
        "the reply came after the sleep, not cut short"
    );
    let (status, stderr) = exit_and_stderr(&mut daemon.0);
    assert!(
        status.success(),
        "exit 0 after the drain: {status}; {stderr}"
    );
    assert!(!socket.exists(), "R9: the self-made socket is removed");
    assert_eq!(
        notify.recv_within(Duration::ZERO),
        None,
        "nothing after EXTEND_TIMEOUT_USEC"
    );
}

#[test]
fn r7_second_instance_is_refused_naming_the_first_pid_and_the_first_is_untouched() {
    let dir = temp_dir();
    let socket = dir.path().join("d.sock");
    let mut first = start_ready(&socket, &[]);
    let first_inode = inode(&socket);
    let mut persistent = connect(&socket).expect("connect to the first");
    assert_eq!(
        call_on(&mut persistent, ECHO_CALL),
        Outcome::Answered(ECHO_REPLY.to_vec())
    );

    let mut second = start(&socket, &[], None);
    let (status, stderr) = exit_and_stderr(&mut second.0);
    assert_eq!(
        status.code(),
        Some(1),
        "the second instance exits 1: {stderr}"
    );
    let expected = format!(
        "another instance of localrpcd is already running (pid={})",
        first.0.id()
    );
    assert!(
        stderr.contains(&expected),
        "stderr names the first pid ({expected:?}): {stderr}"
    );

    assert_eq!(
        inode(&socket),
        first_inode,
        "same socket inode: the second did not touch it"
    );
    assert_eq!(
        pid_in(&lock_of(&socket)),
        first.0.id().to_string(),
        "the lock file still names the first"
    );
    assert_eq!(
        call_on(&mut persistent, ECHO_CALL),
        Outcome::Answered(ECHO_REPLY.to_vec()),
        "existing connection"
    );
    assert_answers(&socket);
    assert_eq!(
        first.0.try_wait().expect("try_wait"),
        None,
        "the first still runs"
    );
}

#[test]
fn r8_restart_after_kill_9_replaces_the_stale_socket_and_retakes_the_lock() {
    let dir = temp_dir();
    let socket = dir.path().join("d.sock");
    let mut first = start_ready(&socket, &[]);
    // A second name keeps the old inode allocated, so the file system cannot hand the same
    // inode number to the new socket.
    std::fs::hard_link(&socket, dir.path().join("old.sock")).expect("hard link the socket");
    let old_inode = inode(&socket);
    first.0.kill().expect("kill -9");
    first.0.wait().expect("reap");
    assert!(socket.exists(), "kill -9 leaves a stale socket file behind");
    let refused = std::os::unix::net::UnixStream::connect(&socket)
        .expect_err("nobody listens on the stale socket");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    let second = start_ready(&socket, &[]);
    assert_ne!(inode(&socket), old_inode, "the stale socket was replaced");
    assert_eq!(
        pid_in(&lock_of(&socket)),
        second.0.id().to_string(),
        "the lock was re-taken by the new instance"
    );
    assert_answers(&socket);
}

#[test]
fn r9_sigterm_and_sigint_drain_calls_in_flight_exit_zero_and_remove_the_socket() {
    for sig in [Signal::TERM, Signal::INT] {
        let dir = temp_dir();
        let socket = dir.path().join("d.sock");
        let mut daemon = start_ready(&socket, &[]);
        // An idle persistent connection must not hold the drain up.
        let _idle = connect(&socket).expect("idle connection");
        let mut sleeping = send_in_flight(&socket, &sleep_call(500));
        let sent = Instant::now();
        signal(daemon.0.id(), sig);
        assert_eq!(
            read_message(&mut sleeping, &mut Vec::new())
                .expect("the in-flight Sleep gets its reply"),
            EMPTY_REPLY,
            "{sig:?}"
        );
        assert!(
            sent.elapsed() >= Duration::from_millis(450),
            "{sig:?}: not cut short"
        );
        let (status, stderr) = exit_and_stderr(&mut daemon.0);
        assert!(status.success(), "{sig:?}: exit 0: {status}; {stderr}");
        assert!(!socket.exists(), "{sig:?}: the self-made socket is removed");
        assert!(lock_of(&socket).exists(), "{sig:?}: the lock file stays");
    }
}

#[test]
fn drain_timeout_bounds_the_shutdown_of_a_call_that_takes_too_long() {
    let dir = temp_dir();
    let socket = dir.path().join("d.sock");
    let mut daemon = start_ready(&socket, &["--drain-timeout", "0.3"]);
    let mut sleeping = send_in_flight(&socket, &sleep_call(5_000));
    let sent = Instant::now();
    signal(daemon.0.id(), Signal::TERM);
    let (status, stderr) = exit_and_stderr(&mut daemon.0);
    assert!(
        status.success(),
        "exit 0 after the grace period: {status}; {stderr}"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "the grace period bounds the shutdown: {:?}",
        sent.elapsed()
    );
    // The call was read and abandoned: by design its outcome is unknown to the client (EOF
    // after the request was consumed). This is what the grace period trades away.
    let outcome = call_on_after_send(&mut sleeping);
    assert!(matches!(outcome, Outcome::Unknown(_)), "{outcome:?}");
    assert!(!socket.exists(), "the socket is removed");
}

#[test]
fn a_second_sigterm_or_sigint_ends_the_drain_at_once() {
    for sig in [Signal::TERM, Signal::INT] {
        let dir = temp_dir();
        let socket = dir.path().join("d.sock");
        // The default drain timeout, 10 s, would keep the daemon for the whole 5 s call.
        let mut daemon = start_ready(&socket, &[]);
        let mut sleeping = send_in_flight(&socket, &sleep_call(5_000));
        let sent = Instant::now();
        signal(daemon.0.id(), sig);
        // The drain has begun once the listening socket is gone.
        let deadline = Instant::now() + TIMEOUT;
        while socket.exists() {
            assert!(
                Instant::now() < deadline,
                "{sig:?}: the drain did not begin"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        signal(daemon.0.id(), sig);
        let (status, stderr) = exit_and_stderr(&mut daemon.0);
        assert!(status.success(), "{sig:?}: exit 0: {status}; {stderr}");
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "{sig:?}: stopped before the call's 5 s: {:?}",
            sent.elapsed()
        );
        assert!(
            stderr.contains("received again; closing remaining connections now"),
            "{sig:?}: {stderr}"
        );
        let outcome = call_on_after_send(&mut sleeping);
        assert!(
            matches!(outcome, Outcome::Unknown(_)),
            "{sig:?}: {outcome:?}"
        );
    }
}

/// Classifies the end of a call already sent.
fn call_on_after_send(stream: &mut std::os::unix::net::UnixStream) -> Outcome {
    let mut partial = Vec::new();
    match read_message(stream, &mut partial) {
        Ok(reply) => Outcome::Answered(reply),
        Err(e) if partial.is_empty() && e.raw_os_error() == Some(libc::ECONNRESET) => {
            Outcome::NotRead(e.to_string())
        }
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

#[test]
fn r12_a_directory_at_the_socket_path_is_never_removed() {
    let dir = temp_dir();
    // At start: refused with a clear error, the directory and its content intact.
    let socket = dir.path().join("d.sock");
    std::fs::create_dir(&socket).expect("mkdir at the socket path");
    std::fs::write(socket.join("keep"), b"data").expect("a file inside");
    let mut daemon = start(&socket, &[], None);
    let (status, stderr) = exit_and_stderr(&mut daemon.0);
    assert_eq!(status.code(), Some(1), "refused: {stderr}");
    assert!(
        stderr.contains(&socket.display().to_string()),
        "the error names the path: {stderr}"
    );
    assert!(
        socket.is_dir() && socket.join("keep").is_file(),
        "the directory and its content are intact"
    );

    // Replaced while running: SIGTERM must not remove what is now a directory.
    let socket = dir.path().join("e.sock");
    let mut daemon = start_ready(&socket, &[]);
    std::fs::remove_file(&socket).expect("remove the socket behind the daemon's back");
    std::fs::create_dir(&socket).expect("mkdir in its place");
    std::fs::write(socket.join("keep"), b"data").expect("a file inside");
    signal(daemon.0.id(), Signal::TERM);
    let (status, stderr) = exit_and_stderr(&mut daemon.0);
    assert!(status.success(), "exit 0: {status}; {stderr}");
    assert!(
        socket.is_dir() && socket.join("keep").is_file(),
        "the directory at the path survives the shutdown"
    );
}

#[test]
fn a_regular_file_put_at_the_socket_path_is_not_removed_on_exit() {
    // LIFECYCLE.md: never remove a directory or a non-socket file at the socket path. The
    // daemon created a socket there, but what is at the path on exit is no longer it.
    let dir = temp_dir();
    let socket = dir.path().join("d.sock");
    let mut daemon = start_ready(&socket, &[]);
    std::fs::remove_file(&socket).expect("remove the socket behind the daemon's back");
    std::fs::write(&socket, b"not a socket").expect("a regular file in its place");
    signal(daemon.0.id(), Signal::TERM);
    let (status, stderr) = exit_and_stderr(&mut daemon.0);
    assert!(status.success(), "exit 0: {status}; {stderr}");
    assert_eq!(
        std::fs::read(&socket).ok().as_deref(),
        Some(&b"not a socket"[..]),
        "the regular file at the path survives the shutdown"
    );
}
