//! Sequential mode: a connection whose client calls, waits for the reply and calls again is
//! served from a thread of its own that blocks in `recv`, as a thread-per-connection server
//! does, instead of waiting in the runtime's epoll loop.
//!
//! Why: for such a client every call otherwise costs an extra `recv` that finds nothing, an
//! `epoll_wait`, and the runtime's park and wake-up (about half of the server's instructions
//! per call). A thread blocked in `recv` is woken straight by the kernel and reads the call:
//! two syscalls per call, like a raw socket echo. On one CPU (client and server pinned
//! together, `docs/PERFORMANCE.md`) that is the difference between 0.75–0.8× and about 0.9×
//! of the raw socket's rate.
//!
//! The shape, and what keeps it cheap and safe:
//! - Only Unix stream connections of a multi-thread runtime, whose service takes no file
//!   descriptors, enter it, and only after [`ENTER_AFTER_CALLS`] calls in a row that each
//!   arrived alone while the server was quiet ([`Streak`], [`Slots::quiet`]); at most
//!   [`ServerConfig::sequential_threads`] connections of a server are in it at once
//!   ([`Slots`]). A session ends when other connections get busy, and each such end doubles
//!   the calls the connection needs to enter again: with more busy clients than CPUs, a
//!   thread each would only add context switches.
//! - The worker thread hands its other tasks to a new thread (`tokio::task::block_in_place`)
//!   and the socket leaves the runtime's epoll set while the thread owns it, so the kernel
//!   wakes only this thread. ([`Socket`] holds either form.)
//! - `recv` waits at most [`IDLE_AFTER`]: a connection that stays quiet goes back to the
//!   runtime, where an idle connection costs no thread, and where draining and the idle
//!   timeout apply. A read that brings more than one call, or part of one, goes back too:
//!   that client pipelines, which the runtime's batching serves better.
//! - Calls run on this thread, through the same dispatch code. A handler that has to wait
//!   (its future is pending) is finished by the runtime, like any other, so cancellation
//!   and shutdown behave as in the runtime's own loop; replies that do not fit the socket at
//!   once, or carry descriptors, are written by the runtime too. This thread never blocks
//!   anywhere but in that bounded `recv`.
//!
//! Limits: handing the worker's tasks over takes a thread from tokio's blocking pool. If a
//! service keeps that pool full (`spawn_blocking` at its `max_blocking_threads`), the worker's
//! queued tasks run only when other workers steal them or the session ends (at most
//! [`MAX_CALLS_PER_SESSION`] calls, or [`IDLE_AFTER`] without one); such a service should set
//! `sequential_threads` to 0.
//!
//! [`ServerConfig::sequential_threads`]: super::ServerConfig::sequential_threads

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::transport::Stream;
use crate::wire::Framer;

/// Calls in a row, each arriving alone in its read, after which a connection may enter
/// sequential mode. Doubled, up to [`MAX_BACKOFF`] times, each time a session of the
/// connection ends because the server got busy; back to this after any other session.
const ENTER_AFTER_CALLS: u32 = 8;

/// How often the calls needed to enter may double (to 8 << 9 = 4096).
const MAX_BACKOFF: u32 = 9;

/// How often (in calls) a session checks that the server is still quiet enough for it.
pub(super) const CHECK_EVERY_CALLS: u32 = 64;

/// Calls one session serves at most before the connection goes back to the runtime's loop
/// for a moment, so a client that never pauses cannot keep a runtime from shutting down
/// (the runtime cancels a connection only while it waits there).
pub(super) const MAX_CALLS_PER_SESSION: u32 = 1024;

/// How long the thread waits for the next call before the connection goes back to the
/// runtime: far above a busy client's gap between calls (tens of microseconds), short enough
/// that draining and shutdown see the connection back in the runtime promptly.
pub(super) const IDLE_AFTER: Duration = Duration::from_millis(25);

