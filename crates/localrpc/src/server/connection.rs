//! One connection's life: read, dispatch each complete call in order, write once per batch.
//!
//! Bounded in every direction: the read buffer by the message size limit, the reply buffer
//! by `max_queued_output` (beyond it replies are written out mid-batch), every write by
//! `write_timeout`, a partly received message by `message_timeout`, and an idle connection by
//! `idle_timeout` and by the server draining.
//!
//! Memory: a connection that handles small messages holds no read buffer while it waits for
//! input. One that grew its buffers for a large message (or a long batch) keeps them while
//! it stays busy, so consecutive large calls reuse the same memory instead of mapping and
//! zeroing it anew, and frees them once it has waited [`RELEASE_BUFFERS_AFTER`] for its next
//! call, or after [`RELEASE_BUFFERS_AFTER_SMALL_CALLS`] small calls in a row. Only that case
//! arms a timer.
//!
//! File descriptors: only when the service has a method that accepts them and the stream is
//! a Unix socket does a connection read with `recvmsg` (see `transport::FdReceiver`); then each
//! message's descriptors go to its call. Replies carrying descriptors are written with them at
//! their first byte. Otherwise reads and writes are the plain ones.
//!
//! Sequential mode: a Unix-socket client that keeps making one call at a time, while the
//! server is otherwise quiet, is served for a while from a thread of its own that blocks in
//! `recv` (see `sequential`); the same dispatch code runs there, and everything else (waiting
//! handlers, pipelining, timeouts, draining) goes back to the loop here.
//!
//! Peeked reads: after a read that brought exactly one call, a Unix-socket connection that
//! takes no file descriptors reads with `MSG_PEEK` and takes the bytes off the socket later
//! (see `peek`), so that a blocking client is woken once per call, by its reply.
//!
//! Moving: a Unix-socket connection accepted on a daemon's main runtime before its worker
//! pool ran moves to the pool the first time it waits for a call with nothing buffered (see
//! [`start`] and `daemon::pool`); it is then served like any connection accepted there.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;

use super::peek::Peeked;
use super::sequential::{self, Slots, Socket};
use super::{ActiveConnection, Server, ServerConfig, ServerStats};
use crate::service::{
    BoxFuture, Dispatched, LastMethod, Output, Peer, PidfdSocketGuard, Service, UpgradeHandler,
};
use crate::transport::{FdReceiver, Received, Stream, UpgradedStream, write_all_with_fds};
use crate::wire::{Framer, READ_RESERVE};

/// Output buffers up to this size are kept while the connection is idle; larger ones only
/// while it is busy (see [`RELEASE_BUFFERS_AFTER`]).
const KEEP_OUTPUT_CAPACITY: usize = 64 * 1024;
/// How long a connection holding buffers larger than the small-message ones (a read buffer
/// over [`READ_RESERVE`], an output buffer over [`KEEP_OUTPUT_CAPACITY`]) waits for its next
/// call before freeing them. Long enough to span the gap between the calls of a client
/// busy with large messages, short enough that an idle connection soon costs next to nothing.
const RELEASE_BUFFERS_AFTER: Duration = Duration::from_millis(200);
/// After this many calls in a row without a large message or a large batch of replies, a
/// connection frees its large buffers as soon as it waits for input, even if its calls come
/// more often than [`RELEASE_BUFFERS_AFTER`]: one large call does not pin memory for the
/// rest of a chatty connection's life.
const RELEASE_BUFFERS_AFTER_SMALL_CALLS: u32 = 16;
/// Freeing buffers of at least this many bytes also asks the allocator to return its free
/// memory to the system (see [`return_free_memory`]).
const RETURN_MEMORY_AFTER_FREEING: usize = 1024 * 1024;
/// Bytes a connection may read before it yields to the runtime. While a socket stays
/// readable, tokio's cooperative budget (128 operations) lets one poll read ~25 MiB; the
/// worker polls no I/O meanwhile, so other connections' calls wait tens of milliseconds.
const YIELD_AFTER_BYTES: usize = 1024 * 1024;

/// The write side of a connection: replies accumulate in `pending` and go out in one write.
struct ConnectionOutput {
    /// Lets handlers take the peer's pidfd from the socket. Declared before `socket`, so it
    /// is dropped first: [`PidfdSocketGuard`] must go before the socket closes.
    pidfd_guard: Option<PidfdSocketGuard>,
    socket: Socket,
    pending: Vec<u8>,
    /// Descriptors to pass with the reply starting at each offset of `pending`, ascending.
    pending_fds: Vec<(usize, Vec<OwnedFd>)>,
    write_timeout: Duration,
    /// Bytes read with `MSG_PEEK` and still in the socket's queue (see `peek`).
    peeked: Peeked,
}

