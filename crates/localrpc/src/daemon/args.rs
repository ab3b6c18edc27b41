//! Parsers for the command-line values every localrpc daemon takes: the permission mode of
//! the sockets it creates (octal) and durations given in seconds.

use std::time::Duration;

/// Parses a socket file's permission bits written in octal (`0600`, `660`), at most `0777`.
///
/// The error says what was wrong, for a command-line parser (e.g. clap's `value_parser`).
///
/// ```
/// use localrpc::daemon::parse_socket_mode;
///
/// assert_eq!(parse_socket_mode("0660"), Ok(0o660));
/// assert!(parse_socket_mode("0999").is_err());
/// assert!(parse_socket_mode("01777").is_err());
/// ```
pub fn parse_socket_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal permission mode such as 0600 or 0660"))
}

/// Turns the value of the option `--<flag>`, a number of seconds, into a [`Duration`].
///
/// Fails with `--<flag> must be a non-negative number of seconds` when `value` is negative,
/// not finite or too large.
///
/// ```
/// use std::time::Duration;
/// use localrpc::daemon::seconds_option;
///
/// assert_eq!(seconds_option(1.5, "drain-timeout"), Ok(Duration::from_millis(1500)));
/// assert_eq!(
///     seconds_option(-1.0, "drain-timeout"),
///     Err("--drain-timeout must be a non-negative number of seconds".to_owned())
/// );
/// ```
pub fn seconds_option(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{flag} must be a non-negative number of seconds"))
}
