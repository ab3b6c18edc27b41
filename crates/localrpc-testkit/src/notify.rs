//! A stand-in for the service manager's end of sd_notify: a datagram socket bound at a path
//! or in the abstract namespace, whose address goes into a daemon's `NOTIFY_SOCKET`.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use crate::TIMEOUT;

/// A datagram socket standing in for the service manager's notify socket.
pub struct NotifyReceiver {
    /// The bound socket.
    pub socket: UnixDatagram,
    /// The value for `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
    pub address: String,
}

impl NotifyReceiver {
    /// Bound at `<dir>/notify-<tag>`.
    pub fn path(dir: &Path, tag: &str) -> NotifyReceiver {
        let path = dir.join(format!("notify-{tag}"));
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifyReceiver {
            socket,
            address: path.to_str().expect("UTF-8 temp path").to_owned(),
        }
    }

    /// Bound in the abstract namespace (unique per test process and `tag`);
    /// `NOTIFY_SOCKET=@name`.
    pub fn abstract_name(tag: &str) -> NotifyReceiver {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("localrpc-lifecycle-{}-{tag}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let socket = UnixDatagram::bind_addr(&address).expect("bind the abstract notify socket");
        NotifyReceiver {
            socket,
            address: format!("@{name}"),
        }
    }

    /// The next message, waiting at most [`TIMEOUT`].
    pub fn recv(&self) -> String {
        self.recv_within(TIMEOUT)
            .expect("a notify message within the timeout")
    }

    /// The next message within `timeout`, or None. A zero timeout means "only what is
    /// already queued".
    pub fn recv_within(&self, timeout: Duration) -> Option<String> {
        self.socket
            .set_nonblocking(timeout.is_zero())
            .expect("set notify blocking mode");
        if !timeout.is_zero() {
            self.socket
                .set_read_timeout(Some(timeout))
                .expect("set notify timeout");
        }
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("receive a notify message: {e}"),
        }
    }

    /// Waits for a message starting with `READY=1`, returning it; panics on any other first.
    pub fn expect_ready(&self) -> String {
        let message = self.recv();
        assert!(
            message.starts_with("READY=1\n"),
            "expected READY=1 first, got {message:?}"
        );
        message
    }

    /// Waits for `RELOADING=1` with `MONOTONIC_USEC=`, returning that timestamp (µs of
    /// `CLOCK_MONOTONIC`); panics on any other message first.
    pub fn expect_reloading(&self) -> u128 {
        let reloading = self.recv();
        reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| panic!("RELOADING=1 with MONOTONIC_USEC, got {reloading:?}"))
    }
}
