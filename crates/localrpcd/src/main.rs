//! `localrpcd`: the localrpc reference daemon. Serves `io.localrpc.Echo` on the given
//! addresses, on the sockets systemd passes, or on a default socket that needs no
//! configuration.

use std::process::ExitCode;

use clap::Parser;
use localrpc::daemon::{
    Daemon, DaemonOptions, LogFormat, default_socket_path, parse_socket_mode, seconds_option,
};
use localrpc::server::ServerConfig;
use localrpc::service::AccessPolicy;
use localrpc::transport::{Address, UnixBindOptions};

/// The localrpc reference daemon.
#[derive(Parser, Debug, PartialEq)]
#[command(
    version,
    about,
    after_help = "\
Under systemd socket activation the passed socket named \"varlink\" (FileDescriptorName=varlink),
or every passed socket when none has that name, is served and --listen is ignored."
)]
struct Args {
    /// Address to listen on (repeatable): unix:/path, unix:@name, /path, tcp:HOST:PORT.
    /// Default: $XDG_RUNTIME_DIR/localrpc/localrpcd.sock, or /run/localrpc/localrpcd.sock as root.
    #[arg(long = "listen", value_name = "ADDRESS")]
    listen: Vec<Address>,

    /// Permission bits of socket files this daemon creates, in octal.
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = parse_socket_mode)]
    socket_mode: u32,

    /// Group of socket files this daemon creates (numeric gid), e.g. with --socket-mode 0660.
    #[arg(long, value_name = "GID")]
    socket_group: Option<u32>,

    /// Largest accepted message in bytes; a larger one closes its connection.
    #[arg(long, value_name = "BYTES", default_value_t = localrpc::wire::DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: usize,

    /// Most connections open at once (capped at 3/4 of RLIMIT_NOFILE, as sd-varlink); more are closed at once.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_connections: usize,

    /// Most connections open at once per peer uid.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections_per_uid: usize,

    /// Only callers with this uid (repeatable), root and the daemon's own uid may call
    /// methods; others get PermissionDenied. org.varlink.service stays open to all.
    #[arg(long, value_name = "UID")]
    allow_uid: Vec<u32>,

    /// Fail calls still running after this many seconds (io.localrpc.CallTimedOut).
    #[arg(long, value_name = "SECONDS")]
    call_timeout: Option<f64>,

    /// Close connections idle for this many seconds.
    #[arg(long, value_name = "SECONDS")]
    idle_timeout: Option<f64>,

    /// Exit after this many seconds without any connection (for socket activation).
    #[arg(long, value_name = "SECONDS")]
    exit_on_idle: Option<f64>,

    /// Most connections served at once from a thread of their own while their client makes
    /// one call at a time (sequential mode; 0 turns it off).
    #[arg(long, value_name = "N", default_value_t = ServerConfig::default().sequential_threads)]
    sequential_threads: usize,

    /// On SIGTERM/SIGINT, how many seconds calls in flight may take to finish (a second signal stops at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    drain_timeout: f64,

    /// Log format: auto (journald under systemd, else text), text, json, journald.
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    log_format: LogFormat,

    /// Do not serve the control interfaces io.systemd.service (SetLogLevel, Reload, ...) and
    /// io.localrpc.Control (stats, health, log filter).
    #[arg(long)]
    no_control: bool,
}

fn main() -> ExitCode {
    // First, while single-threaded: take the socket-activation fds.
    let daemon = match Daemon::from_env("localrpcd") {
        Ok(daemon) => daemon,
        Err(e) => {
            eprintln!("localrpcd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args = if std::env::args_os().len() <= 1 {
        Args::defaults()
    } else {
        Args::parse()
    };
    localrpc::daemon::logging::init(args.log_format);
    let options = match options(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("localrpcd: {message}");
            return ExitCode::from(2);
        }
    };
    let policy = (!args.allow_uid.is_empty()).then(|| {
        args.allow_uid
            .iter()
            .fold(AccessPolicy::root_and_self(), |policy, uid| {
                policy.allow_uid(*uid)
            })
    });
    let result = localrpcd::service_with_policy(policy)
        .map_err(|e| format!("internal error: {e}"))
        .and_then(|service| {
            daemon
                .run_blocking(service, options)
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("localrpcd: {message}");
            ExitCode::FAILURE
        }
    }
}

impl Args {
    /// What `Args::parse()` returns without arguments, built without running the parser.
    /// systemd units usually start the daemon without arguments, and under socket activation
    /// the first caller waits for the start-up: clap's parsing is about 150 000 instructions
    /// and the page faults of its code. A test keeps this equal to clap's defaults.
    fn defaults() -> Args {
        let server = ServerConfig::default();
        Args {
            listen: Vec::new(),
            socket_mode: UnixBindOptions::default().mode,
            socket_group: None,
            max_message_size: localrpc::wire::DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: 4096,
            max_connections_per_uid: 1024,
            allow_uid: Vec::new(),
            call_timeout: None,
            idle_timeout: None,
            exit_on_idle: None,
            sequential_threads: server.sequential_threads,
            drain_timeout: 10.0,
            log_format: LogFormat::Auto,
            no_control: false,
        }
    }
}

fn options(args: &Args) -> Result<DaemonOptions, String> {
    let mut options = DaemonOptions::new(default_socket_path("localrpc", "localrpcd.sock"));
    options.listen = args.listen.clone();
    options.socket = UnixBindOptions {
        mode: args.socket_mode,
        group: args.socket_group,
    };
    options.drain_timeout = seconds_option(args.drain_timeout, "drain-timeout")?;
    options.control = !args.no_control;
    options.server = ServerConfig {
        max_message_size: args.max_message_size,
        max_connections: args.max_connections,
        max_connections_per_uid: args.max_connections_per_uid,
        idle_timeout: args
            .idle_timeout
            .map(|s| seconds_option(s, "idle-timeout"))
            .transpose()?,
        call_timeout: args
            .call_timeout
            .map(|s| seconds_option(s, "call-timeout"))
            .transpose()?,
        exit_on_idle: args
            .exit_on_idle
            .map(|s| seconds_option(s, "exit-on-idle"))
            .transpose()?,
        sequential_threads: args.sequential_threads,
        ..ServerConfig::default()
    };
    Ok(options)
}

/// `pow`, for tokio's scheduler (its poll-time average is the program's only use of libm).
/// Defining it here keeps libm.so out of the process: one less library to map and relocate at
/// start-up, and about 460 KiB less resident memory. The `libm` crate's `pow` is musl's
/// (error below 1 ulp).
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn the_defaults_without_arguments_are_claps() {
        assert_eq!(
            super::Args::defaults(),
            super::Args::parse_from(["localrpcd"])
        );
    }

    #[test]
    fn pow_computes_powers() {
        assert_eq!(super::pow(2.0, 10.0), 1024.0);
        assert_eq!(super::pow(9.0, 0.5), 3.0);
        // tokio's use: (1 - 0.1)^n for its moving average.
        assert!((super::pow(0.9, 3.0) - 0.729).abs() < 1e-15);
        assert!(super::pow(-1.0, 0.5).is_nan());
    }
}
