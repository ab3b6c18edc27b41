//! Client connections that start a process: `exec:PATH`, `ssh-unix:HOST:/path` and
//! `ssh-exec:HOST:COMMAND`.
//!
//! Every one of them is a `socketpair(AF_UNIX, SOCK_STREAM)`: our end becomes a
//! [`Stream::Unix`], the other end is handed to the child.
//!
//! - `exec:PATH`: the child gets its end as fd 3 with `LISTEN_FDS=1`, `LISTEN_FDNAMES=varlink`
//!   and `LISTEN_PID=<its own pid>` (socket activation, as sd-varlink's
//!   `sd_varlink_connect_exec()` does). The program is run directly, without a shell or `PATH`
//!   lookup.
//! - `ssh-unix:HOST:/path`: `ssh -W /path HOST` (OpenSSH >= 9.4 forwards stdin/stdout to a
//!   remote Unix socket), with its stdin and stdout being our socketpair end — the same command
//!   line sd-varlink uses.
//! - `ssh-exec:HOST:COMMAND`: `ssh -e none -T HOST env SYSTEMD_VARLINK_LISTEN=- COMMAND...`,
//!   COMMAND split into words like sd-varlink does (whitespace, `'…'`/`"…"` quotes, `\`
//!   escapes); the remote program speaks varlink on its stdin/stdout. sd-varlink uses two pipes
//!   here; a socketpair works the same for ssh and gives us one bidirectional fd.
//!
//! The ssh binary is `$LOCALRPC_SSH`, else `$SYSTEMD_SSH` (as sd-varlink honours it), else
//! `ssh` from `PATH`.
//!
//! # The child's lifetime
//!
//! [`Stream`] has no room for a process handle, so each connection gets a *reaper task* on the
//! current tokio runtime that owns the child. It keeps a duplicate of the child's socket end
//! (never read from) only to learn, through `EPOLLRDHUP`, when our end is closed — that is, when
//! the [`Stream`] (or the `Connection`/`UpgradedStream` owning it) is dropped. Then it gives the
//! child [`EXIT_GRACE`] to exit on the end-of-file it sees, kills it (SIGKILL) otherwise, and reaps
//! it. When the child exits first, the task reaps it (its pidfd becomes readable) and closes the
//! duplicate, so our end reads end-of-file. If the runtime shuts down first, dropping the task
//! kills and reaps the child. Limitation: a child that closes its socket but keeps running is not
//! noticed until it exits or the stream is dropped.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;

use super::address::Address;
use super::stream::Stream;

/// How long a child may take to exit by itself after our end of its socket was closed.
pub const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Opens an `exec:`, `ssh-unix:` or `ssh-exec:` address; see the module documentation.
pub(crate) async fn connect(address: &Address) -> io::Result<Stream> {
    let (ours, theirs) = StdUnixStream::pair()?; // both ends are close-on-exec
    let child = match address {
        Address::Exec(path) => {
            // The copy for the child is numbered 3 or higher (3 itself if it is free): fd 3 is
            // then in use during the spawn, so the close-on-exec pipe that `Command::spawn` uses
            // to report exec errors can never be fd 3, which the hook overwrites.
            let socket = rustix::io::fcntl_dupfd_cloexec(&theirs, 3)?;
            spawn_exec(path.as_os_str(), socket)?
        }
        Address::SshUnix { host, path } => {
            let mut command = Command::new(ssh_program());
            command.arg("-W").arg(path).arg(host);
            spawn_on_stdio(command, &theirs)?
        }
        Address::SshExec {
            host,
            command: remote,
        } => {
            let words = split_command_line(remote).map_err(|reason| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("ssh-exec:{host}:{remote}: {reason}"),
                )
            })?;
            let mut command = Command::new(ssh_program());
            command
                .args(["-e", "none", "-T"])
                .arg(host)
                .args(["env", "SYSTEMD_VARLINK_LISTEN=-"])
                .args(words);
            spawn_on_stdio(command, &theirs)?
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{other}: not an exec or ssh address"),
            ));
        }
    };
    ours.set_nonblocking(true)?;
    theirs.set_nonblocking(true)?;
    let stream = UnixStream::from_std(ours)?;
    let watch = UnixStream::from_std(theirs)?;
    tokio::spawn(reap(ChildGuard(child), watch));
    Ok(Stream::Unix(stream))
}

