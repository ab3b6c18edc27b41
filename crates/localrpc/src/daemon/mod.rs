//! Process concerns of a localrpc daemon: socket activation or its own sockets, the
//! single-instance lock, sd_notify, signals (drain on SIGTERM/SIGINT, cut short by a second
//! one; reload on SIGHUP),
//! exit-on-idle, log setup, and run-time control over varlink (`io.systemd.service` and
//! `io.localrpc.Control`, see [`control`]).
//!
//! ```no_run
//! # fn service() -> localrpc::service::Service { unimplemented!() }
//! use localrpc::daemon::{Daemon, DaemonOptions, LogFormat};
//!
//! fn main() -> std::process::ExitCode {
//!     // First thing, while the process has one thread: take the activation fds.
//!     let daemon = match Daemon::from_env("exampled") {
//!         Ok(daemon) => daemon,
//!         Err(e) => { eprintln!("exampled: {e}"); return std::process::ExitCode::FAILURE; }
//!     };
//!     localrpc::daemon::logging::init(LogFormat::Auto);
//!     let options = DaemonOptions::new("/run/example/example.sock");
//!     // Builds the async runtime (see `run_blocking`); `daemon.run(..)` runs on one of yours.
//!     match daemon.run_blocking(service(), options) {
//!         Ok(()) => std::process::ExitCode::SUCCESS,
//!         Err(e) => { eprintln!("exampled: {e}"); std::process::ExitCode::FAILURE }
//!     }
//! }
//! ```

mod args;
pub mod control;
mod lock;
pub mod logging;
mod notify;
mod pool;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

pub use args::{parse_socket_mode, seconds_option};
pub use lock::{InstanceLock, LockError};
pub use logging::LogFormat;
pub use notify::{Notifier, monotonic_usec, watchdog_interval};

use control::Control;

use crate::server::{Server, ServerConfig, StopReason};
use crate::service::{BuildError, Service};
use crate::transport::{
    ActivatedFd, ActivationError, Address, BindError, Listener, Stream, UnixBindOptions,
    take_listen_fds,
};

/// The name systemd units give the varlink socket (`FileDescriptorName=varlink`).
pub const VARLINK_FD_NAME: &str = "varlink";

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The activation environment is invalid.
    #[error(transparent)]
    Activation(#[from] ActivationError),
    /// Another instance runs.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A socket could not be set up.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A passed fd cannot carry varlink.
    #[error("passed file descriptor {name:?}: {reason}")]
    UnsupportedFd {
        /// Its name.
        name: String,
        /// Why it cannot be used, and what would work.
        reason: String,
    },
    /// A control interface could not be added to the service (see
    /// [`DaemonOptions::control`]).
    #[error("cannot add the control interfaces to the service: {0}")]
    Control(BuildError),
    /// Another system-level failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A hook run on SIGHUP between `RELOADING=1` and `READY=1`.
pub type ReloadHook = Arc<dyn Fn() + Send + Sync>;

/// How a daemon sets itself up when it is not socket-activated, and how it stops.
#[derive(Clone)]
pub struct DaemonOptions {
    /// Addresses to listen on; empty means [`DaemonOptions::default_socket`].
    pub listen: Vec<Address>,
    /// The socket used when `listen` is empty.
    pub default_socket: PathBuf,
    /// Mode of directories created for socket files (default 0755).
    pub runtime_dir_mode: u32,
    /// Mode and group of socket files (default 0600).
    pub socket: UnixBindOptions,
    /// Take a single-instance lock (`<socket>.lock`) for each socket path (default true).
    pub single_instance: bool,
    /// Also take that lock for activated sockets (default false: the service manager already
    /// runs one instance; set it when a standalone instance on the same path must be
    /// excluded too).
    pub lock_when_activated: bool,
    /// How long in-flight calls may take to finish on shutdown (default 10 s).
    pub drain_timeout: Duration,
    /// Server limits, including exit-on-idle.
    pub server: ServerConfig,
    /// Called on SIGHUP and on `io.systemd.service.Reload`, between `RELOADING=1` and
    /// `READY=1`.
    pub on_reload: Option<ReloadHook>,
    /// Serve the control interfaces `io.systemd.service` and `io.localrpc.Control` next to
    /// the service's own (default true; see [`control`] for who may call what). An interface
    /// the service implements itself is left to it.
    pub control: bool,
}

impl DaemonOptions {
    /// Defaults with the given default socket path.
    pub fn new(default_socket: impl Into<PathBuf>) -> Self {
        DaemonOptions {
            listen: Vec::new(),
            default_socket: default_socket.into(),
            runtime_dir_mode: 0o755,
            socket: UnixBindOptions::default(),
            single_instance: true,
            lock_when_activated: false,
            drain_timeout: Duration::from_secs(10),
            server: ServerConfig::default(),
            on_reload: None,
            control: true,
        }
    }
}

/// The default socket `<dir>/<file>` of a daemon: under `/run` as root, under
/// `$XDG_RUNTIME_DIR` otherwise (or the temp dir without XDG_RUNTIME_DIR).
pub fn default_socket_path(dir: &str, file: &str) -> PathBuf {
    let base = if rustix::process::geteuid().is_root() {
        PathBuf::from("/run")
    } else if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(dir)
    } else {
        std::env::temp_dir()
    };
    base.join(dir).join(file)
}