impl ConnectionOutput {
    /// Writes everything pending; fails with `TimedOut` when the peer stops reading.
    async fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let fds = std::mem::take(&mut self.pending_fds);
        // Most batches fit in the socket's buffer and go out in one write: try that first, so
        // only a write that has to wait pays for a timer.
        let mut written = 0;
        if fds.is_empty() {
            match self.socket.try_write(&self.pending) {
                Ok(n) if n == self.pending.len() => {
                    self.pending.clear();
                    return Ok(());
                }
                Ok(n) => written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.pending.clear();
                    return Err(e);
                }
            }
        }
        // Boxed: this state (a timer, the write, the descriptors' control message) is larger
        // than the rest of a connection's, and rare; inline, every connection's task would
        // carry room for it (a tenth of an idle connection's memory).
        Box::pin(self.write_waiting(written, fds)).await
    }

    /// Writes the rest of `pending` from `written`, with `fds`, waiting for room as long as
    /// `write_timeout` allows.
    async fn write_waiting(
        &mut self,
        written: usize,
        fds: Vec<(usize, Vec<OwnedFd>)>,
    ) -> io::Result<()> {
        // The client may itself be waiting for room in its send buffer, which bytes we peeked
        // and answered still hold.
        if let Err(e) = self.consume_peeked() {
            self.pending.clear();
            return Err(e);
        }
        // Waiting for room is the runtime's job: a socket in sequential mode goes back to it.
        if let Err(e) = self.registered() {
            self.pending.clear();
            return Err(e);
        }
        // Registered now, so this is the stream itself.
        let stream = self.socket.registered()?;
        let pending = &self.pending;
        let write = async {
            if fds.is_empty() {
                stream.write_all(&pending[written..]).await
            } else {
                write_all_with_fds(stream, pending, fds).await
            }
        };
        let result = match tokio::time::timeout(self.write_timeout, write).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer is not reading its replies",
            )),
        };
        // The capacity stays for the next replies; `release_buffers` frees a large one once
        // the connection is idle.
        self.pending.clear();
        result
    }
}

impl ConnectionOutput {
    /// Reads what the socket has into `framer`, with `MSG_PEEK` if `peek` (see `peek`): the
    /// byte count, 0 at end of file.
    fn try_read(&mut self, framer: &mut Framer, peek: bool) -> io::Result<usize> {
        match &self.socket {
            Socket::Registered(Stream::Unix(stream)) if peek && self.peeked.is_supported() => {
                self.peeked.read(stream, framer)
            }
            socket => socket.stream()?.try_read_buf(framer.buffer_mut()),
        }
    }

    /// Takes what was peeked off the socket.
    fn consume_peeked(&mut self) -> io::Result<()> {
        match &self.socket {
            Socket::Registered(Stream::Unix(stream)) if !self.peeked.is_empty() => {
                self.peeked.consume(stream)
            }
            _ => Ok(()),
        }
    }

    /// Takes what was peeked off the socket and turns peeking off, before the socket is
    /// read by other code (sequential mode, an upgrade).
    fn stop_peeking(&mut self) -> io::Result<()> {
        match &self.socket {
            Socket::Registered(Stream::Unix(stream)) => self.peeked.stop(stream),
            _ => Ok(()),
        }
    }

    /// Makes the socket blocking for sequential mode (`sequential::Socket::make_blocking`).
    /// Should that close it, the pidfd guard goes at once too.
    fn make_blocking(&mut self) -> io::Result<bool> {
        if let Err(e) = self.stop_peeking() {
            drop(self.pidfd_guard.take());
            return Err(e);
        }
        let made = self.socket.make_blocking();
        if made.is_err() {
            drop(self.pidfd_guard.take());
        }
        made
    }

