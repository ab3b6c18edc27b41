//! Command line of `localrpc-echo`: the options of the original socket-activate-echo
//! (`-h`, `-d`, `-s`, `-t`) plus `--max-datagram-size`, parsed by hand so that the usage text
//! and the error messages stay those of the original.

/// Default for `--max-datagram-size`: 64 KiB, enough for any UDP datagram on loopback.
pub const DEFAULT_MAX_DATAGRAM_SIZE: usize = 64 * 1024;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `-d`: `Bytes received = N, File descriptor name = "<name>"` lines on stderr.
    pub debug: bool,
    /// `-s`: send `READY=1` and `STATUS=` via sd_notify.
    pub sdnotify: bool,
    /// `-t N`: sleep N seconds before reporting readiness (to try out Type=notify).
    pub start_sleep: u32,
    /// `--max-datagram-size N`: larger datagrams are logged and dropped, never truncated.
    pub max_datagram_size: usize,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            debug: false,
            sdnotify: false,
            start_sleep: 0,
            max_datagram_size: DEFAULT_MAX_DATAGRAM_SIZE,
        }
    }
}

/// The result of parsing.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Serve with these options.
    Run(Args),
    /// `-h`/`--help`: print [`usage`] on stdout and exit 0.
    Help,
}

/// The usage text (the original's, plus the option this implementation adds).
pub fn usage() -> String {
    format!(
        "Usage: localrpc-echo [OPTION]\n\
         -h, --help                        print help\n\
         -d, --debug                       print debug output to stderr\n\
         -s, --sdnotify                    enable sd_notify\n\
         -t, --start-sleep seconds         add start sleep (unsigned int)\n\
         \x20   --max-datagram-size bytes     largest datagram echoed (default {DEFAULT_MAX_DATAGRAM_SIZE});\n\
         \x20                                 a larger one is logged and dropped, never truncated\n\
         \n\
         To use the echo server functionality, let this program be started by a systemd service or systemd-socket-activate.\n\
         For example: systemd-socket-activate -l /tmp/echo.sock -l 4000 localrpc-echo -d\n"
    )
}

/// The original's message for a bad command line, with the offending argument named.
fn incorrect(detail: String) -> String {
    format!("Incorrect command-line arguments. See --help for usage ({detail})")
}

fn number<T: std::str::FromStr>(
    option: &str,
    value: Option<String>,
    what: &str,
) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{option} expects a value"))?;
    value
        .parse()
        .map_err(|_| format!("{option} value is not {what}: {value:?}"))
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (option, inline) = match arg.split_once('=') {
            Some((option, value)) if option.starts_with("--") => {
                (option.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match option.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-d" | "--debug" => parsed.debug = true,
            "-s" | "--sdnotify" => parsed.sdnotify = true,
            "-t" | "--start-sleep" => {
                parsed.start_sleep = number(&option, value(), "an unsigned integer")?
            }
            "--max-datagram-size" => {
                parsed.max_datagram_size = number(&option, value(), "a positive number of bytes")?;
                if parsed.max_datagram_size == 0 {
                    return Err("--max-datagram-size must be at least 1".into());
                }
            }
            _ => return Err(incorrect(format!("unknown argument {arg:?}"))),
        }
        if inline.is_some() && !matches!(option.as_str(), "--start-sleep" | "--max-datagram-size") {
            return Err(incorrect(format!("{option} takes no value")));
        }
    }
    Ok(Parsed::Run(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        assert_eq!(parse_strs(&[]), Ok(Parsed::Run(Args::default())));
        let Ok(Parsed::Run(args)) =
            parse_strs(&["-d", "--sdnotify", "-t", "2", "--max-datagram-size=1024"])
        else {
            panic!("should parse")
        };
        assert_eq!(
            args,
            Args {
                debug: true,
                sdnotify: true,
                start_sleep: 2,
                max_datagram_size: 1024
            }
        );
        assert_eq!(parse_strs(&["-d", "--help"]), Ok(Parsed::Help));
    }

    #[test]
    fn errors_name_the_argument() {
        let e = parse_strs(&["--bogus"]).unwrap_err();
        assert!(
            e.starts_with("Incorrect command-line arguments. See --help for usage"),
            "{e}"
        );
        assert!(e.contains("--bogus"), "{e}");
        assert_eq!(parse_strs(&["-t"]).unwrap_err(), "-t expects a value");
        assert!(
            parse_strs(&["--start-sleep", "x"])
                .unwrap_err()
                .contains("not an unsigned integer")
        );
        assert!(parse_strs(&["--max-datagram-size", "0"]).is_err());
        assert!(parse_strs(&["--debug=yes"]).is_err());
    }

    #[test]
    fn usage_keeps_the_original_lines() {
        let usage = usage();
        assert!(usage.starts_with("Usage: localrpc-echo [OPTION]\n-h, --help "));
        assert!(usage.contains(
            "To use the echo server functionality, let this program be started by a systemd service or systemd-socket-activate."
        ));
    }
}