/// A daemon process: what the service manager passed it, and how to tell it things.
pub struct Daemon {
    name: String,
    activation: Vec<ActivatedFd>,
    notifier: Notifier,
    /// `$SYSTEMD_VARLINK_LISTEN`: `-` for stdin/stdout, or an address to listen on.
    varlink_listen: Option<String>,
}

/// The variable with which sd-varlink programs are told where to serve: `-` means one
/// connection on stdin/stdout (what `ssh-exec:` addresses rely on), anything else an address.
pub const VARLINK_LISTEN_VARIABLE: &str = "SYSTEMD_VARLINK_LISTEN";

/// What the daemon serves on.
enum Sockets {
    Listeners(Vec<Listener>),
    /// An already-connected socket (Accept=yes, exec: addresses): serve it, then exit.
    Connection(Stream),
}

impl Daemon {
    /// Takes the socket-activation fds and removes the activation variables. Call first thing
    /// in `main`, before any thread (an async runtime included) exists.
    pub fn from_env(name: &str) -> Result<Daemon, DaemonError> {
        let activation = take_listen_fds()?;
        let varlink_listen = std::env::var(VARLINK_LISTEN_VARIABLE)
            .ok()
            .filter(|v| !v.is_empty());
        Ok(Daemon {
            name: name.to_owned(),
            activation,
            notifier: Notifier::from_env(),
            varlink_listen,
        })
    }

    /// True when the service manager passed sockets.
    pub fn is_socket_activated(&self) -> bool {
        !self.activation.is_empty()
    }

    /// The sd_notify sender.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// Sets up the sockets, reports readiness and serves `service` until SIGTERM/SIGINT (or
    /// idle exit), then reports stopping and drains, for at most
    /// [`DaemonOptions::drain_timeout`] or until a second SIGTERM/SIGINT. Returns Ok on a
    /// clean stop.
    ///
    /// Runs on the caller's runtime; sequential mode
    /// ([`ServerConfig::sequential_threads`](crate::server::ServerConfig::sequential_threads))
    /// needs a multi-thread one. [`Daemon::run_blocking`] builds the runtime itself.
    pub async fn run(self, service: Service, options: DaemonOptions) -> Result<(), DaemonError> {
        self.run_growing(service, options, None).await
    }