    /// The stream, registered with the runtime again if it was in sequential mode. Should
    /// that fail (epoll out of memory or watches), the socket is closed: the pidfd guard goes
    /// at once too.
    fn registered(&mut self) -> io::Result<&mut Stream> {
        match self.socket.registered() {
            Ok(stream) => Ok(stream),
            Err(e) => {
                drop(self.pidfd_guard.take());
                Err(e)
            }
        }
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
        if !self.socket.is_unix() {
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
struct Input<'s> {
    framer: Framer,
    fds: Option<FdReceiver>,
    /// The method this connection called last (see `LastMethod`).
    last_method: LastMethod<'s>,
}

/// Why a connection ended, for the log.
enum End {
    PeerClosed,
    /// The server is draining and this connection had nothing left to answer.
    Drained,
    /// Closed for a reason (for the log). Boxed: `End` is the result of the loop's every
    /// `await`, and rustc keeps room for an `await`'s result beside the future it waits on,
    /// so its size is in every connection's future (with the reason inline, 40 bytes, the
    /// future was 16 bytes larger).
    Closed(Box<Closed>),
    /// The confirmation is written; the raw stream goes to this handler.
    Upgrade(UpgradeHandler),
}

/// Why a connection was closed: what failed, and the detail.
struct Closed {
    why: &'static str,
    detail: String,
}

impl End {
    /// [`End::Closed`] with `why` and `detail`.
    fn closed(why: &'static str, detail: String) -> End {
        End::Closed(Box::new(Closed { why, detail }))
    }
}

/// What the next read produced.
enum Read {
    Bytes,
    Eof,
    Drained,
    /// File descriptors broke the rules (they are closed); close the connection.
    FdsRefused(String),
}

/// What a connection's loop reads and never changes.
struct Env<'a> {
    service: &'a Service,
    config: &'a ServerConfig,
    stats: &'a ServerStats,
    peer: &'a Peer,
    /// The server's places in sequential mode.
    sequential: &'a Slots,
    /// Set once the server drains (for sequential sessions, which look rather than wait).
    draining: &'a watch::Sender<bool>,
}

/// The connection's future (spawned as its task): its loop, until it ends; then its buffers
/// go, and an upgraded stream goes on to its handler. `admitted` counts the connection as open
/// until the future ends.
///
/// With `pool`, the connection was accepted on a daemon's main runtime and moves to its
/// worker pool once that runs (see `daemon::pool`): `draining` then also fires when the pool
/// is published. The loop waits for it only while nothing is buffered, after the batch's
/// replies are written, so no call, `more` stream or upgrade is in progress and no output or
/// descriptor is pending; the socket leaves this runtime's epoll set, joins the pool's, and
/// a task there goes on with the connection's state (its read buffer is empty; what the peer
/// sent meanwhile waits in the socket).
///
/// The state is built here and [`run`] moves it into an `async` block rather than passing it
/// to an `async fn`: such a function keeps its arguments in its future besides the copies its
/// body makes of them (rust-lang/rust#62958), and a block's captures stay in place. Every
/// connection's task carried the stream, the peer and the server three times over.
pub(super) fn start(
    server: Server,
    admitted: ActiveConnection,
    draining: watch::Receiver<bool>,
    stream: Stream,
    pidfd_guard: Option<PidfdSocketGuard>,
    peer: Peer,
    pool: Option<Arc<watch::Receiver<Option<Handle>>>>,
) -> impl Future<Output = ()> + Send + 'static {
    let output = ConnectionOutput {
        pidfd_guard,
        socket: Socket::Registered(stream),
        pending: Vec::new(),
        pending_fds: Vec::new(),
        write_timeout: server.config.write_timeout,
        peeked: Peeked::default(),
    };
    let server = Shared {
        service: server.service,
        config: server.config,
        stats: server.stats,
        sequential: server.sequential,
        draining: server.draining,
    };
    run(server, admitted, draining, output, peer, pool)
}

/// What a connection keeps of its server: the parts it uses, one value to pass on when it
/// moves (see [`start`]); the rest of a `Server` is not kept in every connection's task.
struct Shared {
    service: Arc<Service>,
    config: Arc<ServerConfig>,
    stats: Arc<ServerStats>,
    sequential: Arc<Slots>,
    draining: watch::Sender<bool>,
}

