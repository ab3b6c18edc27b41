//! The worker pool of [`Daemon::run_blocking`](super::Daemon::run_blocking): a daemon starts on
//! a current-thread runtime on the main thread, and builds its multi-thread runtime (the
//! pool) only once it has nothing more urgent to do.
//!
//! Creating and starting the pool's worker threads delays a socket-activated daemon's first
//! reply, most where thread creation is slow: in a small VM, `localrpcd`'s first reply took
//! 1.24–1.31× a plain blocking echo server's (raw-echo) with the multi-thread runtime built
//! first, and 1.04–1.11× with this. So a socket-activated daemon's main-thread runtime serves
//! its first caller, and the pool is built when that runtime is about to sleep
//! (`on_thread_park`) once a call has arrived: after its reply is written, or while its
//! handler waits for something (or once the caller has left without a call). (A daemon that
//! binds its own sockets has nobody waiting: it runs on the multi-thread runtime alone.)
//! The accept loops then move to the pool (`Server::serve_then_move`), so later connections
//! are served there as by a plain multi-thread runtime, sequential mode included. A
//! connection accepted before (on a Unix socket) moves there too, as soon as it waits for its
//! next call with nothing buffered: the caller's first reply comes from the main thread, its
//! later calls from the pool (`connection::start`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

use crate::server::Server;

/// The pool, once built, and when to build it.
#[derive(Default)]
pub(super) struct Pool {
    /// The pool's handle, published to the accept loops once it runs.
    handle: watch::Sender<Option<Handle>>,
    /// The pool itself, taken by [`Pool::shut_down`] (a runtime cannot be dropped from
    /// async code, so it outlives the main runtime's `block_on`).
    runtime: Mutex<Option<Runtime>>,
    /// The daemon's server, set once it exists: its first call makes the pool due.
    server: OnceLock<Server>,
    /// Set when the pool's build was attempted.
    tried: AtomicBool,
}

impl Pool {
    /// The pool's handle as the accept loops watch it: `None` until the pool runs.
    pub(super) fn subscribe(&self) -> watch::Receiver<Option<Handle>> {
        self.handle.subscribe()
    }

    /// Allows the pool to be built for `server`, once its first caller has been answered.
    pub(super) fn allow(&self, server: &Server) {
        // Only the daemon's one server is ever given; a second call changes nothing.
        let _ = self.server.set(server.clone());
    }

    /// The main runtime's `on_thread_park` hook: builds the pool when it is due, once.
    pub(super) fn on_main_park(&self) {
        if self.server.get().is_some_and(is_due) {
            self.build();
        }
    }

    /// Builds the pool and publishes its handle, unless that was tried before. Runs on the
    /// main runtime's thread only, so the check and the store do not race.
    fn build(&self) {
        if self.tried.swap(true, Ordering::Relaxed) {
            return;
        }
        match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(pool) => {
                let handle = pool.handle().clone();
                *self.runtime.lock().unwrap_or_else(|p| p.into_inner()) = Some(pool);
                self.handle.send_replace(Some(handle));
            }
            // Not tried again: the main thread's runtime goes on serving everything.
            Err(error) => tracing::warn!(%error,
                "cannot start the worker threads; serving from the main thread"),
        }
    }

    /// Shuts the pool down (its connections are dropped); call after the main runtime's
    /// `block_on` has returned.
    pub(super) fn shut_down(&self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(runtime);
    }
}

