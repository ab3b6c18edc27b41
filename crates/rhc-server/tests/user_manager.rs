//! Parity R11 (shared/docs/SEEDS.md, section 000): the shipped `systemd/rhc-server.socket` and
//! `.service` under a real systemd user manager. The socket is enabled and started; the
//! service starts on the first call; `stop` of the service keeps the socket (unit and file:
//! the original deleted it through the service's RuntimeDirectory=); the next call activates
//! the service again.
//!
//! The units say `ListenStream=%t/rhc/com.redhat.rhc`: under the user manager that is
//! `$XDG_RUNTIME_DIR/rhc/com.redhat.rhc` (checked here); under the system manager `%t` is
//! `/run`, giving the original's `/run/rhc/com.redhat.rhc`.

use std::path::Path;

use localrpc_testkit::user_manager::{
    ActivatedService, UserManager, install_with_log, socket_activation_scenario,
    stop_removes_socket,
};

/// The R2 call as raw bytes.
fn rhc_request(input: &str) -> Vec<u8> {
    format!(
        "{{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{{\"input\":\"{input}\"}}}}\0"
    )
    .into_bytes()
}

/// The exact reply to [`rhc_request`], without the NUL.
fn expected(input: &str) -> Vec<u8> {
    format!("{{\"parameters\":{{\"output\":\"Echo from rhc-server: {input}\"}}}}").into_bytes()
}

#[test]
fn r11_rhc_server_units_under_a_user_manager() {
    let Some(manager) = UserManager::start_or_skip("r11_rhc_server_units_under_a_user_manager")
    else {
        return;
    };
    let log = install_with_log(
        &manager,
        Path::new(env!("CARGO_BIN_EXE_rhc-server")),
        &["rhc-server.socket", "rhc-server.service"],
        "rhc-server.service",
    )
    .unwrap();
    let socket = manager.runtime_dir().join("rhc/com.redhat.rhc");
    let service = ActivatedService {
        socket_unit: "rhc-server.socket",
        service_unit: "rhc-server.service",
        socket: &socket,
        log: &log,
    };
    let again = "Hello again after stopping service!";
    socket_activation_scenario(
        &manager,
        &service,
        [
            (&rhc_request("Helloo!"), &expected("Helloo!")),
            (&rhc_request(again), &expected(again)),
        ],
        |activation| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if activation == 1 {
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
            } else {
                assert!(text.contains("SIGTERM received"), "{text}");
                assert_eq!(
                    text.matches("Using systemd socket activation").count(),
                    2,
                    "two activations:\n{text}"
                );
            }
        },
    );

    stop_removes_socket(
        &manager,
        &service,
        &["rhc-server.socket", "rhc-server.service"],
    );
}
