//! Reading and writing with file descriptors (`SCM_RIGHTS`) on Unix sockets.
//!
//! [`FdReceiver`] reads with `recvmsg` into a [`Framer`] and remembers which message each
//! received batch of descriptors belongs to (see [`FdQueue`]); [`write_all_with_fds`] writes a
//! buffer of messages, each batch of descriptors with the first byte of its message. Both are
//! used only where descriptor passing was asked for: everywhere else the plain `read`/`write`
//! paths stay as they are (and the kernel discards descriptors a peer sends to them).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::{AsyncWriteExt, Interest};

use super::Stream;
use crate::wire::{FdQueue, Framer, SCM_MAX_FD};

/// Bytes asked of the kernel per `recvmsg` (the buffer is zeroed first: `recvmsg` takes
/// initialized memory).
const READ_SIZE: usize = 64 * 1024;

/// What one [`FdReceiver::try_read`] did.
#[derive(Debug)]
pub enum Received {
    /// Bytes were appended to the framer (descriptors, if any, are queued).
    Bytes(usize),
    /// The peer closed its end.
    Eof,
    /// The descriptors broke the rules (truncated by the kernel, not with the first byte of a
    /// message, too many): they are closed; the connection must be closed, because which
    /// message later descriptors belong to can no longer be known.
    Refused(String),
}

/// Reads a Unix socket with `recvmsg`, keeping received descriptors with their messages.
#[derive(Debug)]
pub struct FdReceiver {
    /// Room for the ancillary data plus alignment padding; `control_range` is the aligned
    /// part, exactly as large as `max_per_read` descriptors need, so that one more makes the
    /// kernel truncate (a larger buffer would quietly take them).
    control: Vec<MaybeUninit<u8>>,
    control_range: std::ops::Range<usize>,
    queue: FdQueue,
}

impl FdReceiver {
    /// A receiver whose ancillary buffer holds `max_per_read` descriptors (at most
    /// [`SCM_MAX_FD`], what one `sendmsg` can carry); a read that brings more is truncated by
    /// the kernel (`MSG_CTRUNC`) and refused. At most `max_pending` descriptors wait for their
    /// messages at once.
    pub fn new(max_per_read: usize, max_pending: usize) -> Self {
        let per_read = max_per_read.clamp(1, SCM_MAX_FD);
        // `cmsg_space!` adds room to align the buffer for a `cmsghdr`; align it here and keep
        // the exact size, since rustix would hand the kernel the whole rest of the buffer.
        let control = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(per_read))];
        let start = control
            .as_ptr()
            .align_offset(std::mem::align_of::<libc::cmsghdr>());
        // CMSG_LEN, not CMSG_SPACE: the kernel fits (length - header) / 4 descriptors, and
        // CMSG_SPACE's rounding would leave room for one more when `per_read` is odd.
        let exact = std::mem::size_of::<libc::cmsghdr>() + per_read * std::mem::size_of::<i32>();
        let control_range = start..start + exact;
        FdReceiver {
            control,
            control_range,
            queue: FdQueue::new(max_pending),
        }
    }

    /// Reads once without waiting (`WouldBlock` when nothing is there) and appends the bytes
    /// to `framer`. `Unsupported` unless `stream` is a Unix socket.
    pub fn try_read(&mut self, stream: &Stream, framer: &mut Framer) -> io::Result<Received> {
        let read_start = framer.position() + framer.buffered().len() as u64;
        let at_boundary = framer.buffered().last().is_none_or(|&byte| byte == 0);
        let buffer = framer.buffer_mut();
        let before = buffer.len();
        buffer.resize(before + READ_SIZE, 0);
        let control = &mut self.control[self.control_range.clone()];
        let result = recv_with_fds(stream, &mut buffer[before..], control);
        let (bytes, fds, truncated) = match result {
            Ok(received) => received,
            Err(e) => {
                buffer.truncate(before);
                return Err(e);
            }
        };
        buffer.truncate(before + bytes);
        if truncated {
            let count = fds.len();
            drop(fds);
            return Ok(Received::Refused(format!(
                "the kernel truncated the file descriptors sent with a message (MSG_CTRUNC: more \
                 than the limit, or no descriptor left here); closed the {count} that arrived"
            )));
        }
        if bytes == 0 {
            return Ok(Received::Eof);
        }
        match self
            .queue
            .record(read_start, at_boundary, &buffer[before..], fds)
        {
            Ok(()) => Ok(Received::Bytes(bytes)),
            Err(refused) => Ok(Received::Refused(format!("{refused} (closed them)"))),
        }
    }

    /// The descriptors of the message that starts at stream offset `message_start` (take
    /// them for every message the framer yields, in order; `Framer::position` before
    /// `next_message` is that offset).
    pub fn take(&mut self, message_start: u64) -> Vec<OwnedFd> {
        self.queue.take(message_start)
    }
}

