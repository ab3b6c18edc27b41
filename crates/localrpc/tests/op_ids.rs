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

/// Log lines written by the test's subscriber.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_call_is_logged_once_at_debug_with_its_op_id_and_duration() {
    const IDL: &str = "interface org.example.log\n\
                       method Ok() -> ()\n\
                       method Fail() -> ()\n\
                       error Broken()\n";
    let iface = InterfaceBuilder::new(IDL)
        .expect("IDL parses")
        .method("Ok", |_call| Box::pin(async move { Ok(Reply::empty()) }))
        .method("Fail", |_call| {
            Box::pin(async move {
                Err(localrpc::service::ErrorReply::new(
                    "org.example.log.Broken",
                    json!({}),
                ))
            })
        });
    let service = Service::builder().interface(iface).build().expect("builds");
    let captured = Captured::default();
    let writer = captured.clone();
    use tracing_subscriber::layer::SubscriberExt as _;
    let filter: tracing_subscriber::filter::Targets =
        "info,localrpc::call=debug".parse().expect("filter");
    let subscriber = tracing_subscriber::registry().with(filter).with(
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone()),
    );
    // This test's runtime has one thread, so the server logs through this subscriber.
    let _default = tracing::subscriber::set_default(subscriber);
    let server = InProcessServer::start(service).await;
    let mut stream = UnixStream::connect(&server.path).await.expect("connect");
    stream
        .write_all(
            b"{\"method\":\"org.example.log.Ok\",\"io.localrpc\":{\"op_id\":\"op-00000000000000aa\"}}\0\
              {\"method\":\"org.example.log.Fail\"}\0\
              {\"method\":\"org.example.log.Nope\"}\0",
        )
        .await
        .expect("write");
    let replies = read_replies(&mut stream, 3).await;
    let sent_op_id: OpId = "op-00000000000000aa".parse().expect("an op id");
    assert_eq!(replies[1]["error"], "org.example.log.Broken");
    assert_eq!(replies[2]["error"], "org.varlink.service.MethodNotFound");
    let text = String::from_utf8_lossy(&captured.0.lock().expect("log")).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("localrpc::call"))
        .collect();
    assert_eq!(lines.len(), 3, "one line per call: {text}");
    assert!(
        lines[0].contains("call completed")
            && lines[0].contains("method=org.example.log.Ok")
            && lines[0].contains(&format!("op_id={sent_op_id}"))
            && lines[0].contains("duration_us="),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("call failed")
            && lines[1].contains("method=org.example.log.Fail")
            && lines[1].contains("op_id=op-")
            && lines[1].contains("error=org.example.log.Broken"),
        "{}",
        lines[1]
    );
    // Refused before any handler ran, and logged all the same.
    assert!(
        lines[2].contains("call failed")
            && lines[2].contains("method=org.example.log.Nope")
            && lines[2].contains("op_id=op-")
            && lines[2].contains("duration_us=")
            && lines[2].contains("error=org.varlink.service.MethodNotFound"),
        "{}",
        lines[2]
    );
}
