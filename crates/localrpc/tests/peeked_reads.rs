//! Peeked reads over real Unix sockets: after a read that brought one call, the runtime's
//! loop reads with `MSG_PEEK` and takes the bytes off the socket later. Calls one at a time,
//! past the peeked-read limit, then pipelined, split and streamed calls, waiting handlers,
//! an upgrade right after peeked calls, and a client that stops reading its replies must all
//! behave as with plain reads. Sequential mode is off here, so the runtime's loop serves
//! every call.

use std::time::{Duration, Instant};

use localrpc::server::ServerConfig;
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
}

fn echo_call(text: &str) -> Vec<u8> {
    let mut call = serde_json::to_vec(
        &json!({"method": "org.example.seq.Echo", "parameters": {"text": text}}),
    )
    .expect("encodes");
    call.push(0);
    call
}

async fn start() -> InProcessServer {
    let config = ServerConfig {
        sequential_threads: 0,
        ..ServerConfig::default()
    };
    InProcessServer::start_with(service(), config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_one_at_a_time_then_pipelined_split_and_streamed_calls() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    // Past the peeked-read limit several times.
    client.echo_one_at_a_time(100, "a").await;
    let batch: Vec<u8> = (0..30).flat_map(|i| echo_call(&format!("b-{i}"))).collect();
    client.send(&batch).await;
    for i in 0..30 {
        assert_eq!(client.reply().await["parameters"]["text"], format!("b-{i}"));
    }
    client.echo_one_at_a_time(5, "c").await;
    let call = echo_call("split");
    client.send(&call[..10]).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    client.send(&call[10..]).await;
    assert_eq!(client.reply().await["parameters"]["text"], "split");
    client.echo_one_at_a_time(5, "d").await;
    client
        .send(b"{\"method\":\"org.example.seq.Count\",\"parameters\":{\"n\":5},\"more\":true}\0")
        .await;
    for i in 0..5 {
        let reply = client.reply().await;
        assert_eq!(reply["parameters"]["i"], i, "{reply}");
    }
    client.echo_one_at_a_time(5, "e").await;
    let started = Instant::now();
    client
        .send(b"{\"method\":\"org.example.seq.Sleep\",\"parameters\":{\"ms\":50}}\0")
        .await;
    let reply = client.reply().await;
    assert!(reply.get("error").is_none(), "{reply}");
    assert!(started.elapsed() >= Duration::from_millis(50));
    client.echo_one_at_a_time(20, "f").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_after_peeked_calls_reads_only_the_bytes_after_it() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    client.echo_one_at_a_time(7, "warm").await;
    // The upgrade call alone in its read: peeked, so it must be taken off the socket before
    // the handler reads, or the handler would echo the call itself.
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
async fn large_calls_after_peeked_calls_are_read_whole() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    // Large calls, each after a small one: the peeked read that starts a large call ends
    // inside it and is taken off the socket at once; the rest is read as usual.
    for i in 0..20 {
        client.echo_one_at_a_time(2, &format!("small-{i}")).await;
        let text = format!("{i}").repeat(100_000 + i);
        assert_eq!(client.echo(&text).await, text);
    }
    // Calls sent while the replies are read concurrently.
    let text = "y".repeat(60_000);
    let call = echo_call(&text);
    let Client { reader, writer } = &mut client;
    let send = async {
        for _ in 0..40 {
            writer.write_all(&call).await.expect("write");
        }
    };
    let receive = async {
        for _ in 0..40 {
            let mut reply = Vec::new();
            reader.read_until(0, &mut reply).await.expect("read");
            assert!(reply.len() > 60_000);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(send, receive)
    })
    .await
    .expect("40 large calls within 20 s");
    client.echo_one_at_a_time(3, "after").await;
}
