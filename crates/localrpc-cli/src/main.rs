//! `localrpc`: call and inspect varlink services from the command line.
//!
//! A thin dispatcher: `cli` holds the clap definitions, each verb lives in `verbs/<verb>.rs`
//! and returns `Result<(), Failure>`; `exit` maps failures to the documented exit codes.

mod address;
mod cli;
mod exit;
mod idl_dump;
mod output;
mod verbs;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            let code = match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::USAGE,
                _ => exit::USAGE,
            };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        // Purely local verbs: no runtime needed.
        Command::ValidateIdl(args) => verbs::validate::run(args),
        Command::Format(args) => verbs::format::run(args),
        Command::Completions(args) => verbs::generate::completions(args),
        Command::Man => verbs::generate::man(),
        command => run_async(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let mut stderr = std::io::stderr().lock();
            if !failure.message.is_empty() {
                let _ = writeln!(stderr, "localrpc: {}", failure.message);
            }
            if let Some(hint) = &failure.hint {
                let _ = writeln!(stderr, "hint: {hint}");
            }
            ExitCode::from(failure.code)
        }
    }
}

fn run_async(command: Command) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                exit::SOFTWARE,
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    let result = runtime.block_on(async move {
        match command {
            Command::Info(args) => verbs::info::run(args).await,
            Command::ListInterfaces(args) => verbs::list::interfaces(args).await,
            Command::ListMethods(args) => verbs::list::methods(args).await,
            Command::Introspect(args) => verbs::introspect::run(args).await,
            Command::Call(args) => verbs::call::run(args).await,
            Command::Bridge(args) => verbs::bridge::run(args).await,
            Command::Bench(args) => verbs::bench::run(args).await,
            Command::Stats(args) => verbs::control::stats(args).await,
            Command::Health(args) => verbs::control::health(args).await,
            Command::LogLevel(args) => verbs::control::log_level(args).await,
            Command::ValidateIdl(_)
            | Command::Format(_)
            | Command::Completions(_)
            | Command::Man => {
                unreachable!("handled without a runtime")
            }
        }
    });
    // Shutting down drops the exec/ssh reaper tasks, which reap (or kill) their children; it
    // does not wait for a stdin read still blocked in the thread pool (--upgrade, bridge).
    runtime.shutdown_background();
    result
}