/// Whether the pool is due: once `server` has taken a call (the main thread parks after
/// writing its reply, or while its handler waits) or its first connection has closed.
fn is_due(server: &Server) -> bool {
    let stats = server.stats();
    stats.calls.load(Ordering::Relaxed) > 0
        || (stats.connections_accepted.load(Ordering::Relaxed) > 0
            && server.active_connections() == 0)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::Path;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use crate::daemon::{Daemon, DaemonOptions, Notifier};
    use crate::service::{InterfaceBuilder, Reply, Service};
    use crate::transport::ActivatedFd;

    /// The daemon's thread: what `Thread` answers while served by the main runtime.
    const MAIN: &str = "daemon-main";

    /// The name of the thread running this.
    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    fn service() -> Service {
        let interface = InterfaceBuilder::new(
            "interface org.example.pool\n\
             method Thread() -> (name: string)\n\
             method Threads(count: int, ms: int) -> (name: string)\n\
             method Sleep(ms: int) -> ()\n",
        )
        .expect("IDL parses")
        .method("Thread", |_call| {
            Box::pin(async { Reply::with(json!({ "name": thread_name() })) })
        })
        .streaming_method("Threads", |mut call| {
            Box::pin(async move {
                // `count` replies, `ms` apart, each naming the thread that sent it.
                let count: u64 = call.parameter("count")?;
                let ms: u64 = call.parameter("ms")?;
                for _ in 1..count {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if call
                        .replies
                        .send(json!({ "name": thread_name() }))
                        .await
                        .is_err()
                    {
                        return Ok(Reply::empty());
                    }
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Reply::with(json!({ "name": thread_name() }))
            })
        })
        .method("Sleep", |call| {
            Box::pin(async move {
                let ms: u64 = call.parameter("ms")?;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Reply::empty())
            })
        });
        Service::builder()
            .interface(interface)
            .build()
            .expect("service builds")
    }

    /// A blocking client connection.
    struct Client(BufReader<UnixStream>);

    impl Client {
        fn connect(path: &Path) -> Client {
            let stream = UnixStream::connect(path).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            Client(BufReader::new(stream))
        }

        fn send(&mut self, method: &str, parameters: Value) {
            self.write(&message(method, parameters));
        }

        fn write(&mut self, bytes: &[u8]) {
            self.0.get_mut().write_all(bytes).expect("write");
        }

        /// The next reply, or `None` at EOF.
        fn reply(&mut self) -> Option<Value> {
            let mut reply = Vec::new();
            let n = self
                .0
                .read_until(0, &mut reply)
                .expect("a reply within 5 s");
            if n == 0 {
                return None;
            }
            assert_eq!(reply.pop(), Some(0), "a whole reply");
            Some(serde_json::from_slice(&reply).expect("JSON"))
        }

        /// The name of the thread that answers `Thread`.
        fn thread(&mut self) -> String {
            self.send("org.example.pool.Thread", json!({}));
            self.thread_reply()
        }

        /// The thread named by the next reply.
        fn thread_reply(&mut self) -> String {
            let reply = self.reply().expect("a reply");
            reply["parameters"]["name"]
                .as_str()
                .expect("a name")
                .to_owned()
        }

        /// Calls `Thread` until a pool thread answers it (the connection moves once the
        /// pool's start has reached it), then checks that it stays there.
        fn moves_to_the_pool(&mut self) {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut thread = self.thread();
            while thread == MAIN {
                assert!(Instant::now() < deadline, "the connection never moved");
                std::thread::sleep(Duration::from_millis(10));
                thread = self.thread();
            }
            for _ in 0..20 {
                assert_ne!(self.thread(), MAIN, "a moved connection stays on the pool");
            }
        }
    }

    /// A call as sent: JSON and its NUL.
    fn message(method: &str, parameters: Value) -> Vec<u8> {
        let mut call = serde_json::to_vec(&json!({ "method": method, "parameters": parameters }))
            .expect("encodes");
        call.push(0);
        call
    }

    /// Starts a daemon on `path` (exit-on-idle after `idle`) on a thread named [`MAIN`]:
    /// socket-activated when `activation` is given, else on a socket it binds itself.
    fn start(
        activation: Vec<ActivatedFd>,
        path: &Path,
        idle: Duration,
    ) -> std::thread::JoinHandle<Result<(), String>> {
        let daemon = Daemon {
            name: "pool-test".into(),
            activation,
            notifier: Notifier::default(),
            varlink_listen: None,
        };
        let mut options = DaemonOptions::new(path);
        options.control = false;
        options.server.exit_on_idle = Some(idle);
        std::thread::Builder::new()
            .name(MAIN.into())
            .spawn(move || {
                daemon
                    .run_blocking(service(), options)
                    .map_err(|e| e.to_string())
            })
            .expect("thread")
    }

    /// Starts a socket-activated daemon, with a client that connected before it started, as
    /// under activation.
    fn activated(
        dir: &Path,
        idle: Duration,
    ) -> (Client, std::thread::JoinHandle<Result<(), String>>) {
        activated_after(dir, idle, &[])
    }

    /// [`activated`], with the client's first bytes `sent` before the daemon starts.
    fn activated_after(
        dir: &Path,
        idle: Duration,
        sent: &[u8],
    ) -> (Client, std::thread::JoinHandle<Result<(), String>>) {
        let path = dir.join("pool.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let mut first = Client::connect(&path);
        first.write(sent);
        let activation = vec![ActivatedFd {
            fd: listener.into(),
            name: "varlink".into(),
        }];
        (first, start(activation, &path, idle))
    }

    /// Connects until a connection is served by the pool (the first ones may still be
    /// accepted on the main thread while the pool starts).
    fn pool_client(path: &Path) -> (Client, String) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut client = Client::connect(path);
            let thread = client.thread();
            if thread != MAIN {
                return (client, thread);
            }
            assert!(Instant::now() < deadline, "the pool never took over");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_first_caller_is_answered_on_the_main_thread_and_later_calls_on_the_pool() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut first, running) = activated(dir.path(), Duration::from_millis(200));
        assert_eq!(first.thread(), MAIN, "the caller that started the daemon");
        let (mut later, pool_thread) = pool_client(&dir.path().join("pool.sock"));
        assert_eq!(
            later.thread(),
            pool_thread,
            "a pool connection stays on the pool"
        );
        // The first connection follows, between two calls.
        first.moves_to_the_pool();
        drop((first, later));
        // No connection left: the daemon exits on idle, and the pool is shut down with it.
        assert_eq!(running.join().expect("no panic"), Ok(()));
    }

    #[test]
    fn a_connection_in_a_more_stream_moves_once_the_stream_is_done() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut first, running) = activated(dir.path(), Duration::from_millis(200));
        // The pool starts while the first call's replies are being sent.
        let replies = 10;
        first.write(
            br#"{"method":"org.example.pool.Threads","parameters":{"count":10,"ms":30},"more":true}"#,
        );
        first.write(b"\0");
        let (later, _) = pool_client(&dir.path().join("pool.sock"));
        for _ in 0..replies {
            assert_eq!(first.thread_reply(), MAIN, "a stream is not interrupted");
        }
        first.moves_to_the_pool();
        drop((first, later));
        assert_eq!(running.join().expect("no panic"), Ok(()));
    }

    #[test]
    fn a_connection_with_part_of_a_message_buffered_moves_once_it_is_complete() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The first call, and the start of a second in the same read.
        let second = message("org.example.pool.Thread", json!({}));
        let (head, tail) = second.split_at(10);
        let mut sent = message("org.example.pool.Thread", json!({}));
        sent.extend_from_slice(head);
        let (mut first, running) = activated_after(dir.path(), Duration::from_millis(200), &sent);
        assert_eq!(first.thread_reply(), MAIN);
        // The pool runs; the first connection holds part of a message and stays.
        let (later, _) = pool_client(&dir.path().join("pool.sock"));
        std::thread::sleep(Duration::from_millis(100));
        first.write(tail);
        assert_eq!(first.thread_reply(), MAIN, "not moved with bytes buffered");
        first.moves_to_the_pool();
        drop((first, later));
        assert_eq!(running.join().expect("no panic"), Ok(()));
    }

    #[test]
    fn a_daemon_on_its_own_socket_serves_every_connection_on_worker_threads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("own.sock");
        let running = start(Vec::new(), &path, Duration::from_millis(200));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(Instant::now() < deadline, "the socket never appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Nobody waited for the daemon: it runs on the multi-thread runtime alone.
        let mut first = Client::connect(&path);
        assert_ne!(
            first.thread(),
            MAIN,
            "the first connection is served by a worker thread"
        );
        drop(first);
        assert_eq!(running.join().expect("no panic"), Ok(()));
    }

    #[test]
    fn shutdown_drains_connections_on_both_runtimes() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The first call is still running on the main thread when the daemon is stopped.
        let sent = message("org.example.pool.Sleep", json!({ "ms": 400 }));
        let (mut first, running) = activated_after(dir.path(), Duration::from_secs(3600), &sent);
        let (mut later, _) = pool_client(&dir.path().join("pool.sock"));
        later.send("org.example.pool.Sleep", json!({ "ms": 200 }));
        std::thread::sleep(Duration::from_millis(50));
        // The daemon's signal handlers are installed (it answered `later`), so this drains it.
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
            .expect("SIGTERM");
        // Both calls in flight are answered, then both connections are closed: the first
        // one on the main thread (it does not move to a pool that is draining).
        for client in [&mut first, &mut later] {
            let reply = client.reply().expect("the call in flight is answered");
            assert!(reply.get("error").is_none(), "{reply}");
        }
        assert_eq!(first.reply(), None);
        assert_eq!(later.reply(), None);
        assert_eq!(running.join().expect("no panic"), Ok(()));
    }
}
