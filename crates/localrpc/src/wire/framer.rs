//! Splits a byte stream into NUL-terminated messages with a bounded buffer.
//!
//! Buffer policy (what keeps large calls linear and idle connections small):
//! - every read starts with at least [`READ_RESERVE`] bytes of spare room
//!   ([`Framer::reserve_for_read`]); a buffer that has to grow doubles, and a message already
//!   longer than one read grows straight to the size of the last large message seen, so a
//!   16 MiB message is not copied through a dozen doublings;
//! - messages can be handled in place ([`Framer::next_message_len`], then
//!   [`Framer::consume_message`]): nothing is copied out, and once the buffer is empty the
//!   next read starts again at the front of the same allocation, so a connection busy with
//!   large messages reuses one buffer instead of mapping and zeroing a new one per call;
//! - the owner frees the buffer when the connection goes idle ([`Framer::shrink_if_idle`]).

use bytes::{Buf, BytesMut};

use super::search;

/// Default bound for one message (the NUL excluded): 16 MiB, as sd-varlink uses.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Spare room every read starts with: the bytes asked of the kernel per read when nothing
/// larger is expected. A buffer no larger than this is what a connection with small
/// messages holds.
pub const READ_RESERVE: usize = 64 * 1024;

/// A message grew past the configured maximum before its NUL arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message exceeds the maximum size of {max} bytes")]
pub struct FrameTooLarge {
    /// The configured maximum message size.
    pub max: usize,
}

/// Accumulates bytes read from a stream and yields complete messages.
///
/// Bytes are appended with [`Framer::buffer_mut`] (e.g. by `AsyncReadExt::read_buf`, after
/// [`Framer::reserve_for_read`]); messages are taken with [`Framer::next_message`], or handled
/// in place with [`Framer::next_message_len`] and [`Framer::consume_message`]. Scanning is
/// incremental: each byte is searched for NUL once, however many reads a message takes.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    /// Bytes at the front of `buf` already known to contain no NUL.
    scanned: usize,
    max_message_size: usize,
    /// Stream offset of `buf[0]`: bytes taken out as messages (or by `take_buffered`) so far.
    position: u64,
    /// Length of the last message longer than [`READ_RESERVE`] (0: none yet): the size a
    /// buffer grows to at once when the next message turns out to be large too.
    large_message_hint: usize,
    /// Bytes were taken from the front of `buf` since it last started at the front of its
    /// allocation (only then can `rewind_if_empty` reclaim anything).
    front_consumed: bool,
}