    /// Runs [`Daemon::run`] on runtimes of its own, and returns when it does. Call from
    /// `main`, outside any async runtime.
    ///
    /// A daemon that is not socket-activated runs on tokio's multi-thread runtime, as with
    /// `run`. A socket-activated one starts on a current-thread runtime on the calling thread
    /// and builds the multi-thread runtime (its worker threads) once the caller that started
    /// it has been answered, who thus does not wait for the worker threads to start (see
    /// `daemon/pool.rs`). Connections accepted from then on are served by the worker threads;
    /// those accepted before move there once they wait for their next call (TCP connections
    /// stay on the calling thread until they close). A connection passed as the daemon's only
    /// one (`Accept=yes`) is served on the calling thread alone. Handlers may run on either
    /// runtime, so they must not call `tokio::task::block_in_place` (use `spawn_blocking`).
    pub fn run_blocking(self, service: Service, options: DaemonOptions) -> Result<(), DaemonError> {
        let runtime_error = |source| DaemonError::Io {
            what: "start the async runtime".into(),
            source,
        };
        if self.activation.is_empty() {
            // Nobody waits for the daemon yet: one runtime, the multi-thread one, from the start
            // (a second runtime's code and state would only add to its memory).
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(runtime_error)?;
            return runtime.block_on(self.run(service, options));
        }
        let pool = Arc::new(pool::Pool::default());
        let on_park = pool.clone();
        let main = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(move || on_park.on_main_park())
            .build()
            .map_err(runtime_error)?;
        let result = main.block_on(self.run_growing(service, options, Some(&pool)));
        pool.shut_down();
        result
    }

    /// [`Daemon::run`], moving the accept loops to `pool` once it is built.
    async fn run_growing(
        self,
        service: Service,
        options: DaemonOptions,
        pool: Option<&pool::Pool>,
    ) -> Result<(), DaemonError> {
        raise_fd_limit();
        // Signal handlers first: whoever sees a socket appear may stop the daemon with SIGTERM
        // and gets a clean drain and exit, never the default action's kill. (They also exist
        // before READY=1, as Type=notify-reload requires.)
        let mut signals = ShutdownSignals::install()?;
        let reload = signal(SignalKind::hangup()).map_err(|source| DaemonError::Io {
            what: "install SIGHUP handler".into(),
            source,
        })?;
        let mut locks = Vec::new();
        let mut options = options;
        let activated = !self.activation.is_empty();
        let sockets = if activated {
            tracing::info!("Using systemd socket activation");
            let sockets = adopt_activated(self.activation)?;
            if let Sockets::Listeners(listeners) = &sockets {
                for path in listeners.iter().filter_map(Listener::unix_path) {
                    if options.lock_when_activated {
                        let lock = InstanceLock::acquire(&lock_path(&path), &self.name)?;
                        tracing::info!(lock = %lock.path().display(), "PID lock acquired");
                        locks.push(lock);
                    }
                    tracing::info!(address = %path.display(), "Listening on socket");
                }
            }
            sockets
        } else if self.varlink_listen.as_deref() == Some("-") {
            tracing::info!("serving one connection on stdin/stdout ({VARLINK_LISTEN_VARIABLE}=-)");
            let stream = Stream::from_stdio().map_err(|source| DaemonError::Io {
                what: "use stdin/stdout as a connection".into(),
                source,
            })?;
            Sockets::Connection(stream)
        } else {
            if let Some(address) = &self.varlink_listen {
                let address = Address::parse(address).map_err(|e| DaemonError::Io {
                    what: format!("{VARLINK_LISTEN_VARIABLE}={address}"),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                })?;
                options.listen = vec![address];
            }
            Sockets::Listeners(bind_own_sockets(&self.name, &options, &mut locks).await?)
        };
        let control = Control::new(&self.name, self.notifier.clone(), options.on_reload.clone());
        let mut service = service;
        if options.control {
            add_control_interfaces(&mut service, &control)?;
        }
        let server = Arc::new(Server::with_config(service, options.server.clone()));
        control.attach(&server);
        if let Some(interval) = watchdog_interval() {
            let notifier = self.notifier.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                loop {
                    tick.tick().await;
                    notifier.watchdog();
                }
            });
        }
        let listeners = match sockets {
            Sockets::Connection(stream) => {
                self.notifier.ready("serving one connection");
                let peer = stream.peer_credentials();
                let mut serving = std::pin::pin!(server.serve_connection(stream, peer));
                tokio::select! {
                    () = &mut serving => self.notifier.stopping("connection closed"),
                    () = signals.first() => {
                        control.set_draining();
                        let status = "stopping: finishing calls in flight";
                        tracing::info!("{status}");
                        self.notifier.stopping(status);
                        self.notifier
                            .extend_timeout(options.drain_timeout + Duration::from_secs(5));
                        // The connection answers what it has received, then closes; it keeps
                        // running here while the drain waits for it.
                        tokio::select! {
                            () = &mut serving => {}
                            () = drain_or_stop(&server, options.drain_timeout, &mut signals) => {}
                        }
                    }
                }
                return Ok(());
            }
            Sockets::Listeners(listeners) => listeners,
        };
        let addresses: Vec<String> = listeners.iter().map(Listener::local_address).collect();
        tracing::info!(version = env!("CARGO_PKG_VERSION"), name = %self.name, "starting");
        self.notifier
            .ready(&format!("serving on {}", addresses.join(", ")));
        tokio::spawn(reload_loop(reload, control.clone()));
        let moves = pool.map(|pool| {
            pool.allow(&server);
            pool.subscribe()
        });
        let reason = server
            .serve_then_move(listeners, signals.first(), moves)
            .await;
        control.set_draining();
        let status = match reason {
            StopReason::Shutdown => "stopping: finishing calls in flight",
            StopReason::Idle => "stopping: idle",
        };
        tracing::info!(?reason, active = server.active_connections(), "{status}");
        self.notifier.stopping(status);
        self.notifier
            .extend_timeout(options.drain_timeout + Duration::from_secs(5));
        drain_or_stop(&server, options.drain_timeout, &mut signals).await;
        drop(locks);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as systemd recommends for programs
