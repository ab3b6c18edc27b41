//! `localrpc-echo`: an echo server for every socket systemd can pass, the localrpc version of
//! socket-activate-echo (shared/docs/SEEDS.md, section 004).
//!
//! It serves only activated sockets: listening stream sockets (unix, tcp, vsock) are accepted
//! and echoed, datagram sockets (unix, udp, vsock) echo each datagram to its sender, and
//! connected sockets from `Accept=yes` are echoed until EOF. Fixed against the original:
//! datagrams are never truncated silently (`--max-datagram-size`), `Accept=yes` connections are
//! served, debug lines go to stderr, unsupported fds are refused with a clear message.
//! SIGTERM/SIGINT exit 0 and leave the activated socket files alone (they belong to the
//! service manager).

mod args;
mod echo;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use localrpc::daemon::Notifier;
use localrpc::transport::{ActivatedFd, take_listen_fds};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::args::{Args, Parsed};
use crate::echo::{Options, Role};

/// The original's message when the process was not socket-activated.
const NOT_ACTIVATED: &str = "This program needs to be started by a systemd service or by \
                             systemd-socket-activate. (LISTEN_FDS is not correctly set)";

fn main() -> ExitCode {
    // First thing, while single-threaded: take the fds and unset LISTEN_*.
    let activation = take_listen_fds();
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Parsed::Help) => {
            print!("{}", args::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => args,
        Err(message) => return fail(&message),
    };
    let fds = match activation {
        Ok(fds) if !fds.is_empty() => fds,
        Ok(_) => return not_activated(None),
        Err(e) => return not_activated(Some(&e.to_string())),
    };
    if args.debug {
        // What children would inherit (/proc/PID/environ keeps showing the exec-time block).
        let left: Vec<String> = std::env::vars_os()
            .filter_map(|(key, _)| key.into_string().ok())
            .filter(|key| key.starts_with("LISTEN_"))
            .collect();
        let left = if left.is_empty() {
            "none".to_owned()
        } else {
            left.join(", ")
        };
        eprintln!("LISTEN_* variables left in the environment: {left}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(fds, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("Error: {message}");
    ExitCode::FAILURE
}

fn not_activated(detail: Option<&str>) -> ExitCode {
    match detail {
        None => eprintln!("Error: {NOT_ACTIVATED}"),
        Some(detail) => eprintln!("Error: {NOT_ACTIVATED}: {detail}"),
    }
    eprintln!("For example: systemd-socket-activate -l /tmp/echo.sock localrpc-echo (see --help)");
    ExitCode::FAILURE
}

/// Serves every fd until SIGTERM/SIGINT, or, when only connected sockets were passed
/// (`Accept=yes`), until they are all closed.
async fn run(fds: Vec<ActivatedFd>, args: Args) -> Result<(), String> {
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let notifier = if args.sdnotify {
        Notifier::from_env()
    } else {
        Notifier::default()
    };
    let options = Arc::new(Options {
        debug: args.debug,
        max_datagram_size: args.max_datagram_size,
    });

    // Check every fd before serving any, so a bad one is refused at once, never left hanging.
    let mut servers = JoinSet::new();
    let mut connections = JoinSet::new();
    for fd in fds {
        let name: Arc<str> = fd.name.as_str().into();
        let kind = fd
            .kind()
            .map_err(|e| format!("file descriptor \"{name}\" is not a socket: {e}"))?;
        let role = echo::classify(kind).map_err(|e| format!("file descriptor \"{name}\": {e}"))?;
        if args.debug {
            eprintln!(
                "Serving {role:?} {} {}, File descriptor name = \"{name}\"",
                echo::kind_name(kind),
                echo::describe(&fd.fd)
            );
        }
        let socket =
            echo::register(fd.fd).map_err(|e| format!("file descriptor \"{name}\": {e}"))?;
        match role {
            Role::Listener => servers.spawn(echo::serve_listener(socket, name, options.clone())),
            Role::Datagram => servers.spawn(echo::serve_datagrams(socket, name, options.clone())),
            Role::Connection => {
                connections.spawn(echo::serve_connection(socket, name, options.clone()))
            }
        };
    }

    if args.start_sleep > 0 {
        let message = format!(
            "Sleeping {} second(s) as specified by the --start-sleep (-t) option",
            args.start_sleep
        );
        if args.debug {
            eprintln!("{message}");
        }
        notifier.status(&message);
        tokio::time::sleep(Duration::from_secs(args.start_sleep.into())).await;
    }
    notifier.ready("Server is ready");
    if args.debug && args.sdnotify {
        eprintln!("sd_notify(0,\"READY=1\\nSTATUS=Server is ready\");");
    }

    let only_connections = servers.is_empty();
    let reason = tokio::select! {
        _ = term.recv() => "SIGTERM received",
        _ = int.recv() => "SIGINT received",
        () = async { while connections.join_next().await.is_some() {} }, if only_connections => "connections closed",
    };
    if args.debug {
        eprintln!("{reason}, exiting");
    }
    notifier.stopping("Server is stopping");
    // Dropping the tasks closes our copies of the fds; the socket files are left alone.
    servers.abort_all();
    connections.abort_all();
    Ok(())
}
