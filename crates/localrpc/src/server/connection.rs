//! One connection's life: read, dispatch each complete call in order, write once per batch.
//!
//! Bounded in every direction: the read buffer by the message size limit, the reply buffer
//! by `max_queued_output` (beyond it replies are written out mid-batch), every write by
//! `write_timeout`, a partly received message by `message_timeout`, and an idle connection by
//! `idle_timeout` and by the server draining.
//!
//! File descriptors: only when the service has a method that accepts them and the stream is
//! a Unix socket does a connection read with `recvmsg` (see `transport::FdReceiver`); then each
//! message's descriptors go to its call. Replies carrying descriptors are written with them at
//! their first byte. Otherwise reads and writes are the plain ones.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{ServerConfig, ServerStats};
use crate::service::{BoxFuture, Dispatched, Output, Peer, Service, UpgradeHandler};
use crate::transport::{FdReceiver, Received, Stream, UpgradedStream, write_all_with_fds};
use crate::wire::Framer;

/// Bytes asked of the kernel per read.
const READ_SIZE: usize = 64 * 1024;
/// Output buffers larger than this are freed after being written out.
const KEEP_OUTPUT_CAPACITY: usize = 64 * 1024;
/// Bytes a connection may read before it yields to the runtime. While a socket stays
/// readable, tokio's cooperative budget (128 operations) lets one poll read ~25 MiB; the
/// worker polls no I/O meanwhile, so other connections' calls wait tens of milliseconds.
const YIELD_AFTER_BYTES: usize = 1024 * 1024;

/// The write side of a connection: replies accumulate in `pending` and go out in one write.
struct ConnectionOutput {
    stream: Stream,
    pending: Vec<u8>,
    /// Descriptors to pass with the reply starting at each offset of `pending`, ascending.
    pending_fds: Vec<(usize, Vec<OwnedFd>)>,
    write_timeout: Duration,
}

impl ConnectionOutput {
    /// Writes everything pending; fails with `TimedOut` when the peer stops reading.
    async fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let fds = std::mem::take(&mut self.pending_fds);
        let write = async {
            if fds.is_empty() {
                self.stream.write_all(&self.pending).await
            } else {
                write_all_with_fds(&mut self.stream, &self.pending, fds).await
            }
        };
        let result = match tokio::time::timeout(self.write_timeout, write).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer is not reading its replies",
            )),
        };
        self.pending.clear();
        if self.pending.capacity() > KEEP_OUTPUT_CAPACITY {
            self.pending = Vec::new();
        }
        result
    }
}

impl Output for ConnectionOutput {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    fn flush(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(self.write_pending())
    }

    fn attach_fds(&mut self, offset: usize, fds: Vec<OwnedFd>) -> io::Result<()> {
        if !self.stream.can_pass_fds() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "file descriptors can only be passed over Unix sockets",
            ));
        }
        if fds.len() > crate::wire::SCM_MAX_FD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} file descriptors with one reply; at most {} can be passed",
                    fds.len(),
                    crate::wire::SCM_MAX_FD
                ),
            ));
        }
        if !fds.is_empty() {
            self.pending_fds.push((offset, fds));
        }
        Ok(())
    }
}

/// The read side of a connection: the framer, and the descriptor receiver when the
/// connection reads with `recvmsg` (the service accepts fds and the stream is a Unix socket).
struct Input {
    framer: Framer,
    fds: Option<FdReceiver>,
}

