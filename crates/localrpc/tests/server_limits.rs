//! Server limits over real Unix sockets: connection caps, slow senders, idle peers, peers
//! that never read, and draining.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use localrpc::server::{Server, ServerConfig, StopReason};
use localrpc::service::{CallContext, InterfaceBuilder, Reply, Service};
use localrpc_testkit::{InProcessServer, handlers};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const IDL: &str = "interface org.example.limits\n\
                   method Echo(text: string) -> (text: string)\n\
                   method Sleep(ms: int) -> ()\n";

fn service() -> Service {
    let iface = InterfaceBuilder::new(IDL)
        .expect("IDL parses")
        .method("Echo", handlers::echo)
        .method("Sleep", handlers::sleep);
    Service::builder()
        .interface(iface)
        .build()
        .expect("service builds")
}

async fn start(config: ServerConfig) -> InProcessServer {
    InProcessServer::start_with(service(), config).await
}

async fn echo(stream: &mut UnixStream, text: &str) -> String {
    let call = format!(
        "{{\"method\":\"org.example.limits.Echo\",\"parameters\":{{\"text\":\"{text}\"}}}}\0"
    );
    stream.write_all(call.as_bytes()).await.expect("write call");
    read_reply(stream).await.expect("a reply")
}

/// Reads one NUL-terminated reply; `None` at EOF or reset.
async fn read_reply(stream: &mut UnixStream) -> Option<String> {
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await {
            Ok(Ok(1)) if byte[0] == 0 => return Some(String::from_utf8_lossy(&reply).into_owned()),
            Ok(Ok(1)) => reply.push(byte[0]),
            Ok(_) => return None,
            Err(_) => panic!("no reply and no close within 5 s"),
        }
    }
}

