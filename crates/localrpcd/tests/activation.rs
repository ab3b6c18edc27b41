//! `localrpcd` under socket activation: through `systemd-socket-activate` (systemd 252:
//! listening fds, `--accept`, several `-l` with `--fdname`, `--datagram`), through a launcher
//! that passes fds exactly as a service manager does (invalid environments, a foreign
//! `LISTEN_PID`, a connected fd), and through a small supervisor that, like PID 1, owns the
//! listening socket across daemon restarts and idle exits, under continuous load.
//!
//! What "lose zero calls" means here (used by the load tests): a call is lost when the
//! client cannot know whether the daemon ran it: the request was read by the daemon and no
//! complete reply came back (EOF after the request was consumed, a partial reply, a
//! timeout). A correct client may retry only a call the daemon provably never read: the
//! connect failed, the write failed with EPIPE/ECONNRESET (the peer was already gone), or the
//! read failed with ECONNRESET before any reply byte. On a unix stream socket the kernel
//! reports ECONNRESET to the reader only when the peer closed with data still unread in its
//! receive queue, i.e. with (part of) our request unread; since a call is dispatched only
//! once its terminating NUL has been read and each connection has at most one call
//! outstanding, "unread" means "not run". EOF, by contrast, means the daemon consumed the
//! request and closed without answering: that is counted as lost, never retried. Every
//! retry is counted and printed; the tests require zero lost calls and every reply correct.

mod support;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use support::*;

fn path_arg(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

fn listen_vars(vars: &[String]) -> Vec<&String> {
    vars.iter().filter(|v| v.starts_with("LISTEN_")).collect()
}

/// `systemd-socket-activate -l <socket> --fdname=varlink` with `NOTIFY_SOCKET` set to
/// `notify`, for `localrpcd [args]`; returns once the socket listens.
fn activate_with_notify(socket: &Path, notify: &NotifyReceiver, args: &[&str]) -> ChildGuard {
    let sa = socket_activate(
        &[
            "-l",
            &path_arg(socket),
            "--fdname=varlink",
            "-E",
            &format!("NOTIFY_SOCKET={}", notify.address),
        ],
        args,
    );
    wait_for_listening(socket);
    sa
}

// ---------------------------------------------------------------------------------------
// systemd-socket-activate

#[test]
fn r2_r10_fdname_varlink_serves_the_first_call_byte_for_byte_and_through_the_client() {
    let dir = temp_dir();
    let socket = dir.path().join("varlink.sock");
    let ignored = dir.path().join("ignored.sock");
    let notify = NotifyReceiver::path(dir.path(), "r2");
    let ignored_arg = format!("unix:{}", ignored.display());
    let mut sa = activate_with_notify(&socket, &notify, &["--listen", &ignored_arg]);
    // The first call triggers the exec; its reply must be exact (R2, R10).
    assert_eq!(
        String::from_utf8_lossy(&raw_call(&socket, ECHO_CALL)),
        String::from_utf8_lossy(ECHO_REPLY),
        "the first call through the activated socket"
    );
    notify.expect_ready();
    // The same through localrpc's own client.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reply = runtime.block_on(async {
        let mut connection =
            localrpc::client::Connection::connect(&format!("unix:{}", socket.display()))
                .await
                .expect("client connect");
        connection
            .call(
                "io.localrpc.Echo.Echo",
                serde_json::json!({"text": "Helloo!"}),
            )
            .await
            .expect("Echo through the client")
    });
    assert_eq!(reply.get("text").and_then(|t| t.as_str()), Some("Helloo!"));
    assert!(!ignored.exists(), "--listen is ignored under activation");
    assert!(
        !dir.path().join("varlink.sock.lock").exists(),
        "no own-socket lock under activation"
    );

    // R9, activated: SIGTERM exits 0 and keeps the socket it did not create.
    signal(sa.0.id(), Signal::TERM);
    assert!(notify.recv().starts_with("STOPPING=1\n"), "STOPPING=1");
    let status = wait_exit_pidfd(&mut sa.0);
    assert!(
        status.success(),
        "exit 0: {status}; {}",
        stderr_of(&mut sa.0)
    );
    assert!(socket.exists(), "an activated socket is never removed");
}

