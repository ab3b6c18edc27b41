//! Parity R1–R9 and R12 (shared/docs/SEEDS.md, section 000) of rhc-server started on its own
//! socket (no socket activation): real processes, raw bytes on the socket.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rustix::process::Signal;
use support::*;

#[test]
fn r1_standalone_start_creates_the_socket_with_the_configured_mode_and_the_lock_file() {
    let dir = temp_dir();
    // Default mode: 0660, as the original's standalone socket.
    let socket = dir.path().join("com.redhat.rhc");
    let mut server = spawn(&socket, &[]);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "default socket mode");
    assert!(std::os::unix::fs::FileTypeExt::is_socket(
        &std::fs::symlink_metadata(&socket).unwrap().file_type()
    ));
    let lock = dir.path().join("com.redhat.rhc.lock");
    assert_eq!(
        std::fs::read_to_string(&lock)
            .expect("the lock file exists")
            .trim(),
        server.pid().to_string(),
        "the lock file records the pid"
    );
    for line in [
        "PID lock acquired",
        "Listening on socket",
        "starting version=",
    ] {
        assert!(
            server.log.wait_for(line),
            "log line {line:?}:\n{}",
            server.log.text()
        );
    }
    assert!(
        server
            .log
            .text()
            .contains(&format!("address=unix:{}", socket.display())),
        "{}",
        server.log.text()
    );
    assert!(server.terminate().success());

    // --socket-mode, and a directory that does not exist yet (created 0755).
    let socket = dir.path().join("sub/dir/s");
    let mut server = spawn(&socket, &["--socket-mode", "0600"]);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "--socket-mode 0600");
    assert!(dir.path().join("sub/dir/s.lock").exists());
    assert!(server.terminate().success());
}

#[test]
fn r1_help_names_the_default_socket_and_flags() {
    let out = std::process::Command::new(rhc_server())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "--socket",
        "/run/rhc/com.redhat.rhc",
        "--socket-mode",
        "0660",
    ] {
        assert!(help.contains(needle), "{needle} in --help:\n{help}");
    }
    let bad = std::process::Command::new(rhc_server())
        .args(["--socket-mode", "999"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad mode is a usage error");
}

#[test]
fn r2_test_call_byte_for_byte() {
    let dir = temp_dir();
    let socket = dir.path().join("s");
    let mut server = spawn(&socket, &[]);
    assert_exchange(&socket, TEST_CALL, TEST_REPLY);
    // Unicode and escapes survive.
    assert_exchange(
        &socket,
        "{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{\"input\":\"žluť \\\"q\\\" \\n\"}}\0".as_bytes(),
        "{\"parameters\":{\"output\":\"Echo from rhc-server: žluť \\\"q\\\" \\n\"}}\0".as_bytes(),
    );
    assert!(server.terminate().success());
}

#[test]
fn r3_missing_or_empty_parameters_get_a_normal_reply_for_input_empty() {
    let dir = temp_dir();
    let socket = dir.path().join("s");
    let mut server = spawn(&socket, &[]);
    let empty = b"{\"parameters\":{\"output\":\"Echo from rhc-server: \"}}\0";
    for call in [
        &b"{\"method\":\"com.redhat.rhc.internal.Test\"}\0"[..],
        b"{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{}}\0",
        b"{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{\"input\":null}}\0",
        b"{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{\"input\":\"\"}}\0",
    ] {
        assert_exchange(&socket, call, empty);
    }
    // The connection stays usable after such a call (the original dropped it).
    let mut stream = connect(&socket).unwrap();
    stream
        .write_all(b"{\"method\":\"com.redhat.rhc.internal.Test\"}\0")
        .unwrap();
    assert_eq!(read_message(&mut stream, &mut Vec::new()).unwrap(), empty);
    stream.write_all(TEST_CALL).unwrap();
    assert_eq!(
        read_message(&mut stream, &mut Vec::new()).unwrap(),
        TEST_REPLY
    );
    assert!(server.terminate().success());
}

#[test]
fn r4_method_not_found_interface_not_found_invalid_parameter_exact() {
    let dir = temp_dir();
    let socket = dir.path().join("s");
    let mut server = spawn(&socket, &[]);
    assert_exchange(
        &socket,
        b"{\"method\":\"com.redhat.rhc.internal.Nope\",\"parameters\":{}}\0",
        b"{\"parameters\":{\"method\":\"com.redhat.rhc.internal.Nope\"},\"error\":\"org.varlink.service.MethodNotFound\"}\0",
    );
    assert_exchange(
        &socket,
        b"{\"method\":\"com.redhat.rhc.Nope.Test\",\"parameters\":{\"input\":\"x\"}}\0",
        b"{\"parameters\":{\"interface\":\"com.redhat.rhc.Nope\"},\"error\":\"org.varlink.service.InterfaceNotFound\"}\0",
    );
    let invalid = b"{\"parameters\":{\"parameter\":\"input\"},\"error\":\"org.varlink.service.InvalidParameter\"}\0";
    for wrong in ["5", "true", "[\"x\"]", "{\"a\":1}", "1.5"] {
        let call = format!(
            "{{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{{\"input\":{wrong}}}}}\0"
        );
        // On one connection, which stays open after the error (the original dropped it).
        let mut stream = connect(&socket).unwrap();
        stream.write_all(call.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&read_message(&mut stream, &mut Vec::new()).unwrap()),
            String::from_utf8_lossy(invalid),
            "input = {wrong}"
        );
        stream.write_all(TEST_CALL).unwrap();
        assert_eq!(
            read_message(&mut stream, &mut Vec::new()).unwrap(),
            TEST_REPLY
        );
    }
    // An undeclared parameter is named too.
    assert_exchange(
        &socket,
        b"{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{\"input\":\"x\",\"extra\":1}}\0",
        b"{\"parameters\":{\"parameter\":\"extra\"},\"error\":\"org.varlink.service.InvalidParameter\"}\0",
    );
    assert!(server.terminate().success());
}

