//! Parity R11 (shared/docs/SEEDS.md, section 000): the shipped `systemd/rhc-server.socket` and
//! `.service` under a real systemd user manager. The socket is enabled and started; the
//! service starts on the first call; `stop` of the service keeps the socket (unit and file:
//! the original deleted it through the service's RuntimeDirectory=); the next call activates
//! the service again.
//!
//! The units say `ListenStream=%t/rhc/com.redhat.rhc`: under the user manager that is
//! `$XDG_RUNTIME_DIR/rhc/com.redhat.rhc` (checked here); under the system manager `%t` is
//! `/run`, giving the original's `/run/rhc/com.redhat.rhc`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use localrpc_testkit::user_manager::UserManager;

const TIMEOUT: Duration = Duration::from_secs(15);

/// The R2 call over raw bytes, returning the raw reply (without the NUL).
fn rhc_call(socket: &Path, input: &str) -> Result<String, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let call = format!(
        "{{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{{\"input\":\"{input}\"}}}}\0"
    );
    stream
        .write_all(call.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Err(format!("connection closed after {} bytes", reply.len())),
            Ok(_) if byte[0] == 0 => break,
            Ok(_) => reply.push(byte[0]),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    String::from_utf8(reply).map_err(|e| e.to_string())
}

fn expected(input: &str) -> String {
    format!("{{\"parameters\":{{\"output\":\"Echo from rhc-server: {input}\"}}}}")
}

#[test]
fn r11_rhc_server_units_under_a_user_manager() {
    let manager = match UserManager::start() {
        Ok(manager) => manager,
        Err(reason) => {
            localrpc_testkit::skip("r11_rhc_server_units_under_a_user_manager", &reason);
            return;
        }
    };
    let bindir = manager
        .install_binary(Path::new(env!("CARGO_BIN_EXE_rhc-server")))
        .unwrap();
    let bindir = bindir.display().to_string();
    let units = localrpc_testkit::workspace_root().join("systemd");
    manager
        .install_units_from(
            &units,
            &["rhc-server.socket", "rhc-server.service"],
            &[("@BINDIR@", &bindir)],
        )
        .unwrap();
    // Test only: logs into a file (no journal here).
    let log = manager.runtime_dir().join("rhc-server.log");
    manager
        .install_unit(
            "rhc-server.service.d/test.conf",
            &format!("[Service]\nStandardError=append:{}\n", log.display()),
            &[],
        )
        .unwrap();
    let diagnose = || {
        format!(
            "{}\n{}",
            manager.status("rhc-server.service"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    manager.systemctl_ok(&["daemon-reload"]).unwrap();
    manager
        .systemctl_ok(&["enable", "rhc-server.socket"])
        .unwrap();
    assert!(
        manager
            .unit_dir()
            .join("sockets.target.wants/rhc-server.socket")
            .exists(),
        "enable links the socket into sockets.target"
    );
    manager
        .systemctl_ok(&["start", "rhc-server.socket"])
        .unwrap();
    assert_eq!(manager.state("rhc-server.socket"), "active");
    let socket = manager.runtime_dir().join("rhc/com.redhat.rhc");
    let meta = std::fs::metadata(&socket).expect("the socket unit created %t/rhc/com.redhat.rhc");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "SocketMode=0600");
    assert_eq!(meta.uid(), manager.user_ids().0);
    let inode = meta.ino();
    assert_eq!(
        manager.state("rhc-server.service"),
        "inactive",
        "nothing started before the first call"
    );

    // First call: socket activation by systemd itself, answered byte for byte.
    let reply = rhc_call(&socket, "Helloo!").unwrap_or_else(|e| panic!("{e}\n{}", diagnose()));
    assert_eq!(reply, expected("Helloo!"));
    assert!(
        manager.wait_for_state("rhc-server.service", "active", TIMEOUT),
        "{}",
        diagnose()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for line in [
        "PID lock acquired",
        "Using systemd socket activation",
        "starting version=",
        "Listening on socket",
    ] {
        assert!(text.contains(line), "log line {line:?}:\n{text}");
    }
    assert!(
        manager
            .runtime_dir()
            .join("rhc/com.redhat.rhc.lock")
            .exists(),
        "the lock next to the socket"
    );

    // Stop the service: the socket unit and file stay; the next call re-activates.
    manager
        .systemctl_ok(&["stop", "rhc-server.service"])
        .unwrap();
    assert_eq!(
        manager.state("rhc-server.service"),
        "inactive",
        "{}",
        diagnose()
    );
    assert_eq!(
        manager.state("rhc-server.socket"),
        "active",
        "{}",
        manager.status("rhc-server.socket")
    );
    assert!(
        socket.exists(),
        "stopping the service must not delete the socket (the rhc trap)"
    );
    assert_eq!(
        std::fs::metadata(&socket).unwrap().ino(),
        inode,
        "the very same socket"
    );
    let reply = rhc_call(&socket, "Hello again after stopping service!")
        .unwrap_or_else(|e| panic!("{e}\n{}", diagnose()));
    assert_eq!(reply, expected("Hello again after stopping service!"));
    assert!(
        manager.wait_for_state("rhc-server.service", "active", TIMEOUT),
        "{}",
        diagnose()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("SIGTERM received"), "{text}");
    assert_eq!(
        text.matches("Using systemd socket activation").count(),
        2,
        "two activations:\n{text}"
    );

    manager
        .systemctl_ok(&["stop", "rhc-server.socket", "rhc-server.service"])
        .unwrap();
    assert!(
        !socket.exists(),
        "RemoveOnStop=yes: stopping the socket unit removes the file"
    );
}