/// The connection's socket: registered with the runtime's I/O driver, or, while a thread of
/// its own serves the connection, a blocking Unix socket the driver no longer watches (also
/// the form, for a moment, of a socket moving to another runtime).
pub(super) enum Socket {
    Registered(Stream),
    Blocking(StdUnixStream),
    /// Between the two forms, and after a conversion failed (the socket is then closed).
    Gone,
}

impl Socket {
    /// The stream, registering a blocking socket with the runtime again first (with the
    /// runtime of the current context: the one whose handle was entered, or whose task this is).
    pub(super) fn registered(&mut self) -> io::Result<&mut Stream> {
        if let Socket::Blocking(_) = self
            && let Socket::Blocking(socket) = std::mem::replace(self, Socket::Gone)
        {
            socket.set_nonblocking(true)?;
            *self = Socket::Registered(Stream::Unix(tokio::net::UnixStream::from_std(socket)?));
        }
        match self {
            Socket::Registered(stream) => Ok(stream),
            Socket::Blocking(_) | Socket::Gone => Err(lost()),
        }
    }

    /// The stream, if it is registered (the form everything but sequential mode uses).
    pub(super) fn stream(&self) -> io::Result<&Stream> {
        match self {
            Socket::Registered(stream) => Ok(stream),
            Socket::Blocking(_) | Socket::Gone => Err(lost()),
        }
    }

    /// Takes the socket out of the runtime's epoll set and makes it blocking, with reads
    /// waiting at most [`IDLE_AFTER`]. Only a Unix stream converts; `false` for the others,
    /// and for one whose socket options could not be set (it stays registered). An error
    /// means the runtime could not let go of the socket, which is then closed.
    pub(super) fn make_blocking(&mut self) -> io::Result<bool> {
        if !self.deregister()? {
            return Ok(false);
        }
        let Socket::Blocking(socket) = &*self else {
            unreachable!("deregistered");
        };
        let made = socket
            .set_nonblocking(false)
            .and_then(|()| socket.set_read_timeout(Some(IDLE_AFTER)));
        if made.is_err() {
            self.registered()?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Takes a Unix stream out of the runtime's epoll set: it is [`Socket::Blocking`] then,
    /// though still non-blocking, for sequential mode or for [`Socket::registered`] to
    /// register it with another runtime (a connection moving to the daemon's worker threads,
    /// see `connection::start`). `false` for the other streams, which stay registered. An
    /// error means the runtime could not let go of the socket, which is then closed.
    pub(super) fn deregister(&mut self) -> io::Result<bool> {
        if !matches!(self, Socket::Registered(Stream::Unix(_))) {
            return Ok(false);
        }
        let Socket::Registered(Stream::Unix(stream)) = std::mem::replace(self, Socket::Gone) else {
            unreachable!("matched above");
        };
        *self = Socket::Blocking(stream.into_std()?);
        Ok(true)
    }

    /// True for a Unix stream, in either form: the sockets sequential mode can serve, and
    /// the only ones that can carry file descriptors.
    pub(super) fn is_unix(&self) -> bool {
        matches!(
            self,
            Socket::Registered(Stream::Unix(_)) | Socket::Blocking(_)
        )
    }

    /// The stream, registered with the runtime again if it was blocking: for the connection
    /// to move on as an upgraded stream.
    pub(super) fn into_stream(mut self) -> io::Result<Stream> {
        self.registered()?;
        match self {
            Socket::Registered(stream) => Ok(stream),
            Socket::Blocking(_) | Socket::Gone => Err(lost()),
        }
    }

    /// Writes as much of `bytes` as the socket takes without waiting, in either form.
    pub(super) fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Registered(stream) => stream.try_write(bytes),
            Socket::Blocking(socket) => loop {
                match rustix::net::send(
                    socket,
                    bytes,
                    rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
                ) {
                    Ok(n) => return Ok(n),
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            },
            Socket::Gone => Err(lost()),
        }
    }
}

fn lost() -> io::Error {
    io::Error::other("the connection's socket could not be registered with the runtime again")
}

/// Whether a connection's recent calls make it a candidate for sequential mode.
#[derive(Debug, Default)]
pub(super) struct Streak {
    /// Calls in a row that each arrived alone in a read and left nothing buffered.
    calls: u32,
    /// The server's call count when the streak began.
    server_calls_at_start: u64,
    /// Sessions in a row that ended because the server got busy (at most [`MAX_BACKOFF`]).
    backoff: u32,
}

impl Streak {
    /// Counts a batch of `calls` calls (none: only part of a message arrived) that left
    /// `nothing_buffered`; `server_calls` counts the calls of the whole server.
    pub(super) fn record(&mut self, calls: u32, nothing_buffered: bool, server_calls: &AtomicU64) {
        if calls == 0 {
            return;
        }
        if calls == 1 && nothing_buffered {
            if self.calls == 0 {
                self.server_calls_at_start = server_calls.load(Ordering::Relaxed);
            }
            self.calls = self.calls.saturating_add(1);
        } else {
            self.calls = 0;
        }
    }

