//! Splits a byte stream into NUL-terminated messages with a bounded buffer.

use bytes::BytesMut;

/// Default bound for one message (the NUL excluded): 16 MiB, as sd-varlink uses.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// A message grew past the configured maximum before its NUL arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message exceeds the maximum size of {max} bytes")]
pub struct FrameTooLarge {
    /// The configured maximum message size.
    pub max: usize,
}

/// Accumulates bytes read from a stream and yields complete messages.
///
/// Bytes are appended with [`Framer::buffer_mut`] (e.g. by `AsyncReadExt::read_buf`); messages
/// are taken with [`Framer::next_message`]. Scanning is incremental: each byte is searched for
/// NUL once, however many reads a message takes.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    /// Bytes at the front of `buf` already known to contain no NUL.
    scanned: usize,
    max_message_size: usize,
    /// Stream offset of `buf[0]`: bytes taken out as messages (or by `take_buffered`) so far.
    position: u64,
}

impl Framer {
    /// A framer that rejects messages longer than `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Framer {
            buf: BytesMut::new(),
            scanned: 0,
            max_message_size,
            position: 0,
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
        self.position += self.buf.len() as u64;
        self.buf.split()
    }

    /// The next complete message without its NUL, if one is buffered.
    ///
    /// Fails once the buffered partial message is longer than the maximum; the connection must
    /// then be closed, because the rest of the stream cannot be framed.
    pub fn next_message(&mut self) -> Result<Option<BytesMut>, FrameTooLarge> {
        match memchr::memchr(0, &self.buf[self.scanned..]) {
            Some(offset) => {
                let end = self.scanned + offset;
                self.scanned = 0;
                if end > self.max_message_size {
                    return Err(FrameTooLarge {
                        max: self.max_message_size,
                    });
                }
                let mut message = self.buf.split_to(end + 1);
                self.position += (end + 1) as u64;
                message.truncate(end);
                Ok(Some(message))
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

    /// Frees the buffer's memory when nothing is buffered (keeps idle connections small).
    pub fn shrink_if_idle(&mut self, keep: usize) {
        if self.buf.is_empty() && self.buf.capacity() > keep {
            self.buf = BytesMut::new();
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
}
