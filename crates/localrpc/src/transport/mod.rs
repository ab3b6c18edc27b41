//! Where bytes travel: addresses, listeners, streams and peer credentials.
//!
//! Owns the socket-level rules: parsing varlink addresses, binding a Unix socket with an
//! explicit mode after probing for a stale one, adopting listener fds handed over by a service
//! manager, and reading SO_PEERCRED.

mod activation;
mod address;
mod exec;
mod fds;
mod listener;
mod stream;
mod upgraded;

pub use activation::{
    ActivatedFd, ActivationEnv, ActivationError, ActivationVars, LISTEN_FDS_START, SocketKind,
    take_listen_fds,
};
pub use address::{Address, AddressError};
pub use fds::{FdReceiver, Received, send_with_fds, write_all_with_fds};
pub use listener::{BindError, Listener, UnixBindOptions};
pub use stream::Stream;
pub(crate) use stream::peer_pidfd;
pub use upgraded::UpgradedStream;
