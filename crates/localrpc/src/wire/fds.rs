//! Ties file descriptors received with `SCM_RIGHTS` to the message they belong to.
//!
//! UAPI.20: descriptors travel with the first byte of their message. On Linux a read from a
//! stream socket returns at most one batch of descriptors (the kernel ends the read after the
//! segment that carried them), but the same read may also return bytes written before that
//! segment. So a receiver knows only the bytes a batch came with; it gives the batch to the
//! first message that starts among those bytes, as sd-varlink does. A batch that came with no
//! first byte of any message breaks the rule, and the connection cannot be trusted any more.
//!
//! Limitation (the kernel's, shared with sd-varlink): a message sent without descriptors and
//! still unread when the next one arrives with descriptors may be read together with it; the
//! descriptors then go to the earlier message. Senders avoid it by not queueing calls without
//! descriptors right before one with descriptors (a plain `call` or `call_with_fds` waits for
//! its reply, so only an unanswered `oneway` call can precede).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use super::search;

/// Most descriptors one `sendmsg` can carry on Linux (`SCM_MAX_FD`).
pub const SCM_MAX_FD: usize = 253;

/// Why received descriptors could not be tied to a message. The descriptors are closed and
/// the connection must be closed too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FdError {
    /// The descriptors came with bytes that hold no first byte of a message.
    #[error("{count} file descriptors arrived with no first byte of a message")]
    NotAtMessageStart {
        /// How many descriptors were closed.
        count: usize,
    },
    /// More descriptors are waiting for their messages than the connection may hold.
    #[error("{pending} file descriptors pending, more than the limit of {max}")]
    TooMany {
        /// Descriptors waiting, with the new batch.
        pending: usize,
        /// The limit.
        max: usize,
    },
}

/// Descriptors received but not yet handed out, each batch keyed by the stream offset of the
/// first byte of the message it belongs to.
#[derive(Debug)]
pub struct FdQueue {
    batches: VecDeque<(u64, Vec<OwnedFd>)>,
    pending: usize,
    max_pending: usize,
}

impl FdQueue {
    /// An empty queue that holds at most `max_pending` descriptors at once.
    pub fn new(max_pending: usize) -> Self {
        FdQueue {
            batches: VecDeque::new(),
            pending: 0,
            max_pending,
        }
    }

    /// Records the descriptors one read returned. `read_start` is the stream offset of the
    /// read's first byte, `bytes` what it returned and `at_boundary` whether the stream before
    /// `read_start` ends with a complete message (so `read_start` is a first byte). On error
    /// the descriptors are closed.
    pub fn record(
        &mut self,
        read_start: u64,
        at_boundary: bool,
        bytes: &[u8],
        fds: Vec<OwnedFd>,
    ) -> Result<(), FdError> {
        if fds.is_empty() {
            return Ok(());
        }
        let owner = if at_boundary {
            Some(read_start)
        } else {
            // The byte after a NUL starts a message, unless the NUL is the read's last byte.
            let inner = &bytes[..bytes.len().saturating_sub(1)];
            search::memchr(0, inner).map(|nul| read_start + nul as u64 + 1)
        };
        let Some(owner) = owner else {
            return Err(FdError::NotAtMessageStart { count: fds.len() });
        };
        let pending = self.pending + fds.len();
        if pending > self.max_pending {
            return Err(FdError::TooMany {
                pending,
                max: self.max_pending,
            });
        }
        self.pending = pending;
        self.batches.push_back((owner, fds));
        Ok(())
    }

    /// Takes the descriptors of the message that starts at stream offset `message_start`
    /// (empty when it came without any). Call it for every message, in order.
    pub fn take(&mut self, message_start: u64) -> Vec<OwnedFd> {
        let mut taken = Vec::new();
        while let Some((owner, _)) = self.batches.front() {
            if *owner > message_start {
                break;
            }
            let Some((owner, fds)) = self.batches.pop_front() else {
                break;
            };
            self.pending -= fds.len();
            if owner == message_start {
                taken.extend(fds);
            } else {
                // Unreachable when every message is taken in order; never leak them.
                tracing::warn!(
                    count = fds.len(),
                    "closing file descriptors whose message was skipped"
                );
            }
        }
        taken
    }

    /// Descriptors waiting for their messages.
    pub fn pending(&self) -> usize {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fds(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| rustix::io::dup(std::io::stderr()).expect("dup"))
            .collect()
    }

    #[test]
    fn a_batch_at_a_boundary_belongs_to_the_first_message_of_the_read() {
        let mut queue = FdQueue::new(10);
        queue.record(0, true, b"{}\0{}\0", fds(2)).unwrap();
        assert_eq!(queue.take(0).len(), 2);
        assert!(queue.take(3).is_empty());
        assert_eq!(queue.pending(), 0);
    }

    #[test]
    fn a_batch_read_mid_message_belongs_to_the_next_message_start() {
        let mut queue = FdQueue::new(10);
        // Stream: "abc\0de\0": the read starts at offset 2 ("c\0de\0").
        queue.record(2, false, b"c\0de\0", fds(1)).unwrap();
        assert!(queue.take(0).is_empty());
        assert_eq!(queue.take(4).len(), 1);
    }

    #[test]
    fn a_batch_with_no_message_start_is_refused() {
        let mut queue = FdQueue::new(10);
        assert_eq!(
            queue.record(2, false, b"cd\0", fds(3)),
            Err(FdError::NotAtMessageStart { count: 3 })
        );
        assert_eq!(
            queue.record(2, false, b"cd", fds(1)),
            Err(FdError::NotAtMessageStart { count: 1 })
        );
    }

    #[test]
    fn too_many_pending_is_refused() {
        let mut queue = FdQueue::new(3);
        queue.record(0, true, b"a", fds(2)).unwrap();
        assert_eq!(
            queue.record(1, false, b"a\0b", fds(2)),
            Err(FdError::TooMany { pending: 4, max: 3 })
        );
    }
}