/// that do not use `select()`: each connection takes a socket and a pidfd, and the connection
/// cap is derived from this limit.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(to = ?limit.maximum, "raised the open file limit"),
            Err(error) => tracing::debug!(%error, "could not raise the open file limit"),
        }
    }
}

/// Creates the socket directories, takes the locks and binds every configured address.
async fn bind_own_sockets(
    name: &str,
    options: &DaemonOptions,
    locks: &mut Vec<InstanceLock>,
) -> Result<Vec<Listener>, DaemonError> {
    let default = [Address::Unix(options.default_socket.clone())];
    let addresses = if options.listen.is_empty() {
        &default[..]
    } else {
        &options.listen[..]
    };
    let mut listeners = Vec::new();
    for address in addresses {
        if let Address::Unix(path) = address {
            create_runtime_dir(path, options.runtime_dir_mode)?;
            if options.single_instance {
                let lock = InstanceLock::acquire(&lock_path(path), name)?;
                tracing::info!(lock = %lock.path().display(), "PID lock acquired");
                locks.push(lock);
            }
        }
        let listener = Listener::bind(address, options.socket).await?;
        tracing::info!(address = %listener.local_address(), "Listening on socket");
        listeners.push(listener);
    }
    Ok(listeners)
}

/// `<socket>.lock`, next to the socket.
fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn create_runtime_dir(socket: &Path, mode: u32) -> Result<(), DaemonError> {
    let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| DaemonError::Io {
            what: format!("create {}", dir.display()),
            source,
        })
}

