//! `localrpcd`: the localrpc reference daemon. Serves `io.localrpc.Echo` on the given
//! addresses, or on a default socket that needs no configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use localrpc::server::{Server, ServerConfig};
use localrpc::transport::{Address, Listener, UnixBindOptions};

/// The localrpc reference daemon.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (repeatable): unix:/path, unix:@name, /path, tcp:HOST:PORT.
    /// Default: $XDG_RUNTIME_DIR/localrpc/localrpcd.sock, or /run/localrpc/localrpcd.sock as root.
    #[arg(long = "listen", value_name = "ADDRESS")]
    listen: Vec<Address>,

    /// Permission bits of socket files this daemon creates, in octal.
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = parse_mode)]
    socket_mode: u32,

    /// Largest accepted message in bytes; a larger one closes its connection.
    #[arg(long, value_name = "BYTES", default_value_t = localrpc::wire::DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: usize,
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal permission mode such as 0600 or 0660"))
}

/// The socket used when no --listen is given.
fn default_socket() -> PathBuf {
    let base = if rustix::process::geteuid().is_root() {
        PathBuf::from("/run")
    } else if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(dir)
    } else {
        std::env::temp_dir()
    };
    base.join("localrpc").join("localrpcd.sock")
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOCALRPC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("localrpcd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("localrpcd: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let service = localrpcd::service().map_err(|e| format!("internal error: {e}"))?;
    let mut addresses = args.listen;
    if addresses.is_empty() {
        let path = default_socket();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        addresses.push(Address::Unix(path));
    }
    let options = UnixBindOptions { mode: args.socket_mode, group: None };
    let mut listeners = Vec::new();
    for address in &addresses {
        let listener = Listener::bind(address, options).await.map_err(|e| e.to_string())?;
        tracing::info!(address = %listener.local_address(), "listening");
        listeners.push(listener);
    }
    let config = ServerConfig { max_message_size: args.max_message_size };
    let server = Server::with_config(service, config);
    server.serve(listeners, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}