#[test]
fn r5_get_info_in_stable_order_and_interface_description_verbatim() {
    let dir = temp_dir();
    let socket = dir.path().join("s");
    let mut server = spawn(&socket, &[]);
    let expected = format!(
        "{{\"parameters\":{{\"vendor\":\"Red Hat\",\"product\":\"rhc-server\",\"version\":\"{}\",\"url\":\"https://github.com/RedHatInsights/rhc\",\"interfaces\":[\"org.varlink.service\",\"com.redhat.rhc.internal\",\"io.systemd.service\",\"io.localrpc.Control\"]}}}}\0",
        env!("CARGO_PKG_VERSION")
    );
    // The same order every time, on fresh connections (the original's order was random).
    for _ in 0..20 {
        assert_exchange(
            &socket,
            b"{\"method\":\"org.varlink.service.GetInfo\"}\0",
            expected.as_bytes(),
        );
    }
    let reply = raw_call(
        &socket,
        b"{\"method\":\"org.varlink.service.GetInterfaceDescription\",\"parameters\":{\"interface\":\"com.redhat.rhc.internal\"}}\0",
    );
    let value: serde_json::Value = serde_json::from_slice(&reply[..reply.len() - 1]).unwrap();
    assert_eq!(
        value["parameters"]["description"].as_str(),
        Some(rhc_server::IDL),
        "{value}"
    );
    assert_eq!(
        rhc_server::IDL,
        "interface com.redhat.rhc.internal\nerror InvalidParameter (parameter: string)\nmethod Test(input: string) -> (output: string)\n",
        "the IDL of SEEDS.md 000"
    );
    assert!(server.terminate().success());
}