impl Framer {
    /// A framer that rejects messages longer than `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Framer {
            buf: BytesMut::new(),
            scanned: 0,
            max_message_size,
            position: 0,
            large_message_hint: 0,
            front_consumed: false,
        }
    }

    /// Changes the largest accepted message; buffered bytes and stream offsets are kept.
    pub fn set_max_message_size(&mut self, max_message_size: usize) {
        self.max_message_size = max_message_size;
    }

    /// The stream offset of the first buffered byte: the number of bytes already taken out
    /// (as messages with their NULs, or by [`Framer::take_buffered`]). The next message
    /// starts here. File-descriptor passing uses it to tie received fds to a message.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The buffer to append newly read bytes to.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Takes everything still buffered (used when a connection is upgraded to a raw stream).
    pub fn take_buffered(&mut self) -> BytesMut {
        self.scanned = 0;
        self.front_consumed = true;
        self.position += self.buf.len() as u64;
        self.buf.split()
    }

    /// The next complete message without its NUL, if one is buffered, taken out of the buffer
    /// (without copying; the buffer's memory is shared until the message is dropped).
    ///
    /// Fails once the buffered partial message is longer than the maximum; the connection must
    /// then be closed, because the rest of the stream cannot be framed.
    pub fn next_message(&mut self) -> Result<Option<BytesMut>, FrameTooLarge> {
        let Some(len) = self.next_message_len()? else {
            return Ok(None);
        };
        let mut message = self.buf.split_to(len + 1);
        message.truncate(len);
        self.position += (len + 1) as u64;
        self.scanned = 0;
        self.front_consumed = true;
        Ok(Some(message))
    }

    /// The length (NUL excluded) of the next complete message, if one is buffered; the message
    /// stays in place at the front of [`Framer::buffered`] until [`Framer::consume_message`].
    /// Asking again before consuming returns the same length without scanning again.
    ///
    /// Fails like [`Framer::next_message`].
    pub fn next_message_len(&mut self) -> Result<Option<usize>, FrameTooLarge> {
        match search::memchr(0, &self.buf[self.scanned..]) {
            Some(offset) => {
                let len = self.scanned + offset;
                // The bytes before the NUL hold no other NUL.
                self.scanned = len;
                if len > self.max_message_size {
                    return Err(FrameTooLarge {
                        max: self.max_message_size,
                    });
                }
                if len > READ_RESERVE {
                    self.large_message_hint = len;
                }
                Ok(Some(len))
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_message_size {
                    return Err(FrameTooLarge {
                        max: self.max_message_size,
                    });
                }
                Ok(None)
            }
        }
    }

    /// Drops the message of `len` bytes that [`Framer::next_message_len`] returned, and its
    /// NUL, from the front of the buffer. When nothing is left the next read starts again at
    /// the front of the allocation.
    pub fn consume_message(&mut self, len: usize) {
        assert_eq!(
            self.buf.get(len),
            Some(&0),
            "consume_message: not the length of the next message"
        );
        self.buf.advance(len + 1);
        self.position += (len + 1) as u64;
        self.scanned = 0;
        self.front_consumed = true;
        self.rewind_if_empty();
    }

    /// Makes room to read into: at least [`READ_RESERVE`] bytes of spare capacity. Growing
    /// doubles the buffer, or, when the buffered message is already longer than one read and
    /// an earlier message was larger still, makes room for that earlier size at once.
    pub fn reserve_for_read(&mut self) {
        self.rewind_if_empty();
        let len = self.buf.len();
        if self.buf.capacity() - len >= READ_RESERVE {
            return;
        }
        let mut additional = READ_RESERVE;
        if len >= READ_RESERVE && self.large_message_hint >= len {
            // Room for the whole expected message, its NUL, and one read beyond.
            additional = self.large_message_hint - len + 1 + READ_RESERVE;
        }
        // `BytesMut` moves a short tail to the front when the consumed bytes before it are
        // at least as many (amortized), and otherwise at least doubles the allocation.
        self.buf.reserve(additional);
    }

    /// Bytes of memory the buffer holds: what is buffered plus the spare room.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Frees the buffer's memory when nothing is buffered and it holds more than `keep`
    /// bytes (keeps idle connections small).
    pub fn shrink_if_idle(&mut self, keep: usize) {
        self.rewind_if_empty();
        if self.buf.is_empty() && self.buf.capacity() > keep {
            self.buf = BytesMut::new();
            self.front_consumed = false;
        }
    }

    /// Takes the buffer's memory out when nothing is buffered and it holds exactly one read's
    /// room ([`READ_RESERVE`]), so another connection can read into it
    /// ([`Framer::adopt_buffer`]); `None` otherwise (nothing changes then).
    pub fn take_idle_buffer(&mut self) -> Option<BytesMut> {
        self.rewind_if_empty();
        if !self.buf.is_empty() || self.buf.capacity() != READ_RESERVE {
            return None;
        }
        Some(std::mem::take(&mut self.buf))
    }

    /// Reads into `buffer` (an empty one from [`Framer::take_idle_buffer`]) from now on,
    /// when this framer holds no memory; otherwise `buffer` is dropped.
    pub fn adopt_buffer(&mut self, mut buffer: BytesMut) {
        if self.buf.capacity() == 0 {
            buffer.clear();
            self.buf = buffer;
            self.front_consumed = false;
        }
    }

    /// With nothing buffered, moves the start back to the front of the allocation so all of
    /// it is usable again. Copies nothing and never allocates.
    fn rewind_if_empty(&mut self) {
        if self.front_consumed && self.buf.is_empty() {
            // Asking for one byte more than the current room reclaims the consumed bytes
            // before the start, if any (and this handle is the buffer's only user); otherwise
            // it does nothing.
            let room = self.buf.capacity();
            let _ = self.buf.try_reclaim(room + 1);
            self.front_consumed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut Framer, bytes: &[u8]) {
        framer.buffer_mut().extend_from_slice(bytes);
    }

    #[test]
    fn splits_messages_across_arbitrary_reads() {
        let stream = b"{\"a\":1}\0{\"b\":2}\0{\"c\"";
        for chunk in 1..stream.len() {
            let mut framer = Framer::new(64);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                feed(&mut framer, piece);
                while let Some(m) = framer.next_message().unwrap() {
                    got.push(m.to_vec());
                }
            }
            assert_eq!(
                got,
                vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()],
                "chunk {chunk}"
            );
            assert_eq!(framer.buffered(), b"{\"c\"");
        }
    }

    #[test]
    fn rejects_unterminated_message_over_limit() {
        let mut framer = Framer::new(8);
        feed(&mut framer, b"123456789");
        assert_eq!(framer.next_message(), Err(FrameTooLarge { max: 8 }));
    }

    #[test]
    fn accepts_message_at_limit_and_rejects_one_over() {
        let mut framer = Framer::new(4);
        feed(&mut framer, b"1234\0");
        assert_eq!(
            framer.next_message().unwrap().as_deref(),
            Some(&b"1234"[..])
        );
        feed(&mut framer, b"12345\0");
        assert!(framer.next_message().is_err());
    }

    #[test]
    fn position_counts_bytes_taken_out() {
        let mut framer = Framer::new(16);
        feed(&mut framer, b"ab\0cde\0f");
        assert_eq!(framer.position(), 0);
        framer.next_message().unwrap();
        assert_eq!(framer.position(), 3);
        framer.next_message().unwrap();
        assert_eq!(framer.position(), 7);
        assert_eq!(framer.next_message(), Ok(None));
        assert_eq!(framer.position(), 7);
        framer.take_buffered();
        assert_eq!(framer.position(), 8);
    }

    #[test]
    fn empty_message_is_a_message() {
        let mut framer = Framer::new(4);
        feed(&mut framer, b"\0");
        assert_eq!(framer.next_message().unwrap().as_deref(), Some(&b""[..]));
    }

    /// Reads `bytes` the way a connection does: room first, then at most what fits.
    fn read(framer: &mut Framer, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            framer.reserve_for_read();
            let room = framer.capacity() - framer.buffered().len();
            let n = room.min(bytes.len());
            framer.buffer_mut().extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
    }

    /// One message of `len` bytes and its NUL.
    fn message(len: usize) -> Vec<u8> {
        let mut bytes = vec![b'x'; len];
        bytes.push(0);
        bytes
    }

    #[test]
    fn in_place_messages_match_taken_ones() {
        let stream = b"{\"a\":1}\0\0{\"b\":2}\0{\"c\"";
        let mut taken = Framer::new(64);
        let mut in_place = Framer::new(64);
        feed(&mut taken, stream);
        feed(&mut in_place, stream);
        loop {
            let expected = taken.next_message().unwrap();
            let len = in_place.next_message_len().unwrap();
            // Asking again before consuming gives the same message.
            assert_eq!(in_place.next_message_len().unwrap(), len);
            match (expected, len) {
                (Some(expected), Some(len)) => {
                    assert_eq!(&in_place.buffered()[..len], &expected[..]);
                    in_place.consume_message(len);
                    assert_eq!(in_place.position(), taken.position());
                }
                (None, None) => break,
                other => panic!("framers disagree: {other:?}"),
            }
        }
        assert_eq!(in_place.buffered(), b"{\"c\"");
    }

    #[test]
    fn in_place_message_over_the_limit_is_refused() {
        let mut framer = Framer::new(4);
        feed(&mut framer, b"12345\0");
        assert_eq!(framer.next_message_len(), Err(FrameTooLarge { max: 4 }));
    }

    #[test]
    #[should_panic(expected = "not the length of the next message")]
    fn consuming_a_wrong_length_panics() {
        let mut framer = Framer::new(16);
        feed(&mut framer, b"abc\0");
        framer.consume_message(2);
    }

    #[test]
    fn a_small_message_leaves_exactly_one_read_of_room() {
        // What `server::connection` counts on: a connection with small messages never holds
        // more than READ_RESERVE, so it frees its buffer at once when idle (no timer).
        let mut framer = Framer::new(DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(framer.capacity(), 0);
        read(&mut framer, &message(100));
        assert_eq!(framer.capacity(), READ_RESERVE);
        let len = framer.next_message_len().unwrap().unwrap();
        framer.consume_message(len);
        assert_eq!(framer.capacity(), READ_RESERVE);
        framer.shrink_if_idle(0);
        assert_eq!(framer.capacity(), 0);
        // Nothing to reclaim in an empty framer: rewinding allocates nothing.
        framer.shrink_if_idle(0);
        assert_eq!(framer.capacity(), 0);
    }

    #[test]
    fn a_busy_buffer_is_reused_for_the_next_large_message() {
        let size = 3 * 1024 * 1024 + 17;
        let mut framer = Framer::new(DEFAULT_MAX_MESSAGE_SIZE);
        read(&mut framer, &message(size));
        let len = framer.next_message_len().unwrap().unwrap();
        assert_eq!(len, size);
        let start = framer.buffered().as_ptr();
        framer.consume_message(len);
        // Kept (until the connection frees it when idle), and rewound to its front.
        let capacity = framer.capacity();
        assert!(capacity > size, "{capacity} <= {size}");
        framer.reserve_for_read();
        assert_eq!(framer.capacity(), capacity);
        assert_eq!(framer.buffer_mut().as_ptr(), start);
        // The same size again: read into the same allocation, no growth, no copy.
        for _ in 0..3 {
            read(&mut framer, &message(size));
            assert_eq!(framer.capacity(), capacity);
            assert_eq!(framer.buffered().as_ptr(), start);
            let len = framer.next_message_len().unwrap().unwrap();
            framer.consume_message(len);
        }
        // Idle: freed when asked.
        framer.shrink_if_idle(0);
        assert_eq!(framer.capacity(), 0);
    }

    #[test]
    fn a_large_message_grows_the_buffer_at_once_to_the_last_large_size() {
        let size = 2 * 1024 * 1024;
        let mut framer = Framer::new(DEFAULT_MAX_MESSAGE_SIZE);
        read(&mut framer, &message(size));
        let len = framer.next_message_len().unwrap().unwrap();
        framer.consume_message(len);
        framer.shrink_if_idle(0);
        // The next message starts with one read of room, as any other.
        framer.reserve_for_read();
        assert_eq!(framer.capacity(), READ_RESERVE);
        feed(&mut framer, &vec![b'x'; READ_RESERVE]);
        // Longer than one read: room for the whole expected size in one step.
        framer.reserve_for_read();
        assert!(framer.capacity() > size, "{}", framer.capacity());
        let capacity = framer.capacity();
        read(&mut framer, &message(size)[READ_RESERVE..]);
        assert_eq!(framer.capacity(), capacity, "grew again");
        assert_eq!(framer.next_message_len().unwrap(), Some(size));
    }

    #[test]
    fn growth_without_a_hint_doubles() {
        let mut framer = Framer::new(DEFAULT_MAX_MESSAGE_SIZE);
        let mut capacities = vec![];
        let mut bytes = message(1024 * 1024);
        bytes.pop();
        for chunk in bytes.chunks(READ_RESERVE) {
            framer.reserve_for_read();
            if capacities.last() != Some(&framer.capacity()) {
                capacities.push(framer.capacity());
            }
            feed(&mut framer, chunk);
        }
        // 64 KiB, 128 KiB, ..., 1 MiB: geometric, not in 64 KiB steps.
        assert!(capacities.len() <= 6, "{capacities:?}");
        assert_eq!(framer.next_message_len(), Ok(None));
    }

    #[test]
    fn only_an_empty_buffer_of_one_read_is_lent_out() {
        let mut framer = Framer::new(1 << 20);
        // Nothing held: nothing to lend.
        assert!(framer.take_idle_buffer().is_none());
        read(&mut framer, b"{}\0{");
        let len = framer.next_message_len().unwrap().unwrap();
        framer.consume_message(len);
        // A partial message stays where it is.
        assert!(framer.take_idle_buffer().is_none());
        assert_eq!(framer.buffered(), b"{");
        let mut framer = Framer::new(1 << 20);
        read(&mut framer, b"{}\0");
        let len = framer.next_message_len().unwrap().unwrap();
        framer.consume_message(len);
        let lent = framer
            .take_idle_buffer()
            .expect("an idle buffer of one read");
        assert_eq!((lent.len(), lent.capacity()), (0, READ_RESERVE));
        assert_eq!(framer.capacity(), 0);
        // Another framer reads into it; one that holds a buffer already keeps its own.
        let mut other = Framer::new(1 << 20);
        other.adopt_buffer(lent);
        assert_eq!(other.capacity(), READ_RESERVE);
        read(&mut other, b"{\"a\":1}\0");
        assert_eq!(other.next_message().unwrap().unwrap(), &b"{\"a\":1}"[..]);
        let held = other.capacity();
        other.adopt_buffer(BytesMut::with_capacity(8));
        assert_eq!(other.capacity(), held);
    }

    #[test]
    fn a_partial_message_after_a_consumed_one_is_kept() {
        let mut framer = Framer::new(DEFAULT_MAX_MESSAGE_SIZE);
        let mut bytes = message(200_000);
        bytes.extend_from_slice(b"{\"next\"");
        read(&mut framer, &bytes);
        let len = framer.next_message_len().unwrap().unwrap();
        framer.consume_message(len);
        framer.reserve_for_read();
        assert_eq!(framer.buffered(), b"{\"next\"");
        read(&mut framer, b":1}\0");
        let len = framer.next_message_len().unwrap().unwrap();
        assert_eq!(&framer.buffered()[..len], b"{\"next\":1}");
        assert_eq!(framer.position(), 200_001);
    }
}