#[test]
fn listen_variables_are_unset_in_the_running_daemon() {
    let dir = temp_dir();
    let socket = dir.path().join("varlink.sock");
    let mut sa = socket_activate(&["-l", &path_arg(&socket), "--fdname=varlink"], &[]);
    wait_for_listening(&socket);
    assert_answers(&socket);
    // systemd-socket-activate execs in place: its pid is the daemon's.
    let pid = sa.0.id();
    let exec_time = environ_of(pid);
    // /proc/PID/environ is the exec-time block; unsetenv cannot change it (documented here,
    // so nobody mistakes it for proof either way).
    assert_eq!(
        listen_vars(&exec_time).len(),
        3,
        "exec-time environment as passed: {exec_time:?}"
    );
    match live_environ(pid) {
        Some(live) => {
            assert!(
                live.iter().any(|v| v.starts_with("PATH=")),
                "the live environment was read: {live:?}"
            );
            assert_eq!(
                listen_vars(&live),
                Vec::<&String>::new(),
                "LISTEN_* removed from the daemon's environment"
            );
        }
        None => localrpc_testkit::skip(
            "activation::listen_variables_are_unset_in_the_running_daemon",
            "cannot locate libc's environ (nm missing?): live environment not checked",
        ),
    }
    signal(pid, Signal::TERM);
    assert!(wait_exit_pidfd(&mut sa.0).success(), "exit 0");
}

#[test]
fn notify_under_socket_activation_abstract_socket_start_reload_and_drain() {
    let dir = temp_dir();
    let socket = dir.path().join("varlink.sock");
    let notify = NotifyReceiver::abstract_name("activated");
    let mut sa = activate_with_notify(&socket, &notify, &[]);
    // The first connection makes systemd-socket-activate exec the daemon; it waits in the
    // backlog until READY=1 and is served then.
    let mut first = connect(&socket).expect("connect");
    first.write_all(ECHO_CALL).expect("send");
    let ready = notify.expect_ready();
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=serving on unix:{}", socket.display())
    );
    assert_eq!(
        read_message(&mut first, &mut Vec::new()).expect("reply"),
        ECHO_REPLY
    );
    let mut fresh = connect(&socket).expect("the socket accepts once READY=1 arrived");
    assert_eq!(
        call_on(&mut fresh, ECHO_CALL),
        Outcome::Answered(ECHO_REPLY.to_vec())
    );

    let before = localrpc::daemon::monotonic_usec();
    signal(sa.0.id(), Signal::HUP);
    let usec = notify.expect_reloading();
    let after = localrpc::daemon::monotonic_usec();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC {usec} in {before}..{after}"
    );
    assert!(
        notify.recv().starts_with("READY=1\n"),
        "READY=1 after the reload"
    );

    let mut sleeping = connect(&socket).expect("connect");
    sleeping.write_all(&sleep_call(500)).expect("send Sleep");
    wait_until_read(&sleeping);
    signal(sa.0.id(), Signal::TERM);
    let stopping = notify.recv();
    assert!(
        stopping.starts_with("STOPPING=1\nSTATUS="),
        "got {stopping:?}"
    );
    let extend = notify.recv();
    assert!(extend.starts_with("EXTEND_TIMEOUT_USEC="), "got {extend:?}");
    assert_eq!(
        read_message(&mut sleeping, &mut Vec::new()).expect("the Sleep in flight is answered"),
        EMPTY_REPLY
    );
    let status = wait_exit_pidfd(&mut sa.0);
    assert!(status.success(), "exit 0: {status}");
    assert!(socket.exists(), "the activated socket is kept");
}

