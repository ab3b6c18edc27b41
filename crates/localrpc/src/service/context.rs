//! What a handler knows about the call it serves: op id, peer, flags.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::wire::CallFlags;

/// The credentials of the process at the other end of a Unix socket (SO_PEERCRED), taken
/// when the connection was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Process id, where the kernel reports one.
    pub pid: Option<i32>,
}

/// Everything known about the process at the other end of a connection.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// SO_PEERCRED, on Unix sockets.
    pub credentials: Option<PeerCredentials>,
    /// The peer's pidfd, taken when first asked for.
    pub pidfd: PeerPidfd,
}

/// The pidfd of the process at the other end of a Unix socket (SO_PEERPIDFD, Linux 6.5+). It
/// refers to that process itself, so unlike its pid it can never name another process.
///
/// Taken from the connection's socket the first time [`PeerPidfd::get`] is called, then kept
/// (clones share it): a connection whose handlers never ask holds one fd instead of two, as
/// with sd-varlink.
#[derive(Debug, Clone, Default)]
pub struct PeerPidfd(Option<Arc<Mutex<PidfdSlot>>>);

#[derive(Debug)]
enum PidfdSlot {
    /// Not asked for yet: the connection's socket, open for as long as the slot holds it.
    Socket(RawFd),
    /// Asked for: the pidfd, or `None` where the kernel gave none.
    Taken(Option<Arc<OwnedFd>>),
    /// The connection was closed before anybody asked.
    Closed,
}

impl PeerPidfd {
    /// A handle for `socket`'s peer, and the guard that the connection must drop before it
    /// closes the socket.
    pub(crate) fn for_socket(socket: BorrowedFd<'_>) -> (PeerPidfd, PidfdSocketGuard) {
        let slot = Arc::new(Mutex::new(PidfdSlot::Socket(socket.as_raw_fd())));
        (PeerPidfd(Some(slot.clone())), PidfdSocketGuard(slot))
    }

    /// The peer's pidfd; `None` where the kernel has none, the connection is not a Unix
    /// socket, no fd could be allocated, or the connection was closed (or upgraded) before
    /// the first call of this method.
    pub fn get(&self) -> Option<Arc<OwnedFd>> {
        let mut slot = self
            .0
            .as_ref()?
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let PidfdSlot::Socket(fd) = *slot {
            // SAFETY: the slot holds the socket's fd only while the socket is open: the
            // connection drops its `PidfdSocketGuard`, which takes the fd out under this
            // lock, before it closes the socket.
            let socket = unsafe { BorrowedFd::borrow_raw(fd) };
            *slot = PidfdSlot::Taken(crate::transport::peer_pidfd(socket).map(Arc::new));
        }
        match &*slot {
            PidfdSlot::Taken(pidfd) => pidfd.clone(),
            PidfdSlot::Socket(_) | PidfdSlot::Closed => None,
        }
    }
}

/// Kept by a connection beside its socket. Dropping it, which must happen before the socket
/// is closed, ends [`PeerPidfd`]'s use of the socket's fd.
#[derive(Debug)]
pub(crate) struct PidfdSocketGuard(Arc<Mutex<PidfdSlot>>);

impl Drop for PidfdSocketGuard {
    fn drop(&mut self) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let PidfdSlot::Socket(_) = *slot {
            *slot = PidfdSlot::Closed;
        }
    }
}

/// An operation id: names one call in every log line and error that concerns it.
///
/// A call that arrives with one (from another localrpc daemon's handler, see
/// [`crate::client::Connection::set_op_id`]) keeps it; other calls get a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(u64);

impl OpId {
    /// The op id the caller sent, or a new one.
    pub(crate) fn adopt_or_mint(sent: Option<u64>) -> OpId {
        sent.map_or_else(OpId::mint, OpId)
    }

    /// A new id, unique within this process and unlikely to collide across processes.
    pub fn mint() -> OpId {
        static NEXT: OnceLock<AtomicU64> = OnceLock::new();
        let next = NEXT.get_or_init(|| {
            // Seed from pid and start time so ids of different daemons do not collide.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            let seed = (u64::from(std::process::id()) << 40) ^ nanos.rotate_left(20);
            AtomicU64::new(seed & 0x0000_ffff_ffff_ff00)
        });
        OpId(next.fetch_add(1, Ordering::Relaxed))
    }

    /// The numeric value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::wire::format_op_id(f, self.0)
    }
}

impl std::str::FromStr for OpId {
    type Err = InvalidOpId;

    /// Parses the form [`OpId`]'s `Display` writes: `op-` and 1 to 16 hex digits.
    fn from_str(text: &str) -> Result<OpId, InvalidOpId> {
        crate::wire::parse_op_id(text).map(OpId).ok_or(InvalidOpId)
    }
}

/// A text that is not an op id (`op-` and 1 to 16 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an op id: expected op- and 1 to 16 hex digits")]
pub struct InvalidOpId;

/// Everything about a call except its parameters.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The fully qualified method, e.g. `io.localrpc.Echo.Echo`.
    pub method: Arc<str>,
    /// This call's operation id.
    pub op_id: OpId,
    /// The caller's credentials, on Unix sockets.
    pub peer: Option<PeerCredentials>,
    /// A pidfd for the caller's process, where the kernel provides one (SO_PEERPIDFD): see
    /// [`PeerPidfd::get`].
    pub peer_pidfd: PeerPidfd,
    /// The call's flags.
    pub flags: CallFlags,
}
