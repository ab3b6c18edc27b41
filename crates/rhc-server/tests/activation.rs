//! Parity R10 and the activated half of R9 (shared/docs/SEEDS.md, section 000): rhc-server
//! behind Debian's `systemd-socket-activate` (systemd 252), which execs the daemon in place
//! (same pid) on the first connection with the listening socket as fd 3.

mod support;

use rustix::process::Signal;
use support::*;

fn sa_available(test: &str) -> bool {
    let ok = std::path::Path::new("/usr/bin/systemd-socket-activate").is_file();
    if !ok {
        localrpc_testkit::skip(test, "/usr/bin/systemd-socket-activate is not installed");
    }
    ok
}

#[test]
fn r10_fdname_varlink_serves_the_first_call_and_r9_keeps_the_activated_socket() {
    if !sa_available("r10_fdname_varlink") {
        return;
    }
    let dir = temp_dir();
    let socket = dir.path().join("com.redhat.rhc");
    let unused = dir.path().join("unused");
    let mut sa = socket_activate(
        &["-l", socket.to_str().unwrap(), "--fdname=varlink"],
        &["--socket", unused.to_str().unwrap()],
    );
    wait_for_listening(&socket);
    let before = inode(&socket);
    // The first connection triggers the exec; its call is served byte for byte.
    assert_exchange(&socket, TEST_CALL, TEST_REPLY);
    for line in [
        "PID lock acquired",
        "Using systemd socket activation",
        "starting version=",
        "Listening on socket",
    ] {
        assert!(
            sa.log.wait_for(line),
            "log line {line:?}:\n{}",
            sa.log.text()
        );
    }
    assert!(
        sa.log
            .text()
            .contains(&format!("address={}", socket.display())),
        "{}",
        sa.log.text()
    );
    // The lock sits next to the activated socket (its path is read from the fd), so a
    // standalone instance on the same path is refused while this one runs.
    let lock = dir.path().join("com.redhat.rhc.lock");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        sa.pid().to_string()
    );
    assert!(!unused.exists(), "--socket is not bound under activation");
    let mut rival = start(&socket, &[]);
    assert_eq!(wait_exit_pidfd(&mut rival.child.0).code(), Some(1));
    assert!(
        rival.log.wait_for(&format!(
            "another instance of rhc-server is already running (pid={})",
            sa.pid()
        )),
        "{}",
        rival.log.text()
    );
    assert_eq!(inode(&socket), before);
    assert_exchange(&socket, &test_call("again"), &test_reply("again"));

    // R9, activated: SIGTERM exits 0 and keeps the socket it did not create.
    let status = sa.terminate();
    assert!(status.success(), "exit 0: {status}\n{}", sa.log.text());
    assert!(socket.exists(), "an activated socket is never removed");
    assert_eq!(inode(&socket), before);
    assert!(lock.exists(), "the lock file is never unlinked");
}

/// Without `--fdname`, systemd-socket-activate sets no `LISTEN_FDNAMES`: the fd's name is
/// "unknown". rhc-server (the runtime) then serves every passed socket, so the first call is
/// still answered — as the Go original did (it took any passed unix listener).
#[test]
fn r10_without_the_varlink_name_the_passed_socket_is_still_served() {
    if !sa_available("r10_without_the_varlink_name") {
        return;
    }
    let dir = temp_dir();
    let socket = dir.path().join("com.redhat.rhc");
    let mut sa = socket_activate(&["-l", socket.to_str().unwrap()], &[]);
    wait_for_listening(&socket);
    assert_exchange(&socket, TEST_CALL, TEST_REPLY);
    assert!(
        sa.log.wait_for("Using systemd socket activation"),
        "{}",
        sa.log.text()
    );
    assert!(sa.terminate().success());
    assert!(socket.exists(), "the activated socket is kept");
}

/// With several named fds, only the one named `varlink` is served (and locked).
#[test]
fn r10_with_several_names_only_varlink_is_served() {
    if !sa_available("r10_with_several_names") {
        return;
    }
    let dir = temp_dir();
    let other = dir.path().join("other");
    let socket = dir.path().join("com.redhat.rhc");
    let mut sa = socket_activate(
        &[
            "-l",
            other.to_str().unwrap(),
            "-l",
            socket.to_str().unwrap(),
            "--fdname=other:varlink",
        ],
        &[],
    );
    wait_for_listening(&socket);
    assert_exchange(&socket, TEST_CALL, TEST_REPLY);
    assert!(dir.path().join("com.redhat.rhc.lock").exists());
    assert!(!dir.path().join("other.lock").exists());
    // The other fd is not served: a connection is accepted by the kernel's backlog but
    // never answered; do not block on it, just check that no lock was taken for it.
    signal(sa.pid(), Signal::TERM);
    assert!(wait_exit_pidfd(&mut sa.child.0).success());
    assert!(socket.exists() && other.exists());
}
