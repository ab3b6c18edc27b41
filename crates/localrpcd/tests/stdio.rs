//! `SYSTEMD_VARLINK_LISTEN=-`: localrpcd serves one connection on stdin/stdout (pipes, or a
//! socket as stdin), then exits 0 — what `ssh-exec:` addresses rely on. SIGTERM ends it too,
//! after the call in flight is answered.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use localrpc_testkit::workspace_binary;

const CALLS: &[u8] = b"{\"method\":\"io.localrpc.Echo.Echo\",\"parameters\":{\"text\":\"one\"}}\0\
{\"method\":\"io.localrpc.Echo.Count\",\"parameters\":{\"count\":2},\"more\":true}\0";
const REPLIES: &str = "{\"parameters\":{\"text\":\"one\"}}\0\
{\"parameters\":{\"index\":0},\"continues\":true}\0{\"parameters\":{\"index\":1}}\0";

#[test]
fn serves_one_connection_over_pipes() {
    let mut child = Command::new(workspace_binary("localrpcd"))
        .env("SYSTEMD_VARLINK_LISTEN", "-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start localrpcd");
    let mut stdin = child.stdin.take().expect("stdin pipe");
    stdin.write_all(CALLS).expect("write calls");
    drop(stdin); // EOF ends the connection once the replies are out
    let mut replies = String::new();
    child
        .stdout
        .take()
        .expect("stdout pipe")
        .read_to_string(&mut replies)
        .expect("read replies");
    assert_eq!(replies, REPLIES);
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit {status:?}");
}

/// localrpcd with one end of a socket pair as its stdin and stdout; returns the other end
/// (10 s read timeout) and the child.
fn spawn_on_socket() -> (UnixStream, std::process::Child) {
    spawn_on_socket_logging_to(Stdio::null())
}

/// [`spawn_on_socket`], with the daemon's log (stderr) going to `log`.
fn spawn_on_socket_logging_to(log: Stdio) -> (UnixStream, std::process::Child) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs_out = theirs.try_clone().expect("dup");
    let child = Command::new(workspace_binary("localrpcd"))
        .env("SYSTEMD_VARLINK_LISTEN", "-")
        .args(["--log-format", "text"])
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs_out)))
        .stderr(log)
        .spawn()
        .expect("start localrpcd");
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    (ours, child)
}

#[test]
fn serves_a_socket_given_as_stdin() {
    let (mut ours, mut child) = spawn_on_socket();
    ours.write_all(CALLS).expect("write calls");
    let mut replies = vec![0u8; REPLIES.len()];
    ours.read_exact(&mut replies).expect("all replies");
    assert_eq!(String::from_utf8_lossy(&replies), REPLIES);
    drop(ours);
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit {status:?}");
}

#[test]
fn sigterm_answers_the_call_in_flight_then_exits_zero() {
    let (mut ours, mut child) = spawn_on_socket();
    // One answered call first: the daemon is up and its signal handlers are installed.
    ours.write_all(b"{\"method\":\"io.localrpc.Echo.Echo\",\"parameters\":{\"text\":\"up\"}}\0")
        .expect("write Echo");
    let up = b"{\"parameters\":{\"text\":\"up\"}}\0";
    let mut reply = vec![0u8; up.len()];
    ours.read_exact(&mut reply).expect("Echo reply");
    assert_eq!(reply, up);
    ours.write_all(
        b"{\"method\":\"io.localrpc.Echo.Sleep\",\"parameters\":{\"milliseconds\":300}}\0",
    )
    .expect("write Sleep");
    std::thread::sleep(Duration::from_millis(100));
    localrpc_testkit::process::signal(child.id(), rustix::process::Signal::TERM);
    let mut rest = Vec::new();
    ours.read_to_end(&mut rest)
        .expect("the Sleep reply, then EOF");
    assert_eq!(rest, b"{}\0", "the call in flight is answered");
    let status = localrpc_testkit::process::wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[test]
fn a_second_sigterm_closes_the_connection_without_waiting_for_the_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("log");
    let (mut ours, mut child) =
        spawn_on_socket_logging_to(std::fs::File::create(&log).expect("log file").into());
    ours.write_all(
        b"{\"method\":\"io.localrpc.Echo.Sleep\",\"parameters\":{\"milliseconds\":5000}}\0",
    )
    .expect("write Sleep");
    let sent = std::time::Instant::now();
    // The first signal starts the drain; the second, sent once the log says so, ends it.
    std::thread::sleep(Duration::from_millis(100));
    localrpc_testkit::process::signal(child.id(), rustix::process::Signal::TERM);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("stopping: finishing calls in flight")
    {
        assert!(
            sent.elapsed() < Duration::from_secs(4),
            "the drain did not begin"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    localrpc_testkit::process::signal(child.id(), rustix::process::Signal::TERM);
    let mut rest = Vec::new();
    ours.read_to_end(&mut rest).expect("EOF");
    assert!(
        rest.is_empty(),
        "no reply: {}",
        String::from_utf8_lossy(&rest)
    );
    let status = localrpc_testkit::process::wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "exit status: {status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "stopped before the call's 5 s: {:?}",
        sent.elapsed()
    );
}
