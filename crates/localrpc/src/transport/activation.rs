//! Socket activation: the file descriptors a service manager passes, exactly as
//! `sd_listen_fds_with_names(3)` receives them.
//!
//! Written by hand because the existing crates differ from systemd where it matters here
//! (listenfd accepts a missing `LISTEN_PID` and ignores names; libsystemd returns no names when
//! `LISTEN_FDNAMES` is unset). The rules are in `shared/docs/LIFECYCLE.md`:
//! `LISTEN_PID` unset or foreign → no fds; `LISTEN_PIDFDID` must match when set and readable;
//! `LISTEN_FDS` must be a positive integer; names are colon-separated, their count must match,
//! absent names are `unknown`; every fd gets `FD_CLOEXEC`; the variables are removed whether
//! or not they were valid.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The first passed file descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The variables of the activation protocol, removed after reading.
const VARIABLES: [&str; 4] = [
    "LISTEN_PID",
    "LISTEN_PIDFDID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// Largest number of fds accepted (a bound against a corrupt `LISTEN_FDS`).
const MAX_LISTEN_FDS: usize = 4096;

/// The activation environment is present but wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a positive integer.
    #[error("LISTEN_FDS={0:?} is not a positive number of file descriptors")]
    InvalidCount(String),
    /// `LISTEN_PID` is not a number.
    #[error("LISTEN_PID={0:?} is not a process id")]
    InvalidPid(String),
    /// `LISTEN_FDNAMES` names a different number of fds than `LISTEN_FDS` passes.
    #[error("LISTEN_FDNAMES has {names} names but LISTEN_FDS passes {fds} file descriptors")]
    NameCountMismatch {
        /// Names given.
        names: usize,
        /// Fds passed.
        fds: usize,
    },
    /// Removing the variables needs a single-threaded process.
    #[error(
        "socket activation must be read before any thread starts (the environment is not \
         thread-safe); call it first thing in main, before building an async runtime"
    )]
    ThreadsRunning,
    /// A passed fd is not open.
    #[error("file descriptor {fd} named {name:?} was announced but is not open: {source}")]
    BadFd {
        /// The fd number.
        fd: RawFd,
        /// Its name.
        name: String,
        /// The error from fcntl.
        #[source]
        source: rustix::io::Errno,
    },
}

/// What the environment says, before any fd is touched: a pure function of the variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationEnv {
    /// The names of fds 3, 4, ... in order.
    pub names: Vec<String>,
}

/// The values of the activation variables, as read from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationVars {
    /// `LISTEN_PID`.
    pub pid: Option<String>,
    /// `LISTEN_PIDFDID`.
    pub pidfd_id: Option<String>,
    /// `LISTEN_FDS`.
    pub fds: Option<String>,
    /// `LISTEN_FDNAMES`.
    pub names: Option<String>,
}

impl ActivationVars {
    /// Reads the four variables of this process.
    pub fn from_process() -> Self {
        let get = |name| std::env::var(name).ok();
        ActivationVars {
            pid: get("LISTEN_PID"),
            pidfd_id: get("LISTEN_PIDFDID"),
            fds: get("LISTEN_FDS"),
            names: get("LISTEN_FDNAMES"),
        }
    }

    /// Decides, like `sd_listen_fds_with_names`, which fds are ours and their names.
    /// `own_pidfd_id` is the inode number of a pidfd for this process, where readable.
    /// `Ok(None)`: no activation for this process (variables absent or for another pid).
    pub fn interpret(
        &self,
        own_pid: u32,
        own_pidfd_id: Option<u64>,
    ) -> Result<Option<ActivationEnv>, ActivationError> {
        let Some(pid) = &self.pid else {
            return Ok(None);
        };
        let pid: u32 = pid
            .trim()
            .parse()
            .map_err(|_| ActivationError::InvalidPid(pid.clone()))?;
        if pid != own_pid {
            return Ok(None);
        }
        if let (Some(expected), Some(own)) = (&self.pidfd_id, own_pidfd_id) {
            // An unparsable LISTEN_PIDFDID is ignored, as systemd does.
            if expected
                .trim()
                .parse::<u64>()
                .is_ok_and(|expected| expected != own)
            {
                return Ok(None);
            }
        }
        let Some(count) = &self.fds else {
            return Ok(None);
        };
        let n = match count.trim().parse::<i64>() {
            Ok(n) if n > 0 && (n as usize) <= MAX_LISTEN_FDS => n as usize,
            _ => return Err(ActivationError::InvalidCount(count.clone())),
        };
        let names = match &self.names {
            None => vec!["unknown".to_owned(); n],
            Some(names) => {
                let names: Vec<String> = names.split(':').map(str::to_owned).collect();
                if names.len() != n {
                    return Err(ActivationError::NameCountMismatch {
                        names: names.len(),
                        fds: n,
                    });
                }
                names
            }
        };
        Ok(Some(ActivationEnv { names }))
    }
}

