//! Log output for daemons: text on a terminal, JSON when asked, journald under systemd; and
//! the log filter, read from `$LOCALRPC_LOG` at start and replaceable while the daemon runs.
//!
//! [`init`] installs the filter behind a reload handle kept for the whole process:
//! [`log_filter`] reads it, [`set_log_filter`] replaces it (the daemon's control interfaces,
//! `io.localrpc.Control.SetLogFilter` and `io.systemd.service.SetLogLevel`, call these).
//! Replacing the filter rebuilds tracing's per-callsite interest cache and its global
//! maximum level, so a disabled `debug!` costs the same one comparison as before.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, fmt, reload};

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

/// The default filter: `info` for every target.
const DEFAULT_FILTER: &str = "info";

/// The filter from `$LOCALRPC_LOG`, as text and parsed: comma-separated `LEVEL` (the default
/// for every target) and `TARGET=LEVEL` directives (for every target that starts with
/// `TARGET`), e.g. `debug` or `info,localrpc::server=trace`; `info` when unset, empty or
/// invalid.
///
/// A [`Targets`] filter rather than an `EnvFilter`: the same syntax and meaning for these
/// directives (not `EnvFilter`'s span and field filters), without a regex engine in every
/// daemon's start-up and memory (it was a tenth of localrpcd's code).
fn filter_from_env() -> (String, Targets) {
    let default = || {
        (
            DEFAULT_FILTER.to_owned(),
            Targets::new().with_default(LevelFilter::INFO),
        )
    };
    match std::env::var(FILTER_VARIABLE) {
        Ok(value) if !value.trim().is_empty() => match parse_filter(&value) {
            Ok(filter) => (value.trim().to_owned(), filter),
            Err(error) => {
                eprintln!("ignoring {FILTER_VARIABLE}: {error}; logging at {DEFAULT_FILTER}");
                default()
            }
        },
        _ => default(),
    }
}

/// The filter [`init`] installed, and what is known about it.
struct LiveFilter {
    /// Replaces the filter inside the installed subscriber.
    handle: reload::Handle<Targets, Registry>,
    /// The directives the process started with.
    initial: String,
    /// The directives in force (kept as given: [`Targets`] does not print them back).
    current: Mutex<String>,
}

/// Set by [`init`] once its subscriber is the global one.
static LIVE_FILTER: OnceLock<LiveFilter> = OnceLock::new();

/// Why the log filter cannot be read or replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogFilterError {
    /// The process did not set up logging with [`init`] (it installed a subscriber of its
    /// own, or none), so there is no filter localrpc can change.
    #[error(
        "the log filter cannot be read or changed at run time: this program did not set up \
         logging with localrpc::daemon::logging::init (it installed its own log subscriber); \
         restart it with ${FILTER_VARIABLE} set instead"
    )]
    Unavailable,
    /// The directives do not parse.
    #[error("invalid log filter {filter:?}: {reason}")]
    Invalid {
        /// The directives as given.
        filter: String,
        /// What is wrong, and what would be valid.
        reason: String,
    },
}

/// Parses log filter directives (`$LOCALRPC_LOG`'s syntax), saying which directive is wrong
/// and what a valid one looks like when they do not parse.
pub fn parse_filter(directives: &str) -> Result<Targets, LogFilterError> {
    const SYNTAX: &str = "use LEVEL or TARGET=LEVEL, separated by commas, with LEVEL one of \
                          off, error, warn, info, debug, trace (e.g. info,localrpc::call=debug)";
    let invalid = |reason: String| LogFilterError::Invalid {
        filter: directives.to_owned(),
        reason,
    };
    let trimmed = directives.trim();
    if trimmed.is_empty() {
        return Err(invalid(format!("it is empty; {SYNTAX}")));
    }
    trimmed.parse::<Targets>().map_err(|error| {
        // Name the first directive that does not parse on its own.
        let culprit = trimmed
            .split(',')
            .map(str::trim)
            .find(|directive| directive.parse::<Targets>().is_err());
        match culprit {
            Some(directive) => invalid(format!(
                "directive {directive:?} is not valid ({error}); {SYNTAX}"
            )),
            None => invalid(format!("{error}; {SYNTAX}")),
        }
    })
}

/// The log filter in force, as directives (e.g. `info,localrpc::call=debug`).
pub fn log_filter() -> Result<String, LogFilterError> {
    let live = LIVE_FILTER.get().ok_or(LogFilterError::Unavailable)?;
    Ok(live
        .current
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone())
}

/// The log filter the process started with (from `$LOCALRPC_LOG`, or `info`).
pub fn initial_log_filter() -> Result<String, LogFilterError> {
    let live = LIVE_FILTER.get().ok_or(LogFilterError::Unavailable)?;
    Ok(live.initial.clone())
}

/// Replaces the log filter with `directives` (`$LOCALRPC_LOG`'s syntax). On an error the
/// filter in force is unchanged. Events that the new filter disables cost nothing again at
/// once: tracing's callsite interest and maximum level are recomputed.
pub fn set_log_filter(directives: &str) -> Result<(), LogFilterError> {
    let live = LIVE_FILTER.get().ok_or(LogFilterError::Unavailable)?;
    let filter = parse_filter(directives)?;
    // One replacement at a time, so the text kept always matches the filter in force.
    let mut current = live.current.lock().unwrap_or_else(PoisonError::into_inner);
    live.handle
        .reload(filter)
        .map_err(|_| LogFilterError::Unavailable)?;
    *current = directives.trim().to_owned();
    Ok(())
}