/// True when the server closed the connection within `within`.
async fn closed_within(stream: &mut UnixStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn wait_for_active(server: &Server, n: usize) {
    for _ in 0..500 {
        if server.active_connections() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "expected {n} active connections, have {}",
        server.active_connections()
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_counted() {
    let config = ServerConfig {
        max_connections: 3,
        ..ServerConfig::default()
    };
    let running = start(config).await;
    let mut open = Vec::new();
    for i in 0..3 {
        let mut stream = UnixStream::connect(&running.path).await.expect("connect");
        assert!(
            echo(&mut stream, &format!("c{i}"))
                .await
                .contains(&format!("c{i}"))
        );
        open.push(stream);
    }
    let mut fourth = UnixStream::connect(&running.path)
        .await
        .expect("connect is queued by the kernel");
    assert!(
        closed_within(&mut fourth, Duration::from_secs(2)).await,
        "the 4th connection is closed"
    );
    assert_eq!(
        running
            .server
            .stats()
            .connections_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The admitted ones are unaffected, and a slot frees up when one closes.
    assert!(echo(&mut open[0], "still").await.contains("still"));
    drop(open.pop());
    wait_for_active(&running.server, 2).await;
    let mut again = UnixStream::connect(&running.path).await.expect("connect");
    assert!(echo(&mut again, "again").await.contains("again"));
}

#[tokio::test]
async fn per_uid_limit_applies_to_the_same_user() {
    let config = ServerConfig {
        max_connections_per_uid: 1,
        ..ServerConfig::default()
    };
    let running = start(config).await;
    let mut first = UnixStream::connect(&running.path).await.expect("connect");
    assert!(echo(&mut first, "one").await.contains("one"));
    let mut second = UnixStream::connect(&running.path).await.expect("connect");
    assert!(
        closed_within(&mut second, Duration::from_secs(2)).await,
        "same uid: refused"
    );
    drop(first);
    wait_for_active(&running.server, 0).await;
    let mut third = UnixStream::connect(&running.path).await.expect("connect");
    assert!(
        echo(&mut third, "three").await.contains("three"),
        "the slot was given back"
    );
}

#[tokio::test]
async fn a_slow_sender_is_closed_without_hurting_others() {
    let config = ServerConfig {
        message_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let running = start(config).await;
    let mut slow = UnixStream::connect(&running.path).await.expect("connect");
    slow.write_all(b"{\"method\":\"org.example.limits.Echo\",")
        .await
        .expect("half a message");
    let mut other = UnixStream::connect(&running.path).await.expect("connect");
    assert!(echo(&mut other, "fast").await.contains("fast"));
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "slow sender closed"
    );
    assert!(echo(&mut other, "fast again").await.contains("fast again"));
    let timeouts = running
        .server
        .stats()
        .timeouts
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(timeouts, 1);
}

#[tokio::test]
async fn idle_connections_are_closed_when_configured() {
    let config = ServerConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..ServerConfig::default()
    };
    let running = start(config).await;
    let mut idle = UnixStream::connect(&running.path).await.expect("connect");
    assert!(echo(&mut idle, "x").await.contains("x"));
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn a_peer_that_never_reads_is_disconnected_with_bounded_memory() {
    let config = ServerConfig {
        write_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    };
    let running = start(config).await;
    let mut reader_less = UnixStream::connect(&running.path).await.expect("connect");
    // Pipeline far more reply bytes than the socket buffers hold, and never read.
    let big = "x".repeat(60_000);
    let call = format!(
        "{{\"method\":\"org.example.limits.Echo\",\"parameters\":{{\"text\":\"{big}\"}}}}\0"
    );
    let writer = tokio::spawn(async move {
        for _ in 0..200 {
            if reader_less.write_all(call.as_bytes()).await.is_err() {
                return true; // the server closed the connection
            }
        }
        false
    });
    let closed = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("bounded")
        .expect("task");
    assert!(closed, "the server gave up on a peer that does not read");
    let mut other = UnixStream::connect(&running.path).await.expect("connect");
    assert!(echo(&mut other, "ok").await.contains("ok"));
}

#[tokio::test]
async fn drain_finishes_calls_in_flight_then_closes() {
    let mut running = start(ServerConfig::default()).await;
    let mut busy = UnixStream::connect(&running.path).await.expect("connect");
    let mut idle = UnixStream::connect(&running.path).await.expect("connect");
    assert!(echo(&mut idle, "x").await.contains("x"));
    busy.write_all(b"{\"method\":\"org.example.limits.Sleep\",\"parameters\":{\"ms\":300}}\0")
        .await
        .expect("write");
    // Wait until the Sleep call has been dispatched (the Echo was call 1).
    while running
        .server
        .stats()
        .calls
        .load(std::sync::atomic::Ordering::Relaxed)
        < 2
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(running.stop().await, StopReason::Shutdown);
    assert!(
        !running.path.exists(),
        "the socket file is removed when serving stops"
    );
    let drained = running.server.drain(Duration::from_secs(5));
    let (drained, reply) = tokio::join!(drained, read_reply(&mut busy));
    assert_eq!(
        reply.as_deref(),
        Some("{}"),
        "the call in flight got its reply"
    );
    assert!(drained, "all connections closed within the grace period");
    assert!(
        closed_within(&mut idle, Duration::from_secs(1)).await,
        "idle connection closed"
    );
}

#[tokio::test]
async fn exit_on_idle_stops_serving_after_the_quiet_period() {
    let config = ServerConfig {
        exit_on_idle: Some(Duration::from_millis(200)),
        ..ServerConfig::default()
    };
    let mut running = start(config).await;
    let mut stream = UnixStream::connect(&running.path).await.expect("connect");
    assert!(echo(&mut stream, "x").await.contains("x"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        running.is_serving(),
        "an open connection keeps the server busy"
    );
    drop(stream);
    let reason = running.stopped_within(Duration::from_secs(5)).await;
    assert_eq!(reason, Some(StopReason::Idle));
}

#[tokio::test]
async fn a_call_over_its_deadline_fails_and_the_connection_goes_on() {
    let config = ServerConfig {
        call_timeout: Some(Duration::from_millis(100)),
        ..ServerConfig::default()
    };
    let running = start(config).await;
    let mut stream = UnixStream::connect(&running.path).await.expect("connect");
    stream
        .write_all(b"{\"method\":\"org.example.limits.Sleep\",\"parameters\":{\"ms\":5000}}\0")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let reply = read_reply(&mut stream).await.expect("a reply");
    assert_eq!(
        reply,
        r#"{"parameters":{"seconds":0.1},"error":"io.localrpc.CallTimedOut"}"#
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failed at the deadline, not after the sleep"
    );
    assert!(
        echo(&mut stream, "next").await.contains("next"),
        "the connection stays usable"
    );
}

/// The pid a pidfd refers to, from /proc/self/fdinfo.
fn pid_of_pidfd(fd: &std::os::fd::OwnedFd) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse().ok())
}

#[tokio::test]
async fn handlers_see_the_peer_pidfd_where_the_kernel_has_it() {
    const PIDFD_IDL: &str =
        "interface org.example.pidfd\nmethod Who() -> (pid: ?int, pidfd_pid: ?int)\n";
    let iface = InterfaceBuilder::new(PIDFD_IDL)
        .expect("IDL parses")
        .method("Who", |call| {
            Box::pin(async move {
                let pid = call.context.peer.and_then(|p| p.pid);
                let pidfd_pid = call
                    .context
                    .peer_pidfd
                    .get()
                    .as_deref()
                    .and_then(pid_of_pidfd);
                Reply::with(json!({ "pid": pid, "pidfd_pid": pidfd_pid }))
            })
        });
    let service = Service::builder().interface(iface).build().expect("builds");
    let running = InProcessServer::start(service).await;
    let mut stream = UnixStream::connect(&running.path).await.expect("connect");
    stream
        .write_all(b"{\"method\":\"org.example.pidfd.Who\"}\0")
        .await
        .expect("write");
    let reply: serde_json::Value =
        serde_json::from_str(&read_reply(&mut stream).await.expect("a reply")).expect("JSON");
    let own = std::process::id() as i64;
    assert_eq!(reply["parameters"]["pid"], own);
    if kernel_has_peer_pidfd() {
        assert_eq!(
            reply["parameters"]["pidfd_pid"], own,
            "the pidfd refers to the caller"
        );
    }
}

/// Linux 6.5+ gives pidfds for socket peers (SO_PEERPIDFD); says so when it does not.
fn kernel_has_peer_pidfd() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let (major, minor) = release
        .split('.')
        .take(2)
        .map(|n| n.trim().parse::<u32>().unwrap_or(0))
        .fold((0, 0), |(a, _), n| if a == 0 { (n, 0) } else { (a, n) });
    let has = (major, minor) >= (6, 5);
    if !has {
        eprintln!("SKIPPED pidfd checks: kernel {release} has no SO_PEERPIDFD");
    }
    has
}

/// Pidfds this process holds now.
fn open_pidfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("pidfd"))
        .count()
}

