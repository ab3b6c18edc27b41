//! The echo servers, one per passed fd, all on raw fds through tokio's `AsyncFd` and rustix,
//! so one code path serves every address family (unix, inet, inet6 and vsock alike):
//! - a listening stream socket: accept, then echo each connection's bytes back as they come
//!   (interactive; no half-close needed);
//! - a connected stream socket (`Accept=yes`): echo it until EOF;
//! - a datagram socket: echo each datagram to its sender. `recvfrom(MSG_TRUNC)` returns the
//!   datagram's real length, so one larger than `--max-datagram-size` is detected, logged and
//!   dropped, never echoed truncated. A datagram from an unbound unix socket (no address to
//!   reply to) is logged and skipped; a failed reply never stops the server.
//!
//! Debug lines go to stderr in the original's format:
//! `Bytes received = N, File descriptor name = "<name>"` (and `Bytes sent = ...`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use localrpc::transport::SocketKind;
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrAny, SocketFlags, SocketType};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Read size for stream connections.
const STREAM_BUFFER: usize = 64 * 1024;
/// How long a datagram reply may wait for buffer space before it is dropped, so that one
/// client that does not read cannot stall the server.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after accept() fails for lack of resources (EMFILE...), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Settings shared by every server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Print the `Bytes received/sent` lines.
    pub debug: bool,
    /// Largest datagram echoed.
    pub max_datagram_size: usize,
}

/// What a passed fd is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A listening stream socket (`ListenStream=`, Accept=no).
    Listener,
    /// A connected stream socket (Accept=yes): served alone, then done.
    Connection,
    /// A datagram socket (`ListenDatagram=`).
    Datagram,
}

/// Decides how to serve a socket, or says why it cannot be served.
pub fn classify(kind: SocketKind) -> Result<Role, String> {
    let families = [
        AddressFamily::UNIX,
        AddressFamily::INET,
        AddressFamily::INET6,
        AddressFamily::VSOCK,
    ];
    if !families.contains(&kind.family) {
        return Err(format!(
            "address family {:?} is not supported (AF_UNIX, AF_INET, AF_INET6 and AF_VSOCK are)",
            kind.family
        ));
    }
    match kind.socket_type {
        SocketType::STREAM if kind.listening => Ok(Role::Listener),
        SocketType::STREAM => Ok(Role::Connection),
        SocketType::DGRAM => Ok(Role::Datagram),
        other => Err(format!(
            "socket type {other:?} is not supported (use ListenStream= or ListenDatagram=, \
             or -l / --datagram with systemd-socket-activate)"
        )),
    }
}

/// Registers a passed fd with tokio (switching it to non-blocking mode).
pub fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    rustix::io::ioctl_fionbio(&fd, true)?;
    register_nonblocking(fd)
}