/// The most verbose level the filter in force lets through for some target, as a BSD syslog
/// level (see [`syslog_level_of`]).
pub fn max_syslog_level() -> Result<u8, LogFilterError> {
    let live = LIVE_FILTER.get().ok_or(LogFilterError::Unavailable)?;
    live.handle
        .with_current(|filter| {
            let most = filter
                .iter()
                .map(|(_, level)| level)
                .chain(filter.default_level())
                .max()
                .unwrap_or(LevelFilter::OFF);
            syslog_level_of(most)
        })
        .map_err(|_| LogFilterError::Unavailable)
}

/// The filter directive for a BSD syslog level (`LOG_EMERG` 0 … `LOG_DEBUG` 7), as
/// `io.systemd.service.SetLogLevel` gives it: 0–3 `error`, 4 `warn`, 5–6 `info`, 7 `debug`
/// (tracing has no levels above error, nor one between warn and info). `None` outside 0–7.
pub fn syslog_level_filter(level: i64) -> Option<&'static str> {
    match level {
        0..=3 => Some("error"),
        4 => Some("warn"),
        5 | 6 => Some("info"),
        7 => Some("debug"),
        _ => None,
    }
}

/// A tracing level as a BSD syslog level: error 3, warn 4, info 6, debug and trace 7, and off
/// 0 (syslog has no "nothing"; 0 is the least it can ask for).
pub fn syslog_level_of(level: LevelFilter) -> u8 {
    match level {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => 3,
        LevelFilter::WARN => 4,
        LevelFilter::INFO => 6,
        _ => 7,
    }
}

/// Installs the global subscriber. The filter comes from `$LOCALRPC_LOG` (e.g. `debug`,
/// `localrpc=trace`), default `info`, and can be replaced later ([`set_log_filter`]). Call
/// once, early in `main`.
pub fn init(format: LogFormat) {
    let format = match format {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    };
    let (text, filter) = filter_from_env();
    let (filter, handle) = reload::Layer::new(filter);
    // `try_init` also forwards the `log` crate's records (tracing-log).
    if subscriber(format, filter).try_init().is_err() {
        tracing::debug!("a log subscriber was already installed");
        return;
    }
    let _ = LIVE_FILTER.set(LiveFilter {
        handle,
        current: Mutex::new(text.clone()),
        initial: text,
    });
}

/// `filter` in front of the output `format` asks for (journald falls back to text without
/// colours when the journal cannot be reached; `Auto` means text here).
fn subscriber<F>(format: LogFormat, filter: F) -> Box<dyn Subscriber + Send + Sync>
where
    F: Layer<Registry> + Send + Sync,
{
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
        // Behind the reload handle `init` installs, too.
        for format in [LogFormat::Text, LogFormat::Json] {
            let (filter, _handle) = reload::Layer::new(default.clone());
            let hint = subscriber(format, filter).max_level_hint();
            assert_eq!(hint, Some(LevelFilter::INFO));
        }
    }

    #[test]
    fn invalid_filters_are_errors() {
        assert!("info,=x".parse::<Targets>().is_err());
        assert!("localrpc=loud".parse::<Targets>().is_err());
    }

    #[test]
    fn invalid_filters_name_the_bad_directive_and_the_syntax() {
        let reason = |directives: &str| match parse_filter(directives) {
            Err(LogFilterError::Invalid { filter, reason }) => {
                assert_eq!(filter, directives);
                reason
            }
            other => panic!("{directives:?}: expected Invalid, got {other:?}"),
        };
        let loud = reason("info,localrpc=loud");
        assert!(loud.contains("\"localrpc=loud\""), "{loud}");
        assert!(
            loud.contains("off, error, warn, info, debug, trace"),
            "{loud}"
        );
        assert!(reason("").contains("empty"));
        assert!(reason("  ").contains("empty"));
        assert!(parse_filter(" info,localrpc::call=debug ").is_ok());
        assert!(parse_filter("off").is_ok());
    }

    #[test]
    fn syslog_levels_map_to_tracing_levels_and_back() {
        let mapped: Vec<_> = (0..=7)
            .map(|l| syslog_level_filter(l).unwrap_or("-"))
            .collect();
        assert_eq!(
            mapped,
            [
                "error", "error", "error", "error", "warn", "info", "info", "debug"
            ]
        );
        assert_eq!(syslog_level_filter(-1), None);
        assert_eq!(syslog_level_filter(8), None);
        for (level, syslog) in [
            (LevelFilter::OFF, 0),
            (LevelFilter::ERROR, 3),
            (LevelFilter::WARN, 4),
            (LevelFilter::INFO, 6),
            (LevelFilter::DEBUG, 7),
            (LevelFilter::TRACE, 7),
        ] {
            assert_eq!(syslog_level_of(level), syslog, "{level}");
        }
    }

    /// One callsite, asked before and after each reload (its cached interest must follow).
    fn call_log_enabled() -> bool {
        tracing::enabled!(target: "localrpc::call", Level::DEBUG)
    }

    #[test]
    fn a_reloaded_filter_takes_effect_at_once() {
        let (layer, handle) = reload::Layer::new(parse("info"));
        tracing::subscriber::with_default(subscriber(LogFormat::Text, layer), || {
            assert!(!call_log_enabled());
            handle
                .reload(parse("info,localrpc::call=debug"))
                .expect("reload");
            assert!(call_log_enabled());
            assert!(!tracing::enabled!(target: "localrpc::server", Level::DEBUG));
            handle.reload(parse("warn")).expect("reload");
            assert!(!call_log_enabled());
            assert!(!tracing::enabled!(target: "localrpc::server", Level::INFO));
        });
    }
}
