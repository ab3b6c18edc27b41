//! Helpers of the lifecycle and activation tests: a launcher that passes fds the way a
//! service manager does (fd 3.., `LISTEN_PID` = the daemon's own pid), a notify receiver,
//! a raw blocking Echo client that classifies how a call ended, and bounded waits.
//!
//! Every wait here is bounded: a bug fails a test, it never hangs it.

#![allow(dead_code, unused_imports)]

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use localrpc_testkit::{ChildGuard, temp_dir, wait_for_socket, workspace_binary};

/// Upper bound of any single wait in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(10);

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

/// Connects with read/write timeouts of [`TIMEOUT`].
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Reads one NUL-terminated message (the NUL included). `Err(UnexpectedEof)` when the peer
/// closed first; the bytes received so far are in `partial`.
pub fn read_message(stream: &mut UnixStream, partial: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed before the reply ended",
                ));
            }
            _ => {
                partial.push(byte[0]);
                if byte[0] == 0 {
                    return Ok(std::mem::take(partial));
                }
            }
        }
    }
}

/// One raw round trip on a new connection: `request` in, one reply out.
pub fn raw_call(path: &Path, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(path).unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    stream.write_all(request).expect("send the call");
    read_message(&mut stream, &mut Vec::new()).expect("read the reply")
}

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

/// A datagram socket standing in for the service manager's notify socket.
pub struct NotifyReceiver {
    pub socket: UnixDatagram,
    /// The value for `NOTIFY_SOCKET`.
    pub address: String,
}

impl NotifyReceiver {
    /// Bound at `<dir>/notify-<tag>`.
    pub fn path(dir: &Path, tag: &str) -> NotifyReceiver {
        let path = dir.join(format!("notify-{tag}"));
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifyReceiver {
            socket,
            address: path.to_str().expect("UTF-8 temp path").to_owned(),
        }
    }

    /// Bound in the abstract namespace; `NOTIFY_SOCKET=@name`.
    pub fn abstract_name(tag: &str) -> NotifyReceiver {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("localrpc-lifecycle-{}-{tag}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let socket = UnixDatagram::bind_addr(&address).expect("bind the abstract notify socket");
        NotifyReceiver {
            socket,
            address: format!("@{name}"),
        }
    }

    /// The next message, waiting at most [`TIMEOUT`].
    pub fn recv(&self) -> String {
        self.recv_within(TIMEOUT)
            .expect("a notify message within the timeout")
    }

    /// The next message within `timeout`, or None.
    pub fn recv_within(&self, timeout: Duration) -> Option<String> {
        // A zero timeout means "only what is already queued".
        self.socket
            .set_nonblocking(timeout.is_zero())
            .expect("set notify blocking mode");
        if !timeout.is_zero() {
            self.socket
                .set_read_timeout(Some(timeout))
                .expect("set notify timeout");
        }
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("receive a notify message: {e}"),
        }
    }

    /// Waits for a message starting with `READY=1`, returning it; panics on any other first.
    pub fn expect_ready(&self) -> String {
        let message = self.recv();
        assert!(
            message.starts_with("READY=1\n"),
            "expected READY=1 first, got {message:?}"
        );
        message
    }
}

/// Waits (bounded) for a child to exit; kills it and panics on timeout.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a nonzero pid");
    rustix::process::kill_process(pid, signal).expect("send a signal");
}

/// Reads everything the child wrote on stderr (after it exited).
pub fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

/// The environment of a running process, from /proc/PID/environ.
pub fn environ_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read /proc/PID/environ");
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The inode of a file (not following symlinks).
pub fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

/// Unread bytes this socket has sent (SIOCOUTQ): 0 once the peer has read all of it.
pub fn unread_output(stream: &UnixStream) -> usize {
    let mut pending: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int to the pointer, which is valid for the call.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut pending) };
    assert_eq!(r, 0, "SIOCOUTQ: {}", io::Error::last_os_error());
    pending as usize
}