fn register_nonblocking(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` stays open and keeps its number until the `AsyncFd` drops it.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

fn debug_line(options: &Options, what: &str, n: usize, name: &str) {
    if options.debug {
        eprintln!("Bytes {what} = {n}, File descriptor name = \"{name}\"");
    }
}

/// Accepts connections forever and echoes each one in its own task.
pub async fn serve_listener(listener: AsyncFd<OwnedFd>, name: Arc<str>, options: Arc<Options>) {
    loop {
        let accepted = listener
            .async_io(Interest::READABLE, |fd| {
                Ok(rustix::net::accept_with(
                    fd,
                    SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                )?)
            })
            .await;
        match accepted {
            Ok(connection) => match register_nonblocking(connection) {
                Ok(connection) => {
                    tokio::spawn(serve_connection(connection, name.clone(), options.clone()));
                }
                Err(e) => eprintln!("localrpc-echo: cannot serve a connection on \"{name}\": {e}"),
            },
            Err(e) if is_transient_accept_error(&e) => continue,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM...: wait for resources instead of spinning.
                eprintln!("localrpc-echo: accept on \"{name}\" failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Errors of one pending connection, not of the listener.
fn is_transient_accept_error(e: &io::Error) -> bool {
    let errno = Errno::from_io_error(e);
    [Errno::CONNABORTED, Errno::PROTO, Errno::PERM, Errno::INTR]
        .iter()
        .any(|x| Some(*x) == errno)
}

/// Echoes a connected stream socket until EOF or an error.
pub async fn serve_connection(connection: AsyncFd<OwnedFd>, name: Arc<str>, options: Arc<Options>) {
    if let Err(e) = echo_stream(&connection, &name, &options).await {
        let errno = Errno::from_io_error(&e);
        if errno != Some(Errno::CONNRESET) && errno != Some(Errno::PIPE) {
            eprintln!("localrpc-echo: connection on \"{name}\": {e}");
        }
    }
}

async fn echo_stream(
    connection: &AsyncFd<OwnedFd>,
    name: &str,
    options: &Options,
) -> io::Result<()> {
    let mut buffer = vec![0u8; STREAM_BUFFER];
    loop {
        let n = connection
            .async_io(Interest::READABLE, |fd| {
                Ok(rustix::io::read(fd, &mut buffer[..])?)
            })
            .await?;
        if n == 0 {
            return Ok(());
        }
        debug_line(options, "received", n, name);
        let mut written = 0;
        while written < n {
            written += connection
                .async_io(Interest::WRITABLE, |fd| {
                    Ok(rustix::net::send(
                        fd,
                        &buffer[written..n],
                        SendFlags::NOSIGNAL,
                    )?)
                })
                .await?;
        }
        debug_line(options, "sent", n, name);
    }
}

/// Echoes datagrams forever.
pub async fn serve_datagrams(socket: AsyncFd<OwnedFd>, name: Arc<str>, options: Arc<Options>) {
    let max = options.max_datagram_size;
    let mut buffer = vec![0u8; max];
    loop {
        let received = socket
            .async_io(Interest::READABLE, |fd| {
                Ok(rustix::net::recvfrom(
                    fd,
                    &mut buffer[..],
                    RecvFlags::TRUNC,
                )?)
            })
            .await;
        let (len, sender) = match received {
            Ok((_, len, sender)) => (len, sender),
            Err(e) => {
                // E.g. ECONNREFUSED reported for an earlier reply on a connected socket.
                eprintln!("localrpc-echo: receive on \"{name}\" failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if len > max {
            eprintln!(
                "localrpc-echo: dropped a datagram of {len} bytes on \"{name}\": larger than \
                 --max-datagram-size {max} (not echoed, never truncated)"
            );
            continue;
        }
        debug_line(&options, "received", len, &name);
        let Some(sender) = sender.filter(|a| !is_unnamed_unix(a)) else {
            eprintln!(
                "localrpc-echo: a datagram of {len} bytes on \"{name}\" came from an unbound socket \
                 (no address to reply to); not echoed"
            );
            continue;
        };
        let reply = socket.async_io(Interest::WRITABLE, |fd| {
            Ok(rustix::net::sendto(
                fd,
                &buffer[..len],
                SendFlags::NOSIGNAL,
                &sender,
            )?)
        });
        match tokio::time::timeout(REPLY_TIMEOUT, reply).await {
            Ok(Ok(_)) => debug_line(&options, "sent", len, &name),
            Ok(Err(e)) => {
                eprintln!("localrpc-echo: reply of {len} bytes on \"{name}\" failed: {e}")
            }
            Err(_) => eprintln!(
                "localrpc-echo: reply of {len} bytes on \"{name}\" dropped: the sender does not read"
            ),
        }
    }
}

/// True for the address of an unbound (unnamed) unix socket: just the family, no path.
fn is_unnamed_unix(address: &SocketAddrAny) -> bool {
    address.address_family() == AddressFamily::UNIX
        && address.addr_len() as usize <= std::mem::size_of::<u16>() // sun_family only
}

/// `unix/stream`, `inet6/datagram`, `vsock/stream`... for messages.
pub fn kind_name(kind: SocketKind) -> String {
    let family = match kind.family {
        AddressFamily::UNIX => "unix",
        AddressFamily::INET => "inet",
        AddressFamily::INET6 => "inet6",
        AddressFamily::VSOCK => "vsock",
        _ => "other",
    };
    let socket_type = match kind.socket_type {
        SocketType::STREAM => "stream",
        SocketType::DGRAM => "datagram",
        SocketType::SEQPACKET => "seqpacket",
        _ => "other",
    };
    format!("{family}/{socket_type}")
}

/// The fd's local address, for messages.
pub fn describe(fd: impl AsFd) -> String {
    match rustix::net::getsockname(fd) {
        Ok(address) => match address.address_family() {
            AddressFamily::INET | AddressFamily::INET6 => std::net::SocketAddr::try_from(address)
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            AddressFamily::UNIX => rustix::net::SocketAddrUnix::try_from(address)
                .map(|a| match a.path() {
                    Some(path) => path.to_string_lossy().into_owned(),
                    None => "(unnamed or abstract)".into(),
                })
                .unwrap_or_else(|_| "?".into()),
            AddressFamily::VSOCK => "vsock".into(),
            family => format!("{family:?}"),
        },
        Err(e) => format!("? ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(family: AddressFamily, socket_type: SocketType, listening: bool) -> SocketKind {
        SocketKind {
            family,
            socket_type,
            listening,
        }
    }

    #[test]
    fn classifies_every_supported_socket() {
        for family in [
            AddressFamily::UNIX,
            AddressFamily::INET,
            AddressFamily::INET6,
            AddressFamily::VSOCK,
        ] {
            assert_eq!(
                classify(kind(family, SocketType::STREAM, true)),
                Ok(Role::Listener)
            );
            assert_eq!(
                classify(kind(family, SocketType::STREAM, false)),
                Ok(Role::Connection)
            );
            assert_eq!(
                classify(kind(family, SocketType::DGRAM, false)),
                Ok(Role::Datagram)
            );
        }
        assert!(classify(kind(AddressFamily::UNIX, SocketType::SEQPACKET, true)).is_err());
        assert!(classify(kind(AddressFamily::NETLINK, SocketType::DGRAM, false)).is_err());
    }

    /// The vsock path up to accept(): a real AF_VSOCK socket is classified and registered
    /// like any other (binding and connecting need vsock transports these machines lack; the
    /// integration tests pass a vsock listener through systemd-socket-activate).
    #[tokio::test]
    async fn a_vsock_socket_is_served_like_any_other() {
        let socket = match rustix::net::socket(AddressFamily::VSOCK, SocketType::STREAM, None) {
            Ok(socket) => socket,
            Err(e) => {
                eprintln!("SKIPPED: no AF_VSOCK sockets here ({e})");
                return;
            }
        };
        let kind = SocketKind::of(socket.as_fd()).expect("socket kind");
        assert_eq!(kind.family, AddressFamily::VSOCK);
        assert_eq!(classify(kind), Ok(Role::Connection));
        register(socket).expect("register with tokio");
    }

    #[test]
    fn recognizes_unbound_unix_senders() {
        let mut buffer = [0u8; 4];
        let dir = std::env::temp_dir().join(format!("localrpc-echo-unit-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let bound = std::os::unix::net::UnixDatagram::bind(&dir).expect("bind");
        let unbound = std::os::unix::net::UnixDatagram::unbound().expect("unbound");
        unbound.send_to(b"x", &dir).expect("send");
        let (_, _, sender) =
            rustix::net::recvfrom(&bound, &mut buffer[..], RecvFlags::TRUNC).expect("recv");
        let _ = std::fs::remove_file(&dir);
        assert!(sender.as_ref().is_none_or(is_unnamed_unix));
    }
}
