//! Op ids across daemons: a handler that passes its call's op id to its client connection
//! (`Connection::set_op_id`) makes the next localrpc server use the same id; other calls get
//! fresh ids.

use std::path::PathBuf;

use localrpc::client::Connection;
use localrpc::service::{InterfaceBuilder, OpId, Reply, Service};
use localrpc_testkit::InProcessServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The downstream daemon: tells its caller the op id its call got.
fn downstream() -> Service {
    const IDL: &str = "interface org.example.down\nmethod Who() -> (op_id: string)\n";
    let iface = InterfaceBuilder::new(IDL)
        .expect("IDL parses")
        .method("Who", |call| {
            Box::pin(async move { Reply::with(json!({ "op_id": call.context.op_id.to_string() })) })
        });
    Service::builder().interface(iface).build().expect("builds")
}

/// The upstream daemon: `Relay` calls the downstream daemon with its op id, `Plain` without.
fn upstream(down: PathBuf) -> Service {
    const IDL: &str = "interface org.example.up\n\
                       method Relay() -> (own: string, downstream: string)\n\
                       method Plain() -> (own: string, downstream: string)\n";
    let address = format!("unix:{}", down.display());
    let plain_address = address.clone();
    let iface = InterfaceBuilder::new(IDL)
        .expect("IDL parses")
        .method("Relay", move |call| {
            let address = address.clone();
            Box::pin(async move {
                let downstream = who(&address, Some(call.context.op_id)).await;
                Reply::with(
                    json!({ "own": call.context.op_id.to_string(), "downstream": downstream }),
                )
            })
        })
        .method("Plain", move |call| {
            let address = plain_address.clone();
            Box::pin(async move {
                let downstream = who(&address, None).await;
                Reply::with(
                    json!({ "own": call.context.op_id.to_string(), "downstream": downstream }),
                )
            })
        });
    Service::builder().interface(iface).build().expect("builds")
}

async fn who(address: &str, op_id: Option<OpId>) -> String {
    let mut connection = Connection::connect(address)
        .await
        .expect("connect downstream");
    connection.set_op_id(op_id);
    let reply = connection
        .call("org.example.down.Who", json!({}))
        .await
        .expect("Who");
    reply["op_id"].as_str().expect("op_id").to_owned()
}

async fn call(path: &std::path::Path, method: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut connection = Connection::connect(&format!("unix:{}", path.display()))
        .await
        .expect("connect");
    connection.call(method, json!({})).await.expect("call")
}

#[tokio::test]
async fn a_handler_passes_its_op_id_to_the_next_daemon() {
    let down = InProcessServer::start(downstream()).await;
    let up = InProcessServer::start(upstream(down.path.clone())).await;
    let relayed = call(&up.path, "org.example.up.Relay").await;
    let own: OpId = relayed["own"]
        .as_str()
        .expect("own")
        .parse()
        .expect("an op id");
    assert_eq!(relayed["downstream"], own.to_string(), "adopted downstream");

    // Without set_op_id, and for every new call, the ids differ.
    let plain = call(&up.path, "org.example.up.Plain").await;
    assert_ne!(plain["downstream"], plain["own"]);
    assert_ne!(plain["own"], relayed["own"]);
    let again = call(&up.path, "org.example.up.Relay").await;
    assert_ne!(again["own"], relayed["own"]);
    assert_eq!(again["downstream"], again["own"]);
}

#[tokio::test]
async fn a_peer_that_names_an_op_id_gets_it_and_a_malformed_one_is_ignored() {
    let down = InProcessServer::start(downstream()).await;
    let mut stream = UnixStream::connect(&down.path).await.expect("connect");
    stream
        .write_all(
            b"{\"method\":\"org.example.down.Who\",\"io.localrpc\":{\"op_id\":\"op-0000c0ffee00\"}}\0\
              {\"method\":\"org.example.down.Who\",\"io.localrpc\":{\"op_id\":\"op-nothex\"}}\0",
        )
        .await
        .expect("write");
    let replies = read_replies(&mut stream, 2).await;
    assert_eq!(replies[0]["parameters"]["op_id"], "op-0000c0ffee00");
    let minted = replies[1]["parameters"]["op_id"].as_str().expect("op_id");
    assert!(
        minted.parse::<OpId>().is_ok() && minted != "op-0000c0ffee00",
        "{minted}"
    );
}

async fn read_replies(stream: &mut UnixStream, count: usize) -> Vec<serde_json::Value> {
    let mut buffer = Vec::new();
    let mut replies = Vec::new();
    while replies.len() < count {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("a reply in time")
            .expect("read");
        assert!(n > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
        while let Some(end) = buffer.iter().position(|b| *b == 0) {
            replies.push(serde_json::from_slice(&buffer[..end]).expect("JSON reply"));
            buffer.drain(..=end);
        }
    }
    replies
}
