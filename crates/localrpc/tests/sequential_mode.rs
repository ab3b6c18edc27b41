//! Sequential mode over real Unix sockets: a client that calls one call at a time gets a
//! thread of its own (`ServerConfig::sequential_threads`), and everything that leaves that
//! mode (pipelining, part of a message, a handler that waits, streamed replies, an upgrade,
//! draining, the idle and slow-sender timeouts) behaves as in the runtime's own loop.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use localrpc::server::{Server, ServerConfig};
use localrpc_testkit::InProcessServer;

mod support;
use support::{Client, echo_call, service};

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
    client.upgrade_to_raw_echo().await;
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
