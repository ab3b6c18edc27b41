//! A connected byte stream (Unix or TCP) and how clients open one.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;
use tokio::net::{TcpStream, UnixStream};

use super::address::Address;
use crate::service::PeerCredentials;

/// A connected stream socket.
#[derive(Debug)]
pub enum Stream {
    /// AF_UNIX, SOCK_STREAM.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
    /// A pair of pipes, e.g. stdin and stdout of a program run through `ssh-exec:` with
    /// `SYSTEMD_VARLINK_LISTEN=-`.
    Pipes {
        /// Where bytes come from.
        read: pipe::Receiver,
        /// Where bytes go.
        write: pipe::Sender,
    },
}

impl Stream {
    /// Connects to `address`. Exec and ssh addresses start a child process that lives as long
    /// as the returned stream (see `transport/exec.rs`).
    pub async fn connect(address: &Address) -> io::Result<Stream> {
        match address {
            Address::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            Address::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                let std_stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
                std_stream.set_nonblocking(true)?;
                Ok(Stream::Unix(UnixStream::from_std(std_stream)?))
            }
            Address::Tcp(hostport) => {
                let stream = TcpStream::connect(hostport.as_str()).await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            Address::Exec(_) | Address::SshUnix { .. } | Address::SshExec { .. } => {
                super::exec::connect(address).await
            }
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{other}: this address type is not supported here"),
            )),
        }
    }

    /// This process's stdin and stdout as one stream: the socket itself when stdin is a
    /// socket, otherwise the two pipes (or files that support non-blocking I/O).
    pub fn from_stdio() -> io::Result<Stream> {
        let stdin = rustix::io::dup(std::io::stdin())?;
        if rustix::net::sockopt::socket_type(&stdin).is_ok() {
            let std_stream = std::os::unix::net::UnixStream::from(stdin);
            std_stream.set_nonblocking(true)?;
            return Ok(Stream::Unix(UnixStream::from_std(std_stream)?));
        }
        let stdout = rustix::io::dup(std::io::stdout())?;
        Ok(Stream::Pipes {
            read: pipe::Receiver::from_owned_fd(stdin)?,
            write: pipe::Sender::from_owned_fd(stdout)?,
        })
    }

    /// Waits until the stream is readable (data, EOF or an error is pending).
    ///
    /// Only one task may wait at a time (the stream's single read waker slot): cheaper than
    /// tokio's `readable()`, whose waiter list takes its lock twice per wait.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| match self {
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Pipes { read, .. } => read.poll_read_ready(cx),
        })
        .await
    }

    /// Reads what is available without waiting; `WouldBlock` when nothing is.
    pub fn try_read_buf(&self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.try_read_buf(buf),
            Stream::Tcp(s) => s.try_read_buf(buf),
            Stream::Pipes { read, .. } => read.try_read_buf(buf),
        }
    }

    /// Writes what fits without waiting; `WouldBlock` when nothing does (or tokio does not
    /// know the stream to be writable yet).
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.try_write(bytes),
            Stream::Tcp(s) => s.try_write(bytes),
            Stream::Pipes { write, .. } => write.try_write(bytes),
        }
    }

    /// True for Unix sockets, the only streams that can carry file descriptors.
    pub fn can_pass_fds(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    /// A pidfd for the peer process (SO_PEERPIDFD), on Unix sockets where the kernel has it
    /// (Linux 6.5+); `None` otherwise, or when no fd can be allocated.
    pub fn peer_pidfd(&self) -> Option<OwnedFd> {
        match self {
            Stream::Unix(s) => peer_pidfd(s.as_fd()),
            Stream::Tcp(_) | Stream::Pipes { .. } => None,
        }
    }

    /// The socket's fd, on Unix sockets (for [`crate::service::PeerPidfd`]).
    pub(crate) fn unix_socket_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Stream::Unix(s) => Some(s.as_fd()),
            Stream::Tcp(_) | Stream::Pipes { .. } => None,
        }
    }

    /// The peer's credentials, on Unix sockets.
    pub fn peer_credentials(&self) -> Option<PeerCredentials> {
        match self {
            Stream::Unix(s) => s.peer_cred().ok().map(|c| PeerCredentials {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
            }),
            Stream::Tcp(_) | Stream::Pipes { .. } => None,
        }
    }
}

/// `getsockopt(SO_PEERPIDFD)`, by hand because rustix does not wrap this option yet.
pub(crate) fn peer_pidfd(socket: BorrowedFd<'_>) -> Option<OwnedFd> {
    /// From linux/asm-generic/socket.h.
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut pidfd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `socket` is an open fd; the out-pointers name a c_int and its length.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&mut pidfd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    (result == 0 && pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) })
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Pipes { read, .. } => Pin::new(read).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Pipes { write, .. } => Pin::new(write).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Pipes { write, .. } => Pin::new(write).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Pipes { write, .. } => Pin::new(write).poll_shutdown(cx),
        }
    }
}