/// Waits (bounded) until the server has read everything sent on `stream`: the readiness
/// signal "the call is in flight" without guessing with a sleep.
pub fn wait_until_read(stream: &UnixStream) {
    let deadline = Instant::now() + TIMEOUT;
    while unread_output(stream) > 0 {
        assert!(
            Instant::now() < deadline,
            "the server did not read the request within {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The activation environment a launched daemon gets.
#[derive(Debug, Clone)]
pub enum ListenPid {
    /// `LISTEN_PID` = the daemon's own pid (written in the child between fork and exec).
    Own,
    /// A fixed value (a foreign pid, junk).
    Fixed(String),
    /// Not set.
    Unset,
}

/// Starts `localrpcd args` the way a service manager does: `fds[i]` becomes fd `3 + i`
/// (inherited, without CLOEXEC), `LISTEN_PID`, and `extra_env` (e.g. `LISTEN_FDS`,
/// `LISTEN_FDNAMES`, `NOTIFY_SOCKET`). The environment is otherwise cleared but for PATH.
///
/// `LISTEN_PID=own` is exact: argv and envp are built before fork, and the child writes its
/// own `getpid()` into a preallocated buffer and calls `execve` itself: only
/// async-signal-safe work happens between fork and exec.
pub fn launch(
    args: &[&str],
    fds: &[&OwnedFd],
    listen_pid: ListenPid,
    extra_env: &[(&str, &str)],
) -> ChildGuard {
    let program =
        CString::new(localrpcd().into_os_string().into_encoded_bytes()).expect("program path");
    let mut argv_c: Vec<CString> = vec![program.clone()];
    argv_c.extend(
        args.iter()
            .map(|a| CString::new(*a).expect("argument without NUL")),
    );
    let mut env_c: Vec<CString> = vec![CString::new("PATH=/usr/bin:/bin").expect("PATH")];
    for (k, v) in extra_env {
        env_c.push(CString::new(format!("{k}={v}")).expect("env without NUL"));
    }
    // "LISTEN_PID=" + room for any pid, overwritten in the child.
    let own_pid = matches!(listen_pid, ListenPid::Own);
    match &listen_pid {
        ListenPid::Own => {
            env_c.push(CString::new(format!("LISTEN_PID={}", "0".repeat(20))).expect("placeholder"))
        }
        ListenPid::Fixed(v) => {
            env_c.push(CString::new(format!("LISTEN_PID={v}")).expect("LISTEN_PID"))
        }
        ListenPid::Unset => {}
    }
    let exec = PreparedExec::new(
        program,
        argv_c,
        env_c,
        own_pid,
        fds.iter().map(|f| f.as_fd().as_raw_fd()).collect(),
    );
    let mut command = Command::new("/nonexistent-execve-is-done-in-pre-exec");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut exec = exec;
    // SAFETY: the closure only calls async-signal-safe functions (getpid, dup, dup2, fcntl,
    // execve) and writes into memory allocated before fork.
    unsafe {
        command.pre_exec(move || exec.run());
    }
    ChildGuard(command.spawn().expect("launch localrpcd"))
}

/// argv/envp ready for `execve` in a forked child.
struct PreparedExec {
    _program: CString,
    _argv: Vec<CString>,
    env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
    own_pid: bool,
    fds: Vec<RawFd>,
    /// Scratch for moving the passed fds out of the way before placing them at 3...
    scratch: Vec<RawFd>,
}

// SAFETY: the raw pointers point into the CStrings owned by the same struct; it is only used
// in the forked child.
unsafe impl Send for PreparedExec {}
unsafe impl Sync for PreparedExec {}

impl PreparedExec {
    fn new(
        program: CString,
        argv: Vec<CString>,
        env: Vec<CString>,
        own_pid: bool,
        fds: Vec<RawFd>,
    ) -> Self {
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<_> = env.iter().map(|a| a.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());
        let scratch = vec![0; fds.len()];
        PreparedExec {
            _program: program,
            _argv: argv,
            env,
            argv_ptrs,
            env_ptrs,
            own_pid,
            fds,
            scratch,
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let fail = || Err(io::Error::last_os_error());
        // SAFETY: async-signal-safe calls on fds and memory this process owns.
        unsafe {
            if self.own_pid {
                let placeholder = self.env.last().expect("LISTEN_PID is last").as_ptr() as *mut u8;
                let digits = placeholder.add("LISTEN_PID=".len());
                let mut pid = libc::getpid() as u32;
                let mut text = [0u8; 12];
                let mut n = 0;
                loop {
                    text[n] = b'0' + (pid % 10) as u8;
                    n += 1;
                    pid /= 10;
                    if pid == 0 {
                        break;
                    }
                }
                for i in 0..n {
                    *digits.add(i) = text[n - 1 - i];
                }
                *digits.add(n) = 0;
            }
            // Move every passed fd above the target range first, so dup2 never clobbers one.
            for (i, fd) in self.fds.iter().enumerate() {
                let moved = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if moved < 0 {
                    return fail();
                }
                self.scratch[i] = moved;
            }
            for (i, fd) in self.scratch.iter().enumerate() {
                // dup2 clears FD_CLOEXEC on the new fd, as a service manager passes them.
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return fail();
                }
            }
            libc::execve(
                self.argv_ptrs[0],
                self.argv_ptrs.as_ptr(),
                self.env_ptrs.as_ptr(),
            );
        }
        fail()
    }
}

/// A listening unix stream socket at `path`, as a service manager's socket unit holds it.
pub fn listening_socket(path: &Path) -> OwnedFd {
    OwnedFd::from(std::os::unix::net::UnixListener::bind(path).expect("bind the listening socket"))
}

/// Runs `systemd-socket-activate [sa_args] -- localrpcd [args]` with stderr captured.
pub fn socket_activate(sa_args: &[&str], args: &[&str]) -> ChildGuard {
    let child = Command::new("/usr/bin/systemd-socket-activate")
        .args(sa_args)
        .arg("--")
        .arg(localrpcd())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start systemd-socket-activate");
    ChildGuard(child)
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

/// Waits until `fd` is readable (POLLIN) or `timeout` passes.
pub fn wait_readable(fd: impl AsFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0
}

/// Waits (bounded, on a pidfd: no polling) for a child to exit.
pub fn wait_exit_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    if let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        if !wait_readable(&pidfd, timeout) {
            return None;
        }
        return Some(child.wait().expect("reap the child"));
    }
    // Already reaped or pidfds unsupported.
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
pub fn wait_exit_pidfd(child: &mut Child) -> ExitStatus {
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
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl StderrLines {
    pub fn take(child: &mut Child) -> StderrLines {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, done) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("  [daemon] {line}");
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

    /// Waits (bounded) until `count` lines contain `needle`; returns false on timeout.
    pub fn wait_for(&self, needle: &str, count: usize) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .filter(|l| l.contains(needle))
                .count()
                >= count
            {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) =
                self.done.recv_timeout(left)
            {
                return self
                    .lines
                    .lock()
                    .expect("lines")
                    .iter()
                    .filter(|l| l.contains(needle))
                    .count()
                    >= count;
            }
        }
    }
}

/// Waits (bounded) until a unix socket at `path` is in the listening state, from
/// /proc/net/unix (flag `__SO_ACCEPTCON`), without connecting: a probe connection would
/// itself trigger `systemd-socket-activate`. The file exists from bind(), before listen().
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
