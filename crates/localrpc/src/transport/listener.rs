//! Listening sockets: binding Unix paths safely, TCP, and adopting inherited fds.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use tokio::net::{TcpListener, UnixListener};

use super::address::Address;
use super::stream::Stream;
use crate::service::PeerCredentials;

/// Backlog for sockets we bind; the kernel caps it at net.core.somaxconn.
const LISTEN_BACKLOG: i32 = 4096;

/// How to create a Unix socket file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixBindOptions {
    /// Permission bits of the socket file (default 0600: only the owner may connect).
    pub mode: u32,
    /// Group to give the socket file (use with a mode such as 0660).
    pub group: Option<u32>,
}

impl Default for UnixBindOptions {
    fn default() -> Self {
        UnixBindOptions {
            mode: 0o600,
            group: None,
        }
    }
}

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A live server already listens at the path.
    #[error("{}: another process is already listening on this socket; stop it first or choose another path", .0.display())]
    InUse(PathBuf),
    /// Something other than a socket is at the path.
    #[error("{}: exists and is not a socket; refusing to remove it (move it away or choose another path)", .0.display())]
    NotASocket(PathBuf),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the address.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Servers cannot listen on this kind of address.
    #[error("cannot listen on {0}: only unix:, unix:@ and tcp: addresses can be listened on")]
    Unsupported(String),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> BindError {
    let what = what.into();
    move |source| BindError::Io { what, source }
}

/// A listening socket.
#[derive(Debug)]
pub struct Listener {
    kind: ListenerKind,
    /// The socket file this process created (and may remove); never an inherited one.
    created: Option<CreatedSocket>,
}

/// A socket file we bound, identified by device and inode so that only that very file is
/// ever removed (not a file or a newer instance's socket that replaced it).
#[derive(Debug)]
struct CreatedSocket {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

#[derive(Debug)]
enum ListenerKind {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// umask is process-wide: serialize the bind calls that change it.
static UMASK_LOCK: Mutex<()> = Mutex::new(());

impl Listener {
    /// Binds `address`. For a Unix path: a stale socket (connect refused) is replaced, a live
    /// one or a non-socket is refused, and the new socket gets exactly `options.mode`.
    /// Must be called within a tokio runtime.
    pub async fn bind(address: &Address, options: UnixBindOptions) -> Result<Listener, BindError> {
        match address {
            Address::Unix(path) => bind_unix_path(path, options),
            Address::Abstract(name) => {
                let addr = SocketAddrUnix::new_abstract_name(name.as_bytes())
                    .map_err(|e| io_error(format!("unix:@{name}"))(e.into()))?;
                let fd =
                    unix_socket_bound(&addr).map_err(io_error(format!("bind unix:@{name}")))?;
                rustix::net::listen(&fd, LISTEN_BACKLOG)
                    .map_err(|e| io_error(format!("listen on unix:@{name}"))(e.into()))?;
                Ok(Listener {
                    kind: ListenerKind::Unix(unix_listener(fd)?),
                    created: None,
                })
            }
            Address::Tcp(hostport) => {
                let listener = TcpListener::bind(hostport.as_str())
                    .await
                    .map_err(io_error(format!("bind tcp:{hostport}")))?;
                Ok(Listener {
                    kind: ListenerKind::Tcp(listener),
                    created: None,
                })
            }
            other => Err(BindError::Unsupported(other.to_string())),
        }
    }

    /// Registers the socket with the runtime of `handle` instead of the one it was created
    /// on (through a duplicate of its fd; the original is closed): from then on it must be
    /// accepted on from that runtime. Connections waiting in the backlog stay there.
    pub(crate) fn register_with(&mut self, handle: &tokio::runtime::Handle) -> io::Result<()> {
        let _runtime = handle.enter();
        self.kind = match &self.kind {
            ListenerKind::Unix(listener) => ListenerKind::Unix(UnixListener::from_std(
                std::os::unix::net::UnixListener::from(listener.as_fd().try_clone_to_owned()?),
            )?),
            ListenerKind::Tcp(listener) => ListenerKind::Tcp(TcpListener::from_std(
                std::net::TcpListener::from(listener.as_fd().try_clone_to_owned()?),
            )?),
        };
        Ok(())
    }