/// [`start`], from the connection's output on: also how a moved connection goes on. (The
/// future keeps this function's name, which `localrpcd`'s `hot-text.ld` lists.)
fn run(
    server: Shared,
    admitted: ActiveConnection,
    mut draining: watch::Receiver<bool>,
    mut output: ConnectionOutput,
    peer: Peer,
    pool: Option<Arc<watch::Receiver<Option<Handle>>>>,
) -> impl Future<Output = ()> + Send + 'static {
    let can_pass_fds = output.socket.is_unix();
    async move {
        let (service, config) = (&*server.service, &*server.config);
        let mut input = Input {
            framer: Framer::new(config.max_message_size),
            fds: (service.accepts_fds() && can_pass_fds).then(|| {
                FdReceiver::new(config.max_fds_per_message, 2 * config.max_fds_per_message)
            }),
            last_method: LastMethod::default(),
        };
        let env = Env {
            service,
            config,
            stats: &server.stats,
            peer: &peer,
            sequential: &server.sequential,
            draining: &server.draining,
        };
        let end = serve(&env, &mut input, &mut output, &mut draining).await;
        if !matches!(end, End::Upgrade(_)) {
            // Give large buffers back now rather than when the task is dropped, so the
            // allocator can return them to the system.
            spare_read_buffers::give_back(&mut input.framer);
            let freed = input.framer.capacity() + output.pending.capacity();
            input.framer = Framer::new(env.config.max_message_size);
            output.pending = Vec::new();
            if freed >= RETURN_MEMORY_AFTER_FREEING {
                return_free_memory();
            }
        }
        match end {
            End::PeerClosed => tracing::trace!(peer = ?peer.credentials, "connection finished"),
            End::Drained => {
                // Not the server's drain: the pool runs, and the connection goes on there.
                let to = pool
                    .as_deref()
                    .filter(|_| !*server.draining.borrow())
                    .and_then(|pool| pool.borrow().clone());
                if let Some(to) = to {
                    drop(input);
                    return move_to(&to, server, admitted, output, peer);
                }
                tracing::debug!(peer = ?peer.credentials, "connection closed: the server is stopping");
            }
            End::Upgrade(handler) => {
                // The socket moves on into the upgraded stream: a pidfd not taken by now
                // stays so.
                drop(output.pidfd_guard.take());
                if let Err(e) = output.stop_peeking() {
                    tracing::warn!(peer = ?peer.credentials, "closing connection: {e}");
                    return;
                }
                match output.socket.into_stream() {
                    Ok(stream) => {
                        let raw = UpgradedStream::new(input.framer.take_buffered(), stream);
                        handler(Box::new(raw)).await;
                    }
                    Err(e) => tracing::warn!(peer = ?peer.credentials, "closing connection: {e}"),
                }
            }
            End::Closed(closed) => {
                let Closed { why, detail } = *closed;
                tracing::warn!(peer = ?peer.credentials, %detail, "closing connection: {why}");
            }
        }
        // Open until here (an early return drops it too). Dropped rather than bound to a
        // local at the start, which would be a second copy in the future.
        drop(admitted);
    }
}

/// Moves an idle connection to the runtime `to` (see [`start`]): its socket leaves this
/// runtime's epoll set (as for sequential mode) and is registered with `to`'s, and a task
/// there goes on serving it, counted as open all along. Should the socket be lost on the way,
/// the connection is closed.
fn move_to(
    to: &Handle,
    server: Shared,
    admitted: ActiveConnection,
    mut output: ConnectionOutput,
    peer: Peer,
) {
    let moved = match output.socket.deregister() {
        Ok(true) => {
            let _pool = to.enter();
            output.registered().map(drop)
        }
        Ok(false) => Err(io::Error::other("only a Unix socket moves")),
        Err(e) => Err(e),
    };
    match moved {
        Ok(()) => {
            let draining = server.draining.subscribe();
            to.spawn(run(server, admitted, draining, output, peer, None));
        }
        Err(e) => {
            drop(output.pidfd_guard.take());
            tracing::warn!(peer = ?peer.credentials, "closing connection: cannot move it to the worker threads: {e}");
        }
    }
}