/// One passed file descriptor and its name.
#[derive(Debug)]
pub struct ActivatedFd {
    /// The descriptor (owned: closed when dropped).
    pub fd: OwnedFd,
    /// Its name from `LISTEN_FDNAMES` (`FileDescriptorName=`), or `unknown`.
    pub name: String,
}

impl ActivatedFd {
    /// What kind of socket this is.
    pub fn kind(&self) -> io::Result<SocketKind> {
        SocketKind::of(self.fd.as_fd())
    }
}

/// The family, type and state of a socket, from `SO_DOMAIN`, `SO_TYPE`, `SO_ACCEPTCONN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketKind {
    /// Address family.
    pub family: rustix::net::AddressFamily,
    /// Socket type.
    pub socket_type: rustix::net::SocketType,
    /// True for a listening socket, false for a connected (or datagram) one.
    pub listening: bool,
}

impl SocketKind {
    /// Inspects `fd`; fails (ENOTSOCK) for something that is not a socket.
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<SocketKind> {
        use rustix::net::sockopt;
        let socket_type = sockopt::socket_type(fd)?;
        let family = sockopt::socket_domain(fd)?;
        let listening = sockopt::socket_acceptconn(fd)?;
        Ok(SocketKind {
            family,
            socket_type,
            listening,
        })
    }
}

