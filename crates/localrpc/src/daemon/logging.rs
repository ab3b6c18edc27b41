//! Log output for daemons: text on a terminal, JSON when asked, journald under systemd.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where and how log records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// journald when stderr is connected to the journal (`$JOURNAL_STREAM` matches it),
    /// otherwise text.
    #[default]
    Auto,
    /// Human-readable lines on stderr (coloured on a terminal).
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// Native journald records (with fields such as `OP_ID`).
    Journald,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(LogFormat::Auto),
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            "journald" => Ok(LogFormat::Journald),
            other => Err(format!(
                "unknown log format {other:?}: use auto, text, json or journald"
            )),
        }
    }
}

/// True when stderr is the journal stream systemd set up (`JOURNAL_STREAM=dev:ino`).
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// The variable holding the log filter.
const FILTER_VARIABLE: &str = "LOCALRPC_LOG";

/// The filter from `$LOCALRPC_LOG`: comma-separated `LEVEL` (the default for every target)
/// and `TARGET=LEVEL` directives (for every target that starts with `TARGET`), e.g. `debug`
/// or `info,localrpc::server=trace`; `info` when unset, empty or invalid.
///
/// A [`Targets`] filter rather than an `EnvFilter`: the same syntax and meaning for these
/// directives (not `EnvFilter`'s span and field filters), without a regex engine in every
/// daemon's start-up and memory (it was a tenth of localrpcd's code).
fn filter_from_env() -> Targets {
    let default = || Targets::new().with_default(LevelFilter::INFO);
    match std::env::var(FILTER_VARIABLE) {
        Ok(value) if !value.trim().is_empty() => value.trim().parse().unwrap_or_else(|error| {
            eprintln!("ignoring {FILTER_VARIABLE}={value:?} ({error}); logging at info");
            default()
        }),
        _ => default(),
    }
}

/// Installs the global subscriber. The filter comes from `$LOCALRPC_LOG` (e.g. `debug`,
/// `localrpc=trace`), default `info`. Call once, early in `main`.
pub fn init(format: LogFormat) {
    let format = match format {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    };
    // `try_init` also forwards the `log` crate's records (tracing-log).
    if subscriber(format, filter_from_env()).try_init().is_err() {
        tracing::debug!("a log subscriber was already installed");
    }
}

/// `filter` in front of the output `format` asks for (journald falls back to text without
/// colours when the journal cannot be reached; `Auto` means text here).
fn subscriber(format: LogFormat, filter: Targets) -> Box<dyn Subscriber + Send + Sync> {
    let registry = tracing_subscriber::registry().with(filter);
    let text = |ansi| fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .flatten_event(true),
            ),
        ),
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => Box::new(registry.with(layer)),
            Err(_) => Box::new(registry.with(text(false))),
        },
        LogFormat::Auto | LogFormat::Text => {
            Box::new(registry.with(text(std::io::stderr().is_terminal())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn parse(directives: &str) -> Targets {
        directives.parse().expect("valid directives")
    }

    #[test]
    fn documented_filters_parse() {
        let debug = parse("debug");
        assert!(debug.would_enable("anything", &Level::DEBUG));
        assert!(!debug.would_enable("anything", &Level::TRACE));
        let scoped = parse("info,localrpc::server=trace");
        assert!(scoped.would_enable("localrpc::server::connection", &Level::TRACE));
        assert!(!scoped.would_enable("localrpc::daemon", &Level::DEBUG));
        assert!(scoped.would_enable("localrpc::daemon", &Level::INFO));
    }

    #[test]
    fn the_filter_decides_what_every_format_records() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let installed = subscriber(format, parse("info,localrpc::server=trace"));
            tracing::subscriber::with_default(installed, || {
                assert!(tracing::enabled!(
                    target: "localrpc::server::connection",
                    Level::TRACE
                ));
                assert!(tracing::enabled!(target: "localrpc::daemon", Level::INFO));
                assert!(!tracing::enabled!(target: "localrpc::daemon", Level::DEBUG));
            });
        }
    }

    #[test]
    fn the_level_hint_lets_disabled_events_cost_nothing() {
        // The hint is the global maximum that `tracing!` macros check before anything else.
        let default = Targets::new().with_default(LevelFilter::INFO);
        for format in [LogFormat::Text, LogFormat::Json] {
            let hint = subscriber(format, default.clone()).max_level_hint();
            assert_eq!(hint, Some(LevelFilter::INFO));
        }
        let hint = subscriber(LogFormat::Text, parse("warn,localrpc=trace")).max_level_hint();
        assert_eq!(hint, Some(LevelFilter::TRACE));
    }

    #[test]
    fn invalid_filters_are_errors() {
        assert!("info,=x".parse::<Targets>().is_err());
        assert!("localrpc=loud".parse::<Targets>().is_err());
    }
}
