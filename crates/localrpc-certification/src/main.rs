//! `certification`: serves org.varlink.certification (`--varlink=ADDRESS`) or runs the client
//! side of the certification against a server (`--client --varlink=ADDRESS`; exit status 0
//! only if every step passed).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use localrpc::server::Server;
use localrpc::service::Service;
use localrpc::transport::{Address, Listener, UnixBindOptions};
use localrpc_certification::certification::{self, Client};
use localrpc_certification::server::CertificationServer;

/// The varlink certification, server and client, built with localrpc-build.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Run the client side of the certification against the server at --varlink.
    #[arg(long)]
    client: bool,

    /// The address to serve on, or with --client to connect to (unix:/path, unix:@name,
    /// tcp:HOST:PORT).
    #[arg(long, value_name = "ADDRESS")]
    varlink: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("certification: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if args.client {
        runtime.block_on(run_client(&args.varlink))
    } else {
        runtime.block_on(run_server(&args.varlink))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("certification: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_client(address: &str) -> Result<(), String> {
    println!("Connecting to {address}");
    let mut client = Client::connect(address).await.map_err(|e| e.to_string())?;
    localrpc_certification::client::run(&mut client, |line| println!("{line}"))
        .await
        .map_err(|e| format!("certification failed: {e}"))?;
    println!("Certification passed");
    Ok(())
}

async fn run_server(address: &str) -> Result<(), String> {
    let address = Address::parse(address).map_err(|e| e.to_string())?;
    let service = Service::builder()
        .vendor("localrpc")
        .product("localrpc certification")
        .version(env!("CARGO_PKG_VERSION"))
        .url("https://example.invalid/localrpc")
        .interface(
            certification::interface(Arc::new(CertificationServer::new()))
                .map_err(|e| e.to_string())?,
        )
        .build()
        .map_err(|e| e.to_string())?;
    let options = UnixBindOptions {
        mode: 0o600,
        group: None,
    };
    let listener = Listener::bind(&address, options)
        .await
        .map_err(|e| e.to_string())?;
    println!("Listening on {}", listener.local_address());
    Server::new(service)
        .serve(vec![listener], shutdown_signal())
        .await;
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("certification: cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