    /// True once enough calls came alone while the server was quiet ([`Slots::quiet`]);
    /// either way a full streak starts counting again.
    pub(super) fn complete(&mut self, server_calls: &AtomicU64, slots: &Slots) -> bool {
        if self.calls < ENTER_AFTER_CALLS << self.backoff {
            return false;
        }
        let own = u64::from(self.calls);
        self.calls = 0;
        slots.quiet(
            own,
            server_calls.load(Ordering::Relaxed) - self.server_calls_at_start,
        )
    }

    /// Counts a session that ended, `because_busy` or for any other reason (idle,
    /// pipelining, a waiting handler): a connection whose sessions keep being cut short by
    /// other busy connections tries less and less often.
    pub(super) fn session_ended(&mut self, because_busy: bool) {
        self.backoff = if because_busy {
            (self.backoff + 1).min(MAX_BACKOFF)
        } else {
            0
        };
    }
}

/// Counts the connections of one server in sequential mode, up to a maximum.
#[derive(Debug)]
pub(super) struct Slots {
    used: AtomicUsize,
    max: usize,
}

impl Slots {
    pub(super) fn new(max: usize) -> Slots {
        Slots {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Whether, while a connection answered `own` calls, the `all` calls the whole server
    /// answered leave room for sequential mode: no more connections as busy as this one than
    /// there are places. A thread per connection pays where the runtime would otherwise park
    /// between one client's calls; with more busy connections than CPUs it only adds context
    /// switches (measured: 16 sequential clients were served 20–35 % slower with it).
    pub(super) fn quiet(&self, own: u64, all: u64) -> bool {
        all <= own.saturating_mul(self.max as u64)
    }

    /// A slot, if one is free and this runtime can lend a thread (only the multi-thread one
    /// can: `block_in_place` panics elsewhere).
    pub(super) fn try_acquire(&self) -> Option<Slot<'_>> {
        if self.max == 0
            || !Handle::try_current()
                .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread)
        {
            return None;
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self))
    }
}

/// One connection's place in sequential mode; given back when dropped.
pub(super) struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads what the blocking socket has into `framer`, waiting at most [`IDLE_AFTER`] for it:
/// the byte count (0 at end of file), or `WouldBlock` when the wait ran out.
pub(super) fn recv(socket: &Socket, framer: &mut Framer) -> io::Result<usize> {
    let Socket::Blocking(socket) = socket else {
        return Err(io::ErrorKind::WouldBlock.into());
    };
    framer.reserve_for_read();
    recv_into(socket, framer, rustix::net::RecvFlags::empty())
}

