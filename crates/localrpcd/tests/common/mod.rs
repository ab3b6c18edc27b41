//! Helpers shared by localrpcd's integration tests: an in-process `localrpcd::service()`
//! server on a private temp socket, and a raw client that sends exact bytes and reads
//! NUL-framed replies with bounded waits (a bug fails a test instead of hanging it).

#![allow(dead_code, unused_imports)]

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use localrpc::server::ServerConfig;
use localrpc_testkit::InProcessServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub use localrpc_testkit::process::wait_exit;

/// Upper bound of any single wait on the network in these tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// `localrpcd::service()` served in-process (see `localrpc_testkit::InProcessServer`, which it
/// derefs to for `server`, `path` and `address()`). Must be started inside a tokio runtime;
/// dropping it stops accepting and removes the socket file.
pub struct TestServer(InProcessServer);

impl std::ops::Deref for TestServer {
    type Target = InProcessServer;
    fn deref(&self) -> &InProcessServer {
        &self.0
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(ServerConfig::default()).await
    }

    pub async fn start_with(config: ServerConfig) -> TestServer {
        let service = localrpcd::service().expect("build localrpcd's service");
        TestServer(InProcessServer::start_with(service, config).await)
    }

    pub async fn raw(&self) -> RawClient {
        RawClient::connect(&self.path).await
    }

    /// Waits (bounded) until the server has `expected` open connections.
    pub async fn wait_active_connections(&self, expected: usize) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let now = self.server.active_connections();
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{now} connections stayed open, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A client that writes exact bytes and reads NUL-terminated messages.
pub struct RawClient {
    pub stream: UnixStream,
    /// Bytes read but not yet returned.
    buf: Vec<u8>,
    /// Number of successful read() calls that returned data.
    pub reads: usize,
}

/// How a connection ended, seen from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Eof,
    Reset,
}

impl RawClient {
    pub async fn connect(path: &Path) -> RawClient {
        let stream = tokio::time::timeout(IO_TIMEOUT, UnixStream::connect(path))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        RawClient::from_stream(stream)
    }

    pub fn from_stream(stream: UnixStream) -> RawClient {
        RawClient {
            stream,
            buf: Vec::new(),
            reads: 0,
        }
    }

    /// Writes `bytes` in one write_all.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(bytes.as_ref()))
            .await
            .expect("write timed out")
            .expect("write to the server");
    }

    /// Sends one message (a NUL is appended).
    pub async fn send_message(&mut self, message: &str) {
        let mut bytes = message.as_bytes().to_vec();
        bytes.push(0);
        self.send(bytes).await;
    }

    /// Reads more bytes into the buffer; Ok(0) on EOF.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("no data from the server within the timeout")?;
        if n > 0 {
            self.reads += 1;
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(n)
    }

    /// The next message, without its NUL, as UTF-8 text.
    pub async fn read_message(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == 0) {
                let message: Vec<u8> = self.buf.drain(..=end).collect();
                return String::from_utf8(message[..end].to_vec()).expect("reply is UTF-8");
            }
            match self.fill().await {
                Ok(0) => panic!(
                    "server closed the connection while a reply was expected (buffered: {:?})",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(_) => {}
                Err(e) => panic!("read failed while a reply was expected: {e}"),
            }
        }
    }

    /// Sends one message and returns the next reply.
    pub async fn call(&mut self, message: &str) -> String {
        self.send_message(message).await;
        self.read_message().await
    }

    /// Reads exactly `n` raw bytes (after an upgrade).
    pub async fn read_raw(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            match self.fill().await {
                Ok(0) => panic!("EOF after {} of {n} raw bytes", self.buf.len()),
                Ok(_) => {}
                Err(e) => panic!("read failed after {} of {n} raw bytes: {e}", self.buf.len()),
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Asserts that the server closes the connection without sending anything more.
    pub async fn expect_closed(&mut self) -> Closed {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match self.fill().await {
            Ok(0) => Closed::Eof,
            Ok(_) => panic!(
                "expected the server to close the connection, got {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            // A Unix socket closed with unread data in its queue reports ECONNRESET.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Closed::Reset,
            Err(e) => panic!("expected EOF, got error {e}"),
        }
    }

    /// Half-closes our side (the server sees EOF).
    pub async fn shutdown_write(&mut self) {
        self.stream.shutdown().await.expect("shutdown(SHUT_WR)");
    }
}

/// The Echo call for `text` (text must not need JSON escaping).
pub fn echo_call(text: &str) -> String {
    format!(r#"{{"method":"io.localrpc.Echo.Echo","parameters":{{"text":"{text}"}}}}"#)
}

/// The canonical reply to [`echo_call`].
pub fn echo_reply(text: &str) -> String {
    format!(r#"{{"parameters":{{"text":"{text}"}}}}"#)
}
