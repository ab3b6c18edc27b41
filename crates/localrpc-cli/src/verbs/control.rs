//! `localrpc stats`, `localrpc health` and `localrpc log-level`: run-time control of a daemon
//! through `io.localrpc.Control` (every localrpc daemon), falling back to systemd's
//! `io.systemd.service` (`Ping`, `GetLogLevel`, `SetLogLevel`) where a daemon does not offer it.

use localrpc::client::{Connection, Error as ClientError, Parameters};
use localrpc::transport::Address;
use serde_json::{Value, json};

use crate::address;
use crate::cli::{HealthArgs, InfoArgs, LogLevelArgs};
use crate::exit::{self, Failure, client_failure};
use crate::output;
use crate::verbs::info::json_style;

const CONTROL: &str = "io.localrpc.Control";
const SYSTEMD_SERVICE: &str = "io.systemd.service";

/// How a control call ended, when it did not succeed.
enum Refused {
    /// The daemon does not serve the method's interface (or the method).
    Missing,
    /// Any other failure, ready to report.
    Failed(Failure),
}

/// Calls `interface.method`, telling an interface the daemon lacks apart from other errors,
/// which become failures with advice.
async fn control_call(
    connection: &mut Connection,
    address: &Address,
    interface: &str,
    method: &str,
    parameters: Value,
) -> Result<Parameters, Refused> {
    let full = format!("{interface}.{method}");
    match connection.call(&full, parameters).await {
        Ok(reply) => Ok(reply),
        Err(ClientError::Reply(reply)) => Err(match reply.name.as_str() {
            // localrpc says InterfaceNotFound; sd-varlink says MethodNotFound for both.
            "org.varlink.service.InterfaceNotFound" | "org.varlink.service.MethodNotFound" => {
                Refused::Missing
            }
            "org.varlink.service.PermissionDenied" => Refused::Failed(
                Failure::new(
                    exit::NO_PERMISSION,
                    format!("{full}() failed: {address} refused the call (org.varlink.service.PermissionDenied)"),
                )
                .with_hint("only root and the user the daemon runs as may do this: run as root (e.g. with sudo or run0) or as the daemon's user"),
            ),
            _ => {
                let detail = reply
                    .parameters
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(|reason| format!(": {reason}"))
                    .unwrap_or_else(|| {
                        if reply.parameters.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", Value::Object(reply.parameters.clone()))
                        }
                    });
                Refused::Failed(Failure::new(
                    exit::REPLY_ERROR,
                    format!("{full}() failed: {}{detail}", reply.name),
                ))
            }
        }),
        Err(other) => Err(Refused::Failed(client_failure(
            address,
            &format!("call {full}()"),
            other,
        ))),
    }
}

/// The failure for a daemon without `io.localrpc.Control`.
fn no_control(address: &Address, what: &str) -> Failure {
    Failure::new(
        exit::REPLY_ERROR,
        format!("{address} does not offer {CONTROL}, so {what} cannot be shown"),
    )
    .with_hint(format!(
        "it is not a localrpc daemon, or it runs with the control interfaces turned off; \
         see what it offers: localrpc list-interfaces {address}"
    ))
}

/// Which interface answered a call made with [`control_or_systemd`], and its reply.
enum Answer {
    Control(Parameters),
    Systemd(Parameters),
}

/// Calls `io.localrpc.Control.{method}`; on a daemon without that interface, calls
/// `io.systemd.service.{method}` as `fallback` says instead (or returns `fallback`'s failure).
/// `neither` is the failure for a daemon that lacks both interfaces; any other failure of
/// either call is returned as it is.
async fn control_or_systemd(
    connection: &mut Connection,
    address: &Address,
    (method, parameters): (&str, Value),
    fallback: Result<(&str, Value), Failure>,
    neither: Failure,
) -> Result<Answer, Failure> {
    match control_call(connection, address, CONTROL, method, parameters).await {
        Ok(reply) => return Ok(Answer::Control(reply)),
        Err(Refused::Failed(failure)) => return Err(failure),
        Err(Refused::Missing) => {}
    }
    let (method, parameters) = fallback?;
    match control_call(connection, address, SYSTEMD_SERVICE, method, parameters).await {
        Ok(reply) => Ok(Answer::Systemd(reply)),
        Err(Refused::Missing) => Err(neither),
        Err(Refused::Failed(failure)) => Err(failure),
    }
}

/// An integer field of a reply.
fn number(reply: &Parameters, key: &str) -> Option<u64> {
    reply.get(key).and_then(Value::as_u64)
}

/// Microseconds as systemd shows a timespan: `2d 3h 4min 5.123s`.
fn timespan(usec: u64) -> String {
    let seconds = usec / 1_000_000;
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    let rest = (usec % 60_000_000) as f64 / 1e6;
    let mut out = String::new();
    for (value, unit) in [(days, "d"), (hours, "h"), (minutes, "min")] {
        if value > 0 || !out.is_empty() {
            out.push_str(&format!("{value}{unit} "));
        }
    }
    out.push_str(&format!("{rest:.3}s"));
    out
}

