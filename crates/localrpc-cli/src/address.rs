//! Turning the user's address argument into a connection, as varlinkctl decides: a bare path
//! is connected to when it is a socket and run (`exec:`) when it is an executable file.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use localrpc::client::Connection;
use localrpc::transport::Address;

use crate::cli::Timeout;
use crate::exit::{self, Failure, connect_failure};

/// Parses `text`; bare paths (`/p`, `./p`, `../p`) become exec: for executable regular files.
pub fn resolve(text: &str) -> Result<Address, Failure> {
    let bare = text.starts_with('/') || text.starts_with("./") || text.starts_with("../");
    if bare
        && !text.contains(';')
        && let Ok(meta) = std::fs::metadata(Path::new(text))
    {
        let ft = meta.file_type();
        if ft.is_socket() {
            return Ok(Address::Unix(text.into()));
        }
        if ft.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return Ok(Address::Exec(text.into()));
        }
        return Err(Failure::usage(format!(
                "{text} is neither a Unix socket nor an executable program"
            ))
            .with_hint("give the path of a varlink socket (or unix:PATH), or of a program to run (or exec:PATH)"));
    }
    Address::parse(text).map_err(|e| {
        Failure::usage(e.to_string())
            .with_hint("e.g. unix:/run/example.sock, /run/example.sock or exec:/usr/bin/example")
    })
}

/// Connects to `text` with the given reply timeout.
pub async fn connect(text: &str, timeout: Timeout) -> Result<(Address, Connection), Failure> {
    let address = resolve(text)?;
    let mut connection = Connection::connect_to(&address)
        .await
        .map_err(|e| match e {
            localrpc::client::Error::Connect { source, .. } => connect_failure(&address, &source),
            other => Failure::new(exit::UNAVAILABLE, other.to_string()),
        })?;
    connection.set_timeout(timeout.0);
    Ok((address, connection))
}
