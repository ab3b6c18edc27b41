//! Peeked reads: a client that makes one call at a time has its calls read with `MSG_PEEK`
//! and taken off the socket later, in bulk, instead of at once.
//!
//! Why: on a Unix stream socket the sender's memory is freed when the receiver takes the
//! bytes off the queue, and that calls `unix_write_space` on the sender's socket, which wakes
//! every thread sleeping there, including one blocked in `recv` waiting for its reply (the
//! kernel's stream wait does not filter wake-ups by event). A blocking client (one thread per
//! connection, as lrpc-load, Python's varlink or a raw socket) is therefore woken twice per
//! call: when the server reads the call, and by the reply. The first wake-up finds nothing
//! to read; on this kernel it also preempts the server at the return of its `recv`, so the
//! client runs, sleeps again, and the reply has to wake it a second time
//! (`docs/PERFORMANCE.md`, fourth and ninth rounds). Consuming a call right before its reply
//! does not help for the same reason. Peeking wakes nobody; the bytes are taken off later:
//! - when a read finds nothing (the client is then between its reply and its next call,
//!   awake, so taking its bytes wakes no one), and before any wait for input;
//! - after [`MAX_READS`] peeked reads or [`MAX_BYTES`] bytes, so the client's send buffer
//!   never fills with calls already answered (one wake-up per [`MAX_READS`] calls);
//! - before a write has to wait for room (the client may be blocked sending), before
//!   sequential mode and before an upgrade (which then read without peeking);
//! - at once when the peeked bytes end inside a message (a large message is read as usual).
//!
//! `SO_PEEK_OFF` makes each peek start after the bytes already peeked, and a plain `recv`
//! moves it back, so the queue and the framer stay in step. Only Unix stream connections
//! that do not take file descriptors peek (descriptors are received with the bytes that
//! carry them), and only after a read that brought exactly one call: pipelining clients,
//! whose reads bring many, read as before and pay no extra `recv`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UnixStream;

use crate::wire::Framer;

/// Peeked reads after which the bytes are taken off the socket.
const MAX_READS: u8 = 16;
/// Peeked bytes after which they are taken off the socket (also the scratch buffer's size).
const MAX_BYTES: usize = 4096;

/// What a connection has peeked and not yet taken off its socket.
#[derive(Debug, Default)]
pub(super) struct Peeked {
    /// `SO_PEEK_OFF` is set on the socket.
    offset_on: bool,
    /// The socket refused `SO_PEEK_OFF` (a kernel without it for Unix stream sockets, or a
    /// security module): this connection reads without peeking.
    unsupported: bool,
    /// Peeked reads since the bytes were last taken off.
    reads: u8,
    /// Bytes peeked and still in the socket's queue.
    bytes: usize,
}

impl Peeked {
    /// False once the socket refused `SO_PEEK_OFF`: reads then take the bytes at once.
    pub(super) fn is_supported(&self) -> bool {
        !self.unsupported
    }

