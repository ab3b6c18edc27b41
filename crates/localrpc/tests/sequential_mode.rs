//! Sequential mode over real Unix sockets: a client that calls one call at a time gets a
//! thread of its own (`ServerConfig::sequential_threads`), and everything that leaves that
//! mode (pipelining, part of a message, a handler that waits, streamed replies, an upgrade,
//! draining, the idle and slow-sender timeouts) behaves as in the runtime's own loop.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use localrpc::server::{Server, ServerConfig};
use localrpc::service::{InterfaceBuilder, Reply, Service};
use localrpc_testkit::{InProcessServer, handlers};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const IDL: &str = "interface org.example.seq\n\
                   method Echo(text: string) -> (text: string)\n\
                   method Sleep(ms: int) -> ()\n\
                   method Count(n: int) -> (i: int)\n\
                   method Raw() -> ()\n";

fn service() -> Service {
    let iface = InterfaceBuilder::new(IDL)
        .expect("IDL parses")
        .method("Echo", handlers::echo)
        .method("Sleep", handlers::sleep)
        .streaming_method("Count", handlers::count)
        .upgrade_method("Raw", |_call| {
            Box::pin(async move {
                Reply::upgrade(
                    json!({}),
                    Box::new(|mut raw| {
                        Box::pin(async move {
                            // Echo raw bytes until the peer closes.
                            let mut buf = [0u8; 64];
                            while let Ok(n @ 1..) = raw.read(&mut buf).await {
                                if raw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        })
                    }),
                )
            })
        });
    Service::builder()
        .interface(iface)
        .build()
        .expect("service builds")
}

/// A client connection that reads NUL-terminated replies.
struct Client {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    async fn connect(server: &InProcessServer) -> Client {
        let stream = UnixStream::connect(&server.path).await.expect("connect");
        let (read, writer) = stream.into_split();
        Client {
            reader: BufReader::new(read),
            writer,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// The next reply as JSON; panics at EOF or after 5 s.
    async fn reply(&mut self) -> Value {
        let mut reply = Vec::new();
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            self.reader.read_until(0, &mut reply),
        )
        .await
        .expect("a reply within 5 s")
        .expect("read");
        assert!(
            n > 0 && reply.pop() == Some(0),
            "connection closed instead of a reply"
        );
        serde_json::from_slice(&reply).expect("reply is JSON")
    }

    async fn echo(&mut self, text: &str) -> String {
        self.send(&echo_call(text)).await;
        let reply = self.reply().await;
        reply["parameters"]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("echo reply: {reply}"))
            .to_owned()
    }

    /// `n` echo calls, each waiting for its reply, each checked.
    async fn echo_one_at_a_time(&mut self, n: usize, tag: &str) {
        for i in 0..n {
            let text = format!("{tag}-{i}");
            assert_eq!(self.echo(&text).await, text);
        }
    }

    /// True when the server closes the connection within `within`.
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut rest = Vec::new();
        matches!(
            tokio::time::timeout(within, self.reader.read_to_end(&mut rest)).await,
            Ok(Ok(_)) | Ok(Err(_))
        )
    }
}

fn echo_call(text: &str) -> Vec<u8> {
    let mut call = serde_json::to_vec(
        &json!({"method": "org.example.seq.Echo", "parameters": {"text": text}}),
    )
    .expect("encodes");
    call.push(0);
    call
}

fn sessions(server: &Server) -> u64 {
    server.stats().sequential_sessions.load(Ordering::Relaxed)
}

/// A client of `server` that has made 40 calls one at a time, so that its connection is in
/// sequential mode.
async fn client_in_sequential_mode(server: &InProcessServer) -> Client {
    let mut client = Client::connect(server).await;
    client.echo_one_at_a_time(40, "warm").await;
    assert!(
        sessions(&server.server) >= 1,
        "not in sequential mode after 40 calls"
    );
    client
}