#[test]
fn r10_without_a_varlink_name_every_passed_socket_is_served() {
    let dir = temp_dir();
    let a = dir.path().join("a.sock");
    let b = dir.path().join("b.sock");
    // No --fdname: no LISTEN_FDNAMES, both fds are "unknown", and localrpcd serves both.
    let mut sa = socket_activate(&["-l", &path_arg(&a), "-l", &path_arg(&b)], &[]);
    wait_for_listening(&b);
    assert_answers(&a);
    assert_answers(&b);
    signal(sa.0.id(), Signal::TERM);
    assert!(wait_exit_pidfd(&mut sa.0).success(), "exit 0");
    assert!(a.exists() && b.exists(), "activated sockets are kept");
}

#[test]
fn r10_with_several_named_fds_only_the_one_named_varlink_is_served() {
    let dir = temp_dir();
    let other = dir.path().join("other.sock");
    let varlink = dir.path().join("varlink.sock");
    let mut sa = socket_activate(
        &[
            "-l",
            &path_arg(&other),
            "-l",
            &path_arg(&varlink),
            "--fdname=other:varlink",
        ],
        &[],
    );
    wait_for_listening(&varlink);
    assert_answers(&varlink);
    // The daemon dropped the fd not named varlink; systemd-socket-activate exec'd in place and
    // holds no copy, so nobody listens there any more.
    let refused = UnixStream::connect(&other).expect_err("the fd not named varlink is not served");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    signal(sa.0.id(), Signal::TERM);
    assert!(wait_exit_pidfd(&mut sa.0).success(), "exit 0");
}

#[test]
fn accept_mode_serves_one_connection_per_instance_and_each_exits_zero() {
    let dir = temp_dir();
    let socket = dir.path().join("accept.sock");
    let mut sa = socket_activate(&["--accept", "-l", &path_arg(&socket)], &[]);
    let log = StderrLines::take(&mut sa.0, "daemon");
    wait_for_listening(&socket);
    for round in 1..=2 {
        let mut stream = connect(&socket).expect("connect");
        // Several calls (pipelined) on the one connection this instance serves.
        let mut both = ECHO_CALL.to_vec();
        both.extend_from_slice(&echo_call("second"));
        stream.write_all(&both).expect("send two calls");
        assert_eq!(
            read_message(&mut stream, &mut Vec::new()).expect("first reply"),
            ECHO_REPLY
        );
        assert_eq!(
            read_message(&mut stream, &mut Vec::new()).expect("second reply"),
            echo_reply("second")
        );
        drop(stream);
        assert!(
            log.wait_for_count("died with code 0", round),
            "instance {round} exits 0 once its connection closed: {}",
            log.text()
        );
    }
    assert!(!log.text().contains("died with code 1"), "{}", log.text());
    signal(sa.0.id(), Signal::TERM);
    let _ = wait_exit_pidfd(&mut sa.0);
}

#[test]
fn datagram_socket_is_refused_with_a_clear_error_and_exit_1() {
    let dir = temp_dir();
    let socket = dir.path().join("dgram.sock");
    let mut sa = socket_activate(&["--datagram", "-l", &path_arg(&socket)], &[]);
    wait_for_path(&socket);
    // Traffic makes systemd-socket-activate exec the daemon.
    std::os::unix::net::UnixDatagram::unbound()
        .expect("datagram socket")
        .send_to(b"x", &socket)
        .expect("send");
    let status = wait_exit_pidfd(&mut sa.0);
    let stderr = stderr_of(&mut sa.0);
    assert_eq!(status.code(), Some(1), "exit 1, never a hang: {stderr}");
    assert!(
        stderr.contains("localrpcd: passed file descriptor"),
        "{stderr}"
    );
    assert!(
        stderr.contains("needs a stream socket"),
        "the error says what would work: {stderr}"
    );
}

