//! Helpers of the tests that run the real `localrpcd` binary: localrpcd started the way a
//! service manager does (fd 3.., `LISTEN_PID` = the daemon's own pid), behind
//! `systemd-socket-activate` or on a socket of its own in a temp dir ([`Daemon`]), the
//! Echo calls as raw bytes, a raw blocking client that classifies how a call ended, and what
//! /proc says about the daemon. The generic pieces (launcher, notify receiver, raw socket and
//! process helpers) come from `localrpc_testkit` and are re-exported here.
//!
//! Every wait here is bounded: a bug fails a test, it never hangs it.

#![allow(dead_code, unused_imports)]

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use localrpc_testkit::activation::{ListenPid, listening_socket};
pub use localrpc_testkit::notify::NotifyReceiver;
pub use localrpc_testkit::process::{
    StderrLines, signal, stderr_of, wait_exit, wait_exit_pidfd, wait_exit_within, wait_readable,
};
pub use localrpc_testkit::socket::{
    connect, inode, mode_of, raw_call, read_message, unread_output, wait_for_listening,
    wait_until_read,
};
pub use localrpc_testkit::{ChildGuard, TIMEOUT, temp_dir, wait_for_socket, workspace_binary};

/// The canonical rhc-style call and reply (R2), byte for byte.
pub const ECHO_CALL: &[u8] =
    b"{\"method\":\"io.localrpc.Echo.Echo\",\"parameters\":{\"text\":\"Helloo!\"}}\0";
pub const ECHO_REPLY: &[u8] = b"{\"parameters\":{\"text\":\"Helloo!\"}}\0";

pub fn localrpcd() -> PathBuf {
    workspace_binary("localrpcd")
}

pub fn echo_call(text: &str) -> Vec<u8> {
    format!("{{\"method\":\"io.localrpc.Echo.Echo\",\"parameters\":{{\"text\":\"{text}\"}}}}\0")
        .into_bytes()
}

pub fn echo_reply(text: &str) -> Vec<u8> {
    format!("{{\"parameters\":{{\"text\":\"{text}\"}}}}\0").into_bytes()
}

pub fn sleep_call(milliseconds: u64) -> Vec<u8> {
    format!("{{\"method\":\"io.localrpc.Echo.Sleep\",\"parameters\":{{\"milliseconds\":{milliseconds}}}}}\0")
        .into_bytes()
}

/// The reply of a method without output parameters (`parameters` omitted).
pub const EMPTY_REPLY: &[u8] = b"{}\0";

/// Asserts that `path` answers the R2 Echo call byte for byte.
pub fn assert_answers(path: &Path) {
    assert_eq!(
        String::from_utf8_lossy(&raw_call(path, ECHO_CALL)),
        String::from_utf8_lossy(ECHO_REPLY),
        "Echo reply on {}",
        path.display()
    );
}

/// How one call ended, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The complete reply arrived.
    Answered(Vec<u8>),
    /// The server provably never read the request: no connection, the write failed with
    /// EPIPE/ECONNRESET, or the read failed with ECONNRESET before any reply byte (the kernel
    /// reports ECONNRESET only when the peer closed with our bytes still unread). A client
    /// may retry this call without risk of running it twice.
    NotRead(String),
    /// The server may have read (and run) the call but no reply came: EOF after the request
    /// was consumed, a partial reply, a timeout. The outcome is unknowable: a lost call.
    Unknown(String),
}

pub fn is_reset(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNRESET) | Some(libc::EPIPE))
}

/// Sends `request` on `stream` and classifies the outcome (see [`Outcome`]).
pub fn call_on(stream: &mut UnixStream, request: &[u8]) -> Outcome {
    if let Err(e) = stream.write_all(request) {
        return if is_reset(&e) {
            Outcome::NotRead(format!("write: {e}"))
        } else {
            Outcome::Unknown(format!("write: {e}"))
        };
    }
    let mut partial = Vec::new();
    match read_message(stream, &mut partial) {
        Ok(reply) => Outcome::Answered(reply),
        Err(e) if partial.is_empty() && e.raw_os_error() == Some(libc::ECONNRESET) => {
            Outcome::NotRead(format!("read: {e}"))
        }
        Err(e) => Outcome::Unknown(format!("read after {} reply bytes: {e}", partial.len())),
    }
}

/// One call on a new connection, classified.
pub fn call_new_connection(path: &Path, request: &[u8]) -> Outcome {
    match connect(path) {
        Ok(mut stream) => call_on(&mut stream, request),
        Err(e) => Outcome::NotRead(format!("connect: {e}")),
    }
}

