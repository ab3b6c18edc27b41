//! The server runtime on tokio: accept loops, one task per connection, drain and idle exit.
//!
//! Each connection reads whatever the socket has, dispatches every complete call in order,
//! and writes all replies of that batch with one write. Nothing a peer does on one connection
//! (a huge message, a protocol violation, not reading) affects another. A Unix-socket client
//! that makes one call at a time, on an otherwise quiet server, is served for a while from a
//! thread of its own that blocks in `recv` ([`ServerConfig::sequential_threads`]); on a busy
//! server, its calls are read with `MSG_PEEK` and taken off the socket later, so that a client
//! blocked in `recv` is woken once per call, by its reply (`peek`).
//!
//! Stopping is two steps so a daemon can tell its service manager in between:
//! [`Server::serve`] returns when asked to stop (or when idle) and no longer accepts;
//! [`Server::drain`] then lets every connection finish the calls it has received and closes it.

mod connection;
mod peek;
mod sequential;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::service::{Peer, PeerCredentials, PeerPidfd, Service};
use crate::transport::{Listener, Stream};
use crate::wire::DEFAULT_MAX_MESSAGE_SIZE;

/// Limits and tuning of a server. Every field is a documented, named setting; the defaults
/// follow systemd's sd-varlink where it has one.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted message in bytes (the NUL excluded); a larger one closes its
    /// connection and is counted in [`ServerStats::oversized_messages`]. Default 16 MiB.
    pub max_message_size: usize,
    /// Connections open at once; further ones are closed right after accept and counted in
    /// [`ServerStats::connections_refused`]. Default 4096, and never more than 3/4 of
    /// `RLIMIT_NOFILE` (as sd-varlink), read when the server is created.
    pub max_connections: usize,
    /// Connections open at once per peer uid (Unix sockets). Default 1024.
    pub max_connections_per_uid: usize,
    /// Replies buffered for one connection before they are written out mid-batch; with
    /// `write_timeout`, bounds the memory a peer that does not read can pin. Default 1 MiB.
    pub max_queued_output: usize,
    /// How long a write may make no progress before the peer is considered gone (it is not
    /// reading its replies). Default 60 s.
    pub write_timeout: Duration,
    /// How long a message may take to arrive once its first byte is in (slow senders).
    /// Default 60 s.
    pub message_timeout: Duration,
    /// Per-call deadline: a handler running longer fails the call with
    /// `io.localrpc.CallTimedOut`. Default none.
    pub call_timeout: Option<Duration>,
    /// Close connections idle (nothing received, nothing in flight) this long. Default none.
    pub idle_timeout: Option<Duration>,
    /// Stop serving after this long without any connection (`None`: never). Default `None`.
    pub exit_on_idle: Option<Duration>,
    /// File descriptors one message may pass (only matters when some method accepts them,
    /// see `InterfaceBuilder::accept_fds`). The receive buffer holds this many; a message
    /// with more is truncated by the kernel (`MSG_CTRUNC`): the descriptors that arrived are
    /// closed and so is the connection. Default and maximum 253 (`SCM_MAX_FD`, what one
    /// `sendmsg` can carry). At most twice this many wait for their messages per connection.
    pub max_fds_per_message: usize,
    /// Connections served in sequential mode at once. A Unix-socket client that calls, waits
    /// for the reply and calls again gets a thread of its own that blocks in `recv` for its
    /// next call, as a thread-per-connection server does: two syscalls per call instead of
    /// the epoll loop's four and the runtime's wake-up. The connection returns to the
    /// runtime's loop after 25 ms without a call, or when its client starts pipelining.
    /// Only on tokio's multi-thread runtime, and not for services that accept file
    /// descriptors; 0 turns it off. Default 2.
    pub sequential_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: 4096,
            max_connections_per_uid: 1024,
            max_queued_output: 1024 * 1024,
            write_timeout: Duration::from_secs(60),
            message_timeout: Duration::from_secs(60),
            call_timeout: None,
            idle_timeout: None,
            exit_on_idle: None,
            max_fds_per_message: crate::wire::SCM_MAX_FD,
            sequential_threads: 2,
        }
    }
}

/// The most connections a server allows: 3/4 of the soft `RLIMIT_NOFILE`, as sd-varlink. A
/// connection holds its socket, and a pidfd only once a handler asks for one
/// ([`PeerPidfd::get`]); when the fds run out, accepting backs off and `get` returns `None`.
fn connection_cap_from_rlimit() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.map_or(usize::MAX, |n| {
        usize::try_from(n / 4 * 3).unwrap_or(usize::MAX)
    })
}