/// A service whose `Keep` method keeps each call's context; with `ask` it takes the pidfd.
fn keeping_service(kept: Arc<Mutex<Vec<CallContext>>>) -> Service {
    const KEEP_IDL: &str = "interface org.example.keep\nmethod Keep(ask: bool) -> ()\n";
    let iface = InterfaceBuilder::new(KEEP_IDL)
        .expect("IDL parses")
        .method("Keep", move |call| {
            let kept = kept.clone();
            Box::pin(async move {
                if call.parameter::<bool>("ask")? {
                    call.context.peer_pidfd.get();
                }
                kept.lock().expect("lock").push(call.context.clone());
                Ok(Reply::empty())
            })
        });
    Service::builder().interface(iface).build().expect("builds")
}

async fn keep(stream: &mut UnixStream, ask: bool) {
    let call =
        format!("{{\"method\":\"org.example.keep.Keep\",\"parameters\":{{\"ask\":{ask}}}}}\0");
    stream.write_all(call.as_bytes()).await.expect("write");
    let reply = read_reply(stream).await.expect("a reply");
    assert!(!reply.contains("\"error\""), "{reply}");
}

#[tokio::test]
async fn a_connection_holds_no_pidfd_until_a_handler_asks_for_it() {
    const CONNECTIONS: usize = 20;
    let running = InProcessServer::start(keeping_service(Arc::default())).await;
    let before = open_pidfds();
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut stream = UnixStream::connect(&running.path).await.expect("connect");
        keep(&mut stream, false).await;
        streams.push(stream);
    }
    let idle = open_pidfds().saturating_sub(before);
    // Other tests of this binary may hold a pidfd or two meanwhile; one per connection would
    // be 20.
    assert!(
        idle <= 3,
        "{idle} pidfds for {CONNECTIONS} connections that never asked"
    );
    if kernel_has_peer_pidfd() {
        for stream in &mut streams {
            keep(stream, true).await;
        }
        let asked = open_pidfds().saturating_sub(before);
        assert!(
            asked >= CONNECTIONS,
            "{asked} pidfds after {CONNECTIONS} asked"
        );
    }
}

#[tokio::test]
async fn a_pidfd_not_taken_before_its_connection_closed_is_none_and_a_taken_one_stays() {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let running = InProcessServer::start(keeping_service(kept.clone())).await;
    let mut asked = UnixStream::connect(&running.path).await.expect("connect");
    keep(&mut asked, true).await;
    let mut not_asked = UnixStream::connect(&running.path).await.expect("connect");
    keep(&mut not_asked, false).await;
    drop((asked, not_asked));
    for _ in 0..500 {
        if running.server.active_connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        running.server.active_connections(),
        0,
        "both connections closed"
    );
    // New connections' sockets (both ends are in this process) take the closed ones' fd
    // numbers.
    let mut newer = Vec::new();
    for _ in 0..4 {
        let mut stream = UnixStream::connect(&running.path).await.expect("connect");
        keep(&mut stream, false).await;
        newer.push(stream);
    }
    let kept = kept.lock().expect("lock").clone();
    // The second connection's socket is closed: asking now must not read whatever socket
    // has its fd number.
    assert!(kept[1].peer_pidfd.get().is_none());
    let taken = kept[0].peer_pidfd.get();
    if kernel_has_peer_pidfd() {
        let pid = taken.as_deref().and_then(pid_of_pidfd);
        assert_eq!(pid, Some(std::process::id() as i32), "kept after the close");
    } else {
        assert!(taken.is_none());
    }
}
