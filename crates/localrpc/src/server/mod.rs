//! The server runtime on tokio: accept loops and one task per connection.
//!
//! Each connection reads whatever the socket has, dispatches every complete call in order,
//! and writes all replies of that batch with one write. Nothing a peer does on one connection
//! (a huge message, a protocol violation, not reading) affects another.

mod connection;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::service::{PeerCredentials, Service};
use crate::transport::{Listener, Stream};
use crate::wire::DEFAULT_MAX_MESSAGE_SIZE;

/// Limits and tuning of a server. Every field is a documented, named setting.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted message in bytes (the NUL excluded); a larger one closes its
    /// connection and is counted in [`ServerStats::oversized_messages`]. Default 16 MiB.
    pub max_message_size: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// Counters a server keeps, readable while it runs.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Connections open now.
    pub connections_active: AtomicU64,
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

/// Serves a [`Service`] on listeners or single connections.
#[derive(Clone)]
pub struct Server {
    service: Arc<Service>,
    config: Arc<ServerConfig>,
    stats: Arc<ServerStats>,
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
        }
    }

    /// The server's counters.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }

    /// Accepts connections on every listener until `shutdown` completes, then stops
    /// accepting and removes the socket files this process created. Connections already
    /// accepted keep running on the runtime.
    pub async fn serve(&self, listeners: Vec<Listener>, shutdown: impl Future<Output = ()>) {
        let mut accept_loops = tokio::task::JoinSet::new();
        for listener in listeners {
            let server = self.clone();
            accept_loops.spawn(async move {
                // Aborting this task drops the guard, which removes our socket file.
                let guard = OwnedSocketFile(listener);
                server.accept_loop(&guard.0).await;
            });
        }
        shutdown.await;
        accept_loops.abort_all();
        while accept_loops.join_next().await.is_some() {}
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

    /// Serves one already-connected stream until the peer closes it.
    pub async fn serve_connection(&self, stream: Stream, peer: Option<PeerCredentials>) {
        ServerStats::bump(&self.stats.connections_accepted);
        let _active = ActiveConnection::enter(&self.stats);
        connection::run(&self.service, &self.config, &self.stats, stream, peer).await;
    }
}

/// Closes the listener and removes the socket file it created when dropped.
struct OwnedSocketFile(Listener);

impl Drop for OwnedSocketFile {
    fn drop(&mut self) {
        self.0.remove_socket_file();
    }
}

/// Counts a connection as active for as long as it lives, even if its task is aborted.
struct ActiveConnection<'a>(&'a ServerStats);

impl<'a> ActiveConnection<'a> {
    fn enter(stats: &'a ServerStats) -> Self {
        stats.connections_active.fetch_add(1, Ordering::Relaxed);
        ActiveConnection(stats)
    }
}

impl Drop for ActiveConnection<'_> {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}
