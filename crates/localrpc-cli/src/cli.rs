//! The command line, as clap definitions (also the source of completions and the man page).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit::EXIT_CODES_HELP;
use crate::output::JsonMode;

/// Call and inspect varlink services.
#[derive(Parser, Debug)]
#[command(name = "localrpc", version, about, after_help = EXIT_CODES_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the service's vendor, product, version, URL and interfaces.
    Info(InfoArgs),
    /// List the interfaces the service implements.
    ListInterfaces(InfoArgs),
    /// List the methods of the service (or of the given interfaces), fully qualified.
    ListMethods(InterfacesArgs),
    /// Show interface definitions (all interfaces, or the given ones); coloured on a terminal.
    Introspect(InterfacesArgs),
    /// Call a method and print its reply as JSON.
    Call(CallArgs),
    /// Check interface definition files (stdin when none is given).
    ValidateIdl(ValidateArgs),
    /// Print interface definition files in the canonical varlink layout.
    Format(FormatArgs),
    /// Measure a method: calls/s, latency percentiles, client and server CPU per call.
    Bench(BenchArgs),
    /// Show a localrpc daemon's counters: connections, calls, errors, uptime
    /// (io.localrpc.Control.GetStats).
    Stats(InfoArgs),
    /// Show whether a daemon is ready; exit 0 only when it is, 3 when it answers but is
    /// reloading or draining (for scripts and ExecStartPost=).
    Health(HealthArgs),
    /// Show the log filter of a daemon, or change it: a level (0-7, emerg..debug, or
    /// off/error/warn/info/debug/trace) or, on localrpc daemons, full $LOCALRPC_LOG directives.
    LogLevel(LogLevelArgs),
    /// Connect stdin/stdout to an address, e.g. as the remote end of ssh-exec:
    /// `localrpc call ssh-exec:host:'localrpc bridge unix:/run/x.sock' ...`.
    Bridge(BridgeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout.
    #[command(hide = true)]
    Man,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Service address (unix:/path, /path, exec:PATH, ssh-unix:HOST:/path, ...).
    pub address: String,
    /// Print the GetInfo reply as JSON instead of a table.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<String>,
    /// Same as --json (pretty on a terminal, short otherwise).
    #[arg(short = 'j')]
    pub j: bool,
    /// Maximum time to wait for the reply, in seconds ("infinity": no limit).
    #[arg(long, value_name = "SECONDS", default_value = "45", value_parser = parse_timeout)]
    pub timeout: Timeout,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Service address (unix:/path, /path, exec:PATH, ssh-unix:HOST:/path, ...).
    pub address: String,
    /// Print the GetHealth reply as JSON instead of a line of text.
    #[arg(long, value_name = "FORMAT", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    pub json: Option<String>,
    /// Same as --json (pretty on a terminal, short otherwise).
    #[arg(short = 'j')]
    pub j: bool,
    /// Print nothing; only the exit status tells.
    #[arg(short, long)]
    pub quiet: bool,
    /// Maximum time to wait for the reply, in seconds ("infinity": no limit).
    #[arg(long, value_name = "SECONDS", default_value = "45", value_parser = parse_timeout)]
    pub timeout: Timeout,
}

#[derive(Args, Debug)]
pub struct LogLevelArgs {
    /// Service address (unix:/path, /path, exec:PATH, ssh-unix:HOST:/path, ...).
    pub address: String,
    /// The new level or filter, e.g. debug, 7, warning, or info,localrpc::call=debug
    /// (absent: print the filter in force).
    #[arg(conflicts_with = "reset")]
    pub filter: Option<String>,
    /// Go back to the filter (or level) the daemon started with.
    #[arg(long)]
    pub reset: bool,
    /// Maximum time to wait for each reply, in seconds ("infinity": no limit).
    #[arg(long, value_name = "SECONDS", default_value = "45", value_parser = parse_timeout)]
    pub timeout: Timeout,
}

#[derive(Args, Debug)]
pub struct InterfacesArgs {
    /// Service address.
    pub address: String,
    /// Interfaces to show (default: all the service implements).
    pub interfaces: Vec<String>,
    /// Maximum time to wait for each reply, in seconds ("infinity": no limit).
    #[arg(long, value_name = "SECONDS", default_value = "45", value_parser = parse_timeout)]
    pub timeout: Timeout,
}

