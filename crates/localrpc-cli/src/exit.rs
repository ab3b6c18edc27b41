//! Exit codes and the error type every verb returns.
//!
//! | code | meaning |
//! | ---: | --- |
//! | 0  | success (also an error reply named by `--graceful`) |
//! | 1  | the service answered with an error reply (as varlinkctl); `validate-idl` found problems |
//! | 3  | `health`: the daemon answered but is not ready (reloading or draining) |
//! | 64 | bad usage: unknown option, missing argument, parameters that are not a JSON object (EX_USAGE) |
//! | 65 | invalid input data: an IDL file that does not parse, a bad reply description (EX_DATAERR) |
//! | 66 | an input file cannot be read (EX_NOINPUT) |
//! | 69 | the service cannot be reached: no socket, nobody listening, program not found (EX_UNAVAILABLE) |
//! | 70 | internal error (EX_SOFTWARE) |
//! | 74 | writing the output failed (EX_IOERR) |
//! | 75 | no reply within `--timeout` (EX_TEMPFAIL) |
//! | 76 | the connection broke or the peer violated the protocol (EX_PROTOCOL) |
//! | 77 | permission denied while connecting (EACCES/EPERM), or the daemon refused a control call (`stats`, `health`, `log-level`) (EX_NOPERM) |

use std::fmt;
use std::io;
use std::path::Path;

use localrpc::client::Error as ClientError;
use localrpc::transport::Address;

pub const REPLY_ERROR: u8 = 1;
pub const NOT_READY: u8 = 3;
pub const USAGE: u8 = 64;
pub const DATA: u8 = 65;
pub const NO_INPUT: u8 = 66;
pub const UNAVAILABLE: u8 = 69;
pub const SOFTWARE: u8 = 70;
pub const IO: u8 = 74;
pub const TIMEOUT: u8 = 75;
pub const PROTOCOL: u8 = 76;
pub const NO_PERMISSION: u8 = 77;

/// The exit code table, shown after `--help` (keep in sync with README.md).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  success (also an error reply named with --graceful)
   1  the service replied with an error (its name on stderr, its parameters on stdout);
      validate-idl: problems found
   3  health: the daemon answered but is not ready (reloading or draining)
  64  bad usage (unknown option, missing argument, parameters not a JSON object)
  65  invalid data (an IDL file that does not parse)
  66  an input file cannot be read
  69  the service cannot be reached (no socket, nobody listening, program not found)
  70  internal error
  74  writing the output failed
  75  no reply within --timeout
  76  the connection broke or the peer broke the protocol
  77  permission denied while connecting, or a control call refused (stats, health,
      log-level: run as root or as the daemon's user)

Addresses: unix:/path, unix:@name, /path (a socket, or an executable to run), tcp:HOST:PORT,
vsock:CID:PORT, exec:PATH, ssh-unix:HOST:/path, ssh-exec:HOST:COMMAND";

/// A failure: what to print on stderr and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    /// Printed as `localrpc: <message>`; empty when the verb already printed everything.
    pub message: String,
    /// Printed as `hint: <hint>` below the message.
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Exit with `code`; everything has been printed already.
    pub fn silent(code: u8) -> Self {
        Failure {
            code,
            message: String::new(),
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(USAGE, message)
    }

    /// A failure to write our own output (a closed pipe is not worth a message).
    pub fn output(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::BrokenPipe {
            return Failure::silent(IO);
        }
        Failure::new(IO, format!("cannot write the output: {error}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Maps a client error other than an error reply (handled by the verbs) to a failure with
/// advice; `doing` says what was being done, e.g. `call io.example.Ping()`.
pub fn client_failure(address: &Address, doing: &str, error: ClientError) -> Failure {
    match error {
        ClientError::Connect { source, .. } => connect_failure(address, &source),
        ClientError::Timeout(limit) => Failure::new(
            TIMEOUT,
            format!("{doing}: no reply from {address} within {}", seconds(limit.as_secs_f64())),
        )
        .with_hint("the service is busy or stuck; retry, or wait longer with --timeout=SECONDS (or --timeout=infinity)"),
        ClientError::ConnectionLost(why) => Failure::new(
            PROTOCOL,
            format!("{doing}: the connection to {address} was lost ({why}); the outcome is unknown"),
        )
        .with_hint("the service may have crashed or refused the request; check its logs"),
        ClientError::Protocol(e) => {
            Failure::new(PROTOCOL, format!("{doing}: {address} broke the varlink protocol: {e}"))
        }
        ClientError::Address(e) => Failure::usage(e.to_string()),
        ClientError::Encode(e) => Failure::usage(format!("{doing}: {e}")),
        ClientError::Reply(reply) => Failure::new(
            REPLY_ERROR,
            format!("{doing} failed: {}", reply.name),
        ),
        #[allow(unreachable_patterns)]
        other => Failure::new(PROTOCOL, format!("{doing}: {other}")),
    }
}

fn seconds(value: f64) -> String {
    format!("{}s", (value * 1000.0).round() / 1000.0)
}

/// What to tell the user when connecting failed: 69 with a hint, or 77 for a permission error.
pub fn connect_failure(address: &Address, error: &io::Error) -> Failure {
    let base = format!("cannot connect to {address}: {error}");
    let permission = error.kind() == io::ErrorKind::PermissionDenied
        || matches!(error.raw_os_error(), Some(1) | Some(13));
    if permission {
        let hint = match address {
            Address::Exec(_) => "the program is not executable by you; check its mode (chmod +x) or run it as another user".to_owned(),
            _ => "the socket exists but you may not connect to it; run as a user with access (e.g. with sudo or run0), or check the socket's mode and group".to_owned(),
        };
        return Failure::new(NO_PERMISSION, format!("permission denied: {base}")).with_hint(hint);
    }
    let hint = match (address, error.raw_os_error()) {
        (Address::Unix(path), Some(2)) => Some(format!(
            "nothing is listening at {} (no such file). {}",
            path.display(),
            socket_unit_hint(path)
        )),
        (Address::Unix(path), Some(111)) => Some(format!(
            "the socket file exists but nobody accepts connections (the service is not running, or left a stale socket). {}",
            socket_unit_hint(path)
        )),
        (Address::Abstract(_), _) | (Address::Tcp(_), _) | (Address::Vsock { .. }, _) => {
            Some("is the service running and listening on this address?".to_owned())
        }
        (Address::Exec(_), Some(2)) => {
            Some("the program does not exist; check the path".to_owned())
        }
        (Address::SshUnix { .. } | Address::SshExec { .. }, Some(2)) => {
            Some("the ssh client was not found; install OpenSSH or set $LOCALRPC_SSH".to_owned())
        }
        _ => None,
    };
    let failure = Failure::new(UNAVAILABLE, base);
    match hint {
        Some(hint) => failure.with_hint(hint),
        None => failure,
    }
}

/// `is x.socket running? try: systemctl start x.socket` for a socket path.
fn socket_unit_hint(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem
        .strip_suffix(".sock")
        .or_else(|| stem.strip_suffix(".socket"))
        .unwrap_or(&stem);
    let user = path.starts_with("/run/user")
        || std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|dir| !dir.is_empty() && path.starts_with(dir));
    let systemctl = if user {
        "systemctl --user"
    } else {
        "systemctl"
    };
    format!(
        "Is {stem}.socket running? try: {systemctl} start {stem}.socket (or start the service that creates this socket)"
    )
}