/// `localrpc stats ADDRESS`: io.localrpc.Control.GetStats as a table (or JSON).
pub async fn stats(args: InfoArgs) -> Result<(), Failure> {
    let style = json_style(args.json.as_deref(), args.j)?;
    let (address, mut connection) = address::connect(&args.address, args.timeout).await?;
    let reply = match control_call(&mut connection, &address, CONTROL, "GetStats", json!({})).await
    {
        Ok(reply) => reply,
        Err(Refused::Missing) => return Err(no_control(&address, "its counters")),
        Err(Refused::Failed(failure)) => return Err(failure),
    };
    if let Some(style) = style {
        return output::print(&Value::Object(reply), style).map_err(Failure::output);
    }
    let mut out = String::new();
    for (key, value) in &reply {
        let label = match key.as_str() {
            "uptime_usec" => "Uptime".to_owned(),
            other => {
                let words = other.replace('_', " ");
                let mut chars = words.chars();
                chars
                    .next()
                    .map(|first| first.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            }
        };
        let value = match (key.as_str(), value.as_u64()) {
            ("uptime_usec", Some(usec)) => timespan(usec),
            _ => value.to_string(),
        };
        out.push_str(&format!("{label:>20}: {value}\n"));
    }
    super::write_stdout(&out)
}

/// `localrpc health ADDRESS`: io.localrpc.Control.GetHealth (io.systemd.service.Ping on other
/// daemons); exit 0 only when ready.
pub async fn health(args: HealthArgs) -> Result<(), Failure> {
    let style = json_style(args.json.as_deref(), args.j)?;
    let (address, mut connection) = address::connect(&args.address, args.timeout).await?;
    let answer = control_or_systemd(
        &mut connection,
        &address,
        ("GetHealth", json!({})),
        // A systemd daemon: Ping answers while it runs.
        Ok(("Ping", json!({}))),
        Failure::new(
            exit::REPLY_ERROR,
            format!("{address} offers neither {CONTROL} nor {SYSTEMD_SERVICE}, so its health is unknown"),
        )
        .with_hint(format!(
            "it answers varlink, which shows that it runs; see what it offers: localrpc list-interfaces {address}"
        )),
    )
    .await?;
    let reply = match answer {
        Answer::Control(reply) => reply,
        Answer::Systemd(_) => {
            let mut reply = Parameters::new();
            reply.insert("state".into(), json!("ready"));
            reply.insert("source".into(), json!("io.systemd.service.Ping"));
            reply
        }
    };
    let state = reply
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    if !args.quiet {
        match style {
            Some(style) => {
                output::print(&Value::Object(reply.clone()), style).map_err(Failure::output)?
            }
            None => {
                let mut line = state.clone();
                if let Some(name) = reply.get("name").and_then(Value::as_str) {
                    line.push_str(&format!(" name={name}"));
                }
                if let Some(pid) = number(&reply, "pid") {
                    line.push_str(&format!(" pid={pid}"));
                }
                if let Some(usec) = number(&reply, "uptime_usec") {
                    line.push_str(&format!(" uptime={}", timespan(usec)));
                }
                if let Some(open) = number(&reply, "connections_open") {
                    line.push_str(&format!(" connections={open}"));
                }
                if let Some(source) = reply.get("source").and_then(Value::as_str) {
                    line.push_str(&format!(
                        " (from {source}: the daemon does not offer {CONTROL})"
                    ));
                }
                line.push('\n');
                super::write_stdout(&line)?;
            }
        }
    }
    if state == "ready" {
        Ok(())
    } else {
        Err(Failure::silent(exit::NOT_READY))
    }
}

/// A plain level given to `log-level`: the tracing directive for io.localrpc.Control and the
/// BSD syslog level for io.systemd.service (`None`: syslog has no equivalent, i.e. `off`).
#[derive(Debug, PartialEq, Eq)]
struct PlainLevel {
    directive: &'static str,
    syslog: Option<u8>,
}

/// Reads a plain level: 0–7, syslog names (emerg … debug) or tracing names (off … trace).
fn plain_level(text: &str) -> Option<PlainLevel> {
    let level = |directive, syslog| Some(PlainLevel { directive, syslog });
    match text.trim().to_ascii_lowercase().as_str() {
        "0" | "emerg" => level("error", Some(0)),
        "1" | "alert" => level("error", Some(1)),
        "2" | "crit" => level("error", Some(2)),
        "3" | "err" | "error" => level("error", Some(3)),
        "4" | "warning" | "warn" => level("warn", Some(4)),
        "5" | "notice" => level("info", Some(5)),
        "6" | "info" => level("info", Some(6)),
        "7" | "debug" => level("debug", Some(7)),
        "trace" => level("trace", Some(7)),
        "off" => level("off", None),
        _ => None,
    }
}

/// The syslog name of a level.
fn syslog_name(level: u64) -> &'static str {
    [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ]
    .get(level as usize)
    .copied()
    .unwrap_or("?")
}