fn ssh_program() -> OsString {
    ["LOCALRPC_SSH", "SYSTEMD_SSH"]
        .iter()
        .find_map(|name| std::env::var_os(name).filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "ssh".into())
}

/// Runs `command` with `socket` as its stdin and stdout (stderr stays ours, so ssh can ask
/// for passwords on the terminal and report errors).
fn spawn_on_stdio(mut command: Command, socket: &StdUnixStream) -> io::Result<Child> {
    let stdin = socket.as_fd().try_clone_to_owned()?;
    let stdout = socket.as_fd().try_clone_to_owned()?;
    command
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout));
    command.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot run {:?}: {e}", command.get_program()),
        )
    })
}

/// Length reserved for the decimal pid in `LISTEN_PID=` (a pid is at most 10 digits).
const PID_DIGITS: usize = 10;

/// Starts `path` with `socket` as fd 3 and the socket-activation variables set.
///
/// `LISTEN_PID` must hold the child's own pid, known only after `fork()`, and between `fork()`
/// and `exec()` only async-signal-safe functions may run (no allocation, no `setenv`). So all
/// memory is prepared here, before the fork: the path, argv and a complete envp (our environment
/// without any inherited `LISTEN_*`, plus the three variables, `LISTEN_PID=` followed by
/// [`PID_DIGITS`] spaces of room). The `pre_exec` hook then only makes system calls and writes
/// into that memory: `dup2(socket, 3)`, clearing FD_CLOEXEC on 3, `getpid()` formatted by hand
/// into the reserved bytes, and `execve()` itself. If `execve` fails, the hook returns the
/// error, which `Command::spawn` reports to us.
fn spawn_exec(path: &OsStr, socket: OwnedFd) -> io::Result<Child> {
    let c_path = CString::new(path.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "exec: path contains a NUL byte",
        )
    })?;
    let mut env: Vec<Vec<u8>> = std::env::vars_os()
        .filter(|(name, _)| !name.as_bytes().starts_with(b"LISTEN_"))
        .map(|(name, value)| [name.as_bytes(), b"=", value.as_bytes(), b"\0"].concat())
        .filter(|entry| !entry[..entry.len() - 1].contains(&0))
        .collect();
    env.push(b"LISTEN_FDS=1\0".to_vec());
    env.push(b"LISTEN_FDNAMES=varlink\0".to_vec());
    let mut pid_entry = b"LISTEN_PID=".to_vec();
    let pid_start = pid_entry.len();
    pid_entry.extend_from_slice(&[b' '; PID_DIGITS + 1]);
    env.push(pid_entry);
    let pid_index = env.len() - 1;
    // The vectors are never resized after this point, so these pointers stay valid.
    let pid_ptr: *mut u8 = unsafe { env[pid_index].as_mut_ptr().add(pid_start) };
    let envp: Vec<*const libc_char> = env
        .iter()
        .map(|entry| entry.as_ptr().cast())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let argv: [*const libc_char; 2] = [c_path.as_ptr(), std::ptr::null()];
    let raw_socket = socket.as_raw_fd();
    // Raw pointers are not Send; the closure only runs in the forked child.
    let pid_addr = pid_ptr as usize;
    let envp_addr = envp.as_ptr() as usize;
    let argv_addr = argv.as_ptr() as usize;
    let path_addr = c_path.as_ptr() as usize;

    let mut command = Command::new(path);
    command.stdin(Stdio::null());
    // SAFETY: the hook runs in the child between fork and exec. It allocates nothing, takes
    // no locks and calls only async-signal-safe system calls (dup2, fcntl, getpid, execve);
    // every pointer it uses points into `env`, `envp`, `argv` and `c_path`, which live (in the
    // parent, hence in the child's copy of its memory) until `spawn` has returned below.
    unsafe {
        command.pre_exec(move || {
            let socket = std::os::fd::BorrowedFd::borrow_raw(raw_socket);
            let mut three = OwnedFd::from_raw_fd(3);
            let moved = rustix::io::dup2(socket, &mut three);
            let three = std::mem::ManuallyDrop::new(three); // never close fd 3 here
            moved?;
            rustix::io::fcntl_setfd(&*three, rustix::io::FdFlags::empty())?;
            write_decimal(
                rustix::process::getpid().as_raw_nonzero().get() as u32,
                pid_addr as *mut u8,
            );
            execve(
                path_addr as *const libc_char,
                argv_addr as *const *const libc_char,
                envp_addr as *const *const libc_char,
            );
            Err(io::Error::last_os_error())
        });
    }
    let child = command.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot run {}: {e}", path.to_string_lossy()),
        )
    });
    drop((envp, env, argv, c_path, socket));
    child
}