#[test]
fn invalid_listen_fds_through_systemd_socket_activate_is_a_clear_error() {
    let dir = temp_dir();
    let socket = dir.path().join("s.sock");
    let own = dir.path().join("own.sock");
    // -E overrides the LISTEN_FDS systemd-socket-activate sets itself.
    let mut sa = socket_activate(
        &["-l", &path_arg(&socket), "-E", "LISTEN_FDS=junk"],
        &["--listen", &format!("unix:{}", own.display())],
    );
    wait_for_listening(&socket);
    let _trigger = UnixStream::connect(&socket).expect("connect to trigger the exec");
    let status = wait_exit_pidfd(&mut sa.0);
    let stderr = stderr_of(&mut sa.0);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"localrpcd: LISTEN_FDS="junk" is not a positive number"#),
        "{stderr}"
    );
    assert!(
        !own.exists(),
        "no fallback to an own socket on a broken activation"
    );
}

// ---------------------------------------------------------------------------------------
// Our own launcher: fds at 3.., LISTEN_PID written in the child.

#[test]
fn invalid_activation_environment_is_a_clear_error_and_exit_1() {
    let dir = temp_dir();
    let listener = listening_socket(&dir.path().join("passed.sock"));
    let own = dir.path().join("own.sock");
    let listen = format!("unix:{}", own.display());
    // (whose LISTEN_PID, extra environment, expected message)
    type Case<'a> = (ListenPid, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            ListenPid::Own,
            &[("LISTEN_FDS", "0")],
            r#"LISTEN_FDS="0" is not a positive number"#,
        ),
        (
            ListenPid::Own,
            &[("LISTEN_FDS", "-1")],
            r#"LISTEN_FDS="-1" is not a positive number"#,
        ),
        (
            ListenPid::Own,
            &[("LISTEN_FDS", "junk")],
            r#"LISTEN_FDS="junk" is not a positive number"#,
        ),
        (
            ListenPid::Own,
            &[("LISTEN_FDS", "")],
            r#"LISTEN_FDS="" is not a positive number"#,
        ),
        (
            ListenPid::Own,
            &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "varlink:extra")],
            "LISTEN_FDNAMES has 2 names but LISTEN_FDS passes 1 file descriptors",
        ),
        (
            ListenPid::Fixed("junk".into()),
            &[("LISTEN_FDS", "1")],
            r#"LISTEN_PID="junk" is not a process id"#,
        ),
        (
            ListenPid::Own,
            &[("LISTEN_FDS", "2")],
            "file descriptor 4 named \"unknown\" was announced but is not open",
        ),
    ];
    for (pid, env, expected) in cases {
        let mut daemon = launch(&["--listen", &listen], &[&listener], pid.clone(), env);
        let status = wait_exit_pidfd(&mut daemon.0);
        let stderr = stderr_of(&mut daemon.0);
        assert_eq!(status.code(), Some(1), "{env:?}: exit 1: {stderr}");
        assert!(
            stderr.contains(expected),
            "{env:?}: expected {expected:?} in: {stderr}"
        );
        assert!(!own.exists(), "{env:?}: no fallback to an own socket");
    }
}

#[test]
fn foreign_listen_pid_is_ignored_and_the_daemon_binds_its_own_socket() {
    let dir = temp_dir();
    let passed = dir.path().join("passed.sock");
    let listener = listening_socket(&passed);
    let own = dir.path().join("own.sock");
    let notify = NotifyReceiver::path(dir.path(), "foreign");
    let mut daemon = launch(
        &["--listen", &format!("unix:{}", own.display())],
        &[&listener],
        ListenPid::Fixed("1".into()),
        &[
            ("LISTEN_FDS", "1"),
            ("LISTEN_FDNAMES", "varlink"),
            ("NOTIFY_SOCKET", &notify.address),
        ],
    );
    assert_eq!(
        notify.expect_ready(),
        format!("READY=1\nSTATUS=serving on unix:{}", own.display())
    );
    assert_answers(&own);
    assert!(
        PathBuf::from(format!("{}.lock", own.display())).exists(),
        "own-socket mode takes its lock"
    );
    if let Some(live) = live_environ(daemon.0.id()) {
        assert_eq!(
            listen_vars(&live),
            Vec::<&String>::new(),
            "removed even when not for us"
        );
    }
    signal(daemon.0.id(), Signal::TERM);
    assert!(wait_exit_pidfd(&mut daemon.0).success(), "exit 0");
    assert!(!own.exists(), "its own socket is removed");
    assert!(passed.exists(), "the passed one is untouched");
}