#[derive(Args, Debug)]
pub struct CallArgs {
    /// Service address.
    pub address: String,
    /// Fully qualified method, e.g. org.varlink.service.GetInfo.
    pub method: String,
    /// Parameters as a JSON object; "-" or absent: read from stdin (absent on a terminal: {}).
    pub parameters: Option<String>,
    /// Ask for several replies (`more`) and print them as a JSON text sequence (RS-prefixed).
    #[arg(long, conflicts_with_all = ["collect", "oneway", "upgrade"])]
    pub more: bool,
    /// Ask for several replies and print them as one JSON array.
    #[arg(long, conflicts_with_all = ["oneway", "upgrade"])]
    pub collect: bool,
    /// Send the call with `oneway`: no reply is requested, nothing is printed.
    #[arg(long, conflicts_with = "upgrade")]
    pub oneway: bool,
    /// Request a protocol upgrade; after the reply the connection is a raw pipe on stdin/stdout.
    #[arg(long)]
    pub upgrade: bool,
    /// Shorthand for --more --timeout=infinity.
    #[arg(short = 'E', conflicts_with_all = ["collect", "oneway", "upgrade"])]
    pub more_forever: bool,
    /// Maximum time to wait for a reply, in seconds ("infinity": no limit).
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout: Option<Timeout>,
    /// Output format of replies: pretty (default on a terminal) or short.
    #[arg(long, value_name = "FORMAT", value_enum, require_equals = true)]
    pub json: Option<JsonMode>,
    /// Same as the default: pretty on a terminal, short otherwise (for varlinkctl compatibility).
    #[arg(short = 'j')]
    pub j: bool,
    /// Do not print replies (nor the parameters of an error reply).
    #[arg(short, long)]
    pub quiet: bool,
    /// Treat this error reply as success (exit 0); repeatable.
    #[arg(long, value_name = "ERROR")]
    pub graceful: Vec<String>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Service address (unix:/path, /path, tcp:HOST:PORT, exec:PATH, ...).
    pub address: String,
    /// Fully qualified method to call over and over, e.g. io.localrpc.Echo.Echo.
    pub method: String,
    /// Parameters as a JSON object (default {}); the same call is sent every time.
    pub parameters: Option<String>,
    /// Connections open at once, each calling in a loop.
    #[arg(long, short = 'c', value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// Calls in flight per connection (pipelining): between N/2 and N stay outstanding.
    #[arg(long, short = 'p', value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pipeline: u32,
    /// How long to measure, in seconds.
    #[arg(long, short = 'd', value_name = "SECONDS", default_value = "5", value_parser = parse_duration)]
    pub duration: std::time::Duration,
    /// Maximum time to wait for each reply, in seconds ("infinity": no limit).
    #[arg(long, value_name = "SECONDS", default_value = "45", value_parser = parse_timeout)]
    pub timeout: Timeout,
    /// Print one JSON object (calls_per_sec, p50_us, p99_us, ...) instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Interface files ("-": stdin).
    pub files: Vec<PathBuf>,
    /// Also report constructs that systemd's IDL parser rejects (exit 1 when any is found).
    #[arg(long)]
    pub systemd: bool,
    /// Do not print the interface after validating it.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Interface files ("-" or none: stdin).
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BridgeArgs {
    /// Address to connect stdin/stdout to.
    pub address: String,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}

/// A reply timeout; `None` means no limit.
#[derive(Debug, Clone, Copy)]
pub struct Timeout(pub Option<std::time::Duration>);

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .strip_suffix('s')
        .unwrap_or(text)
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (e.g. 0.5, 10)"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(format!(
            "{text:?}: the duration must be between 0 and 86400 seconds"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn parse_timeout(text: &str) -> Result<Timeout, String> {
    if matches!(text, "infinity" | "inf") {
        return Ok(Timeout(None));
    }
    let secs: f64 = text
        .strip_suffix('s')
        .unwrap_or(text)
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (e.g. 0.5, 45, infinity)"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "{text:?}: the timeout must be a non-negative number of seconds or infinity"
        ));
    }
    if secs == 0.0 {
        return Ok(Timeout(None));
    }
    Ok(Timeout(Some(std::time::Duration::from_secs_f64(secs))))
}
