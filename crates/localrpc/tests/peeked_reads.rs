//! Peeked reads over real Unix sockets: after a read that brought one call, the runtime's
//! loop reads with `MSG_PEEK` and takes the bytes off the socket later. Calls one at a time,
//! past the peeked-read limit, then pipelined, split and streamed calls, waiting handlers,
//! an upgrade right after peeked calls, and large calls (also sent while their replies are
//! read) must all behave as with plain reads. Sequential mode is off here, so the runtime's loop serves
//! every call.

use std::time::{Duration, Instant};

use localrpc::server::ServerConfig;
use localrpc_testkit::InProcessServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

mod support;
use support::{Client, echo_call, service};

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
    client.upgrade_to_raw_echo().await;
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
