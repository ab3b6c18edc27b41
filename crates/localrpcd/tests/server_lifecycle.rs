//! The server's connection lifecycle in-process: `Server::drain` closes idle connections at
//! once (also those that already made calls), lets a call in flight finish and deliver its
//! reply before closing, and `active_connections()` follows connections as they come and go.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, echo_call, echo_reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_idle_connections_at_once() {
    let server = TestServer::start().await;
    // One connection that made calls, one that never sent anything.
    let mut used = server.raw().await;
    assert_eq!(used.call(&echo_call("a")).await, echo_reply("a"));
    assert_eq!(used.call(&echo_call("b")).await, echo_reply("b"));
    let mut silent = server.raw().await;
    server.wait_active_connections(2).await;

    let start = Instant::now();
    let drained = server.server.drain(Duration::from_secs(5)).await;
    let took = start.elapsed();
    assert!(drained, "connections were left open after the grace period");
    assert!(
        took < Duration::from_secs(1),
        "draining idle connections took {took:?}"
    );
    used.expect_closed().await;
    silent.expect_closed().await;
    assert_eq!(server.server.active_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_a_call_in_flight_finish() {
    let server = TestServer::start().await;
    let mut busy = server.raw().await;
    assert_eq!(busy.call(&echo_call("warm")).await, echo_reply("warm"));
    busy.send_message(r#"{"method":"io.localrpc.Echo.Sleep","parameters":{"milliseconds":300}}"#)
        .await;
    // The Sleep is being served once the server has counted the call.
    let stats = server.server.stats().clone();
    let deadline = Instant::now() + common::IO_TIMEOUT;
    while stats.calls.load(std::sync::atomic::Ordering::Relaxed) < 2 {
        assert!(
            Instant::now() < deadline,
            "the Sleep call was never dispatched"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = server.server.drain(Duration::from_secs(5)).await;
    assert!(
        drained,
        "the connection did not close after its call finished"
    );
    assert_eq!(
        busy.read_message().await,
        "{}",
        "the reply to the call in flight is delivered"
    );
    busy.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_connections_follow_clients() {
    let server = TestServer::start().await;
    server.wait_active_connections(0).await;
    let mut clients = Vec::new();
    for i in 0..20 {
        let mut client = server.raw().await;
        let text = format!("c{i}");
        assert_eq!(client.call(&echo_call(&text)).await, echo_reply(&text));
        clients.push(client);
    }
    server.wait_active_connections(20).await;
    clients.truncate(5);
    server.wait_active_connections(5).await;
    drop(clients);
    server.wait_active_connections(0).await;
}