/// The environment of a running process, from /proc/PID/environ.
pub fn environ_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read /proc/PID/environ");
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Starts `localrpcd args` the way a service manager does (see
/// [`localrpc_testkit::activation::launch`]): `fds[i]` becomes fd `3 + i`, with `LISTEN_PID`
/// and `extra_env`.
pub fn launch(
    args: &[&str],
    fds: &[&OwnedFd],
    listen_pid: ListenPid,
    extra_env: &[(&str, &str)],
) -> ChildGuard {
    localrpc_testkit::activation::launch(&localrpcd(), args, fds, listen_pid, extra_env)
}

/// Runs `systemd-socket-activate [sa_args] -- localrpcd [args]` with stderr captured.
pub fn socket_activate(sa_args: &[&str], args: &[&str]) -> ChildGuard {
    localrpc_testkit::activation::socket_activate(sa_args, &localrpcd(), args)
}

/// A temp dir of mode 0755, so that other uids can reach a socket created in it with
/// `--socket-mode 0666`.
pub fn reachable_temp_dir() -> tempfile::TempDir {
    let dir = temp_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temp dir");
    dir
}

/// A `localrpcd` process listening on `<dir>/d.sock` (`--listen unix:<dir>/d.sock
/// --log-format text [args]`, with `LOCALRPC_LOG=info` and `NO_COLOR=1`), its stderr logged to
/// `<dir>/log`. `NOTIFY_SOCKET` is removed from its environment, or set to a notify receiver's
/// address when one is given. Dropping it kills the daemon and removes the directory.
pub struct Daemon {
    pub child: ChildGuard,
    pub socket: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `localrpcd [args]` in a new [`reachable_temp_dir`].
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_in(reachable_temp_dir(), args, None)
    }

    /// Starts `localrpcd [args]` in `dir`, with `NOTIFY_SOCKET` set to `notify`'s address if
    /// given. Returns once the socket accepts connections and the daemon is still running.
    pub fn start_in(
        dir: tempfile::TempDir,
        args: &[&str],
        notify: Option<&NotifyReceiver>,
    ) -> Daemon {
        let socket = dir.path().join("d.sock");
        let log = dir.path().join("log");
        let mut command = Command::new(localrpcd());
        command
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .args(["--log-format", "text"])
            .args(args)
            .env("LOCALRPC_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the log file"));
        if let Some(notify) = notify {
            command.env("NOTIFY_SOCKET", &notify.address);
        }
        let child = ChildGuard(command.spawn().expect("start localrpcd"));
        let mut daemon = Daemon {
            child,
            socket,
            log,
            _dir: dir,
        };
        assert!(
            wait_for_socket(&daemon.socket, TIMEOUT),
            "localrpcd did not start listening; log:\n{}",
            daemon.log_text()
        );
        daemon.assert_alive();
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// `unix:<socket>`.
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Everything the daemon has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asserts that the daemon has not exited.
    pub fn assert_alive(&mut self) {
        let status = self.child.0.try_wait().expect("query the daemon's status");
        assert!(
            status.is_none(),
            "localrpcd exited ({status:?}); log:\n{}",
            self.log_text()
        );
    }
}

/// Waits (bounded) until a path exists.
pub fn wait_for_path(path: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The *live* environment of a running process: the strings its libc `environ` array points
/// to now, read through /proc/PID/mem (we are its parent or root).
///
/// /proc/PID/environ is not that: it is the block the kernel wrote at exec time, and
/// `unsetenv` only removes a pointer from `environ`, so a variable removed at run time is
/// still listed there (systemd's own `sd_listen_fds(1)` behaves the same).
/// Returns None when the symbol cannot be located (no `nm`, static libc): callers skip.
pub fn live_environ(pid: u32) -> Option<Vec<String>> {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let (base, libc_path) = maps.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let path = *fields.get(5)?;
        let is_libc = path
            .rsplit('/')
            .next()
            .is_some_and(|f| f.starts_with("libc.so"));
        if !is_libc || u64::from_str_radix(fields[2], 16).ok()? != 0 {
            return None;
        }
        let base = u64::from_str_radix(fields[0].split('-').next()?, 16).ok()?;
        Some((base, path.to_owned()))
    })?;
    let nm = Command::new("nm").arg("-D").arg(&libc_path).output().ok()?;
    let offset = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() == 3 && fields[2].split('@').next() == Some("environ"))
                .then(|| u64::from_str_radix(fields[0], 16).ok())
                .flatten()
        })?;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let word = |address: u64| -> Option<u64> {
        let mut buf = [0u8; 8];
        mem.read_exact_at(&mut buf, address).ok()?;
        Some(u64::from_ne_bytes(buf))
    };
    let mut entry = word(base + offset)?;
    let mut vars = Vec::new();
    loop {
        let string = word(entry)?;
        if string == 0 {
            return Some(vars);
        }
        let mut bytes = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            mem.read_exact_at(&mut byte, string + bytes.len() as u64)
                .ok()?;
            if byte[0] == 0 || bytes.len() > 65536 {
                break;
            }
            bytes.push(byte[0]);
        }
        vars.push(String::from_utf8_lossy(&bytes).into_owned());
        entry += 8;
    }
}