#[allow(non_camel_case_types)]
type libc_char = std::ffi::c_char;

unsafe extern "C" {
    // The C library's execve(2) wrapper (std links the C library on every Unix target).
    fn execve(
        path: *const libc_char,
        argv: *const *const libc_char,
        envp: *const *const libc_char,
    ) -> std::ffi::c_int;
}

/// Writes `value` in decimal at `out`, then a NUL (at most `PID_DIGITS + 1` bytes), without
/// allocating.
fn write_decimal(mut value: u32, out: *mut u8) {
    let mut digits = [0u8; PID_DIGITS];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for i in 0..n {
        // SAFETY: the caller reserved PID_DIGITS + 1 bytes at `out`.
        unsafe { out.add(i).write(digits[n - 1 - i]) };
    }
    unsafe { out.add(n).write(0) };
}

/// Splits a command line into words like systemd's `EXTRACT_UNQUOTE | EXTRACT_CUNESCAPE`:
/// whitespace separates words, `'…'` and `"…"` quote, `\` escapes (`\n`, `\t`, `\\`, ...).
pub fn split_command_line(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let escaped = chars
                    .next()
                    .ok_or("the command line ends with a lone backslash")?;
                word.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote in the command line".into());
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("the remote command line is empty".into());
    }
    Ok(words)
}

/// Kills (SIGKILL) and reaps the child when dropped, unless it has already been reaped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        // Give it a short moment to exit on end-of-file, without blocking for long.
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(5));
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the child exits (then reaps it and closes `watch`, so our end of the socket
/// reads end-of-file) or our end is closed (then the child gets [`EXIT_GRACE`] before SIGKILL).
async fn reap(mut child: ChildGuard, watch: UnixStream) {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_child(&child.0),
        rustix::process::PidfdFlags::empty(),
    )
    .ok()
    // SAFETY: an OwnedFd keeps its descriptor open and unchanged until the AsyncFd drops it.
    .and_then(|fd| unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok());
    let closed = tokio::select! {
        _ = exited(&mut child.0, pidfd.as_ref()) => false,
        _ = peer_closed(&watch) => true,
    };
    if closed
        && tokio::time::timeout(EXIT_GRACE, exited(&mut child.0, pidfd.as_ref()))
            .await
            .is_err()
    {
        let _ = child.0.kill();
    }
    drop(watch);
    let _ = child.0.wait();
}

/// Completes when the child has exited (it is not reaped yet when a pidfd is used).
async fn exited(child: &mut Child, pidfd: Option<&AsyncFd<OwnedFd>>) {
    match pidfd {
        Some(fd) => {
            let _ = fd.readable().await;
        }
        // No pidfd (Linux < 5.3): poll.
        None => loop {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        },
    }
}

/// Completes when the peer of `watch` (our connection's end) has been closed.
async fn peer_closed(watch: &UnixStream) {
    loop {
        match watch.ready(Interest::READABLE).await {
            Ok(ready) if ready.is_read_closed() => return,
            Ok(_) => {
                // Data for the child is pending; it is not ours to read. Wait for the next edge.
                let _ = watch.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_systemd() {
        assert_eq!(
            split_command_line("systemd-sysext").unwrap(),
            ["systemd-sysext"]
        );
        assert_eq!(
            split_command_line(" a  'b c' \"d\\\"e\" f\\ g ").unwrap(),
            ["a", "b c", "d\"e", "f g"]
        );
        assert!(split_command_line("   ").is_err());
        assert!(split_command_line("'open").is_err());
    }

    #[test]
    fn writes_decimal_pids() {
        let mut buf = [b' '; PID_DIGITS + 1];
        write_decimal(4_294_967_295, buf.as_mut_ptr());
        assert_eq!(&buf, b"4294967295\0");
        let mut buf = [b' '; PID_DIGITS + 1];
        write_decimal(7, buf.as_mut_ptr());
        assert_eq!(&buf[..2], b"7\0");
    }
}