/// The daemon activated with one connected socket, as with `--accept` (no LISTEN_FDNAMES);
/// returns our end (read timeout set) and the daemon.
fn launch_on_connection() -> (UnixStream, ChildGuard) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let theirs = OwnedFd::from(theirs);
    let daemon = launch(&[], &[&theirs], ListenPid::Own, &[("LISTEN_FDS", "1")]);
    ours.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    (ours, daemon)
}

#[test]
fn connected_fd_is_served_as_one_connection_then_the_daemon_exits_zero() {
    let (mut ours, mut daemon) = launch_on_connection();
    for text in ["one", "two", "three"] {
        assert_eq!(
            call_on(&mut ours, &echo_call(text)),
            Outcome::Answered(echo_reply(text))
        );
    }
    assert_eq!(
        daemon.0.try_wait().expect("try_wait"),
        None,
        "serves until the peer closes"
    );
    drop(ours);
    let status = wait_exit_pidfd(&mut daemon.0);
    assert!(
        status.success(),
        "exit 0 after the connection: {status}; {}",
        stderr_of(&mut daemon.0)
    );
}

#[test]
fn sigterm_to_a_connection_instance_answers_the_call_in_flight_then_exits_zero() {
    // What systemd does to Accept=yes instances when the socket unit stops.
    let (mut ours, mut daemon) = launch_on_connection();
    assert_eq!(
        call_on(&mut ours, &echo_call("up")),
        Outcome::Answered(echo_reply("up"))
    );
    ours.write_all(
        b"{\"method\":\"io.localrpc.Echo.Sleep\",\"parameters\":{\"milliseconds\":300}}\0",
    )
    .expect("write Sleep");
    std::thread::sleep(Duration::from_millis(100));
    signal(daemon.0.id(), Signal::TERM);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut ours, &mut rest).expect("the Sleep reply, then EOF");
    assert_eq!(rest, b"{}\0", "the call in flight is answered");
    let status = wait_exit_pidfd(&mut daemon.0);
    assert!(
        status.success(),
        "exit 0 after SIGTERM: {status}; {}",
        stderr_of(&mut daemon.0)
    );
}

// ---------------------------------------------------------------------------------------
// A supervisor that holds the listening socket like PID 1.

/// Owns the listening socket and starts daemon instances on it (fd 3, `LISTEN_FDS=1`,
/// `LISTEN_PID` = the instance's pid, `LISTEN_FDNAMES=varlink`), one notify socket each.
struct Supervisor {
    dir: tempfile::TempDir,
    socket: PathBuf,
    listener: OwnedFd,
    started: u32,
}

impl Supervisor {
    fn new() -> Supervisor {
        let dir = temp_dir();
        let socket = dir.path().join("supervised.sock");
        let listener = listening_socket(&socket);
        Supervisor {
            dir,
            socket,
            listener,
            started: 0,
        }
    }