/// Picks the fds named `varlink` (or every fd when none has that name) and turns each into
/// a listener, or the single connected socket.
fn adopt_activated(fds: Vec<ActivatedFd>) -> Result<Sockets, DaemonError> {
    let named = fds.iter().any(|fd| fd.name == VARLINK_FD_NAME);
    let mut listeners = Vec::new();
    for fd in fds {
        if named && fd.name != VARLINK_FD_NAME {
            tracing::debug!(name = %fd.name, "ignoring passed fd not named varlink");
            continue;
        }
        let unsupported = |name: &str, reason: String| DaemonError::UnsupportedFd {
            name: name.to_owned(),
            reason,
        };
        let kind = fd
            .kind()
            .map_err(|e| unsupported(&fd.name, format!("not a socket ({e})")))?;
        if kind.socket_type != rustix::net::SocketType::STREAM {
            return Err(unsupported(
                &fd.name,
                format!(
                    "a {} socket; varlink needs a stream socket (ListenStream=)",
                    socket_type_name(kind.socket_type)
                ),
            ));
        }
        let name = fd.name.clone();
        if kind.listening {
            listeners
                .push(Listener::from_fd(fd.fd).map_err(|e| unsupported(&name, e.to_string()))?);
        } else if kind.family == rustix::net::AddressFamily::UNIX && listeners.is_empty() {
            let std_stream = std::os::unix::net::UnixStream::from(fd.fd);
            let stream = std_stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixStream::from_std(std_stream))
                .map_err(|e| unsupported(&name, e.to_string()))?;
            return Ok(Sockets::Connection(Stream::Unix(stream)));
        } else {
            return Err(unsupported(&name, "a connected socket mixed with others; pass one connected unix socket alone (Accept=yes)".into()));
        }
    }
    if listeners.is_empty() {
        return Err(DaemonError::UnsupportedFd {
            name: VARLINK_FD_NAME.into(),
            reason: "no usable socket was passed".into(),
        });
    }
    Ok(Sockets::Listeners(listeners))
}

/// A socket type as users know it from unit files.
fn socket_type_name(socket_type: rustix::net::SocketType) -> String {
    use rustix::net::SocketType;
    match socket_type {
        SocketType::DGRAM => "datagram (SOCK_DGRAM, ListenDatagram=)".into(),
        SocketType::SEQPACKET => {
            "sequential packet (SOCK_SEQPACKET, ListenSequentialPacket=)".into()
        }
        SocketType::RAW => "raw (SOCK_RAW)".into(),
        other => format!("type {} ", other.as_raw()),
    }
}

/// SIGTERM and SIGINT: the first starts the drain, a second one during the drain ends it.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<ShutdownSignals, DaemonError> {
        let install = |kind, what: &str| {
            signal(kind).map_err(|source| DaemonError::Io {
                what: format!("install {what} handler"),
                source,
            })
        };
        Ok(ShutdownSignals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }

    /// Waits for the first signal, which starts the drain.
    async fn first(&mut self) {
        let name = self.next().await;
        tracing::info!("{name} received");
    }
}

/// Waits for the drain to finish, for its timeout, or for a second SIGTERM/SIGINT, whichever
/// comes first; says which when it was not the drain.
async fn drain_or_stop(server: &Server, timeout: Duration, signals: &mut ShutdownSignals) {
    tokio::select! {
        closed = server.drain(timeout) => if !closed {
            tracing::warn!(
                remaining = server.active_connections(),
                "drain timeout passed; closing remaining connections"
            );
        },
        name = signals.next() => tracing::warn!(
            remaining = server.active_connections(),
            "{name} received again; closing remaining connections now"
        ),
    }
}

/// Runs the reload procedure on every SIGHUP.
async fn reload_loop(mut hangup: tokio::signal::unix::Signal, control: Arc<Control>) {
    while hangup.recv().await.is_some() {
        control.reload("SIGHUP received");
    }
}

/// Adds `io.systemd.service` and `io.localrpc.Control` to `service`, except one the service
/// implements itself.
fn add_control_interfaces(
    service: &mut Service,
    control: &Arc<Control>,
) -> Result<(), DaemonError> {
    let interfaces = control::interfaces(control).map_err(DaemonError::Control)?;
    let (own, added): (Vec<_>, Vec<_>) = interfaces
        .into_iter()
        .partition(|interface| service.has_interface(interface.name()));
    for interface in own {
        tracing::info!(interface = %interface.name(),
            "the service implements this control interface itself; localrpc's is not added");
    }
    service.add_interfaces(added).map_err(DaemonError::Control)
}