#[test]
fn r6_oneway_more_and_pipelining() {
    let dir = temp_dir();
    let socket = dir.path().join("s");
    let mut server = spawn(&socket, &[]);
    let mut stream = connect(&socket).unwrap();

    // oneway: no reply at all; the next call's reply is the next message.
    stream
        .write_all(b"{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{\"input\":\"quiet\"},\"oneway\":true}\0")
        .unwrap();
    stream.write_all(&test_call("after-oneway")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_message(&mut stream, &mut Vec::new()).unwrap()),
        String::from_utf8_lossy(&test_reply("after-oneway"))
    );

    // more on a method that does not stream: one final reply (no "continues").
    stream
        .write_all(b"{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{\"input\":\"more\"},\"more\":true}\0")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_message(&mut stream, &mut Vec::new()).unwrap()),
        String::from_utf8_lossy(&test_reply("more"))
    );
    stream.write_all(&test_call("then")).unwrap();
    assert_eq!(
        read_message(&mut stream, &mut Vec::new()).unwrap(),
        test_reply("then")
    );

    // Pipelining: 200 calls (with a oneway among them) in one write, replies in order.
    let mut batch = Vec::new();
    for i in 0..200 {
        if i == 100 {
            batch.extend_from_slice(
                b"{\"method\":\"com.redhat.rhc.internal.Test\",\"parameters\":{\"input\":\"skip\"},\"oneway\":true}\0",
            );
        }
        batch.extend_from_slice(&test_call(&format!("p{i}")));
    }
    stream.write_all(&batch).unwrap();
    for i in 0..200 {
        assert_eq!(
            String::from_utf8_lossy(&read_message(&mut stream, &mut Vec::new()).unwrap()),
            String::from_utf8_lossy(&test_reply(&format!("p{i}")))
        );
    }
    assert!(server.terminate().success());
}

#[test]
fn r7_second_instance_exits_1_naming_the_first_pid_and_the_first_stays_reachable() {
    let dir = temp_dir();
    let socket = dir.path().join("com.redhat.rhc");
    let mut first = spawn(&socket, &[]);
    let before = inode(&socket);

    let mut second = start(&socket, &[]);
    let status = wait_exit_pidfd(&mut second.child.0);
    assert_eq!(status.code(), Some(1), "second instance: {status}");
    let expected = format!(
        "another instance of rhc-server is already running (pid={})",
        first.pid()
    );
    assert!(
        second.log.wait_for(&expected),
        "stderr: {}",
        second.log.text()
    );

    assert_eq!(
        inode(&socket),
        before,
        "the first instance's socket is untouched"
    );
    assert_exchange(&socket, TEST_CALL, TEST_REPLY);
    assert!(first.terminate().success());
}

#[test]
fn r8_after_kill_9_a_restart_recovers() {
    let dir = temp_dir();
    let socket = dir.path().join("com.redhat.rhc");
    let lock = dir.path().join("com.redhat.rhc.lock");
    let mut first = spawn(&socket, &[]);
    signal(first.pid(), Signal::KILL);
    let status = wait_exit_pidfd(&mut first.child.0);
    assert!(!status.success());
    assert!(socket.exists(), "SIGKILL leaves a stale socket behind");
    assert!(
        lock.exists(),
        "and the lock file (its flock died with the process)"
    );

    let mut second = spawn(&socket, &[]);
    assert!(
        second.log.wait_for("removing stale socket"),
        "{}",
        second.log.text()
    );
    assert_exchange(&socket, TEST_CALL, TEST_REPLY);
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        second.pid().to_string()
    );
    assert!(second.terminate().success());
    assert!(lock.exists(), "the lock file is never unlinked");
    assert!(
        !socket.exists(),
        "the self-made socket is removed on SIGTERM"
    );
}