#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep a second copy of its arguments in its future"
)]
fn serve<'s>(
    env: &Env<'s>,
    input: &mut Input<'s>,
    output: &mut ConnectionOutput,
    draining: &mut watch::Receiver<bool>,
) -> impl Future<Output = End> {
    async move {
        // One wait for the drain, registered once for the connection's life rather than once per
        // read (each registration takes the channel's lock twice).
        let drained = draining.wait_for(|d| *d);
        tokio::pin!(drained);
        // When the first byte of a still incomplete message arrived.
        let mut partial_since: Option<Instant> = None;
        // Bytes read since this connection last yielded to the runtime.
        let mut read_since_yield = 0usize;
        // Calls in a row that needed no large buffer (see RELEASE_BUFFERS_AFTER_SMALL_CALLS).
        let mut small_calls = 0u32;
        // Whether the client calls one call at a time (see `sequential`).
        let mut streak = sequential::Streak::default();
        loop {
            let calls = match dispatch_buffered(env, input, output, &mut small_calls).await {
                Ok(calls) => calls,
                Err(end) => return end,
            };
            if calls > 0 {
                partial_since = None;
            }
            streak.record(calls, input.framer.buffered().is_empty(), &env.stats.calls);
            if input.fds.is_none()
                && output.socket.is_unix()
                && streak.complete(&env.stats.calls, env.sequential)
                && input.framer.buffered().is_empty()
                && !*env.draining.borrow()
                && let Some(slot) = env.sequential.try_acquire()
            {
                if let Some(end) =
                    serve_sequentially(env, input, output, &mut small_calls, &mut streak, slot)
                        .await
                {
                    return end;
                }
                // Whatever the session left buffered is dispatched (or waited for) as usual.
                continue;
            }
            // A read that brought one call: the client waits for each reply (see `peek`).
            let peek = calls == 1
                && input.fds.is_none()
                && input.framer.buffered().is_empty()
                && matches!(output.socket, Socket::Registered(Stream::Unix(_)));
            let framer = &mut input.framer;
            let deadline = if framer.buffered().is_empty() {
                env.config.idle_timeout.map(|idle| Instant::now() + idle)
            } else {
                Some(*partial_since.get_or_insert_with(Instant::now) + env.config.message_timeout)
            };
            let before = framer.buffered().len();
            let keep_buffers = small_calls < RELEASE_BUFFERS_AFTER_SMALL_CALLS;
            match read_some(
                framer,
                input.fds.as_mut(),
                output,
                drained.as_mut(),
                deadline,
                keep_buffers,
                peek,
            )
            .await
            {
                Ok(Read::Bytes) => {
                    read_since_yield += framer.buffered().len().saturating_sub(before);
                    if read_since_yield >= YIELD_AFTER_BYTES {
                        read_since_yield = 0;
                        tokio::task::yield_now().await;
                    }
                }
                Ok(Read::Drained) => return End::Drained,
                Ok(Read::FdsRefused(why)) => {
                    ServerStats::bump(&env.stats.protocol_errors);
                    let _ = output.write_pending().await;
                    return End::closed("file descriptor passing failed", why);
                }
                Ok(Read::Eof) if framer.buffered().is_empty() => return End::PeerClosed,
                Ok(Read::Eof) => {
                    return End::closed(
                        "peer closed mid-message",
                        format!(
                            "{} bytes of an unterminated message",
                            framer.buffered().len()
                        ),
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    ServerStats::bump(&env.stats.timeouts);
                    return End::closed("timeout", e.to_string());
                }
                Err(e) => return End::closed("read failed", e.to_string()),
            }
        }
    }
}

/// Dispatches every complete message buffered, in order, then writes the batch's replies
/// with one write. Returns how many calls it dispatched, or how the connection ends.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep a second copy of its arguments in its future"
)]
fn dispatch_buffered<'s>(
    env: &Env<'s>,
    input: &mut Input<'s>,
    output: &mut ConnectionOutput,
    small_calls: &mut u32,
) -> impl Future<Output = Result<u32, End>> {
    async move {
        // (Fields through `input` rather than one reference each: `input` alone is kept in this
        // function's future, across the handler's `await`.)
        let mut calls = 0;
        loop {
            let start = input.framer.position();
            let len = match input.framer.next_message_len() {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(too_large) => {
                    ServerStats::bump(&env.stats.oversized_messages);
                    let _ = output.write_pending().await;
                    return Err(End::closed("message too large", too_large.to_string()));
                }
            };
            calls += 1;
            ServerStats::bump(&env.stats.calls);
            // The message is handled where it was read, then dropped from the buffer.
            let message = &input.framer.buffered()[..len];
            // One `await` for calls with and without descriptors: two made the connection's
            // future 48 bytes larger.
            let fds = input
                .fds
                .as_mut()
                .map_or_else(Vec::new, |fds| fds.take(start));
            let dispatched = env
                .service
                .handle_on_connection(message, env.peer, fds, output, &mut input.last_method)
                .await;
            input.framer.consume_message(len);
            if len > READ_RESERVE || output.pending.len() > KEEP_OUTPUT_CAPACITY {
                *small_calls = 0;
            } else {
                *small_calls = small_calls.saturating_add(1);
            }
            match dispatched {
                Ok(Dispatched::Continue) => {}
                Ok(Dispatched::Upgrade(handler)) => {
                    if let Err(e) = output.write_pending().await {
                        return Err(write_failed(env.stats, e));
                    }
                    return Err(End::Upgrade(handler));
                }
                Err(violation) => {
                    ServerStats::bump(&env.stats.protocol_errors);
                    let _ = output.write_pending().await;
                    return Err(End::closed("protocol violation", violation.reason));
                }
            }
            if output.pending.len() > env.config.max_queued_output
                && let Err(e) = output.write_pending().await
            {
                return Err(write_failed(env.stats, e));
            }
        }
        // One write for the whole batch of replies.
        if let Err(e) = output.write_pending().await {
            return Err(write_failed(env.stats, e));
        }
        Ok(calls)
    }
}

