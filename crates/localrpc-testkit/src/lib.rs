//! Test support shared by the workspace's integration tests.
//!
//! Owns three things: finding the real peers that `scripts/peers` installs (and skipping
//! *visibly* when one is missing), running workspace binaries as real processes, and
//! private temporary directories for sockets. Its modules hold what the daemons' tests share:
//! starting a daemon as a service manager does ([`activation`]), the sd_notify receiver
//! ([`notify`]), waits for a child's exit and its stderr ([`process`]), raw varlink over
//! blocking unix sockets ([`socket`]) and a real systemd user manager ([`user_manager`]).
//!
//! A skipped test prints `SKIPPED: ...` on stderr and appends a line to
//! `target/skipped-tests.txt`, which `scripts/test` prints at the end of every run, so a
//! missing peer can never pass silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A real peer installed by `scripts/peers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// `venv/bin/python` with PyPI `varlink` installed.
    Python,
    /// systemd's `varlinkctl` (wrapper that sets LD_LIBRARY_PATH).
    Varlinkctl,
    /// systemd's `systemd-creds` (wrapper), a real sd-varlink server.
    SystemdCreds,
    /// The Go certification server/client from Debian's varlink-go.
    GoCertification,
}

impl Peer {
    fn relative_path(self) -> &'static str {
        match self {
            Peer::Python => "venv/bin/python",
            Peer::Varlinkctl => "systemd/bin/varlinkctl",
            Peer::SystemdCreds => "systemd/bin/systemd-creds",
            Peer::GoCertification => "varlink-go/bin/varlink-go-certification",
        }
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Where `scripts/peers` installed the peers.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("LOCALRPC_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".peers"))
}

/// The path of `peer`, if it is installed and executable.
pub fn peer(peer: Peer) -> Option<PathBuf> {
    let path = peers_dir().join(peer.relative_path());
    path.is_file().then_some(path)
}

/// Records a skipped test visibly (stderr and `target/skipped-tests.txt`).
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED: {test}: {reason}");
    let log = workspace_root().join("target/skipped-tests.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(file, "{test}: {reason}");
    }
}

/// Evaluates to the peer's path, or records a visible skip and returns from the test.
#[macro_export]
macro_rules! require_peer {
    ($peer:expr) => {
        match $crate::peer($peer) {
            Some(path) => path,
            None => {
                $crate::skip(
                    module_path!(),
                    &format!("{:?} is not installed (run scripts/peers)", $peer),
                );
                return;
            }
        }
    };
}

/// The path of a binary built from this workspace (e.g. `localrpcd`, `localrpc`).
///
/// Test executables live in `target/<profile>/deps/`; workspace binaries one level up.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; run the tests for the whole workspace (cargo nextest run --workspace)",
        path.display()
    );
    path
}

/// A private temporary directory (0700) for sockets and files of one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("localrpc-test-")
        .tempdir()
        .expect("create temp dir")
}

/// Waits until `path` accepts connections, polling every 10 ms, trying at least once.
pub fn wait_for_socket(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `localrpcd --listen unix:<socket> [extra args]` and waits until it accepts
/// connections.
pub fn spawn_localrpcd(socket: &Path, extra_args: &[&str]) -> ChildGuard {
    let child = Command::new(workspace_binary("localrpcd"))
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start localrpcd");
    let guard = ChildGuard(child);
    assert!(
        wait_for_socket(socket, Duration::from_secs(10)),
        "localrpcd did not start listening"
    );
    guard
}

/// A real systemd user manager for tests (`systemctl --user`), with visible skips.
pub mod in_process;
pub mod user_manager;

pub use in_process::InProcessServer;

/// Upper bound of any single wait in the process, socket and notify helpers.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Starting daemons as a service manager does: fds at 3.. with `LISTEN_PID`, and
/// `systemd-socket-activate`.
pub mod activation;

/// Method handlers shared by in-process server tests (echo, sleep, a streamed count).
pub mod handlers;

/// The service manager's end of sd_notify.
pub mod notify;

/// Daemons as child processes: signals, bounded waits for exit, their stderr.
pub mod process;

/// Raw varlink over blocking unix sockets, and socket facts from the kernel.
pub mod socket;
