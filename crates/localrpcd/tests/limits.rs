//! Message size limits: a message over the limit (16 MiB by default; 17 MiB sent, with or
//! without its NUL) closes only its own connection and is counted in
//! `stats().oversized_messages`, while other connections keep being answered quickly (the
//! latency of small calls is measured while the big message is being sent). A configured
//! limit is exact: a message of exactly `max` bytes is served, one byte more is not.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Closed, IO_TIMEOUT, RawClient, TestServer, echo_call, echo_reply};
use localrpc::server::ServerConfig;
use tokio::io::AsyncWriteExt;

/// Upper bound for one small Echo round trip on another connection while a huge message is
/// being received (2 cores shared with compilers: generous, but far below what blocking on
/// the huge message would cost).
const MAX_BYSTANDER_LATENCY: Duration = Duration::from_millis(100);

const SEVENTEEN_MIB: usize = 17 * 1024 * 1024;

fn oversized_echo(with_nul: bool) -> Vec<u8> {
    let mut bytes = br#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":""#.to_vec();
    bytes.resize(SEVENTEEN_MIB, b'a');
    if with_nul {
        bytes.extend_from_slice(b"\"}}\0");
    }
    bytes
}

/// The server runs on its own runtime (as the daemon would, in another process), so the
/// client side measuring latency cannot be slowed down by the server's work or vice versa.
fn oversized_message_closes_only_its_connection(with_nul: bool) {
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let server = server_runtime.block_on(TestServer::start());
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime");
    client_runtime.block_on(async {
        let mut bystander = RawClient::connect(&server.path).await;
        assert_eq!(bystander.call(&echo_call("warm-up")).await, echo_reply("warm-up"));
        let payload = oversized_echo(with_nul);
        let mut writer = RawClient::connect(&server.path).await.stream;
        let sending = tokio::spawn(async move {
            // The server closes mid-send: EPIPE / ECONNRESET are expected outcomes.
            let result = writer.write_all(&payload).await;
            (writer, result)
        });
        let mut latencies = Vec::new();
        while !sending.is_finished() || latencies.is_empty() {
            let start = Instant::now();
            let text = format!("probe-{}", latencies.len());
            assert_eq!(bystander.call(&echo_call(&text)).await, echo_reply(&text));
            latencies.push(start.elapsed());
        }
        let (stream, write_result) = tokio::time::timeout(IO_TIMEOUT, sending)
            .await
            .expect("the big write did not end")
            .expect("writer task");
        if let Err(e) = &write_result {
            assert!(
                matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset),
                "unexpected write error {e}"
            );
        }
        let closed = RawClient::from_stream(stream).expect_closed().await;
        assert!(matches!(closed, Closed::Eof | Closed::Reset));
        let slowest = latencies.iter().max().copied().unwrap_or_default();
        eprintln!("{} bystander calls during the big message, slowest {slowest:?}", latencies.len());
        assert!(
            slowest < MAX_BYSTANDER_LATENCY,
            "a small call on another connection took {slowest:?} while a huge message was received ({latencies:?})"
        );
        // The bystander connection is still open and served.
        assert_eq!(bystander.call(&echo_call("after")).await, echo_reply("after"));
    });
    let stats = server.server.stats();
    assert_eq!(stats.oversized_messages.load(Ordering::Relaxed), 1);
    assert_eq!(stats.protocol_errors.load(Ordering::Relaxed), 0);
    drop(server);
    server_runtime.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn oversized_message_without_nul_closes_only_its_connection() {
    oversized_message_closes_only_its_connection(false);
}

#[test]
fn oversized_message_with_nul_closes_only_its_connection() {
    oversized_message_closes_only_its_connection(true);
}

/// An Echo call of exactly `len` bytes (without the NUL).
fn echo_call_of_len(len: usize) -> Vec<u8> {
    let head = br#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":""#;
    let tail = br#""}}"#;
    let mut bytes = head.to_vec();
    bytes.resize(len - tail.len(), b'x');
    bytes.extend_from_slice(tail);
    assert_eq!(bytes.len(), len);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limit_is_exact() {
    let max = 4096;
    let config = ServerConfig {
        max_message_size: max,
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(config).await;
    let mut client = server.raw().await;
    let mut at_limit = echo_call_of_len(max);
    at_limit.push(0);
    client.send(&at_limit).await;
    let reply = client.read_message().await;
    assert!(
        reply.starts_with(r#"{"parameters":{"text":"xxx"#),
        "{reply}"
    );
    assert_eq!(
        server
            .server
            .stats()
            .oversized_messages
            .load(Ordering::Relaxed),
        0
    );

    let mut over = echo_call_of_len(max + 1);
    over.push(0);
    client.send(&over).await;
    client.expect_closed().await;
    assert_eq!(
        server
            .server
            .stats()
            .oversized_messages
            .load(Ordering::Relaxed),
        1
    );

    let mut other = server.raw().await;
    assert_eq!(other.call(&echo_call("fine")).await, echo_reply("fine"));
}