/// `localrpc log-level ADDRESS [LEVEL|FILTER]`: prints the filter, or replaces it
/// (io.localrpc.Control; on other daemons io.systemd.service.GetLogLevel/SetLogLevel, plain
/// levels only).
pub async fn log_level(args: LogLevelArgs) -> Result<(), Failure> {
    let (address, mut connection) = address::connect(&args.address, args.timeout).await?;
    let Some(text) = args.filter.as_deref().filter(|_| !args.reset) else {
        return if args.reset {
            reset_level(&mut connection, &address).await
        } else {
            show_level(&mut connection, &address).await
        };
    };
    let level = plain_level(text);
    let filter = level.as_ref().map_or(text.trim(), |level| level.directive);
    // Not a localrpc daemon: systemd's SetLogLevel takes a syslog level.
    let set_level = match level {
        None => Err(Failure::new(
            exit::REPLY_ERROR,
            format!("{address} does not offer {CONTROL}, which full filters such as {text:?} need"),
        )
        .with_hint("give a plain level (0-7, emerg..debug or error/warn/info/debug), which goes through io.systemd.service.SetLogLevel")),
        Some(PlainLevel { syslog: None, .. }) => Err(Failure::new(
            exit::REPLY_ERROR,
            format!("{address} does not offer {CONTROL}, and {SYSTEMD_SERVICE}.SetLogLevel has no level {text:?}"),
        )
        .with_hint("use a syslog level from 0 (emerg) to 7 (debug)")),
        Some(PlainLevel { syslog: Some(syslog), .. }) => {
            Ok(("SetLogLevel", json!({ "level": syslog })))
        }
    };
    control_or_systemd(
        &mut connection,
        &address,
        ("SetLogFilter", json!({ "filter": filter })),
        set_level,
        neither(&address),
    )
    .await?;
    Ok(())
}

fn neither(address: &Address) -> Failure {
    Failure::new(
        exit::REPLY_ERROR,
        format!("{address} offers neither {CONTROL} nor {SYSTEMD_SERVICE}: its log level cannot be read or changed over varlink"),
    )
    .with_hint(format!("see what it offers: localrpc list-interfaces {address}"))
}

async fn show_level(connection: &mut Connection, address: &Address) -> Result<(), Failure> {
    let answer = control_or_systemd(
        connection,
        address,
        ("GetLogFilter", json!({})),
        Ok(("GetLogLevel", json!({}))),
        neither(address),
    )
    .await?;
    match answer {
        Answer::Control(reply) => {
            let filter = reply.get("filter").and_then(Value::as_str).unwrap_or("?");
            super::write_stdout(&format!("{filter}\n"))
        }
        Answer::Systemd(reply) => match number(&reply, "level") {
            Some(level) => super::write_stdout(&format!("{level} ({})\n", syslog_name(level))),
            None => Err(Failure::new(
                exit::PROTOCOL,
                format!(
                    "{address}: GetLogLevel's reply has no level: {}",
                    Value::Object(reply)
                ),
            )),
        },
    }
}

async fn reset_level(connection: &mut Connection, address: &Address) -> Result<(), Failure> {
    control_or_systemd(
        connection,
        address,
        ("SetLogFilter", json!({ "filter": null })),
        Ok(("SetLogLevel", json!({ "level": null }))),
        neither(address),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_levels_map_to_directives_and_syslog_levels() {
        let of = |text| plain_level(text).map(|l| (l.directive, l.syslog));
        assert_eq!(of("7"), Some(("debug", Some(7))));
        assert_eq!(of("debug"), Some(("debug", Some(7))));
        assert_eq!(of("warning"), Some(("warn", Some(4))));
        assert_eq!(of("WARN"), Some(("warn", Some(4))));
        assert_eq!(of("notice"), Some(("info", Some(5))));
        assert_eq!(of("0"), Some(("error", Some(0))));
        assert_eq!(of("crit"), Some(("error", Some(2))));
        assert_eq!(of("err"), Some(("error", Some(3))));
        assert_eq!(of("trace"), Some(("trace", Some(7))));
        assert_eq!(of("off"), Some(("off", None)));
        assert_eq!(of("8"), None);
        assert_eq!(of("info,localrpc::call=debug"), None);
    }

    #[test]
    fn timespans_read_like_systemds() {
        assert_eq!(timespan(1_500_000), "1.500s");
        assert_eq!(timespan(61_000_000), "1min 1.000s");
        assert_eq!(timespan(90_061_000_000), "1d 1h 1min 1.000s");
        assert_eq!(timespan(3_600_000_000), "1h 0min 0.000s");
    }
}