/// One `recvmsg` (`MSG_CMSG_CLOEXEC`): bytes read, descriptors, and whether `MSG_CTRUNC` was
/// set.
fn recv_with_fds(
    stream: &Stream,
    buf: &mut [u8],
    control: &mut [MaybeUninit<u8>],
) -> io::Result<(usize, Vec<OwnedFd>, bool)> {
    let Stream::Unix(socket) = stream else {
        return Err(not_unix());
    };
    socket.try_io(Interest::READABLE, || {
        let mut ancillary = RecvAncillaryBuffer::new(control);
        let message = rustix::net::recvmsg(
            socket,
            &mut [io::IoSliceMut::new(buf)],
            &mut ancillary,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        )?;
        let mut fds = Vec::new();
        for item in ancillary.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = item {
                fds.extend(received);
            }
        }
        let truncated = message.flags.contains(ReturnFlags::CTRUNC);
        Ok((message.bytes, fds, truncated))
    })
}

fn not_unix() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "file descriptors can only be passed over Unix sockets",
    )
}

/// Sends `bytes` with `fds` attached to the first byte (`sendmsg` with `SCM_RIGHTS`), waiting
/// until the socket is writable. Returns how many bytes went out (at least one): the
/// descriptors went with them, duplicated into the peer; the caller still owns its own.
pub async fn send_with_fds(stream: &Stream, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
    let Stream::Unix(socket) = stream else {
        return Err(not_unix());
    };
    if fds.len() > SCM_MAX_FD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} file descriptors with one message; at most {SCM_MAX_FD} can be passed",
                fds.len()
            ),
        ));
    }
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file descriptors need at least one byte to travel with",
        ));
    }
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(borrowed.len()))];
    socket
        .async_io(Interest::WRITABLE, || {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
                return Err(io::Error::other("ancillary buffer too small"));
            }
            let sent = rustix::net::sendmsg(
                socket,
                &[io::IoSlice::new(bytes)],
                &mut control,
                SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
            )?;
            Ok(sent)
        })
        .await
}

/// Writes all of `bytes`; each `(offset, fds)` of `fds` (ascending offsets, each the first
/// byte of a message) goes with the byte at `offset`: plain writes up to it, then one
/// `sendmsg` from it to the next offset (or the end), and so on. The descriptors are closed
/// once sent (the peer has its own copies) or when writing fails.
pub async fn write_all_with_fds(
    stream: &mut Stream,
    bytes: &[u8],
    fds: Vec<(usize, Vec<OwnedFd>)>,
) -> io::Result<()> {
    let mut written = 0;
    let mut batches = fds.into_iter().peekable();
    while let Some((offset, batch)) = batches.next() {
        if offset < written || offset >= bytes.len() {
            return Err(io::Error::other(
                "file descriptors not attached to the first byte of a queued message",
            ));
        }
        stream.write_all(&bytes[written..offset]).await?;
        let end = batches.peek().map_or(bytes.len(), |(next, _)| *next);
        let sent = send_with_fds(stream, &bytes[offset..end], &batch).await?;
        written = offset + sent;
    }
    stream.write_all(&bytes[written..]).await
}
