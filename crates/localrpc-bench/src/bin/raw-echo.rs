//! `raw-echo SOCKET_PATH`: the kernel's limit. Accepts Unix stream connections, one thread
//! each, and writes back every byte it reads, unparsed. Since a varlink call ends with NUL,
//! the echoed call is a "reply" the load generator counts like any other.
//!
//! Under socket activation (LISTEN_FDS) it serves the passed socket: the floor for the cold
//! start measurement.
//!
//! Not a varlink server: it is the floor every server is compared with (syscalls, wake-ups,
//! copies, no parsing).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

fn serve(mut stream: UnixStream) {
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The socket systemd (or systemd-socket-activate) passed, if any: fd 3.
fn activated() -> Option<UnixListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // SAFETY: under socket activation fd 3 is a listening socket handed to this process.
    Some(unsafe { <UnixListener as std::os::fd::FromRawFd>::from_raw_fd(3) })
}

fn main() {
    let listener = match activated() {
        Some(listener) => listener,
        None => {
            let Some(path) = std::env::args().nth(1) else {
                eprintln!("usage: raw-echo SOCKET_PATH (or run under socket activation)");
                std::process::exit(2);
            };
            let _ = std::fs::remove_file(&path);
            UnixListener::bind(&path).unwrap_or_else(|e| {
                eprintln!("raw-echo: cannot bind {path}: {e}");
                std::process::exit(1);
            })
        }
    };
    localrpc_bench::thread_per_connection(listener, "raw-echo", serve)
}
