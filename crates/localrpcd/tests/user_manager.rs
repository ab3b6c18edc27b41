//! Parity R11 (shared/docs/SEEDS.md, section 000): localrpcd's shipped unit files under a real
//! systemd user manager. The socket is enabled and started; the service starts on the first
//! call (Type=notify: `active`, never left `activating`); stopping the service keeps the socket
//! (file and unit); the next call activates the service again.
//! One test function: the user manager is a machine-wide resource (see
//! `localrpc_testkit::user_manager`, which also serializes across test binaries).

use std::path::Path;

use localrpc_testkit::user_manager::{
    ActivatedService, SCENARIO_TIMEOUT, UserManager, assert_call, install_with_log,
    socket_activation_scenario, stop_removes_socket,
};

/// `io.localrpc.Echo.Echo(text)` as raw bytes (text must not need JSON escaping).
fn echo_request(text: &str) -> Vec<u8> {
    format!("{{\"method\":\"io.localrpc.Echo.Echo\",\"parameters\":{{\"text\":\"{text}\"}}}}\0")
        .into_bytes()
}

/// The exact reply to [`echo_request`], without the NUL.
fn echo_reply(text: &str) -> Vec<u8> {
    format!("{{\"parameters\":{{\"text\":\"{text}\"}}}}").into_bytes()
}

#[test]
fn r11_localrpcd_units_under_a_user_manager() {
    let Some(manager) = UserManager::start_or_skip("r11_localrpcd_units_under_a_user_manager")
    else {
        return;
    };
    let log = install_with_log(
        &manager,
        Path::new(env!("CARGO_BIN_EXE_localrpcd")),
        &[
            "localrpcd.socket",
            "localrpcd.service",
            "localrpcd@.socket",
            "localrpcd@.service",
        ],
        "localrpcd.service",
    )
    .unwrap();
    let socket = manager.runtime_dir().join("localrpc/localrpcd.sock");
    let service = ActivatedService {
        socket_unit: "localrpcd.socket",
        service_unit: "localrpcd.service",
        socket: &socket,
        log: &log,
    };
    let diagnose = || service.diagnose(&manager);
    socket_activation_scenario(
        &manager,
        &service,
        [
            (&echo_request("first"), &echo_reply("first")),
            (&echo_request("second"), &echo_reply("second")),
        ],
        |_| {},
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
    assert_call(
        &socket,
        &echo_request("third"),
        &echo_reply("third"),
        diagnose,
    );

    // The templated variant: the instance name is in the socket path.
    manager
        .systemctl_ok(&["start", "localrpcd@demo.socket"])
        .unwrap();
    let instance_socket = manager.runtime_dir().join("localrpc/localrpcd-demo.sock");
    assert_call(
        &instance_socket,
        &echo_request("instance"),
        &echo_reply("instance"),
        || manager.status("localrpcd@demo.service"),
    );
    assert!(
        manager.wait_for_state("localrpcd@demo.service", "active", SCENARIO_TIMEOUT),
        "{}",
        manager.status("localrpcd@demo.service")
    );
    assert_eq!(
        manager.state("localrpcd.service"),
        "active",
        "instances are independent"
    );

    stop_removes_socket(
        &manager,
        &service,
        &[
            "localrpcd.socket",
            "localrpcd.service",
            "localrpcd@demo.socket",
            "localrpcd@demo.service",
        ],
    );
}