/// Why a connection ended, for the log.
enum End {
    PeerClosed,
    /// The server is draining and this connection had nothing left to answer.
    Drained,
    Closed(&'static str, String),
    /// The confirmation is written; the raw stream goes to this handler.
    Upgrade(UpgradeHandler),
}

/// What the next read produced.
enum Read {
    Bytes,
    Eof,
    Drained,
    /// File descriptors broke the rules (they are closed); close the connection.
    FdsRefused(String),
}

pub(super) async fn run(
    service: &Service,
    config: &ServerConfig,
    stats: &ServerStats,
    mut draining: watch::Receiver<bool>,
    stream: Stream,
    peer: Peer,
) {
    let mut input = Input {
        framer: Framer::new(config.max_message_size),
        fds: (service.accepts_fds() && stream.can_pass_fds())
            .then(|| FdReceiver::new(config.max_fds_per_message, 2 * config.max_fds_per_message)),
    };
    let mut output = ConnectionOutput {
        stream,
        pending: Vec::new(),
        pending_fds: Vec::new(),
        write_timeout: config.write_timeout,
    };
    match serve(
        service,
        config,
        stats,
        &mut input,
        &mut output,
        &mut draining,
        &peer,
    )
    .await
    {
        End::PeerClosed => tracing::trace!(peer = ?peer.credentials, "connection finished"),
        End::Drained => {
            tracing::debug!(peer = ?peer.credentials, "connection closed: the server is stopping")
        }
        End::Upgrade(handler) => {
            let raw = UpgradedStream::new(input.framer.take_buffered(), output.stream);
            handler(Box::new(raw)).await;
        }
        End::Closed(why, detail) => {
            tracing::warn!(peer = ?peer.credentials, %detail, "closing connection: {why}");
        }
    }
}

async fn serve(
    service: &Service,
    config: &ServerConfig,
    stats: &ServerStats,
    input: &mut Input,
    output: &mut ConnectionOutput,
    draining: &mut watch::Receiver<bool>,
    peer: &Peer,
) -> End {
    let Input { framer, fds } = input;
    // When the first byte of a still incomplete message arrived.
    let mut partial_since: Option<Instant> = None;
    // Bytes read since this connection last yielded to the runtime.
    let mut read_since_yield = 0usize;
    loop {
        // Dispatch every complete message already buffered, in order.
        loop {
            let start = framer.position();
            let message = match framer.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(too_large) => {
                    ServerStats::bump(&stats.oversized_messages);
                    let _ = output.write_pending().await;
                    return End::Closed("message too large", too_large.to_string());
                }
            };
            partial_since = None;
            ServerStats::bump(&stats.calls);
            let dispatched = match fds.as_mut() {
                None => service.handle_peer(&message, peer, output).await,
                Some(fds) => {
                    let fds = fds.take(start);
                    service
                        .handle_peer_with_fds(&message, peer, fds, output)
                        .await
                }
            };
            match dispatched {
                Ok(Dispatched::Continue) => {}
                Ok(Dispatched::Upgrade(handler)) => {
                    if let Err(e) = output.write_pending().await {
                        return write_failed(stats, e);
                    }
                    return End::Upgrade(handler);
                }
                Err(violation) => {
                    ServerStats::bump(&stats.protocol_errors);
                    let _ = output.write_pending().await;
                    return End::Closed("protocol violation", violation.reason);
                }
            }
            if output.pending.len() > config.max_queued_output
                && let Err(e) = output.write_pending().await
            {
                return write_failed(stats, e);
            }
        }
        // One write for the whole batch of replies.
        if let Err(e) = output.write_pending().await {
            return write_failed(stats, e);
        }
        let deadline = if framer.buffered().is_empty() {
            config.idle_timeout.map(|idle| Instant::now() + idle)
        } else {
            Some(*partial_since.get_or_insert_with(Instant::now) + config.message_timeout)
        };
        let before = framer.buffered().len();
        match read_some(framer, fds.as_mut(), &output.stream, draining, deadline).await {
            Ok(Read::Bytes) => {
                read_since_yield += framer.buffered().len().saturating_sub(before);
                if read_since_yield >= YIELD_AFTER_BYTES {
                    read_since_yield = 0;
                    tokio::task::yield_now().await;
                }
            }
            Ok(Read::Drained) => return End::Drained,
            Ok(Read::FdsRefused(why)) => {
                ServerStats::bump(&stats.protocol_errors);
                let _ = output.write_pending().await;
                return End::Closed("file descriptor passing failed", why);
            }
            Ok(Read::Eof) if framer.buffered().is_empty() => return End::PeerClosed,
            Ok(Read::Eof) => {
                return End::Closed(
                    "peer closed mid-message",
                    format!(
                        "{} bytes of an unterminated message",
                        framer.buffered().len()
                    ),
                );
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                ServerStats::bump(&stats.timeouts);
                return End::Closed("timeout", e.to_string());
            }
            Err(e) => return End::Closed("read failed", e.to_string()),
        }
    }
}

fn write_failed(stats: &ServerStats, error: io::Error) -> End {
    if error.kind() == io::ErrorKind::TimedOut {
        ServerStats::bump(&stats.timeouts);
    }
    End::Closed("write failed", error.to_string())
}

/// Reads at least one byte, or EOF. An idle connection holds no read buffer: memory is
/// reserved only once the socket has data. Stops with `Drained` when the server drains
/// while nothing is buffered, and with `TimedOut` at `deadline` (idle or slow-sender limit).
async fn read_some(
    framer: &mut Framer,
    mut fds: Option<&mut FdReceiver>,
    stream: &Stream,
    draining: &mut watch::Receiver<bool>,
    deadline: Option<Instant>,
) -> io::Result<Read> {
    let idle = framer.buffered().is_empty();
    if idle {
        framer.shrink_if_idle(0);
    }
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        tokio::select! {
            biased;
            ready = stream.readable() => ready?,
            _ = draining.wait_for(|d| *d), if idle => return Ok(Read::Drained),
            () = &mut expired => {
                let what = if idle { "idle timeout" } else { "message not completed in time (slow sender)" };
                return Err(io::Error::new(io::ErrorKind::TimedOut, what));
            }
        }
        if let Some(fds) = fds.as_deref_mut() {
            match fds.try_read(stream, framer) {
                Ok(Received::Bytes(_)) => return Ok(Read::Bytes),
                Ok(Received::Eof) => return Ok(Read::Eof),
                Ok(Received::Refused(why)) => return Ok(Read::FdsRefused(why)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        let buffer = framer.buffer_mut();
        buffer.reserve(READ_SIZE);
        match stream.try_read_buf(buffer) {
            Ok(0) => return Ok(Read::Eof),
            Ok(_) => return Ok(Read::Bytes),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // A spurious wake-up: give the buffer back before waiting again, so an idle
                // connection holds no read buffer.
                if idle {
                    framer.shrink_if_idle(0);
                }
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}