    /// Starts an instance and waits for its READY=1.
    fn start(&mut self, args: &[&str]) -> (ChildGuard, NotifyReceiver) {
        self.started += 1;
        let notify = NotifyReceiver::path(self.dir.path(), &self.started.to_string());
        let child = launch(
            args,
            &[&self.listener],
            ListenPid::Own,
            &[
                ("LISTEN_FDS", "1"),
                ("LISTEN_FDNAMES", "varlink"),
                ("NOTIFY_SOCKET", &notify.address),
            ],
        );
        let ready = notify.expect_ready();
        assert!(
            ready.contains(&format!("unix:{}", self.socket.display())),
            "{ready}"
        );
        (child, notify)
    }
}

/// Counters shared by the load clients.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    retried: AtomicU64,
    /// Why calls were retried, by kind.
    retry_reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    lost: std::sync::Mutex<Vec<String>>,
}

/// A client thread: calls Echo in a loop until `stop`, each call with a unique text, either on
/// a new connection per call or on one persistent connection (reconnecting when the daemon
/// closes it). Retries only calls the daemon provably did not read (see the module docs).
fn load_client(
    id: usize,
    socket: PathBuf,
    persistent: bool,
    pause: impl Fn(u64) -> Option<Duration> + Send + 'static,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut stream: Option<UnixStream> = None;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if let Some(pause) = pause(n) {
                std::thread::sleep(pause);
            }
            let text = format!("c{id}-{n}");
            let request = echo_call(&text);
            let mut attempts = 0;
            loop {
                attempts += 1;
                assert!(attempts < 1000, "client {id}: call {n} never got through");
                let outcome = if persistent {
                    if stream.is_none() {
                        stream = Some(
                            connect(&socket).expect("connect (the supervisor holds the socket)"),
                        );
                    }
                    call_on(stream.as_mut().expect("stream"), &request)
                } else {
                    call_new_connection(&socket, &request)
                };
                match outcome {
                    Outcome::Answered(reply) => {
                        if reply != echo_reply(&text) {
                            tally.lost.lock().expect("tally").push(format!(
                                "{text}: wrong reply {:?}",
                                String::from_utf8_lossy(&reply)
                            ));
                        }
                        tally.answered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Outcome::NotRead(why) => {
                        tally.retried.fetch_add(1, Ordering::Relaxed);
                        let kind = if persistent {
                            "persistent"
                        } else {
                            "new connection"
                        };
                        *tally
                            .retry_reasons
                            .lock()
                            .expect("tally")
                            .entry(format!("{kind}: {why}"))
                            .or_default() += 1;
                        stream = None;
                    }
                    Outcome::Unknown(why) => {
                        tally
                            .lost
                            .lock()
                            .expect("tally")
                            .push(format!("{text}: {why}"));
                        stream = None;
                        break;
                    }
                }
            }
            n += 1;
        }
    })
}