/// rhc's Test answers at once, so a call is kept in flight the only honest way: its reply is
/// larger than the socket buffers and the client does not read it yet, so the server is
/// still writing it (the call is running) when SIGTERM arrives. The daemon must wait for it.
#[test]
fn r9_sigterm_drains_the_call_in_flight_exits_0_and_removes_its_socket() {
    let dir = temp_dir();
    let socket = dir.path().join("com.redhat.rhc");
    let mut server = spawn(&socket, &[]);

    let idle = connect(&socket).unwrap();
    let mut busy = connect(&socket).unwrap();
    let input = "x".repeat(1 << 20);
    let call = test_call(&input);
    let writer = {
        let mut stream = busy.try_clone().unwrap();
        std::thread::spawn(move || stream.write_all(&call))
    };
    // The reply has started: bytes wait in our receive queue, and stop growing once the
    // server blocks on the full socket buffers.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = unread_input(&busy);
        if now > 0 && now == last {
            break;
        }
        last = now;
        assert!(
            std::time::Instant::now() < deadline,
            "the reply never started"
        );
    }
    writer
        .join()
        .unwrap()
        .expect("the whole call was sent (read by the server)");

    signal(server.pid(), Signal::TERM);
    assert!(
        server.log.wait_for("SIGTERM received"),
        "{}",
        server.log.text()
    );
    // The daemon waits for the reply in flight instead of exiting.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        is_running(&mut server.child.0),
        "exited with a call in flight:\n{}",
        server.log.text()
    );
    // Meanwhile no new connection is accepted.
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_err() || !socket.exists(),
        "the listener is closed while draining"
    );
    // The idle connection was closed.
    let mut idle = idle;
    assert_eq!(
        read_to_end(&mut idle).unwrap(),
        b"",
        "idle connection closed at once"
    );

    // The complete reply, then a clean close.
    let rest = read_to_end(&mut busy).expect("read the reply");
    assert!(
        rest == test_reply(&input),
        "expected the {}-byte echo and EOF, got {} bytes",
        test_reply(&input).len(),
        rest.len()
    );
    let status = wait_exit_pidfd(&mut server.child.0);
    assert!(status.success(), "exit 0: {status}\n{}", server.log.text());
    assert!(!socket.exists(), "the self-made socket is removed");
    assert!(
        dir.path().join("com.redhat.rhc.lock").exists(),
        "the lock file stays"
    );
}

#[test]
fn r9_sigint_and_sigterm_with_idle_and_active_connections_exit_0() {
    for sig in [Signal::TERM, Signal::INT] {
        let dir = temp_dir();
        let socket = dir.path().join("s");
        let mut server = spawn(&socket, &[]);
        let mut idle = connect(&socket).unwrap();
        let mut active = connect(&socket).unwrap();
        active.write_all(&test_call("before")).unwrap();
        assert_eq!(
            read_message(&mut active, &mut Vec::new()).unwrap(),
            test_reply("before")
        );
        // A pipelined batch whose calls the server has read when the signal arrives.
        let mut batch = Vec::new();
        for i in 0..50 {
            batch.extend_from_slice(&test_call(&format!("b{i}")));
        }
        active.write_all(&batch).unwrap();
        // Received by the server (read from the socket) before the signal.
        wait_until_read(&active);
        signal(server.pid(), sig);
        for i in 0..50 {
            assert_eq!(
                read_message(&mut active, &mut Vec::new()).unwrap(),
                test_reply(&format!("b{i}"))
            );
        }
        assert_eq!(read_to_end(&mut idle).unwrap(), b"");
        assert_eq!(read_to_end(&mut active).unwrap(), b"");
        let status = wait_exit_pidfd(&mut server.child.0);
        assert!(status.success(), "{sig:?}: exit 0: {status}");
        assert!(!socket.exists(), "{sig:?}: the self-made socket is removed");
    }
}

#[test]
fn r12_never_removes_a_directory_or_file_at_the_socket_path() {
    let dir = temp_dir();
    // A directory (with content) at the socket path: refused, untouched.
    let socket = dir.path().join("com.redhat.rhc");
    std::fs::create_dir(&socket).unwrap();
    std::fs::write(socket.join("precious"), "data").unwrap();
    let mut server = start(&socket, &[]);
    let status = wait_exit_pidfd(&mut server.child.0);
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(server.log.wait_for("not a socket"), "{}", server.log.text());
    assert_eq!(
        std::fs::read_to_string(socket.join("precious")).unwrap(),
        "data"
    );

    // A regular file: the same.
    let file = dir.path().join("file");
    std::fs::write(&file, "keep").unwrap();
    let mut server = start(&file, &[]);
    assert_eq!(wait_exit_pidfd(&mut server.child.0).code(), Some(1));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");

    // A directory put at the path while the daemon runs survives its shutdown.
    let socket = dir.path().join("s");
    let mut server = spawn(&socket, &[]);
    std::fs::remove_file(&socket).unwrap();
    std::fs::create_dir(&socket).unwrap();
    std::fs::write(socket.join("precious"), "data").unwrap();
    assert!(server.terminate().success());
    assert_eq!(
        std::fs::read_to_string(socket.join("precious")).unwrap(),
        "data"
    );
}
