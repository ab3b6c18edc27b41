//! File-descriptor passing over real Unix sockets (UAPI.20: `SCM_RIGHTS` with the first byte
//! of a message; only methods that opt in receive descriptors).
//!
//! Leak checks count `/proc/self/fd` or look for EPIPE on a pipe whose read ends were passed:
//! EPIPE means every copy of the read end, the server's included, is closed. The tests of this
//! file take one lock so that no other test opens descriptors while one counts them.

use std::io::{Read, Seek, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::Duration;

use localrpc::client::{Connection, Error};
use localrpc::server::{Server, ServerConfig};
use localrpc::service::{
    FDS_NOT_ACCEPTED, FDS_NOT_SUPPORTED, InterfaceBuilder, Reply, ReplyError, Service,
};
use localrpc::transport::Stream;
use localrpc::wire::CallFlags;
use localrpc_testkit::InProcessServer;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use serde_json::json;
use tokio::sync::Mutex;

const IDL: &str = "interface org.example.fds\n\
                   method Read() -> (data: string)\n\
                   method Which(tag: string) -> (tag: string, data: string)\n\
                   method Open(data: string) -> ()\n\
                   method Plain() -> ()\n\
                   method Stream(n: int) -> (i: int)\n";

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Reads each descriptor to its end (pipes whose write ends are closed, or memfds).
fn read_all(fds: Vec<OwnedFd>) -> String {
    let mut text = String::new();
    for fd in fds {
        std::fs::File::from(fd)
            .read_to_string(&mut text)
            .expect("read a passed descriptor");
    }
    text
}

/// A memfd holding `data`, positioned at its start.
fn memfd(data: &str) -> OwnedFd {
    let fd = rustix::fs::memfd_create("fd-test", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    let mut file = std::fs::File::from(fd);
    file.write_all(data.as_bytes()).expect("write memfd");
    file.rewind().expect("rewind memfd");
    OwnedFd::from(file)
}

/// A pipe whose write end already holds `data` and is closed: the read end reads `data`.
fn filled_pipe(data: &str) -> OwnedFd {
    let (read, mut write) = std::io::pipe().expect("pipe");
    write.write_all(data.as_bytes()).expect("fill pipe");
    OwnedFd::from(read)
}

fn service(accepting: bool) -> Service {
    let mut iface = InterfaceBuilder::new(IDL)
        .expect("IDL parses")
        .method("Read", |call| {
            Box::pin(async move { Reply::with(json!({ "data": read_all(call.fds) })) })
        })
        .method("Which", |call| {
            Box::pin(async move {
                let tag: String = call.parameter("tag")?;
                Reply::with(json!({ "tag": tag, "data": read_all(call.fds) }))
            })
        })
        .method("Open", |call| {
            Box::pin(async move {
                let data: String = call.parameter("data")?;
                Reply::with_fds(json!({}), vec![memfd(&data)])
            })
        })
        .method("Plain", |_call| Box::pin(async move { Ok(Reply::empty()) }))
        .streaming_method("Stream", |mut call| {
            Box::pin(async move {
                let n: i64 = call.parameter("n")?;
                for i in 0..n {
                    match call
                        .replies
                        .send_with_fds(json!({ "i": i }), vec![memfd(&format!("part {i}"))])
                        .await
                    {
                        Ok(()) => {}
                        Err(ReplyError::FileDescriptors(e)) => {
                            return Err(localrpc::service::ErrorReply::new(
                                FDS_NOT_SUPPORTED,
                                json!({ "reason": e.to_string() }),
                            ));
                        }
                        Err(_) => return Ok(Reply::empty()),
                    }
                }
                Reply::with_fds(json!({ "i": n }), vec![memfd("last")])
            })
        });
    if accepting {
        iface = iface.accept_fds("Read").accept_fds("Which");
    }
    Service::builder()
        .interface(iface)
        .build()
        .expect("service builds")
}

async fn start(service: Service, config: ServerConfig) -> InProcessServer {
    InProcessServer::start_with(service, config).await
}

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// The number of open descriptors once it stops changing: the previous test's runtime may
/// still be closing its sockets and epoll instance when the next test starts (the tests are
/// serialized, but a test's runtime is dropped after its lock is released).
async fn steady_open_fds() -> usize {
    let mut last = open_fds();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = open_fds();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Polls until the process has `expected` descriptors open (the server closes its copies on
/// its own task); returns the last count.
async fn settle_fds(expected: usize) -> usize {
    let mut now = open_fds();
    for _ in 0..200 {
        if now == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        now = open_fds();
    }
    now
}

/// True once writing to `write` fails with EPIPE: no read end is open anywhere.
async fn read_ends_all_closed(write: &mut std::io::PipeWriter) -> bool {
    for _ in 0..200 {
        match write.write(b"x") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return true,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    false
}

/// Sends `bytes` with `fds` in one `sendmsg` on a blocking socket.
fn send_raw(socket: &StdUnixStream, bytes: &[u8], fds: &[OwnedFd]) {
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(borrowed.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
    }
    let sent = rustix::net::sendmsg(
        socket,
        &[std::io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .expect("sendmsg");
    assert_eq!(sent, bytes.len(), "short sendmsg");
}

/// Reads NUL-terminated replies until `n` have come; `None` if the connection ends first.
fn read_raw_replies(socket: &mut StdUnixStream, n: usize) -> Option<Vec<serde_json::Value>> {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buffer = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = [0u8; 4096];
    while replies.len() < n {
        if let Some(nul) = buffer.iter().position(|&b| b == 0) {
            let message: Vec<u8> = buffer.drain(..=nul).collect();
            replies.push(serde_json::from_slice(&message[..nul]).expect("reply is JSON"));
            continue;
        }
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(got) => buffer.extend_from_slice(&chunk[..got]),
        }
    }
    Some(replies)
}

fn which(tag: &str) -> String {
    format!("{{\"method\":\"org.example.fds.Which\",\"parameters\":{{\"tag\":\"{tag}\"}}}}\0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_that_accepts_fds_reads_through_a_passed_pipe() {
    let _serial = SERIAL.lock().await;
    let mut running = start(service(true), ServerConfig::default()).await;
    let mut connection = Connection::connect(&running.address())
        .await
        .expect("connect");
    let (reply, fds) = connection
        .call_with_fds(
            "org.example.fds.Read",
            json!({}),
            vec![filled_pipe("hello "), filled_pipe("world")],
        )
        .await
        .expect("call");
    assert_eq!(reply["data"], "hello world");
    assert!(fds.is_empty());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_returns_an_fd_the_client_reads() {
    let _serial = SERIAL.lock().await;
    let mut running = start(service(true), ServerConfig::default()).await;
    let mut connection = Connection::connect(&running.address())
        .await
        .expect("connect");
    let (_, fds) = connection
        .call_with_fds(
            "org.example.fds.Open",
            json!({ "data": "from the server" }),
            vec![],
        )
        .await
        .expect("call");
    assert_eq!(fds.len(), 1);
    assert_eq!(read_all(fds), "from the server");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_call_leaks_no_fds_the_reply_carries() {
    let _serial = SERIAL.lock().await;
    let mut running = start(service(true), ServerConfig::default()).await;
    let mut connection = Connection::connect(&running.address())
        .await
        .expect("connect");
    connection
        .call("org.example.fds.Plain", json!({}))
        .await
        .expect("warm up");
    let before = steady_open_fds().await;
    for _ in 0..5 {
        connection
            .call("org.example.fds.Open", json!({ "data": "x" }))
            .await
            .expect("call");
    }
    assert_eq!(
        settle_fds(before).await,
        before,
        "the kernel discards the reply's fds"
    );
    // Once the connection receives fds, replies to plain calls have theirs closed.
    connection.accept_fds().expect("unix socket");
    for _ in 0..5 {
        connection
            .call("org.example.fds.Open", json!({ "data": "x" }))
            .await
            .expect("call");
    }
    assert_eq!(
        settle_fds(before).await,
        before,
        "the client closes unasked-for fds"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_pipelined_replies_each_carry_their_own_fd() {
    let _serial = SERIAL.lock().await;
    let mut running = start(service(true), ServerConfig::default()).await;
    let mut connection = Connection::connect(&running.address())
        .await
        .expect("connect");
    connection.accept_fds().expect("unix socket");
    connection
        .send(
            "org.example.fds.Stream",
            &json!({ "n": 3 }),
            CallFlags {
                more: true,
                ..CallFlags::default()
            },
        )
        .expect("queue");
    connection.flush().await.expect("flush");
    let mut got = Vec::new();
    loop {
        let (reply, fds) = connection.receive_with_fds().await.expect("reply");
        got.push(read_all(fds));
        if !reply.continues {
            break;
        }
    }
    assert_eq!(got, ["part 0", "part 1", "part 2", "last"]);

    // Two replies with fds written in one batch.
    for data in ["one", "two", "three"] {
        connection
            .send(
                "org.example.fds.Open",
                &json!({ "data": data }),
                CallFlags::default(),
            )
            .expect("queue");
    }
    connection.flush().await.expect("flush");
    let mut got = Vec::new();
    for _ in 0..3 {
        let (_, fds) = connection.receive_with_fds().await.expect("reply");
        got.push(read_all(fds));
    }
    assert_eq!(got, ["one", "two", "three"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fds_sent_to_a_method_that_does_not_accept_them_are_closed_with_an_error() {
    let _serial = SERIAL.lock().await;
    let mut running = start(service(true), ServerConfig::default()).await;
    let mut connection = Connection::connect(&running.address())
        .await
        .expect("connect");
    let (read, mut write) = std::io::pipe().expect("pipe");
    let result = connection
        .call_with_fds(
            "org.example.fds.Plain",
            json!({}),
            vec![OwnedFd::from(read)],
        )
        .await;
    match result {
        Err(Error::Reply(reply)) => {
            assert_eq!(reply.name, FDS_NOT_ACCEPTED);
            assert_eq!(reply.parameters["method"], "org.example.fds.Plain");
        }
        other => panic!("expected {FDS_NOT_ACCEPTED}, got {other:?}"),
    }
    assert!(
        read_ends_all_closed(&mut write).await,
        "the server kept the fd"
    );
    // The connection stays usable.
    connection
        .call("org.example.fds.Plain", json!({}))
        .await
        .expect("still served");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_fd_methods_never_receives_fds() {
    let _serial = SERIAL.lock().await;
    let mut running = start(service(false), ServerConfig::default()).await;
    let mut connection = Connection::connect(&running.address())
        .await
        .expect("connect");
    connection
        .call("org.example.fds.Plain", json!({}))
        .await
        .expect("warm up");
    let before = steady_open_fds().await;
    let (read, mut write) = std::io::pipe().expect("pipe");
    let result = connection
        .call_with_fds(
            "org.example.fds.Which",
            json!({ "tag": "a" }),
            vec![OwnedFd::from(read)],
        )
        .await
        .expect("answered: the kernel dropped the fds, the call has none");
    assert_eq!(result.0["data"], "");
    assert!(
        read_ends_all_closed(&mut write).await,
        "someone kept the read end"
    );
    drop(write);
    assert_eq!(
        settle_fds(before).await,
        before,
        "server's open fd count changed"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_each_get_their_own_fds() {
    let _serial = SERIAL.lock().await;
    let mut running = start(service(true), ServerConfig::default()).await;
    let path = running.path.clone();
    let replies = tokio::task::spawn_blocking(move || {
        let mut socket = StdUnixStream::connect(path).expect("connect");
        // One sendmsg per batch of fds: the kernel may hand several to one read, but never
        // two batches; "c" and "d" travel in one sendmsg with C (sd-varlink writes so).
        send_raw(&socket, which("a").as_bytes(), &[filled_pipe("A")]);
        send_raw(
            &socket,
            which("b").as_bytes(),
            &[filled_pipe("B1"), filled_pipe("B2")],
        );
        send_raw(
            &socket,
            format!("{}{}", which("c"), which("d")).as_bytes(),
            &[filled_pipe("C")],
        );
        send_raw(&socket, which("e").as_bytes(), &[filled_pipe("E")]);
        read_raw_replies(&mut socket, 5)
    })
    .await
    .expect("client thread")
    .expect("five replies");
    let got: Vec<(String, String)> = replies
        .iter()
        .map(|r| {
            let p = &r["parameters"];
            (
                p["tag"].as_str().unwrap_or("?").to_owned(),
                p["data"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let expected = [("a", "A"), ("b", "B1B2"), ("c", "C"), ("d", ""), ("e", "E")]
        .map(|(t, d)| (t.to_owned(), d.to_owned()));
    assert_eq!(got, expected);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_fds_close_the_connection_and_leak_nothing() {
    let _serial = SERIAL.lock().await;
    let config = ServerConfig {
        max_fds_per_message: 2,
        ..ServerConfig::default()
    };
    let mut running = start(service(true), config).await;
    let path = running.path.clone();
    let before = steady_open_fds().await;
    let (closed, mut writes) = tokio::task::spawn_blocking(move || {
        let mut socket = StdUnixStream::connect(path).expect("connect");
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        for _ in 0..3 {
            let (read, write) = std::io::pipe().expect("pipe");
            reads.push(OwnedFd::from(read));
            writes.push(write);
        }
        // Plain (not Which): were the fds not refused, the call would be answered (with
        // FileDescriptorsNotAccepted) instead of Which blocking on the still open pipes.
        send_raw(&socket, b"{\"method\":\"org.example.fds.Plain\"}\0", &reads);
        drop(reads);
        (read_raw_replies(&mut socket, 1).is_none(), writes)
    })
    .await
    .expect("client thread");
    assert!(
        closed,
        "the server answered a call whose fds were truncated"
    );
    for write in &mut writes {
        assert!(read_ends_all_closed(write).await, "a truncated fd leaked");
    }
    drop(writes);
    assert_eq!(settle_fds(before).await, before);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_with_fds_on_tcp_is_an_error_and_closes_them() {
    let _serial = SERIAL.lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = format!("tcp:{}", listener.local_addr().expect("addr"));
    let server = Server::new(service(true));
    let serving = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        server.serve_connection(Stream::Tcp(stream), None).await;
    });
    let mut connection = Connection::connect(&address).await.expect("connect");
    match connection
        .call("org.example.fds.Open", json!({ "data": "x" }))
        .await
    {
        Err(Error::Reply(reply)) => assert_eq!(reply.name, FDS_NOT_SUPPORTED),
        other => panic!("expected {FDS_NOT_SUPPORTED}, got {other:?}"),
    }
    assert!(matches!(
        connection
            .call_with_fds("org.example.fds.Read", json!({}), vec![filled_pipe("x")])
            .await,
        Err(Error::FileDescriptors(_))
    ));
    drop(connection);
    serving.await.expect("server task");
}
