//! Parity R11 (shared/docs/SEEDS.md, section 000): localrpcd's shipped unit files under a real
//! systemd user manager. The socket is enabled and started; the service starts on the first
//! call (Type=notify: `active`, never left `activating`); stopping the service keeps the socket
//! (file and unit); the next call activates the service again.
//! One test function: the user manager is a machine-wide resource (see
//! `localrpc_testkit::user_manager`, which also serializes across test binaries).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use localrpc_testkit::user_manager::UserManager;

const TIMEOUT: Duration = Duration::from_secs(15);

/// One varlink call over raw bytes: `io.localrpc.Echo.Echo(text)`, returning the reply.
fn echo_call(socket: &Path, text: &str) -> Result<serde_json::Value, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let call = serde_json::json!({"method": "io.localrpc.Echo.Echo", "parameters": {"text": text}});
    let mut bytes = serde_json::to_vec(&call).unwrap();
    bytes.push(0);
    stream.write_all(&bytes).map_err(|e| format!("send: {e}"))?;
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
    serde_json::from_slice(&reply).map_err(|e| format!("reply is not JSON: {e}"))
}

#[test]
fn r11_localrpcd_units_under_a_user_manager() {
    let manager = match UserManager::start() {
        Ok(manager) => manager,
        Err(reason) => {
            localrpc_testkit::skip("r11_localrpcd_units_under_a_user_manager", &reason);
            return;
        }
    };
    let bindir = manager
        .install_binary(Path::new(env!("CARGO_BIN_EXE_localrpcd")))
        .unwrap();
    let bindir = bindir.display().to_string();
    let units = localrpc_testkit::workspace_root().join("systemd");
    manager
        .install_units_from(
            &units,
            &[
                "localrpcd.socket",
                "localrpcd.service",
                "localrpcd@.socket",
                "localrpcd@.service",
            ],
            &[("@BINDIR@", &bindir)],
        )
        .unwrap();
    // Test only: logs into a file (no journal here).
    let log = manager.runtime_dir().join("localrpcd.log");
    manager
        .install_unit(
            "localrpcd.service.d/test.conf",
            &format!("[Service]\nStandardError=append:{}\n", log.display()),
            &[],
        )
        .unwrap();
    let diagnose = || {
        format!(
            "{}\n{}",
            manager.status("localrpcd.service"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    manager.systemctl_ok(&["daemon-reload"]).unwrap();
    manager
        .systemctl_ok(&["enable", "localrpcd.socket"])
        .unwrap();
    assert!(
        manager
            .unit_dir()
            .join("sockets.target.wants/localrpcd.socket")
            .exists(),
        "enable links the socket into sockets.target"
    );
    manager
        .systemctl_ok(&["start", "localrpcd.socket"])
        .unwrap();
    assert_eq!(manager.state("localrpcd.socket"), "active");
    let socket = manager.runtime_dir().join("localrpc/localrpcd.sock");
    let meta = std::fs::metadata(&socket).expect("the socket unit created the socket");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "SocketMode=0600");
    assert_eq!(meta.uid(), manager.user_ids().0);
    assert_eq!(
        manager.state("localrpcd.service"),
        "inactive",
        "nothing started before the first call"
    );

    // First call: socket activation by systemd itself.
    let reply = echo_call(&socket, "first").unwrap_or_else(|e| panic!("{e}\n{}", diagnose()));
    assert_eq!(reply["parameters"]["text"], "first", "{reply}");
    assert!(
        manager.wait_for_state("localrpcd.service", "active", TIMEOUT),
        "{}",
        diagnose()
    );

    // Stop the service: the socket unit and the socket file stay; the next call re-activates.
    manager
        .systemctl_ok(&["stop", "localrpcd.service"])
        .unwrap();
    assert_eq!(manager.state("localrpcd.service"), "inactive");
    assert_eq!(
        manager.state("localrpcd.socket"),
        "active",
        "{}",
        manager.status("localrpcd.socket")
    );
    assert!(
        socket.exists(),
        "stopping the service must not delete the socket (the rhc trap)"
    );
    let reply = echo_call(&socket, "second").unwrap_or_else(|e| panic!("{e}\n{}", diagnose()));
    assert_eq!(reply["parameters"]["text"], "second");
    assert!(
        manager.wait_for_state("localrpcd.service", "active", TIMEOUT),
        "{}",
        diagnose()
    );

    // Type=notify: `start` returns once READY=1 arrived, so the service is active right away.
    manager
        .systemctl_ok(&["stop", "localrpcd.service"])
        .unwrap();
    manager
        .systemctl_ok(&["start", "localrpcd.service"])
        .unwrap();
    assert_eq!(
        manager.state("localrpcd.service"),
        "active",
        "{}",
        diagnose()
    );
    let show = manager
        .systemctl_ok(&["show", "-p", "Type,StatusText", "localrpcd.service"])
        .unwrap();
    assert!(show.contains("Type=notify"), "{show}");
    assert!(
        show.contains("StatusText=serving on"),
        "READY=1 came with a status: {show}"
    );
    let reply = echo_call(&socket, "third").unwrap_or_else(|e| panic!("{e}\n{}", diagnose()));
    assert_eq!(reply["parameters"]["text"], "third");

    // The templated variant: the instance name is in the socket path.
    manager
        .systemctl_ok(&["start", "localrpcd@demo.socket"])
        .unwrap();
    let instance_socket = manager.runtime_dir().join("localrpc/localrpcd-demo.sock");
    let reply = echo_call(&instance_socket, "instance")
        .unwrap_or_else(|e| panic!("{e}\n{}", manager.status("localrpcd@demo.service")));
    assert_eq!(reply["parameters"]["text"], "instance");
    assert!(
        manager.wait_for_state("localrpcd@demo.service", "active", TIMEOUT),
        "{}",
        manager.status("localrpcd@demo.service")
    );
    assert_eq!(
        manager.state("localrpcd.service"),
        "active",
        "instances are independent"
    );

    manager
        .systemctl_ok(&[
            "stop",
            "localrpcd.socket",
            "localrpcd.service",
            "localrpcd@demo.socket",
            "localrpcd@demo.service",
        ])
        .unwrap();
    assert!(
        !socket.exists(),
        "RemoveOnStop=yes: stopping the socket unit removes the file"
    );
}
