//! Varlink addresses: `unix:/path`, `unix:@name`, bare paths, `tcp:host:port`, `vsock:CID:PORT`,
//! `exec:PATH`, `ssh-unix:HOST:/path`, `ssh-exec:HOST:CMD`.

use std::fmt;
use std::path::PathBuf;

/// A parsed varlink address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket at a filesystem path.
    Unix(PathBuf),
    /// A Unix socket in the abstract namespace (`unix:@name`), name without the `@`.
    Abstract(String),
    /// A TCP socket, `host:port` (IPv6 hosts in brackets).
    Tcp(String),
    /// An AF_VSOCK socket.
    Vsock {
        /// Context id.
        cid: u32,
        /// Port.
        port: u32,
    },
    /// A program to start with a connected socket on fd 3.
    Exec(PathBuf),
    /// A Unix socket on another host, reached through `ssh`.
    SshUnix {
        /// The ssh destination.
        host: String,
        /// The socket path on that host.
        path: String,
    },
    /// A program on another host, run through `ssh`, speaking varlink on stdin/stdout.
    SshExec {
        /// The ssh destination.
        host: String,
        /// The command line to run there.
        command: String,
    },
}

/// An address that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {address:?}: {reason}")]
pub struct AddressError {
    /// The address as given.
    pub address: String,
    /// What is wrong with it, and what would be right.
    pub reason: String,
}

impl Address {
    /// Parses an address; anything after `;` is ignored, as varlink.org specifies.
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let fail = |reason: &str| AddressError {
            address: text.to_owned(),
            reason: reason.to_owned(),
        };
        let address = text.split(';').next().unwrap_or_default();
        if let Some(rest) = address.strip_prefix("unix:") {
            return match rest.strip_prefix('@') {
                Some("") => Err(fail("the abstract socket name is empty")),
                Some(name) => Ok(Address::Abstract(name.to_owned())),
                None if rest.is_empty() => Err(fail("the socket path is empty")),
                None => Ok(Address::Unix(PathBuf::from(rest))),
            };
        }
        if let Some(rest) = address.strip_prefix("tcp:") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| fail("expected tcp:HOST:PORT, e.g. tcp:127.0.0.1:5000"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(fail("expected tcp:HOST:PORT with a port from 0 to 65535"));
            }
            return Ok(Address::Tcp(rest.to_owned()));
        }
        if let Some(rest) = address.strip_prefix("vsock:") {
            let parsed = rest
                .split_once(':')
                .and_then(|(cid, port)| Some((cid.parse().ok()?, port.parse().ok()?)));
            return match parsed {
                Some((cid, port)) => Ok(Address::Vsock { cid, port }),
                None => Err(fail("expected vsock:CID:PORT with numeric CID and PORT")),
            };
        }
        if let Some(rest) = address.strip_prefix("exec:") {
            if rest.is_empty() {
                return Err(fail("expected exec:PATH"));
            }
            return Ok(Address::Exec(PathBuf::from(rest)));
        }
        if let Some(rest) = address.strip_prefix("ssh-unix:") {
            return match rest.split_once(':') {
                Some((host, path)) if !host.is_empty() && path.starts_with('/') => {
                    Ok(Address::SshUnix {
                        host: host.to_owned(),
                        path: path.to_owned(),
                    })
                }
                _ => Err(fail("expected ssh-unix:HOST:/absolute/path")),
            };
        }
        if let Some(rest) = address.strip_prefix("ssh-exec:") {
            return match rest.split_once(':') {
                Some((host, command)) if !host.is_empty() && !command.is_empty() => {
                    Ok(Address::SshExec {
                        host: host.to_owned(),
                        command: command.to_owned(),
                    })
                }
                _ => Err(fail("expected ssh-exec:HOST:COMMAND")),
            };
        }
        if address.starts_with('/') || address.starts_with("./") || address.starts_with("../") {
            return Ok(Address::Unix(PathBuf::from(address)));
        }
        Err(fail(
            "expected unix:/path, unix:@name, a path starting with / or ./, tcp:HOST:PORT, \
             vsock:CID:PORT, exec:PATH, ssh-unix:HOST:/path or ssh-exec:HOST:COMMAND",
        ))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Abstract(name) => write!(f, "unix:@{name}"),
            Address::Tcp(hostport) => write!(f, "tcp:{hostport}"),
            Address::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Address::Exec(path) => write!(f, "exec:{}", path.display()),
            Address::SshUnix { host, path } => write!(f, "ssh-unix:{host}:{path}"),
            Address::SshExec { host, command } => write!(f, "ssh-exec:{host}:{command}"),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let cases = [
            ("unix:/run/x.sock", Address::Unix("/run/x.sock".into())),
            (
                "unix:/run/x.sock;mode=0666",
                Address::Unix("/run/x.sock".into()),
            ),
            ("/run/x.sock", Address::Unix("/run/x.sock".into())),
            ("./x.sock", Address::Unix("./x.sock".into())),
            ("unix:@name", Address::Abstract("name".into())),
            ("tcp:127.0.0.1:5000", Address::Tcp("127.0.0.1:5000".into())),
            ("tcp:[::1]:5000", Address::Tcp("[::1]:5000".into())),
            ("vsock:2:1024", Address::Vsock { cid: 2, port: 1024 }),
            ("exec:/usr/bin/x", Address::Exec("/usr/bin/x".into())),
            (
                "ssh-unix:host:/run/x",
                Address::SshUnix {
                    host: "host".into(),
                    path: "/run/x".into(),
                },
            ),
            (
                "ssh-exec:h:cmd arg",
                Address::SshExec {
                    host: "h".into(),
                    command: "cmd arg".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Address::parse(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_addresses_with_a_reason() {
        for bad in [
            "",
            "x.sock",
            "unix:",
            "unix:@",
            "tcp:nohost",
            "tcp::1",
            "tcp:h:99999",
            "vsock:a:1",
            "ssh-unix:h:rel",
        ] {
            let err = Address::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["unix:/a", "unix:@b", "tcp:[::1]:1", "vsock:1:2", "exec:/x"] {
            assert_eq!(Address::parse(text).unwrap().to_string(), text);
        }
    }
}
