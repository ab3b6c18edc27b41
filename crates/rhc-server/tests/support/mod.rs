//! Helpers of the rhc-server tests: the R2 call as raw bytes, rhc-server as a real process
//! (standalone or behind `systemd-socket-activate`) with its stderr collected, and a few
//! socket probes. The generic pieces (raw varlink over blocking unix sockets, signals, bounded
//! waits for exit, stderr lines, /proc/net/unix) come from `localrpc_testkit`, shared with
//! localrpcd's tests, and are re-exported here. Every wait is bounded: a bug fails a test, it
//! never hangs it.

#![allow(dead_code, unused_imports)]

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

pub use localrpc_testkit::process::{StderrLines, signal, wait_exit_pidfd};
pub use localrpc_testkit::socket::{
    connect, inode, raw_call, read_message, unread_output, wait_for_listening, wait_until_read,
};
pub use localrpc_testkit::{ChildGuard, TIMEOUT, temp_dir, wait_for_socket};

/// The call and reply of the original's documentation (R2), byte for byte.
pub const TEST_CALL: &[u8] =
    b"{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{\"input\":\"Helloo!\"}}\0";
pub const TEST_REPLY: &[u8] = b"{\"parameters\":{\"output\":\"Echo from rhc-server: Helloo!\"}}\0";

pub fn rhc_server() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rhc-server"))
}

pub fn test_call(input: &str) -> Vec<u8> {
    format!(
        "{{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{{\"input\":\"{input}\"}}}}\0"
    )
    .into_bytes()
}

pub fn test_reply(input: &str) -> Vec<u8> {
    format!("{{\"parameters\":{{\"output\":\"Echo from rhc-server: {input}\"}}}}\0").into_bytes()
}

/// Reads everything until EOF.
pub fn read_to_end(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all)?;
    Ok(all)
}

/// Asserts that a raw exchange gives exactly `reply`, comparing as text for readable diffs.
pub fn assert_exchange(path: &Path, request: &[u8], reply: &[u8]) {
    assert_eq!(
        String::from_utf8_lossy(&raw_call(path, request)),
        String::from_utf8_lossy(reply),
        "reply to {}",
        String::from_utf8_lossy(request)
    );
}

/// A running rhc-server with its stderr collected.
pub struct Server {
    pub child: ChildGuard,
    pub log: StderrLines,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// SIGTERM, then the exit status (bounded).
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), rustix::process::Signal::TERM);
        wait_exit_pidfd(&mut self.child.0)
    }
}

/// Runs `rhc-server --socket <socket> --log-format text [extra]` without waiting.
pub fn start(socket: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(rhc_server())
        .arg("--socket")
        .arg(socket)
        .args(["--log-format", "text"])
        .args(extra)
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("NOTIFY_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rhc-server");
    let log = StderrLines::take(&mut child, "rhc-server");
    Server {
        child: ChildGuard(child),
        log,
    }
}

/// Like [`start`], then waits until the socket accepts connections.
pub fn spawn(socket: &Path, extra: &[&str]) -> Server {
    let server = start(socket, extra);
    assert!(
        wait_for_socket(socket, TIMEOUT),
        "rhc-server did not start listening on {}:\n{}",
        socket.display(),
        server.log.text()
    );
    server
}

/// Runs `systemd-socket-activate [sa_args] -- rhc-server --log-format text [args]` with
/// stderr collected.
pub fn socket_activate(sa_args: &[&str], args: &[&str]) -> Server {
    let args = [&["--log-format", "text"][..], args].concat();
    let mut child = localrpc_testkit::activation::socket_activate(sa_args, &rhc_server(), &args);
    let log = StderrLines::take(&mut child.0, "rhc-server");
    Server { child, log }
}

/// Bytes received on `stream` and not yet read (FIONREAD).
pub fn unread_input(stream: &UnixStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD");
    n as usize
}

/// True while the process exists (and is not a zombie we already reaped).
pub fn is_running(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}