/// Takes the fds passed to this process and removes the activation variables.
///
/// Must run before any other thread exists (it checks, and fails with
/// [`ActivationError::ThreadsRunning`] otherwise): call it first thing in `main`.
/// Returns an empty list when the process was not socket-activated.
pub fn take_listen_fds() -> Result<Vec<ActivatedFd>, ActivationError> {
    if thread_count().is_some_and(|n| n > 1) {
        return Err(ActivationError::ThreadsRunning);
    }
    let vars = ActivationVars::from_process();
    for name in VARIABLES {
        // SAFETY: the process is single-threaded (checked above), so nothing reads the
        // environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    // The pidfd is only needed to compare with LISTEN_PIDFDID: three system calls saved at
    // each start when the manager does not set it.
    let own_pidfd_id = vars.pidfd_id.as_ref().and_then(|_| own_pidfd_id());
    let Some(env) = vars.interpret(std::process::id(), own_pidfd_id)? else {
        return Ok(Vec::new());
    };
    let mut taken = Vec::with_capacity(env.names.len());
    for (i, name) in env.names.into_iter().enumerate() {
        let raw = LISTEN_FDS_START + i as RawFd;
        // SAFETY: the service manager passed fds 3..3+n to this process and nothing else in it
        // owns them; the variables are gone, so they cannot be taken twice.
        let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
        if let Err(e) = rustix::io::fcntl_setfd(borrowed, rustix::io::FdFlags::CLOEXEC) {
            return Err(ActivationError::BadFd {
                fd: raw,
                name,
                source: e,
            });
        }
        // SAFETY: as above; the fd is open (fcntl succeeded).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        taken.push(ActivatedFd { fd, name });
    }
    Ok(taken)
}

/// The number of threads of this process: field 20 of `/proc/self/stat`, read with one
/// `read` (the file is one short line; `/proc/self/status`, read to its end, took eight).
fn thread_count() -> Option<usize> {
    use std::io::Read;
    // 52 numeric fields of at most 20 digits and a 16-byte name fit.
    let mut buf = [0u8; 2048];
    let len = std::fs::File::open("/proc/self/stat")
        .ok()?
        .read(&mut buf)
        .ok()?;
    stat_thread_count(&buf[..len])
}

/// `num_threads` from a `/proc/PID/stat` line. The name in parentheses (field 2) may hold
/// spaces and parentheses itself, so the fields are counted from its last `)`.
fn stat_thread_count(stat: &[u8]) -> Option<usize> {
    let after_name = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    // Fields 3 (state) to 20 (num_threads) follow the name.
    let field = after_name
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .nth(17)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// The inode number of a pidfd for this process (what `LISTEN_PIDFDID` carries), where the
/// kernel supports pidfds on pidfs.
fn own_pidfd_id() -> Option<u64> {
    let pid = rustix::process::getpid();
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    rustix::fs::fstat(&pidfd).ok().map(|st| st.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pid: Option<&str>, fds: Option<&str>, names: Option<&str>) -> ActivationVars {
        ActivationVars {
            pid: pid.map(Into::into),
            pidfd_id: None,
            fds: fds.map(Into::into),
            names: names.map(Into::into),
        }
    }

    #[test]
    fn the_thread_count_is_field_20_of_stat() {
        let line = b"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 77 \
                     8192000 600 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(stat_thread_count(line), Some(3));
        assert_eq!(stat_thread_count(b"4242 (x) S 1"), None);
        assert_eq!(stat_thread_count(b"garbage"), None);
    }

    #[test]
    fn this_process_counts_its_threads() {
        // Other tests' threads may come and go; this one's own two are there for sure.
        let (started, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                started.wait();
                release.wait();
            });
            started.wait();
            assert!(thread_count().is_some_and(|n| n >= 2));
            release.wait();
        });
    }

    #[test]
    fn no_listen_pid_means_no_activation() {
        assert_eq!(vars(None, Some("1"), None).interpret(7, None), Ok(None));
    }

    #[test]
    fn foreign_pid_means_no_activation() {
        assert_eq!(
            vars(Some("8"), Some("1"), None).interpret(7, None),
            Ok(None)
        );
    }

    #[test]
    fn junk_pid_is_an_error() {
        assert!(matches!(
            vars(Some("x"), Some("1"), None).interpret(7, None),
            Err(ActivationError::InvalidPid(_))
        ));
    }

    #[test]
    fn listen_fds_must_be_a_positive_integer() {
        for bad in ["0", "-1", "junk", "", "99999999999999999999", "1.5", "4097"] {
            assert_eq!(
                vars(Some("7"), Some(bad), None).interpret(7, None),
                Err(ActivationError::InvalidCount(bad.into())),
                "LISTEN_FDS={bad}"
            );
        }
    }

    #[test]
    fn names_default_to_unknown_and_keep_empty_ones() {
        let env = vars(Some("7"), Some("2"), None)
            .interpret(7, None)
            .unwrap()
            .unwrap();
        assert_eq!(env.names, ["unknown", "unknown"]);
        let env = vars(Some("7"), Some("3"), Some("varlink::x"))
            .interpret(7, None)
            .unwrap()
            .unwrap();
        assert_eq!(env.names, ["varlink", "", "x"]);
    }

    #[test]
    fn name_count_must_match() {
        assert_eq!(
            vars(Some("7"), Some("2"), Some("varlink")).interpret(7, None),
            Err(ActivationError::NameCountMismatch { names: 1, fds: 2 })
        );
    }

    #[test]
    fn pidfd_id_must_match_when_known() {
        let mut v = vars(Some("7"), Some("1"), None);
        v.pidfd_id = Some("100".into());
        assert_eq!(v.interpret(7, Some(101)), Ok(None));
        assert!(v.interpret(7, Some(100)).unwrap().is_some());
        // Unreadable own id: not checked, as sd_listen_fds does when pidfds are unsupported.
        assert!(v.interpret(7, None).unwrap().is_some());
    }
}
