//! Starting a daemon the way a service manager does: a launcher that passes listening
//! sockets as fd 3.. with an exact `LISTEN_PID`, and Debian's `systemd-socket-activate`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::ChildGuard;

/// Where Debian installs `systemd-socket-activate`.
pub const SYSTEMD_SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// The `LISTEN_PID` a launched daemon gets.
#[derive(Debug, Clone)]
pub enum ListenPid {
    /// `LISTEN_PID` = the daemon's own pid (written in the child between fork and exec).
    Own,
    /// A fixed value (a foreign pid, junk).
    Fixed(String),
    /// Not set.
    Unset,
}

/// Starts `program args` the way a service manager does: `fds[i]` becomes fd `3 + i`
/// (inherited, without CLOEXEC), `LISTEN_PID`, and `extra_env` (e.g. `LISTEN_FDS`,
/// `LISTEN_FDNAMES`, `NOTIFY_SOCKET`). The environment is otherwise cleared but for PATH;
/// stdin and stdout are null, stderr is piped.
///
/// `LISTEN_PID=own` is exact: argv and envp are built before fork, and the child writes its
/// own `getpid()` into a preallocated buffer and calls `execve` itself: only
/// async-signal-safe work happens between fork and exec.
pub fn launch(
    program: &Path,
    args: &[&str],
    fds: &[&OwnedFd],
    listen_pid: ListenPid,
    extra_env: &[(&str, &str)],
) -> ChildGuard {
    let program_c =
        CString::new(program.as_os_str().as_encoded_bytes()).expect("program path without NUL");
    let mut argv_c: Vec<CString> = vec![program_c.clone()];
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
    let mut exec = PreparedExec::new(
        program_c,
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
    // SAFETY: the closure only calls async-signal-safe functions (getpid, dup, dup2, fcntl,
    // execve) and writes into memory allocated before fork.
    unsafe {
        command.pre_exec(move || exec.run());
    }
    ChildGuard(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("launch {}: {e}", program.display())),
    )
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

/// Runs `systemd-socket-activate [sa_args] -- program [args]` with stdin and stdout null and
/// stderr piped. systemd-socket-activate execs the program in place (same pid) on the first
/// connection; wait for its socket with [`crate::socket::wait_for_listening`].
pub fn socket_activate(sa_args: &[&str], program: &Path, args: &[&str]) -> ChildGuard {
    let child = Command::new(SYSTEMD_SOCKET_ACTIVATE)
        .args(sa_args)
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start systemd-socket-activate");
    ChildGuard(child)
}