    /// True when every byte read has been taken off the socket.
    pub(super) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Peeks what the socket has into `framer`: the byte count (0 at end of file). Takes the
    /// bytes off at once when they end inside a message or the limits are reached; on
    /// `WouldBlock` takes off everything peeked, so the caller may wait.
    pub(super) fn read(&mut self, stream: &UnixStream, framer: &mut Framer) -> io::Result<usize> {
        if !self.offset_on {
            if let Err(e) = set_peek_offset(stream, 0) {
                // Without the offset every peek would start at the queue's head again.
                tracing::debug!("SO_PEEK_OFF refused ({e}); reading without peeking");
                self.unsupported = true;
                return stream.try_read_buf(framer.buffer_mut());
            }
            self.offset_on = true;
        }
        let n = match stream.try_io(Interest::READABLE, || peek_into(stream, framer)) {
            Ok(n) => n,
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.consume(stream)?;
                }
                return Err(e);
            }
        };
        self.bytes += n;
        self.reads += 1;
        if framer.buffered().last() != Some(&0)
            || self.bytes >= MAX_BYTES
            || self.reads >= MAX_READS
        {
            self.consume(stream)?;
        }
        Ok(n)
    }

    /// Takes every peeked byte off the socket.
    pub(super) fn consume(&mut self, stream: &UnixStream) -> io::Result<()> {
        let mut left = self.bytes;
        self.bytes = 0;
        self.reads = 0;
        let mut scratch = [MaybeUninit::<u8>::uninit(); MAX_BYTES];
        while left > 0 {
            let len = left.min(scratch.len());
            match rustix::net::recv(
                stream,
                &mut scratch[..len],
                rustix::net::RecvFlags::DONTWAIT,
            ) {
                Ok(((read, _), _)) if !read.is_empty() => left -= read.len(),
                Ok(_) => return Err(io::Error::other("peeked bytes left the socket")),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Takes every peeked byte off the socket and turns the peek offset off, for a stream
    /// that moves on to code that reads it on its own.
    pub(super) fn stop(&mut self, stream: &UnixStream) -> io::Result<()> {
        self.consume(stream)?;
        if self.offset_on {
            self.offset_on = false;
            set_peek_offset(stream, -1)?;
        }
        Ok(())
    }
}

/// Peeks into the framer's free capacity (`MSG_PEEK`, from the peek offset).
fn peek_into(stream: &UnixStream, framer: &mut Framer) -> io::Result<usize> {
    super::sequential::recv_into(
        stream,
        framer,
        rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
    )
}

/// Sets `SO_PEEK_OFF` (-1 turns it off).
fn set_peek_offset(stream: &UnixStream, offset: libc::c_int) -> io::Result<()> {
    // SAFETY: neither rustix nor socket2 has SO_PEEK_OFF. The fd is the stream's, open for
    // the call's duration; the option value points at a live c_int whose size is passed.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&raw const offset).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Bytes the kernel still holds in `stream`'s receive queue.
    fn queued(stream: &UnixStream) -> u64 {
        rustix::io::ioctl_fionread(stream).expect("FIONREAD")
    }

    async fn send_and_wait(client: &mut UnixStream, server: &UnixStream, bytes: &[u8]) {
        client.write_all(bytes).await.expect("write");
        server.readable().await.expect("readable");
    }

    #[tokio::test]
    async fn peeked_calls_stay_queued_until_taken_off_and_are_read_once() {
        let (server, mut client) = UnixStream::pair().expect("socket pair");
        let mut framer = Framer::new(crate::wire::DEFAULT_MAX_MESSAGE_SIZE);
        let mut peeked = Peeked::default();

        send_and_wait(&mut client, &server, b"{\"a\":1}\0").await;
        framer.reserve_for_read();
        assert_eq!(peeked.read(&server, &mut framer).expect("peek"), 8);
        // Read, but still in the kernel's queue: taking it off would wake a blocked client.
        assert_eq!(queued(&server), 8);

        // The next peek starts after the bytes already peeked (SO_PEEK_OFF).
        send_and_wait(&mut client, &server, b"{\"b\":2}\0").await;
        framer.reserve_for_read();
        assert_eq!(peeked.read(&server, &mut framer).expect("peek"), 8);
        assert_eq!(framer.buffered(), b"{\"a\":1}\0{\"b\":2}\0");
        assert_eq!(queued(&server), 16);

        // A read that finds nothing takes everything peeked off the socket.
        framer.reserve_for_read();
        let nothing = peeked
            .read(&server, &mut framer)
            .expect_err("nothing to read");
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        assert!(peeked.is_empty());
        assert_eq!(queued(&server), 0);

        // A peek that ends inside a message takes the bytes off at once.
        send_and_wait(&mut client, &server, b"{\"c\":").await;
        framer.reserve_for_read();
        assert_eq!(peeked.read(&server, &mut framer).expect("peek"), 5);
        assert!(peeked.is_empty());
        assert_eq!(queued(&server), 0);

        // Turned off, reads take the bytes as usual, and nothing is read twice.
        peeked.stop(&server).expect("stop");
        send_and_wait(&mut client, &server, b"3}\0").await;
        framer.reserve_for_read();
        let n = server.try_read_buf(framer.buffer_mut()).expect("read");
        assert_eq!(n, 3);
        assert_eq!(queued(&server), 0);
        assert_eq!(framer.buffered(), b"{\"a\":1}\0{\"b\":2}\0{\"c\":3}\0");
    }
}