async fn start(config: ServerConfig) -> InProcessServer {
    InProcessServer::start_with(service(), config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_calling_one_call_at_a_time_is_served_in_sequential_mode() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    client.echo_one_at_a_time(200, "seq").await;
    assert!(
        sessions(&server.server) >= 1,
        "200 calls one at a time never entered sequential mode"
    );
    assert_eq!(server.server.stats().calls.load(Ordering::Relaxed), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_and_partial_calls_after_sequential_mode_are_answered_in_order() {
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    client.echo_one_at_a_time(40, "a").await;
    let entered = sessions(&server.server);
    assert!(entered >= 1, "not in sequential mode after 40 calls");

    // Thirty calls in one write: the session hands them to the runtime's loop.
    let batch: Vec<u8> = (0..30).flat_map(|i| echo_call(&format!("b-{i}"))).collect();
    client.send(&batch).await;
    for i in 0..30 {
        assert_eq!(client.reply().await["parameters"]["text"], format!("b-{i}"));
    }
    // Half a call, a pause, the rest.
    let call = echo_call("split");
    client.send(&call[..10]).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    client.send(&call[10..]).await;
    assert_eq!(client.reply().await["parameters"]["text"], "split");

    // Calls one at a time again enter sequential mode again.
    client.echo_one_at_a_time(40, "c").await;
    assert!(
        sessions(&server.server) > entered,
        "sequential mode was not entered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_handlers_and_streamed_replies_work_from_sequential_mode() {
    let server = start(ServerConfig::default()).await;
    let mut client = client_in_sequential_mode(&server).await;

    // A handler that waits is finished by the runtime.
    let started = Instant::now();
    client
        .send(b"{\"method\":\"org.example.seq.Sleep\",\"parameters\":{\"ms\":100}}\0")
        .await;
    let reply = client.reply().await;
    assert!(reply.get("error").is_none(), "{reply}");
    assert!(started.elapsed() >= Duration::from_millis(100));

    // Streamed replies (the handler flushes each) after entering sequential mode again.
    client.echo_one_at_a_time(40, "again").await;
    client
        .send(b"{\"method\":\"org.example.seq.Count\",\"parameters\":{\"n\":5},\"more\":true}\0")
        .await;
    for i in 0..5 {
        let reply = client.reply().await;
        assert_eq!(reply["parameters"]["i"], i, "{reply}");
        assert_eq!(reply.get("continues").is_some(), i < 4, "{reply}");
    }
    client.echo_one_at_a_time(20, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_after_sequential_mode_hands_over_the_socket() {
    let server = start(ServerConfig::default()).await;
    let mut client = client_in_sequential_mode(&server).await;
    client
        .send(b"{\"method\":\"org.example.seq.Raw\",\"upgrade\":true}\0")
        .await;
    let reply = client.reply().await;
    assert!(reply.get("error").is_none(), "{reply}");
    client.send(b"raw bytes").await;
    let mut echoed = [0u8; 9];
    tokio::time::timeout(
        Duration::from_secs(5),
        client.reader.read_exact(&mut echoed),
    )
    .await
    .expect("raw echo within 5 s")
    .expect("read");
    assert_eq!(&echoed, b"raw bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_closes_a_connection_in_sequential_mode_promptly() {
    let server = start(ServerConfig::default()).await;
    let mut client = client_in_sequential_mode(&server).await;
    // The thread is now blocked waiting for the next call.
    let started = Instant::now();
    assert!(server.server.drain(Duration::from_secs(5)).await);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drain took {:?}",
        started.elapsed()
    );
    assert!(client.closed_within(Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_sender_timeouts_still_apply_after_sequential_mode() {
    let config = ServerConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        message_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = start(config).await;

    let mut idle = Client::connect(&server).await;
    idle.echo_one_at_a_time(40, "idle").await;
    let mut slow = Client::connect(&server).await;
    slow.echo_one_at_a_time(40, "slow").await;
    assert!(sessions(&server.server) >= 2);
    slow.send(&echo_call("never finished")[..12]).await;

    assert!(idle.closed_within(Duration::from_secs(2)).await);
    assert!(slow.closed_within(Duration::from_secs(2)).await);
    assert_eq!(server.server.stats().timeouts.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_threads_zero_turns_it_off() {
    let config = ServerConfig {
        sequential_threads: 0,
        ..ServerConfig::default()
    };
    let server = start(config).await;
    let mut client = Client::connect(&server).await;
    client.echo_one_at_a_time(100, "off").await;
    assert_eq!(sessions(&server.server), 0);
}

#[tokio::test]
async fn a_current_thread_runtime_never_enters_sequential_mode() {
    // block_in_place needs the multi-thread runtime; here it would panic.
    let server = start(ServerConfig::default()).await;
    let mut client = Client::connect(&server).await;
    client.echo_one_at_a_time(100, "local").await;
    assert_eq!(sessions(&server.server), 0);
}
