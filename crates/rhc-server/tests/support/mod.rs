//! Helpers of the rhc-server tests (small copies of crates/localrpcd/tests/support): raw
//! varlink over blocking unix sockets, the daemon as a real process with its stderr collected,
//! `systemd-socket-activate`, bounded waits. Every wait is bounded: a bug fails a test, it
//! never hangs it.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub use localrpc_testkit::{ChildGuard, temp_dir, wait_for_socket};

/// Upper bound of any single wait in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(10);

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

/// Connects with read/write timeouts of [`TIMEOUT`].
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Reads one NUL-terminated message (the NUL included); `UnexpectedEof` if the peer closed.
pub fn read_message(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut message = Vec::new();
    let mut chunk = [0u8; 1];
    loop {
        if stream.read(&mut chunk)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("peer closed after {} bytes of a reply", message.len()),
            ));
        }
        message.push(chunk[0]);
        if chunk[0] == 0 {
            return Ok(message);
        }
    }
}

/// Reads everything until EOF.
pub fn read_to_end(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all)?;
    Ok(all)
}

/// One raw round trip on a new connection: `request` in, one reply out.
pub fn raw_call(path: &Path, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    stream.write_all(request).expect("send the call");
    read_message(&mut stream).expect("read the reply")
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

/// The inode of a file (not following symlinks).
pub fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).expect("stat").ino()
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(pid, signal).expect("send signal");
}

/// Waits until `fd` is readable (POLLIN) or `timeout` passes.
pub fn wait_readable(fd: impl AsFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// Waits (bounded, on a pidfd) for a child to exit; None on timeout.
pub fn wait_exit_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    if let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        if !wait_readable(&pidfd, timeout) {
            return None;
        }
        return Some(child.wait().expect("reap the child"));
    }
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Like [`wait_exit_within`] with [`TIMEOUT`]; kills the child and panics on timeout.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    match wait_exit_within(child, TIMEOUT) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {TIMEOUT:?}", child.id());
        }
    }
}

/// Collects a child's stderr lines in the background, so a test can wait for one.
pub struct StderrLines {
    lines: Arc<Mutex<Vec<String>>>,
    done: mpsc::Receiver<()>,
}

impl StderrLines {
    pub fn take(child: &mut Child) -> StderrLines {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("  [rhc-server] {line}");
                sink.lock().expect("lines").push(line);
                let _ = tx.send(());
            }
        });
        StderrLines { lines, done }
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Waits (bounded) until a line contains `needle`; false on timeout or end of output.
    pub fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Err(mpsc::RecvTimeoutError::Disconnected) = self.done.recv_timeout(left) {
                return self
                    .lines
                    .lock()
                    .expect("lines")
                    .iter()
                    .any(|l| l.contains(needle));
            }
        }
    }
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
        wait_exit(&mut self.child.0)
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
    let log = StderrLines::take(&mut child);
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

/// Runs `systemd-socket-activate [sa_args] -- rhc-server [args]` with stderr collected.
pub fn socket_activate(sa_args: &[&str], args: &[&str]) -> Server {
    let mut child = Command::new("/usr/bin/systemd-socket-activate")
        .args(sa_args)
        .arg("--")
        .arg(rhc_server())
        .args(["--log-format", "text"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start systemd-socket-activate");
    let log = StderrLines::take(&mut child);
    Server {
        child: ChildGuard(child),
        log,
    }
}

/// Waits (bounded) until a unix socket at `path` listens, from /proc/net/unix, without
/// connecting (a probe connection would itself trigger `systemd-socket-activate`).
pub fn wait_for_listening(path: &Path) {
    let wanted = path.to_str().expect("UTF-8 path");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let table = std::fs::read_to_string("/proc/net/unix").expect("read /proc/net/unix");
        let listening = table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 8
                && fields[7] == wanted
                && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & 0x10000 != 0)
        });
        if listening {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} is not listening",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
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

/// Unread bytes this socket has sent (SIOCOUTQ): 0 once the peer has read all of it.
pub fn unread_output(stream: &UnixStream) -> usize {
    let mut pending: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut pending) };
    assert_eq!(r, 0, "SIOCOUTQ: {}", io::Error::last_os_error());
    pending as usize
}

/// Waits (bounded) until the server has read everything sent on `stream`.
pub fn wait_until_read(stream: &UnixStream) {
    let deadline = Instant::now() + TIMEOUT;
    while unread_output(stream) > 0 {
        assert!(
            Instant::now() < deadline,
            "the server did not read the request"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
