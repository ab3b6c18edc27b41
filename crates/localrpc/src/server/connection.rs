//! One connection's life: read, dispatch each complete call in order, write once per batch.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::{ServerConfig, ServerStats};
use crate::service::{BoxFuture, Dispatched, Output, PeerCredentials, Service, UpgradeHandler};
use crate::transport::{Stream, UpgradedStream};
use crate::wire::Framer;

/// Bytes asked of the kernel per read.
const READ_SIZE: usize = 64 * 1024;
/// Output buffers larger than this are freed after being written out.
const KEEP_OUTPUT_CAPACITY: usize = 64 * 1024;

/// The write side of a connection: replies accumulate in `pending` and go out in one write.
struct ConnectionOutput {
    stream: Stream,
    pending: Vec<u8>,
}

impl ConnectionOutput {
    async fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.pending).await;
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

pub(super) async fn run(
    service: &Service,
    config: &ServerConfig,
    stats: &ServerStats,
    draining: watch::Receiver<bool>,
    stream: Stream,
    peer: Option<PeerCredentials>,
) {
    let mut framer = Framer::new(config.max_message_size);
    let mut output = ConnectionOutput {
        stream,
        pending: Vec::new(),
    };
    let mut draining = draining;
    match serve(service, stats, &mut framer, &mut output, &mut draining, peer).await {
        End::PeerClosed => tracing::trace!(?peer, "connection finished"),
        End::Drained => tracing::debug!(?peer, "connection closed: the server is stopping"),
        End::Upgrade(handler) => {
            let raw = UpgradedStream::new(framer.take_buffered(), output.stream);
            handler(Box::new(raw)).await;
        }
        End::Closed(why, detail) => {
            tracing::warn!(?peer, %detail, "closing connection: {why}");
        }
    }
}

async fn serve(
    service: &Service,
    stats: &ServerStats,
    framer: &mut Framer,
    output: &mut ConnectionOutput,
    draining: &mut watch::Receiver<bool>,
    peer: Option<PeerCredentials>,
) -> End {
    loop {
        // Dispatch every complete message already buffered, in order.
        loop {
            let message = match framer.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(too_large) => {
                    ServerStats::bump(&stats.oversized_messages);
                    let _ = output.write_pending().await;
                    return End::Closed("message too large", too_large.to_string());
                }
            };
            ServerStats::bump(&stats.calls);
            match service.handle(&message, peer, output).await {
                Ok(Dispatched::Continue) => {}
                Ok(Dispatched::Upgrade(handler)) => {
                    if let Err(e) = output.write_pending().await {
                        return End::Closed("write failed", e.to_string());
                    }
                    return End::Upgrade(handler);
                }
                Err(violation) => {
                    ServerStats::bump(&stats.protocol_errors);
                    let _ = output.write_pending().await;
                    return End::Closed("protocol violation", violation.reason);
                }
            }
        }
        // One write for the whole batch of replies.
        if let Err(e) = output.write_pending().await {
            return End::Closed("write failed", e.to_string());
        }
        match read_some(framer, &output.stream, draining).await {
            Ok(None) => return End::Drained,
            Ok(Some(0)) => {
                if framer.buffered().is_empty() {
                    return End::PeerClosed;
                }
                return End::Closed(
                    "peer closed mid-message",
                    format!(
                        "{} bytes of an unterminated message",
                        framer.buffered().len()
                    ),
                );
            }
            Ok(Some(_)) => {}
            Err(e) => return End::Closed("read failed", e.to_string()),
        }
    }
}

/// Reads at least one byte (`Some(0)` at EOF). An idle connection holds no read buffer:
/// memory is reserved only once the socket has data. Returns `None` when the server drains
/// while this connection is idle (nothing received and unanswered).
async fn read_some(
    framer: &mut Framer,
    stream: &Stream,
    draining: &mut watch::Receiver<bool>,
) -> io::Result<Option<usize>> {
    loop {
        if framer.buffered().is_empty() {
            framer.shrink_if_idle(0);
            tokio::select! {
                biased;
                ready = stream.readable() => ready?,
                _ = draining.wait_for(|d| *d) => return Ok(None),
            }
        }
        let buffer = framer.buffer_mut();
        buffer.reserve(READ_SIZE);
        match stream.try_read_buf(buffer) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable().await?,
            result => return result.map(Some),
        }
    }
}