/// One turn of sequential mode (see `sequential`), in one of the server's places: makes the
/// socket blocking, runs a session on this thread, and registers the socket with the runtime
/// again. `Some` when the connection ended meanwhile.
async fn serve_sequentially<'s>(
    env: &Env<'s>,
    input: &mut Input<'s>,
    output: &mut ConnectionOutput,
    small_calls: &mut u32,
    streak: &mut sequential::Streak,
    _slot: sequential::Slot<'_>,
) -> Option<End> {
    match output.make_blocking() {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            return Some(End::closed(
                "socket could not leave the runtime",
                e.to_string(),
            ));
        }
    }
    ServerStats::bump(&env.stats.sequential_sessions);
    let on_thread = AtomicBool::new(true);
    let ended = {
        let mut session = Box::pin(sequential_session(
            env,
            input,
            output,
            small_calls,
            &on_thread,
        ));
        match tokio::task::block_in_place(|| sequential::run_here(session.as_mut(), &on_thread)) {
            Some(ended) => ended,
            None => session.await,
        }
    };
    match ended {
        Ok(handback) => streak.session_ended(matches!(handback, Handback::ServerBusy)),
        Err(end) => return Some(end),
    }
    if let Err(e) = output.registered() {
        return Some(End::closed(
            "socket could not return to the runtime",
            e.to_string(),
        ));
    }
    None
}

/// Why a sequential session gave the connection back to the runtime's loop.
enum Handback {
    /// Other connections got busy (see `sequential::Slots::quiet`).
    ServerBusy,
    /// Idle, pipelining, a waiting handler, draining, or the session's length.
    Other,
}

/// Serves the connection in sequential mode (see `sequential`): reads each call with a
/// blocking `recv` and dispatches it, while `on_thread` holds and the calls keep coming one
/// at a time. Returns to let the runtime's loop go on, or with how the connection ends.
async fn sequential_session<'s>(
    env: &Env<'s>,
    input: &mut Input<'s>,
    output: &mut ConnectionOutput,
    small_calls: &mut u32,
    on_thread: &AtomicBool,
) -> Result<Handback, End> {
    let server_calls = &env.stats.calls;
    let mut checked_at = server_calls.load(Ordering::Relaxed);
    for call in 1..=sequential::MAX_CALLS_PER_SESSION {
        if !on_thread.load(Ordering::Relaxed) || *env.draining.borrow() {
            break;
        }
        if call % sequential::CHECK_EVERY_CALLS == 0 {
            // Other connections got busy: they are better served by the runtime than by a
            // thread for this one.
            let now = server_calls.load(Ordering::Relaxed);
            if !env
                .sequential
                .quiet(sequential::CHECK_EVERY_CALLS.into(), now - checked_at)
            {
                return Ok(Handback::ServerBusy);
            }
            checked_at = now;
        }
        match sequential::recv(&output.socket, &mut input.framer) {
            // End of file: the runtime's loop reads it again and ends the connection.
            Ok(0) => break,
            Ok(_) => {}
            // Idle for `IDLE_AFTER`.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(End::closed("read failed", e.to_string())),
        }
        let calls = dispatch_buffered(env, input, output, small_calls).await?;
        if calls != 1 || !input.framer.buffered().is_empty() {
            break;
        }
    }
    Ok(Handback::Other)
}

fn write_failed(stats: &ServerStats, error: io::Error) -> End {
    if error.kind() == io::ErrorKind::TimedOut {
        ServerStats::bump(&stats.timeouts);
    }
    End::closed("write failed", error.to_string())
}

/// Whether the connection holds more memory than a small-message connection does: a read
/// buffer grown past [`READ_RESERVE`] or an output buffer past [`KEEP_OUTPUT_CAPACITY`].
fn holds_large_buffers(framer: &Framer, output: &ConnectionOutput) -> bool {
    framer.capacity() > READ_RESERVE || output.pending.capacity() > KEEP_OUTPUT_CAPACITY
}

/// Frees the buffers of an idle connection: the read buffer entirely, the output buffer if it
/// is large (it is empty between batches).
fn release_buffers(framer: &mut Framer, output: &mut ConnectionOutput) {
    let held = framer.capacity();
    framer.shrink_if_idle(0);
    let mut freed = held.saturating_sub(framer.capacity());
    if output.pending.is_empty() && output.pending.capacity() > KEEP_OUTPUT_CAPACITY {
        freed += output.pending.capacity();
        output.pending = Vec::new();
    }
    if freed >= RETURN_MEMORY_AFTER_FREEING {
        return_free_memory();
    }
}

/// Asks the allocator to return free memory to the system. glibc's malloc keeps freed chunks
/// of its per-thread arenas (where it serves allocations of up to 32 MiB once large blocks
/// have been freed) and rarely trims them, so the buffers of a large call would stay in the
/// daemon's RSS after being freed. Called only after freeing at least
/// [`RETURN_MEMORY_AFTER_FREEING`] bytes, so small-message connections never pay for it.
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only releases memory malloc holds free; it
    // locks each arena itself, so any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Read buffers of connections that went idle, kept per worker thread for the next
/// connection there that has data. Without them a client that calls, waits for the reply and
/// calls again makes its connection free a [`READ_RESERVE`] buffer after every call and
/// allocate a new one for the next (a tenth of the server's instructions per call); idle
/// connections still hold no read buffer.
mod spare_read_buffers {
    use std::cell::RefCell;