/// One `recv` with `flags` into the framer's free capacity (retried on `EINTR`): the byte
/// count, 0 at end of file. Also used for peeked reads (`peek`).
pub(super) fn recv_into(
    socket: impl AsFd,
    framer: &mut Framer,
    flags: rustix::net::RecvFlags,
) -> io::Result<usize> {
    let buffer = framer.buffer_mut();
    loop {
        let spare: &mut [MaybeUninit<u8>] = buffer.spare_capacity_mut();
        match rustix::net::recv(&socket, spare, flags) {
            Ok(((read, _), _)) => {
                let n = read.len();
                // SAFETY: recv initialized the first `n` bytes of the spare capacity.
                unsafe { buffer.set_len(buffer.len() + n) };
                return Ok(n);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Polls `session` once, on this thread: it reads and dispatches calls until the connection
/// leaves sequential mode (`Some`), or until it has to wait for anything but its own reads
/// (a handler's await, a write that did not fit). Then it is handed back unfinished (`None`):
/// `on_thread` turns false, so it makes no more blocking reads, and the caller finishes it in
/// the runtime, whose waker replaces the no-op one here at its next poll.
pub(super) fn run_here<F: Future + ?Sized>(
    session: Pin<&mut F>,
    on_thread: &AtomicBool,
) -> Option<F::Output> {
    match session.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => {
            on_thread.store(false, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_completes_after_enough_calls_that_came_alone() {
        let server_calls = AtomicU64::new(0);
        let slots = Slots::new(2);
        let mut streak = Streak::default();
        for _ in 0..ENTER_AFTER_CALLS - 1 {
            server_calls.fetch_add(1, Ordering::Relaxed);
            streak.record(1, true, &server_calls);
            assert!(!streak.complete(&server_calls, &slots));
        }
        // A read that held two calls, or left part of one, starts over.
        streak.record(2, true, &server_calls);
        assert!(!streak.complete(&server_calls, &slots));
        for _ in 0..ENTER_AFTER_CALLS {
            server_calls.fetch_add(1, Ordering::Relaxed);
            streak.record(1, true, &server_calls);
        }
        assert!(streak.complete(&server_calls, &slots));
        // Completing starts a new streak.
        assert!(!streak.complete(&server_calls, &slots));
        // After a session cut short because the server got busy, twice as many calls.
        streak.session_ended(true);
        for _ in 0..ENTER_AFTER_CALLS {
            server_calls.fetch_add(1, Ordering::Relaxed);
            streak.record(1, true, &server_calls);
        }
        assert!(!streak.complete(&server_calls, &slots), "needs 16 now");
        for _ in 0..2 * ENTER_AFTER_CALLS {
            server_calls.fetch_add(1, Ordering::Relaxed);
            streak.record(1, true, &server_calls);
        }
        assert!(streak.complete(&server_calls, &slots));
        streak.session_ended(false);
        for _ in 0..ENTER_AFTER_CALLS {
            server_calls.fetch_add(1, Ordering::Relaxed);
            streak.record(1, true, &server_calls);
        }
        assert!(streak.complete(&server_calls, &slots), "back to 8");
        // A read with only part of a message changes nothing.
        streak.record(0, false, &server_calls);
        assert!(!streak.complete(&server_calls, &slots));
    }

    #[test]
    fn a_streak_on_a_busy_server_does_not_complete() {
        let server_calls = AtomicU64::new(0);
        let slots = Slots::new(2);
        let mut streak = Streak::default();
        for _ in 0..ENTER_AFTER_CALLS {
            // Two other connections as busy as this one: more than the two places allow.
            server_calls.fetch_add(3, Ordering::Relaxed);
            streak.record(1, true, &server_calls);
        }
        assert!(!streak.complete(&server_calls, &slots));
        assert!(slots.quiet(8, 16));
        assert!(!slots.quiet(8, 17));
        assert!(!Slots::new(0).quiet(8, 8));
    }

    #[test]
    fn slots_are_counted_and_given_back() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let _entered = runtime.enter();
        let slots = Slots::new(2);
        let first = slots.try_acquire().expect("a first slot");
        let second = slots.try_acquire().expect("a second slot");
        assert!(slots.try_acquire().is_none(), "only two");
        drop(first);
        assert!(slots.try_acquire().is_some(), "given back");
        drop(second);
        assert!(Slots::new(0).try_acquire().is_none());
    }

    #[test]
    fn no_slot_outside_a_multi_thread_runtime() {
        let slots = Slots::new(2);
        assert!(slots.try_acquire().is_none(), "no runtime");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _entered = runtime.enter();
        assert!(slots.try_acquire().is_none(), "current-thread runtime");
    }
}