    /// Adopts an inherited listening socket (Unix or TCP stream).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Listener> {
        match rustix::net::sockopt::socket_domain(&fd)? {
            AddressFamily::UNIX => {
                let std_listener = std::os::unix::net::UnixListener::from(fd);
                std_listener.set_nonblocking(true)?;
                Ok(Listener {
                    kind: ListenerKind::Unix(UnixListener::from_std(std_listener)?),
                    created: None,
                })
            }
            AddressFamily::INET | AddressFamily::INET6 => {
                let std_listener = std::net::TcpListener::from(fd);
                std_listener.set_nonblocking(true)?;
                Ok(Listener {
                    kind: ListenerKind::Tcp(TcpListener::from_std(std_listener)?),
                    created: None,
                })
            }
            family => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("inherited socket has unsupported address family {family:?}"),
            )),
        }
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(Stream, Option<PeerCredentials>)> {
        match &self.kind {
            ListenerKind::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                let stream = Stream::Unix(stream);
                let peer = stream.peer_credentials();
                Ok((stream, peer))
            }
            ListenerKind::Tcp(listener) => {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok((Stream::Tcp(stream), None))
            }
        }
    }

    /// The address clients connect to, for logs.
    pub fn local_address(&self) -> String {
        match &self.kind {
            ListenerKind::Unix(listener) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = listener
                    .local_addr()
                    .map(std::os::unix::net::SocketAddr::from);
                match &addr {
                    Ok(addr) => match (addr.as_pathname(), addr.as_abstract_name()) {
                        (Some(path), _) => format!("unix:{}", path.display()),
                        (None, Some(name)) => format!("unix:@{}", String::from_utf8_lossy(name)),
                        _ => "unix:(unnamed)".to_owned(),
                    },
                    Err(_) => "unix:(unknown)".to_owned(),
                }
            }
            ListenerKind::Tcp(listener) => match listener.local_addr() {
                Ok(addr) => format!("tcp:{addr}"),
                Err(_) => "tcp:(unknown)".to_owned(),
            },
        }
    }

    /// The filesystem path of a Unix listener (`None` for abstract, unnamed or TCP sockets).
    pub fn unix_path(&self) -> Option<PathBuf> {
        match &self.kind {
            ListenerKind::Unix(listener) => listener
                .local_addr()
                .ok()
                .and_then(|addr| addr.as_pathname().map(Path::to_path_buf)),
            ListenerKind::Tcp(_) => None,
        }
    }

    /// Removes the socket file this process created, if any (never an inherited one), and
    /// only if the path still holds that same socket.
    pub fn remove_socket_file(&mut self) {
        let Some(CreatedSocket { path, dev, ino }) = self.created.take() else {
            return;
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() && meta.dev() == dev && meta.ino() == ino => {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove socket file");
                }
            }
            Ok(_) => {
                tracing::warn!(path = %path.display(), "socket path now holds something else; leaving it");
            }
            Err(_) => {}
        }
    }
}

/// A Unix stream socket bound to `addr`, not yet listening.
fn unix_socket_bound(addr: &SocketAddrUnix) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::bind(&fd, addr)?;
    Ok(fd)
}

fn unix_listener(fd: OwnedFd) -> Result<UnixListener, BindError> {
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
        .map_err(io_error("register listener with the runtime"))
}

fn bind_unix_path(path: &Path, options: UnixBindOptions) -> Result<Listener, BindError> {
    remove_if_stale(path)?;
    let shown = path.display().to_string();
    let addr = SocketAddrUnix::new(path).map_err(|e| {
        io_error(format!("{shown}: socket path too long (at most 107 bytes)"))(e.into())
    })?;
    let fd = {
        // Tight umask while binding so the file never has looser permissions than asked;
        // chmod below then sets the exact mode.
        let _guard = UMASK_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o177));
        let bound = unix_socket_bound(&addr);
        rustix::process::umask(old);
        bound.map_err(io_error(format!("bind {shown}")))?
    };
    // Mode and group are final before `listen`: nobody can connect while they are not.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(options.mode))
        .map_err(io_error(format!("chmod {:o} {shown}", options.mode)))?;
    if let Some(gid) = options.group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
            .map_err(|e| io_error(format!("chgrp {gid} {shown}"))(e.into()))?;
    }
    rustix::net::listen(&fd, LISTEN_BACKLOG)
        .map_err(|e| io_error(format!("listen on {shown}"))(e.into()))?;
    let listener = unix_listener(fd)?;
    let meta = std::fs::symlink_metadata(path).map_err(io_error(format!("stat {shown}")))?;
    let created = CreatedSocket {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok(Listener {
        kind: ListenerKind::Unix(listener),
        created: Some(created),
    })
}

/// Removes a socket file nobody listens on; refuses a live socket and anything not a socket.
fn remove_if_stale(path: &Path) -> Result<(), BindError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(format!("stat {}", path.display()))(e)),
    };
    if !metadata.file_type().is_socket() {
        return Err(BindError::NotASocket(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_live) => Err(BindError::InUse(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale socket");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(format!("remove stale socket {}", path.display()))(
                    e,
                )),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(format!(
            "probe existing socket {}",
            path.display()
        ))(e)),
    }
}