/// Waits (bounded) until `count` more calls have been answered.
fn wait_progress(tally: &Tally, count: u64) {
    let target = tally.answered.load(Ordering::Relaxed) + count;
    let deadline = Instant::now() + TIMEOUT;
    while tally.answered.load(Ordering::Relaxed) < target {
        assert!(
            Instant::now() < deadline,
            "no progress: {} answered",
            tally.answered.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn restarts_under_load_lose_no_call() {
    let mut supervisor = Supervisor::new();
    let (mut current, mut notify) = supervisor.start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..4)
        .map(|id| {
            load_client(
                id,
                supervisor.socket.clone(),
                id % 2 == 1,
                |_| None,
                stop.clone(),
                tally.clone(),
            )
        })
        .collect();
    wait_progress(&tally, 50);
    for restart in 1..=10 {
        signal(current.0.id(), Signal::TERM);
        let stopping = notify.recv();
        assert!(
            stopping.starts_with("STOPPING=1\n"),
            "restart {restart}: {stopping:?}"
        );
        let status = wait_exit_pidfd(&mut current.0);
        assert!(
            status.success(),
            "restart {restart}: exit 0: {status}; {}",
            stderr_of(&mut current.0)
        );
        // Calls made while no daemon runs wait in the supervisor's backlog.
        (current, notify) = supervisor.start(&[]);
        wait_progress(&tally, 100);
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    signal(current.0.id(), Signal::TERM);
    assert!(
        wait_exit_pidfd(&mut current.0).success(),
        "last instance exits 0"
    );
    let lost = tally.lost.lock().expect("tally");
    eprintln!(
        "restarts: {} instances, {} calls answered, {} safe retries {:?}, {} lost",
        supervisor.started,
        tally.answered.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        tally.retry_reasons.lock().expect("tally"),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "calls lost or wrongly answered across restarts: {lost:#?}"
    );
    assert!(
        supervisor.socket.exists(),
        "the daemons never remove the supervisor's socket"
    );
}

#[test]
fn exit_on_idle_loses_no_connection_that_raced_with_the_exit() {
    let supervisor = Arc::new(std::sync::Mutex::new(Supervisor::new()));
    let socket = supervisor.lock().expect("supervisor").socket.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let exits = Arc::new(AtomicU64::new(0));

    // The supervisor loop: start an instance; when it exits (on idle), wait until the
    // listening socket is readable (a client is waiting), then start the next, as systemd does.
    let manager = {
        let supervisor = supervisor.clone();
        let stop = stop.clone();
        let exits = exits.clone();
        std::thread::spawn(move || {
            let mut supervisor = supervisor.lock().expect("supervisor");
            while !stop.load(Ordering::Relaxed) {
                let (mut child, notify) = supervisor.start(&["--exit-on-idle", "0.2"]);
                let status = loop {
                    if let Some(status) = wait_exit_within(&mut child.0, Duration::from_millis(100))
                    {
                        break Some(status);
                    }
                    if stop.load(Ordering::Relaxed) {
                        break None;
                    }
                };
                let Some(status) = status else {
                    signal(child.0.id(), Signal::TERM);
                    assert!(
                        wait_exit_pidfd(&mut child.0).success(),
                        "last instance exits 0"
                    );
                    break;
                };
                assert!(
                    status.success(),
                    "idle exit is exit 0: {status}; {}",
                    stderr_of(&mut child.0)
                );
                let mut messages = Vec::new();
                while let Some(m) = notify.recv_within(Duration::ZERO) {
                    messages.push(m);
                }
                assert!(
                    messages
                        .iter()
                        .any(|m| m == "STOPPING=1\nSTATUS=stopping: idle"),
                    "STOPPING=1 before the idle exit: {messages:?}"
                );
                exits.fetch_add(1, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed)
                    && !wait_readable(&supervisor.listener, Duration::from_millis(50))
                {
                }
            }
        })
    };

    // Two clients call with pauses spread around the idle deadline (120..420 ms), so that
    // connections arrive just before, at and just after an instance decides to exit.
    let clients_stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2u64)
        .map(|id| {
            // Client 0 spreads widely; client 1 aims at the deadline itself (the idle timer
            // starts when the previous connection closes, just after its reply).
            let pause = move |n: u64| match id {
                0 => Some(Duration::from_millis(120 + (n * 37) % 300)),
                _ => Some(Duration::from_millis(190 + (n * 7) % 25)),
            };
            load_client(
                id as usize,
                socket.clone(),
                false,
                pause,
                clients_stop.clone(),
                tally.clone(),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        wait_progress(&tally, 1);
    }
    // Clients first (their last calls are answered), then the supervisor.
    clients_stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    stop.store(true, Ordering::Relaxed);
    manager.join().expect("supervisor thread");
    let lost = tally.lost.lock().expect("tally");
    eprintln!(
        "exit-on-idle: {} idle exits, {} calls answered, {} safe retries, {} lost",
        exits.load(Ordering::Relaxed),
        tally.answered.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        lost.len()
    );
    assert!(lost.is_empty(), "calls lost around idle exits: {lost:#?}");
    assert!(
        exits.load(Ordering::Relaxed) >= 2,
        "instances exited on idle while clients kept coming"
    );
}
