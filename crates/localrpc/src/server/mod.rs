//! The server runtime on tokio: accept loops, one task per connection, drain and idle exit.
//!
//! Each connection reads whatever the socket has, dispatches every complete call in order,
//! and writes all replies of that batch with one write. Nothing a peer does on one connection
//! (a huge message, a protocol violation, not reading) affects another.
//!
//! Stopping is two steps so a daemon can tell its service manager in between:
//! [`Server::serve`] returns when asked to stop (or when idle) and no longer accepts;
//! [`Server::drain`] then lets every connection finish the calls it has received and closes it.

mod connection;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::service::{PeerCredentials, Service};
use crate::transport::{Listener, Stream};
use crate::wire::DEFAULT_MAX_MESSAGE_SIZE;

/// Limits and tuning of a server. Every field is a documented, named setting.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted message in bytes (the NUL excluded); a larger one closes its
    /// connection and is counted in [`ServerStats::oversized_messages`]. Default 16 MiB.
    pub max_message_size: usize,
    /// Stop serving after this long without any connection (`None`: never). Default `None`.
    pub exit_on_idle: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { max_message_size: DEFAULT_MAX_MESSAGE_SIZE, exit_on_idle: None }
    }
}

/// Counters a server keeps, readable while it runs.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Calls dispatched (including those answered with an error).
    pub calls: AtomicU64,
    /// Connections closed because a message exceeded the maximum size.
    pub oversized_messages: AtomicU64,
    /// Connections closed because of a malformed message.
    pub protocol_errors: AtomicU64,
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
    /// Number of open connections; watched for idle exit and drain.
    active: watch::Sender<usize>,
    /// Set once draining: connections close as soon as they are idle.
    draining: watch::Sender<bool>,
}

/// How long to pause accepting after the process or system runs out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl Server {
    /// A server with the default configuration.
    pub fn new(service: Service) -> Self {
        Server::with_config(service, ServerConfig::default())
    }

    /// A server with the given configuration.
    pub fn with_config(service: Service, config: ServerConfig) -> Self {
        Server {
            service: Arc::new(service),
            config: Arc::new(config),
            stats: Arc::new(ServerStats::default()),
            active: watch::Sender::new(0),
            draining: watch::Sender::new(false),
        }
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
    pub async fn serve(&self, listeners: Vec<Listener>, shutdown: impl Future<Output = ()>) -> StopReason {
        let mut accept_loops = tokio::task::JoinSet::new();
        for listener in listeners {
            let server = self.clone();
            accept_loops.spawn(async move {
                // Aborting this task drops the guard, which removes our socket file.
                let guard = OwnedSocketFile(listener);
                server.accept_loop(&guard.0).await;
            });
        }
        let reason = tokio::select! {
            () = shutdown => StopReason::Shutdown,
            () = self.idle(self.config.exit_on_idle) => StopReason::Idle,
        };
        accept_loops.abort_all();
        while accept_loops.join_next().await.is_some() {}
        reason
    }

    /// Completes once there has been no connection for `limit` (never when `None`).
    async fn idle(&self, limit: Option<Duration>) {
        let Some(limit) = limit else { return std::future::pending().await };
        let mut active = self.active.subscribe();
        loop {
            if active.wait_for(|n| *n == 0).await.is_err() {
                return std::future::pending().await;
            }
            if tokio::time::timeout(limit, active.wait_for(|n| *n > 0)).await.is_err() {
                return;
            }
        }
    }

    /// Asks every connection to close once it has answered the calls it has received, and
    /// waits up to `grace` for all of them. Returns true when none is left.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.draining.send_replace(true);
        let mut active = self.active.subscribe();
        matches!(tokio::time::timeout(grace, active.wait_for(|n| *n == 0)).await, Ok(Ok(_)))
    }

    async fn accept_loop(&self, listener: &Listener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let server = self.clone();
                    tokio::spawn(async move { server.serve_connection(stream, peer).await });
                }
                Err(error) => {
                    // EMFILE/ENFILE/ENOBUFS and the like: back off instead of spinning.
                    tracing::warn!(address = %listener.local_address(), %error, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    /// Serves one already-connected stream until the peer closes it (or the server drains).
    pub async fn serve_connection(&self, stream: Stream, peer: Option<PeerCredentials>) {
        ServerStats::bump(&self.stats.connections_accepted);
        let _active = ActiveConnection::enter(&self.active);
        let draining = self.draining.subscribe();
        connection::run(&self.service, &self.config, &self.stats, draining, stream, peer).await;
    }
}

/// Closes the listener and removes the socket file it created when dropped.
struct OwnedSocketFile(Listener);

impl Drop for OwnedSocketFile {
    fn drop(&mut self) {
        self.0.remove_socket_file();
    }
}

/// Counts a connection as open for as long as it lives, even if its task is aborted.
struct ActiveConnection<'a>(&'a watch::Sender<usize>);

impl<'a> ActiveConnection<'a> {
    fn enter(active: &'a watch::Sender<usize>) -> Self {
        active.send_modify(|n| *n += 1);
        ActiveConnection(active)
    }
}

impl Drop for ActiveConnection<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}
