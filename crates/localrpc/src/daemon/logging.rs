//! Log output for daemons: text on a terminal, JSON when asked, journald under systemd.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber. The filter comes from `$LOCALRPC_LOG` (e.g. `debug`,
/// `localrpc=trace`), default `info`. Call once, early in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LOCALRPC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match format {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        other => other,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => {
                use tracing_subscriber::layer::SubscriberExt;
                let filter = EnvFilter::try_from_env("LOCALRPC_LOG")
                    .unwrap_or_else(|_| EnvFilter::new("info"));
                tracing::subscriber::set_global_default(
                    tracing_subscriber::registry().with(filter).with(layer),
                )
                .map_err(Into::into)
            }
            Err(_) => builder.with_ansi(false).try_init(),
        },
        _ => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    if installed.is_err() {
        tracing::debug!("a log subscriber was already installed");
    }
}
