//! Running `localrpc-echo` under `systemd-socket-activate` as a real process, and small
//! socket helpers for the parity tests.
//!
//! systemd-socket-activate binds the sockets, waits for the first activity on any of them
//! and then execs the daemon in place (same pid), so a test first makes a connection or sends a
//! datagram and only then looks at the daemon's pid, environment or notifications.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use localrpc_testkit::ChildGuard;

pub const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The echo binary built from this crate.
pub fn echo_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_localrpc-echo"))
}

/// True when systemd-socket-activate exists; records a visible skip otherwise.
pub fn have_activate(test: &str) -> bool {
    let present = Path::new(ACTIVATE).is_file();
    if !present {
        localrpc_testkit::skip(test, "systemd-socket-activate is not installed");
    }
    present
}

/// A free TCP port on `host` (bound and released; the race is harmless on a test machine).
pub fn free_tcp_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .expect("bind for a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// A free UDP port on `host`.
pub fn free_udp_port(host: &str) -> u16 {
    UdpSocket::bind((host, 0))
        .expect("bind for a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// `localrpc-echo` under systemd-socket-activate; killed when dropped.
pub struct Echo {
    pub child: ChildGuard,
    pub stderr_path: PathBuf,
    pub stdout_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Echo {
    /// Starts `systemd-socket-activate ACTIVATE_ARGS -- localrpc-echo ECHO_ARGS` and waits
    /// until it listens on all `-l` addresses.
    pub fn start(activate_args: &[String], echo_args: &[&str]) -> Echo {
        Echo::try_start(activate_args, echo_args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Echo::start`], but an error (with systemd-socket-activate's output) when it
    /// exits instead of listening, e.g. for an address family this machine lacks.
    pub fn try_start(activate_args: &[String], echo_args: &[&str]) -> Result<Echo, String> {
        let dir = localrpc_testkit::temp_dir();
        let stderr_path = dir.path().join("stderr");
        let stdout_path = dir.path().join("stdout");
        let child = Command::new(ACTIVATE)
            .args(activate_args)
            .arg("--")
            .arg(echo_binary())
            .args(echo_args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start systemd-socket-activate");
        let mut echo = Echo {
            child: ChildGuard(child),
            stderr_path,
            stdout_path,
            _dir: dir,
        };
        let listeners = activate_args
            .iter()
            .filter(|a| *a == "-l" || a.starts_with("--listen"))
            .count();
        let deadline = Instant::now() + TIMEOUT;
        while echo.stderr().matches("Listening on").count() < listeners {
            if let Ok(Some(status)) = echo.child.0.try_wait() {
                return Err(format!(
                    "systemd-socket-activate exited ({status}): {}",
                    echo.stderr().trim()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "systemd-socket-activate did not listen: {}",
                    echo.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(echo)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Polls stderr until `condition` holds; false after [`TIMEOUT`].
    pub fn wait_for(&self, condition: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if condition(&self.stderr()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the process has exec'd localrpc-echo.
    pub fn wait_for_exec(&self) {
        let deadline = Instant::now() + TIMEOUT;
        let exe = echo_binary().canonicalize().unwrap();
        while std::fs::read_link(format!("/proc/{}/exe", self.pid())).ok() != Some(exe.clone()) {
            assert!(
                Instant::now() < deadline,
                "localrpc-echo was not exec'd: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `-l ADDR` pairs.
pub fn listen_args(addresses: &[String]) -> Vec<String> {
    addresses
        .iter()
        .flat_map(|a| ["-l".to_owned(), a.clone()])
        .collect()
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Checks a connected stream echoes interactively (a line, answered before we send more,
/// without half-closing) and then 10 KiB intact.
pub fn check_stream_echo<S: Read + Write>(mut stream: S, label: &str) {
    for line in [&b"hello\n"[..], b"second line\n"] {
        stream.write_all(line).unwrap();
        let mut back = vec![0u8; line.len()];
        stream
            .read_exact(&mut back)
            .unwrap_or_else(|e| panic!("{label}: no interactive echo: {e}"));
        assert_eq!(back, line, "{label}");
    }
    let data = pattern(10 * 1024, 7);
    stream.write_all(&data).unwrap();
    let mut back = vec![0u8; data.len()];
    stream
        .read_exact(&mut back)
        .unwrap_or_else(|e| panic!("{label}: 10 KiB not echoed: {e}"));
    assert!(back == data, "{label}: 10 KiB came back altered");
}
