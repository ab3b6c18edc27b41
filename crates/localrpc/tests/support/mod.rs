//! What the sequential-mode and peeked-read tests share: a service with echo, sleeping,
//! streaming and upgrading methods, and a client that sends calls and reads NUL-terminated
//! replies over a real Unix socket.

// Each test file that includes this module uses a different part of it.
#![allow(dead_code)]

use std::time::Duration;

use localrpc::service::{InterfaceBuilder, Reply, Service};
use localrpc_testkit::{InProcessServer, handlers};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub const IDL: &str = "interface org.example.seq\n\
                   method Echo(text: string) -> (text: string)\n\
                   method Sleep(ms: int) -> ()\n\
                   method Count(n: int) -> (i: int)\n\
                   method Raw() -> ()\n";

pub fn service() -> Service {
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
pub struct Client {
    pub reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    pub writer: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    pub async fn connect(server: &InProcessServer) -> Client {
        let stream = UnixStream::connect(&server.path).await.expect("connect");
        let (read, writer) = stream.into_split();
        Client {
            reader: BufReader::new(read),
            writer,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// The next reply as JSON; panics at EOF or after 5 s.
    pub async fn reply(&mut self) -> Value {
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

    pub async fn echo(&mut self, text: &str) -> String {
        self.send(&echo_call(text)).await;
        let reply = self.reply().await;
        reply["parameters"]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("echo reply: {reply}"))
            .to_owned()
    }

    /// `n` echo calls, each waiting for its reply, each checked.
    pub async fn echo_one_at_a_time(&mut self, n: usize, tag: &str) {
        for i in 0..n {
            let text = format!("{tag}-{i}");
            assert_eq!(self.echo(&text).await, text);
        }
    }

    /// True when the server closes the connection within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut rest = Vec::new();
        matches!(
            tokio::time::timeout(within, self.reader.read_to_end(&mut rest)).await,
            Ok(Ok(_)) | Ok(Err(_))
        )
    }

    /// Calls `Raw` with `upgrade`, then checks that raw bytes come back echoed.
    pub async fn upgrade_to_raw_echo(&mut self) {
        self.send(b"{\"method\":\"org.example.seq.Raw\",\"upgrade\":true}\0")
            .await;
        let reply = self.reply().await;
        assert!(reply.get("error").is_none(), "{reply}");
        self.send(b"raw bytes").await;
        let mut echoed = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(5), self.reader.read_exact(&mut echoed))
            .await
            .expect("raw echo within 5 s")
            .expect("read");
        assert_eq!(&echoed, b"raw bytes");
    }
}

pub fn echo_call(text: &str) -> Vec<u8> {
    let mut call = serde_json::to_vec(
        &json!({"method": "org.example.seq.Echo", "parameters": {"text": text}}),
    )
    .expect("encodes");
    call.push(0);
    call
}
