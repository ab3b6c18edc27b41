//! `rhc-server`: serves `com.redhat.rhc.internal` on the socket systemd passes (the fd named
//! `varlink`) or, without activation, on its own socket (`/run/rhc/com.redhat.rhc` as root).
//!
//! Lifecycle as the original: a single-instance lock first (a second instance exits 1 with
//! `another instance of rhc-server is already running (pid=N)`), then the socket, then the
//! log lines `PID lock acquired`, `Using systemd socket activation`, `starting version=`,
//! `Listening on socket`; SIGTERM/SIGINT finish the calls in flight and exit 0.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use localrpc::daemon::{Daemon, DaemonOptions, LogFormat, parse_socket_mode, seconds_option};
use localrpc::transport::{Address, UnixBindOptions};

const NAME: &str = "rhc-server";

/// rhc-server: the com.redhat.rhc.internal varlink service.
#[derive(Parser, Debug)]
#[command(
    name = NAME,
    version,
    about,
    after_help = "\
Under systemd socket activation the passed socket named \"varlink\" (FileDescriptorName=varlink),
or every passed socket when none has that name, is served and locked (<socket>.lock)."
)]
struct Args {
    /// The socket to create when not socket-activated.
    /// Default: /run/rhc/com.redhat.rhc as root, $XDG_RUNTIME_DIR/rhc/com.redhat.rhc otherwise.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Permission bits of the socket file this daemon creates, in octal (the original's 0660).
    #[arg(long, value_name = "MODE", default_value = "0660", value_parser = parse_socket_mode)]
    socket_mode: u32,

    /// Group of the socket file this daemon creates (numeric gid).
    #[arg(long, value_name = "GID")]
    socket_group: Option<u32>,

    /// On SIGTERM/SIGINT, how many seconds calls in flight may take to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    drain_timeout: f64,

    /// Log format: auto (journald under systemd, else text), text, json, journald.
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    log_format: LogFormat,
}

/// The default socket of the original, `/run/rhc/com.redhat.rhc`, when run as root.
fn default_socket() -> PathBuf {
    localrpc::daemon::default_socket_path("rhc", "com.redhat.rhc")
}

fn main() -> ExitCode {
    // First, while single-threaded: take the socket-activation fds.
    let daemon = match Daemon::from_env(NAME) {
        Ok(daemon) => daemon,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args = Args::parse();
    localrpc::daemon::logging::init(args.log_format);
    let socket = args.socket.clone().unwrap_or_else(default_socket);
    let drain_timeout = match seconds_option(args.drain_timeout, "drain-timeout") {
        Ok(drain_timeout) => drain_timeout,
        Err(message) => {
            eprintln!("{NAME}: {message}");
            return ExitCode::from(2);
        }
    };

    let mut options = DaemonOptions::new(&socket);
    options.listen = vec![Address::Unix(socket.clone())];
    options.socket = UnixBindOptions {
        mode: args.socket_mode,
        group: args.socket_group,
    };
    options.drain_timeout = drain_timeout;
    // The original locked under activation too: an activated and a standalone instance on
    // the same socket exclude each other.
    options.lock_when_activated = true;

    let result = rhc_server::service()
        .map_err(|e| format!("internal error: {e}"))
        .and_then(|service| {
            daemon
                .run_blocking(service, options)
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{NAME}: {message}");
            ExitCode::FAILURE
        }
    }
}
