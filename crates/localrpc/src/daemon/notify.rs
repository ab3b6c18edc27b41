//! sd_notify: readiness, status, reload, stop and watchdog messages to the service manager.
//!
//! One datagram per message to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace). Without `NOTIFY_SOCKET` every call is a no-op, so daemons call it
//! unconditionally.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Longest message PID 1 reads.
const MAX_MESSAGE: usize = 4096;
/// How long a send may block when the manager's queue is full.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends notifications to the service manager.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<SocketAddr>,
}

impl Notifier {
    /// Targets `$NOTIFY_SOCKET`; a no-op notifier when it is unset or invalid (logged).
    pub fn from_env() -> Notifier {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(socket) => Notifier::to_socket(&socket).unwrap_or_else(|e| {
                tracing::warn!(%socket, error = %e, "ignoring unusable NOTIFY_SOCKET");
                Notifier::default()
            }),
            Err(_) => Notifier::default(),
        }
    }

    /// Targets a socket given as a path or `@abstract-name`.
    pub fn to_socket(socket: &str) -> io::Result<Notifier> {
        let address = match socket.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None if socket.starts_with('/') => SocketAddr::from_pathname(socket)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NOTIFY_SOCKET must be an absolute path or @name",
                ));
            }
        };
        Ok(Notifier {
            target: Some(address),
        })
    }

    /// True when messages actually go somewhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines) as one datagram.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        if state.len() > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "notification longer than 4096 bytes",
            ));
        }
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        socket.send_to_addr(state.as_bytes(), target)?;
        Ok(())
    }

    fn send_logged(&self, state: &str) {
        if let Err(error) = self.notify(state) {
            tracing::warn!(%error, state, "sd_notify failed");
        }
    }

    /// `READY=1`, with a status line.
    pub fn ready(&self, status: &str) {
        self.send_logged(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=...`.
    pub fn status(&self, status: &str) {
        self.send_logged(&format!("STATUS={}", one_line(status)));
    }

    /// `STOPPING=1`, with a status line.
    pub fn stopping(&self, status: &str) {
        self.send_logged(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (follow with [`Notifier::ready`] when done).
    pub fn reloading(&self) {
        self.send_logged(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// `EXTEND_TIMEOUT_USEC=...`: asks for more time to start up or shut down.
    pub fn extend_timeout(&self, by: Duration) {
        self.send_logged(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()));
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }
}

/// Status texts are single lines.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// CLOCK_MONOTONIC in microseconds, as `RELOADING=1` wants it.
pub fn monotonic_usec() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u128 * 1_000_000 + t.tv_nsec as u128 / 1_000
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or
/// names this process.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok()? != own_pid
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let notifier = Notifier::to_socket(path.to_str().expect("utf-8 path")).expect("notifier");
        (dir, socket, notifier)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_lifecycle_messages_to_a_path() {
        let (_dir, socket, notifier) = receiver();
        notifier.ready("serving on x");
        assert_eq!(recv(&socket), "READY=1\nSTATUS=serving on x");
        notifier.reloading();
        let reloading = recv(&socket);
        let usec: u128 = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|u| u.parse().ok())
            .expect("RELOADING with MONOTONIC_USEC");
        assert!(usec > 0 && usec <= monotonic_usec());
        notifier.extend_timeout(Duration::from_secs(5));
        assert_eq!(recv(&socket), "EXTEND_TIMEOUT_USEC=5000000");
        notifier.stopping("draining");
        assert_eq!(recv(&socket), "STOPPING=1\nSTATUS=draining");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("localrpc-notify-test-{}", std::process::id());
        let socket =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Notifier::to_socket(&format!("@{name}")).unwrap().watchdog();
        assert_eq!(recv(&socket), "WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        assert!(!Notifier::default().is_enabled());
        assert!(Notifier::default().notify("READY=1").is_ok());
        assert!(Notifier::to_socket("relative").is_err());
    }

    #[test]
    fn watchdog_interval_follows_pid_and_usec() {
        assert_eq!(
            watchdog_interval_from(Some("2000000"), None, 5),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval_from(Some("2000000"), Some("5"), 5),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval_from(Some("2000000"), Some("6"), 5), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 5), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 5), None);
        assert_eq!(watchdog_interval_from(None, None, 5), None);
    }
}