/// Counters a server keeps, readable while it runs (serialized as one JSON object of numbers,
/// as `io.localrpc.Control.GetStats` answers with them).
#[derive(Debug, Default, serde::Serialize)]
pub struct ServerStats {
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Calls dispatched (including those answered with an error).
    pub calls: AtomicU64,
    /// Connections closed because a message exceeded the maximum size.
    pub oversized_messages: AtomicU64,
    /// Connections closed because of a malformed message.
    pub protocol_errors: AtomicU64,
    /// Connections closed at accept because a connection limit was reached.
    pub connections_refused: AtomicU64,
    /// Connections closed because a peer was too slow (sending a message, reading replies)
    /// or idle past the idle timeout.
    pub timeouts: AtomicU64,
    /// Times a connection entered sequential mode ([`ServerConfig::sequential_threads`]).
    pub sequential_sessions: AtomicU64,
}

impl ServerStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why [`Server::serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The shutdown future completed.
    Shutdown,
    /// No connection for [`ServerConfig::exit_on_idle`].
    Idle,
}

/// Serves a [`Service`] on listeners or single connections.
#[derive(Clone)]
pub struct Server {
    service: Arc<Service>,
    config: Arc<ServerConfig>,
    stats: Arc<ServerStats>,
    /// Connections in sequential mode ([`ServerConfig::sequential_threads`]).
    sequential: Arc<sequential::Slots>,
    /// Number of open connections; watched for idle exit and drain.
    active: watch::Sender<usize>,
    /// Set once draining: connections close as soon as they are idle.
    draining: watch::Sender<bool>,
    /// Open connections per peer uid.
    per_uid: UidCounts,
    /// When a refusal was last logged (refusals are logged at most once a second).
    refusal_logged: Arc<Mutex<Option<Instant>>>,
}

/// Open connections per peer uid, shared by the server and its connections.
type UidCounts = Arc<Mutex<HashMap<u32, usize>>>;

/// How long to pause accepting after the process or system runs out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl Server {
    /// A server with the default configuration.
    pub fn new(service: Service) -> Self {
        Server::with_config(service, ServerConfig::default())
    }

    /// A server with the given configuration (`max_connections` is capped by
    /// `RLIMIT_NOFILE`, see [`ServerConfig::max_connections`]).
    pub fn with_config(mut service: Service, mut config: ServerConfig) -> Self {
        service.set_call_timeout(config.call_timeout);
        config.max_connections = config
            .max_connections
            .min(connection_cap_from_rlimit())
            .max(1);
        Server {
            service: Arc::new(service),
            sequential: Arc::new(sequential::Slots::new(config.sequential_threads)),
            config: Arc::new(config),
            stats: Arc::new(ServerStats::default()),
            active: watch::Sender::new(0),
            draining: watch::Sender::new(false),
            per_uid: Arc::default(),
            refusal_logged: Arc::default(),
        }
    }

    /// The configuration in force (with `max_connections` capped).
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    /// Connections open now.
    pub fn active_connections(&self) -> usize {
        *self.active.borrow()
    }

    /// Accepts connections on every listener until `shutdown` completes (or the server has
    /// been idle for [`ServerConfig::exit_on_idle`]), then stops accepting, closes the
    /// listeners and removes the socket files this process created. Connections already
    /// accepted keep running: follow with [`Server::drain`].
    pub async fn serve(
        &self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()>,
    ) -> StopReason {
        self.serve_then_move(listeners, shutdown, None).await
    }

    /// [`Server::serve`], with the accept loops starting on the current runtime and moving to
    /// the runtime whose handle `pool` publishes, once it does (see `daemon::pool`):
    /// connections accepted from then on are served there, and those accepted before (on
    /// Unix sockets) move there too, each once it waits for its next call.
    pub(crate) async fn serve_then_move(
        &self,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()>,
        pool: Option<watch::Receiver<Option<Handle>>>,
    ) -> StopReason {
        let to_pool = pool.map(|pool| self.to_pool(pool));
        let mut accept_loops = tokio::task::JoinSet::new();
        for listener in listeners {
            let server = self.clone();
            let pool = to_pool.clone();
            // Aborting the task drops the guard, which removes our socket file: made here, not
            // inside the task, so that this holds for a task aborted before it first ran.
            let guard = OwnedSocketFile(listener);
            accept_loops.spawn(async move { server.accept_until_moved(guard, pool).await });
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut idle = std::pin::pin!(self.idle(self.config.exit_on_idle));
        let reason = loop {
            tokio::select! {
                () = &mut shutdown => break StopReason::Shutdown,
                () = &mut idle => break StopReason::Idle,
                Some(joined) = accept_loops.join_next() => {
                    // A loop returns only to move (or when it panicked, which ends it).
                    if let Ok(Some((guard, pool))) = joined {
                        let server = self.clone();
                        accept_loops.spawn_on(
                            async move { server.accept_until_moved(guard, None).await },
                            &pool,
                        );
                    }
                }
            }
        };
        accept_loops.abort_all();
        while accept_loops.join_next().await.is_some() {}
        reason
    }

    /// How the connections accepted on this runtime move to the runtime whose handle `pool`
    /// publishes: [`ToPool`], and the task that tells them when.
    fn to_pool(&self, pool: watch::Receiver<Option<Handle>>) -> ToPool {
        let (leave, leave_rx) = watch::channel(false);
        let mut draining = self.draining.subscribe();
        let mut published = pool.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = draining.wait_for(|d| *d) => {}
                Ok(_) = published.wait_for(Option::is_some) => {}
            }
            leave.send_replace(true);
        });
        ToPool {
            leave: leave_rx,
            pool: Arc::new(pool),
        }
    }

    /// Accepts on `listener` until the pool publishes its handle, then registers the
    /// listener with that runtime and returns both, for the caller to go on there. Without a
    /// pool (or when the move fails) it accepts here until aborted.
    async fn accept_until_moved(
        self,
        mut listener: OwnedSocketFile,
        to_pool: Option<ToPool>,
    ) -> Option<(OwnedSocketFile, Handle)> {
        if let Some(to_pool) = &to_pool {
            let mut pool = (*to_pool.pool).clone();
            let published = async {
                let published = pool.wait_for(Option::is_some).await.map(|h| h.clone());
                match published {
                    Ok(handle) => handle,
                    // The pool will never come: keep accepting here.
                    Err(_) => std::future::pending().await,
                }
            };
            let handle = tokio::select! {
                // A published pool wins: once it runs, nothing more is accepted here.
                biased;
                handle = published => handle,
                () = self.accept_loop(&listener.0, Some(to_pool)) => None,
            };
            if let Some(handle) = handle {
                match listener.0.register_with(&handle) {
                    Ok(()) => return Some((listener, handle)),
                    Err(error) => tracing::warn!(address = %listener.0.local_address(), %error,
                        "cannot move the listener to the worker threads; accepting on the main thread"),
                }
            }
        }
        self.accept_loop(&listener.0, to_pool.as_ref()).await;
        None
    }

    /// Completes once there has been no connection for `limit` (never when `None`).
    async fn idle(&self, limit: Option<Duration>) {
        let Some(limit) = limit else {
            return std::future::pending().await;
        };
        let mut active = self.active.subscribe();
        loop {
            if active.wait_for(|n| *n == 0).await.is_err() {
                return std::future::pending().await;
            }
            if tokio::time::timeout(limit, active.wait_for(|n| *n > 0))
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Asks every connection to close once it has answered the calls it has received, and
    /// waits up to `grace` for all of them. Returns true when none is left.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.draining.send_replace(true);
        let mut active = self.active.subscribe();
        matches!(
            tokio::time::timeout(grace, active.wait_for(|n| *n == 0)).await,
            Ok(Ok(_))
        )
    }

    /// Accepts connections and spawns a task for each on the current runtime (to move to the
    /// pool later, with `to_pool`); never returns.
    async fn accept_loop(&self, listener: &Listener, to_pool: Option<&ToPool>) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match self.admit(peer) {
                    Some(admitted) => {
                        tokio::spawn(self.clone().run_connection(admitted, stream, peer, to_pool));
                    }
                    None => self.refuse(stream, peer),
                },
                Err(error) => {
                    // EMFILE/ENFILE/ENOBUFS and the like: back off instead of spinning.
                    tracing::warn!(address = %listener.local_address(), %error, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// Serves one already-connected stream until the peer closes it (or the server drains).
    /// The connection limits apply: over a limit, the stream is closed at once.
    pub async fn serve_connection(&self, stream: Stream, peer: Option<PeerCredentials>) {
        match self.admit(peer) {
            Some(admitted) => {
                self.clone()
                    .run_connection(admitted, stream, peer, None)
                    .await
            }
            None => self.refuse(stream, peer),
        }
    }

    /// The future that serves an admitted connection (see `connection::start`), counted as open
    /// until it ends. With `to_pool`, a Unix socket's connection moves to the pool once it
    /// runs (the other streams stay).
    ///
    /// A function that returns the connection's future rather than an `async fn`: an async
    /// function's arguments stay in its future for its whole life, besides the copies its
    /// body moves on (rust-lang/rust#62958), so each layer between the spawn and the
    /// connection's loop made every connection's task larger by its arguments.
    fn run_connection(
        self,
        admitted: ActiveConnection,
        stream: Stream,
        peer: Option<PeerCredentials>,
        to_pool: Option<&ToPool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        ServerStats::bump(&self.stats.connections_accepted);
        // A connection that will move waits for `leave` instead of the drain alone.
        let (draining, pool) = match to_pool {
            Some(to_pool) if matches!(stream, Stream::Unix(_)) => {
                (to_pool.leave.clone(), Some(to_pool.pool.clone()))
            }
            _ => (self.draining.subscribe(), None),
        };
        let (pidfd, pidfd_guard) = match stream.unix_socket_fd() {
            Some(socket) => {
                let (pidfd, guard) = PeerPidfd::for_socket(socket);
                (pidfd, Some(guard))
            }
            None => (PeerPidfd::default(), None),
        };
        let peer = Peer {
            credentials: peer,
            pidfd,
        };
        connection::start(self, admitted, draining, stream, pidfd_guard, peer, pool)
    }

    /// Counts a new connection in, or `None` when a limit is reached.
    fn admit(&self, peer: Option<PeerCredentials>) -> Option<ActiveConnection> {
        let max = self.config.max_connections;
        if !self.active.send_if_modified(|n| {
            *n < max && {
                *n += 1;
                true
            }
        }) {
            return None;
        }
        let mut admitted = ActiveConnection {
            active: self.active.clone(),
            uid: None,
        };
        if let Some(uid) = peer.map(|p| p.uid) {
            let mut per_uid = self.per_uid.lock().unwrap_or_else(|p| p.into_inner());
            let count = per_uid.entry(uid).or_insert(0);
            if *count >= self.config.max_connections_per_uid {
                return None; // dropping `admitted` gives the slot back
            }
            *count += 1;
            admitted.uid = Some((uid, self.per_uid.clone()));
        }
        Some(admitted)
    }

    /// Closes a connection over a limit: a plain close, as sd-varlink does (the peer's
    /// first read sees EOF or ECONNRESET; nothing it sent was processed).
    fn refuse(&self, stream: Stream, peer: Option<PeerCredentials>) {
        ServerStats::bump(&self.stats.connections_refused);
        drop(stream);
        let mut logged = self
            .refusal_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            *logged = Some(Instant::now());
            tracing::warn!(
                ?peer,
                max_connections = self.config.max_connections,
                max_connections_per_uid = self.config.max_connections_per_uid,
                refused_total = self.stats.connections_refused.load(Ordering::Relaxed),
                "connection limit reached; closing new connections"
            );
        }
    }
}

/// What lets the connections accepted on a daemon's main runtime move to its worker pool
/// (see `daemon::pool` and `connection::start`).
#[derive(Clone)]
struct ToPool {
    /// Turns true once the pool runs or the server drains: such a connection waits for this
    /// instead of the drain alone, and when it fires while the server is not draining, moves.
    leave: watch::Receiver<bool>,
    /// The pool's handle, once published (shared: one word in each connection's task).
    pool: Arc<watch::Receiver<Option<Handle>>>,
}

/// Closes the listener and removes the socket file it created when dropped.
struct OwnedSocketFile(Listener);

impl Drop for OwnedSocketFile {
    fn drop(&mut self) {
        self.0.remove_socket_file();
    }
}

/// Counts a connection as open (in total and for its uid) for as long as it lives, even if
/// its task is aborted.
struct ActiveConnection {
    active: watch::Sender<usize>,
    uid: Option<(u32, UidCounts)>,
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.active.send_modify(|n| *n -= 1);
        if let Some((uid, per_uid)) = &self.uid {
            let mut per_uid = per_uid.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = per_uid.get_mut(uid) {
                *count -= 1;
                if *count == 0 {
                    per_uid.remove(uid);
                }
            }
        }
    }
}