    use bytes::BytesMut;

    use crate::wire::Framer;

    /// Buffers kept per thread (at most 256 KiB); more go back to the allocator.
    const KEEP: usize = 4;

    thread_local! {
        static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// Takes an idle connection's read buffer for the next connection, or frees it.
    pub(super) fn give_back(framer: &mut Framer) {
        match framer.take_idle_buffer() {
            Some(buffer) => {
                let _ = SPARE.try_with(|spare| {
                    let mut spare = spare.borrow_mut();
                    if spare.len() < KEEP {
                        spare.push(buffer);
                    }
                });
            }
            None => framer.shrink_if_idle(0),
        }
    }

    /// Gives a connection about to read, if it holds no buffer, a spare one.
    pub(super) fn lend(framer: &mut Framer) {
        if framer.capacity() == 0
            && let Ok(Some(buffer)) = SPARE.try_with(|spare| spare.borrow_mut().pop())
        {
            framer.adopt_buffer(buffer);
        }
    }
}

/// What woke `read_some`.
enum Wake {
    Readable,
    Release,
}

/// Reads at least one byte, or EOF. An idle connection holds no read buffer while it waits:
/// memory is reserved only once the socket has data. A connection with large buffers keeps
/// them, if `keep_buffers`, for [`RELEASE_BUFFERS_AFTER`], then frees them and goes on
/// waiting. Stops with `Drained` when `drained` (the wait for the server's drain) completes
/// while nothing is buffered, and with `TimedOut` at `deadline` (idle or slow-sender limit).
/// Reads with `MSG_PEEK` if `peek` (see `peek`); bytes still peeked are taken off the socket
/// before any wait, and before a read without it.
async fn read_some(
    framer: &mut Framer,
    mut fds: Option<&mut FdReceiver>,
    output: &mut ConnectionOutput,
    mut drained: Pin<&mut impl Future>,
    deadline: Option<Instant>,
    keep_buffers: bool,
    peek: bool,
) -> io::Result<Read> {
    let idle = framer.buffered().is_empty();
    // Armed only for a connection that grew its buffers, so small-message connections pay
    // for no timer.
    let mut release_pending = false;
    if idle {
        if !holds_large_buffers(framer, output) {
            spare_read_buffers::give_back(framer);
        } else if keep_buffers {
            release_pending = true;
        } else {
            release_buffers(framer, output);
        }
    }
    let release_at = release_pending.then(|| Instant::now() + RELEASE_BUFFERS_AFTER);
    let release = async {
        match release_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired, release);
    // With bytes still peeked, try the socket before waiting: a peeked read that finds
    // nothing takes them off (a wait must not begin while they hold the client's buffer).
    let mut read_first = peek && !output.peeked.is_empty();
    if !peek {
        output.consume_peeked()?;
    }
    loop {
        let wake = if std::mem::take(&mut read_first) {
            Wake::Readable
        } else {
            tokio::select! {
            biased;
            ready = async { output.socket.stream()?.readable().await } => {
                ready?;
                Wake::Readable
            }
            _ = &mut drained, if idle => return Ok(Read::Drained),
            () = &mut expired => {
                let what = if idle { "idle timeout" } else { "message not completed in time (slow sender)" };
                return Err(io::Error::new(io::ErrorKind::TimedOut, what));
            }
            () = &mut release, if release_pending => Wake::Release,
            }
        };
        if let Wake::Release = wake {
            release_pending = false;
            release_buffers(framer, output);
            continue;
        }
        spare_read_buffers::lend(framer);
        framer.reserve_for_read();
        let error = match fds.as_deref_mut() {
            Some(fds) => match fds.try_read(output.socket.stream()?, framer) {
                Ok(Received::Bytes(_)) => return Ok(Read::Bytes),
                Ok(Received::Eof) => return Ok(Read::Eof),
                Ok(Received::Refused(why)) => return Ok(Read::FdsRefused(why)),
                Err(e) => e,
            },
            None => match output.try_read(framer, peek) {
                Ok(0) => return Ok(Read::Eof),
                Ok(_) => return Ok(Read::Bytes),
                Err(e) => e,
            },
        };
        if error.kind() != io::ErrorKind::WouldBlock {
            return Err(error);
        }
        // A spurious wake-up: unless it keeps its buffers for a while, an idle connection
        // gives the read buffer back before waiting again, so it holds none while it waits.
        if idle && !release_pending {
            spare_read_buffers::give_back(framer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;

    /// A connection's read side and output over one end of a socket pair, after it handled
    /// one message of `message_len` bytes and wrote a reply of `reply_len` bytes.
    async fn after_one_call(
        message_len: usize,
        reply_len: usize,
    ) -> (Framer, ConnectionOutput, UnixStream) {
        let (ours, mut theirs) = UnixStream::pair().expect("socket pair");
        let mut framer = Framer::new(crate::wire::DEFAULT_MAX_MESSAGE_SIZE);
        let mut bytes = vec![b'x'; message_len];
        bytes.push(0);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            framer.reserve_for_read();
            let n = (framer.capacity() - framer.buffered().len()).min(rest.len());
            framer.buffer_mut().extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        let len = framer.next_message_len().unwrap().unwrap();
        framer.consume_message(len);
        let mut output = ConnectionOutput {
            pidfd_guard: None,
            socket: Socket::Registered(Stream::Unix(ours)),
            pending: vec![b'y'; reply_len],
            pending_fds: Vec::new(),
            write_timeout: Duration::from_secs(5),
            peeked: Peeked::default(),
        };
        let reader = tokio::spawn(async move {
            let mut reply = vec![0; reply_len];
            tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut reply)
                .await
                .unwrap();
            theirs
        });
        output.write_pending().await.unwrap();
        (framer, output, reader.await.unwrap())
    }

    /// Waits in `read_some` until the peer sends a byte after `gap` (virtual time).
    async fn next_call_after(
        gap: Duration,
        framer: &mut Framer,
        output: &mut ConnectionOutput,
        peer: UnixStream,
    ) {
        next_call_after_keeping(gap, framer, output, peer, true).await;
    }

    async fn next_call_after_keeping(
        gap: Duration,
        framer: &mut Framer,
        output: &mut ConnectionOutput,
        mut peer: UnixStream,
        keep_buffers: bool,
    ) {
        let (_drain, mut draining) = watch::channel(false);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(gap).await;
            peer.write_all(b"{").await.unwrap();
            peer
        });
        let drained = draining.wait_for(|d| *d);
        tokio::pin!(drained);
        let read = read_some(framer, None, output, drained, None, keep_buffers, false)
            .await
            .unwrap();
        assert!(matches!(read, Read::Bytes));
        assert_eq!(framer.buffered(), b"{");
        drop(sender.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn large_buffers_are_kept_while_the_next_call_comes_soon() {
        let (mut framer, mut output, peer) = after_one_call(1 << 20, 1 << 20).await;
        let (read_capacity, output_capacity) = (framer.capacity(), output.pending.capacity());
        assert!(holds_large_buffers(&framer, &output));
        next_call_after(RELEASE_BUFFERS_AFTER / 4, &mut framer, &mut output, peer).await;
        assert_eq!(framer.capacity(), read_capacity);
        assert_eq!(output.pending.capacity(), output_capacity);
    }

    #[tokio::test(start_paused = true)]
    async fn large_buffers_are_freed_once_the_connection_is_idle() {
        let (mut framer, mut output, peer) = after_one_call(1 << 20, 1 << 20).await;
        next_call_after(RELEASE_BUFFERS_AFTER * 4, &mut framer, &mut output, peer).await;
        // The new call got a fresh read buffer of one read; the reply buffer is gone.
        assert_eq!(framer.capacity(), READ_RESERVE);
        assert_eq!(output.pending.capacity(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn large_buffers_are_freed_at_once_after_many_small_calls() {
        let (mut framer, mut output, peer) = after_one_call(1 << 20, 1 << 20).await;
        next_call_after_keeping(
            RELEASE_BUFFERS_AFTER / 4,
            &mut framer,
            &mut output,
            peer,
            false,
        )
        .await;
        assert_eq!(framer.capacity(), READ_RESERVE);
        assert_eq!(output.pending.capacity(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_lends_its_read_buffer_to_the_next_read() {
        let (mut framer, mut output, peer) = after_one_call(100, 100).await;
        let buffer = framer.buffered().as_ptr();
        // Waiting for the next call, the connection holds no read buffer; the read that
        // follows gets the same memory back instead of a new allocation.
        spare_read_buffers::give_back(&mut framer);
        assert_eq!(framer.capacity(), 0);
        next_call_after(RELEASE_BUFFERS_AFTER / 4, &mut framer, &mut output, peer).await;
        assert_eq!(framer.buffered().as_ptr(), buffer);
        assert_eq!(framer.capacity(), READ_RESERVE);
    }

    #[tokio::test(start_paused = true)]
    async fn small_buffers_are_not_kept_and_arm_no_timer() {
        let (framer, output, _peer) = after_one_call(100, 100).await;
        assert_eq!(framer.capacity(), READ_RESERVE);
        assert!(!holds_large_buffers(&framer, &output));
    }
}
