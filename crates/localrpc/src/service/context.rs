//! What a handler knows about the call it serves: op id, peer, flags.

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// SO_PEERPIDFD, where the kernel has it (6.5+): refers to the peer process itself, so
    /// unlike the pid it cannot be reused by another process.
    pub pidfd: Option<Arc<OwnedFd>>,
}

/// An operation id: names one call in every log line and error that concerns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(u64);

impl OpId {
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
        write!(f, "op-{:012x}", self.0)
    }
}

/// Everything about a call except its parameters.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The fully qualified method, e.g. `io.localrpc.Echo.Echo`.
    pub method: Arc<str>,
    /// This call's operation id.
    pub op_id: OpId,
    /// The caller's credentials, on Unix sockets.
    pub peer: Option<PeerCredentials>,
    /// A pidfd for the caller's process, where the kernel provides one (SO_PEERPIDFD).
    pub peer_pidfd: Option<Arc<OwnedFd>>,
    /// The call's flags.
    pub flags: CallFlags,
}
