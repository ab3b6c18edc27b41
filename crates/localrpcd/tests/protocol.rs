//! The varlink protocol rules of `shared/docs/VARLINK.md`, checked byte for byte over a real
//! Unix socket against `localrpcd::service()` served in-process, with a raw client:
//! malformed envelopes close (only) their connection after earlier replies were delivered,
//! standard errors carry their exact parameters and keep the connection open, canonical reply
//! bytes, equivalent parameter spellings, oneway, more, upgrade, pipelining and introspection.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{RawClient, TestServer, echo_call, echo_reply};
use localrpc::idl::Member;
use serde_json::Value;

fn parse(reply: &str) -> Value {
    serde_json::from_str(reply).unwrap_or_else(|e| panic!("reply {reply:?} is not JSON: {e}"))
}

/// Every envelope UAPI.20 says the server must close the connection on.
fn malformed_envelopes() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty message", b"".to_vec()),
        ("invalid JSON", br#"{"method":"io.localrpc.Echo.Echo""#.to_vec()),
        ("not JSON at all", b"hello".to_vec()),
        ("invalid UTF-8", b"{\"method\":\"io.localrpc.Echo.Echo\",\"parameters\":{\"text\":\"\xff\"}}".to_vec()),
        ("top-level array", br#"[{"method":"io.localrpc.Echo.Echo"}]"#.to_vec()),
        ("top-level string", br#""io.localrpc.Echo.Echo""#.to_vec()),
        ("top-level number", b"42".to_vec()),
        ("missing method", br#"{"parameters":{"text":"x"}}"#.to_vec()),
        ("method not a string", br#"{"method":7}"#.to_vec()),
        ("unqualified method", br#"{"method":"Echo","parameters":{"text":"x"}}"#.to_vec()),
        (
            "two true flags",
            br#"{"method":"io.localrpc.Echo.Count","parameters":{"count":1},"more":true,"oneway":true}"#
                .to_vec(),
        ),
        (
            "upgrade and more",
            br#"{"method":"io.localrpc.Echo.RawEcho","upgrade":true,"more":true}"#.to_vec(),
        ),
        (
            "non-boolean flag (string)",
            br#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":"x"},"more":"yes"}"#.to_vec(),
        ),
        (
            "non-boolean flag (number)",
            br#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":"x"},"oneway":1}"#.to_vec(),
        ),
        ("parameters is an array", br#"{"method":"io.localrpc.Echo.Echo","parameters":[]}"#.to_vec()),
        ("parameters is a string", br#"{"method":"io.localrpc.Echo.Echo","parameters":"x"}"#.to_vec()),
        (
            "unknown non-vendor key",
            br#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":"x"},"bogus":1}"#.to_vec(),
        ),
        (
            "duplicate method key",
            br#"{"method":"io.localrpc.Echo.Echo","method":"io.localrpc.Echo.Fail"}"#.to_vec(),
        ),
        ("trailing garbage", br#"{"method":"org.varlink.service.GetInfo"} {}"#.to_vec()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_envelopes_close_only_their_connection_after_earlier_replies() {
    let server = TestServer::start().await;
    let mut bystander = server.raw().await;
    assert_eq!(
        bystander.call(&echo_call("hello")).await,
        echo_reply("hello")
    );
    let cases = malformed_envelopes();
    for (what, bad) in &cases {
        let mut victim = server.raw().await;
        // One write: a good call, the bad message, then a good call that must not be answered.
        let mut bytes = echo_call("before").into_bytes();
        bytes.push(0);
        bytes.extend_from_slice(bad);
        bytes.push(0);
        bytes.extend_from_slice(echo_call("after").as_bytes());
        bytes.push(0);
        victim.send(&bytes).await;
        assert_eq!(
            victim.read_message().await,
            echo_reply("before"),
            "{what}: the reply to the call before the bad one was not delivered"
        );
        victim.expect_closed().await;
        // Other connections are unaffected.
        assert_eq!(
            bystander.call(&echo_call("still-here")).await,
            echo_reply("still-here"),
            "{what}: another connection was affected"
        );
    }
    assert_eq!(
        server
            .server
            .stats()
            .protocol_errors
            .load(Ordering::Relaxed),
        cases.len() as u64,
        "every malformed envelope counts as a protocol error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_keys_are_ignored_and_the_call_answered() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    let reply = client
        .call(r#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":"v"},"org.example":{}}"#)
        .await;
    assert_eq!(reply, echo_reply("v"));
    let reply = client
        .call(r#"{"org.example.tracing":{"id":[1,2,{"x":null}]},"method":"io.localrpc.Echo.Echo","parameters":{"text":"w"}}"#)
        .await;
    assert_eq!(reply, echo_reply("w"));
    assert_eq!(client.call(&echo_call("next")).await, echo_reply("next"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_errors_have_exact_parameters_and_keep_the_connection_open() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown interface",
            r#"{"method":"io.localrpc.Nope.Echo"}"#,
            r#"{"parameters":{"interface":"io.localrpc.Nope"},"error":"org.varlink.service.InterfaceNotFound"}"#,
        ),
        (
            "unknown method (fully qualified in the error)",
            r#"{"method":"io.localrpc.Echo.Nope"}"#,
            r#"{"parameters":{"method":"io.localrpc.Echo.Nope"},"error":"org.varlink.service.MethodNotFound"}"#,
        ),
        (
            "unknown method of org.varlink.service",
            r#"{"method":"org.varlink.service.Nope"}"#,
            r#"{"parameters":{"method":"org.varlink.service.Nope"},"error":"org.varlink.service.MethodNotFound"}"#,
        ),
        (
            "declared but not implemented",
            r#"{"method":"io.localrpc.Echo.Unimplemented"}"#,
            r#"{"parameters":{"method":"io.localrpc.Echo.Unimplemented"},"error":"org.varlink.service.MethodNotImplemented"}"#,
        ),
        (
            "undeclared parameter",
            r#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":"x","extra":1}}"#,
            r#"{"parameters":{"parameter":"extra"},"error":"org.varlink.service.InvalidParameter"}"#,
        ),
        (
            "missing non-nullable parameter",
            r#"{"method":"io.localrpc.Echo.Echo","parameters":{}}"#,
            r#"{"parameters":{"parameter":"text"},"error":"org.varlink.service.InvalidParameter"}"#,
        ),
        (
            "absent parameters, required field",
            r#"{"method":"io.localrpc.Echo.Echo"}"#,
            r#"{"parameters":{"parameter":"text"},"error":"org.varlink.service.InvalidParameter"}"#,
        ),
        (
            "null for a non-nullable parameter",
            r#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":null}}"#,
            r#"{"parameters":{"parameter":"text"},"error":"org.varlink.service.InvalidParameter"}"#,
        ),
        (
            "wrong type",
            r#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":5}}"#,
            r#"{"parameters":{"parameter":"text"},"error":"org.varlink.service.InvalidParameter"}"#,
        ),
        (
            "wrong type of an int",
            r#"{"method":"io.localrpc.Echo.Sleep","parameters":{"milliseconds":"soon"}}"#,
            r#"{"parameters":{"parameter":"milliseconds"},"error":"org.varlink.service.InvalidParameter"}"#,
        ),
        (
            "streaming method without more",
            r#"{"method":"io.localrpc.Echo.Count","parameters":{"count":3}}"#,
            r#"{"error":"org.varlink.service.ExpectedMore"}"#,
        ),
        (
            "upgrade method without upgrade",
            r#"{"method":"io.localrpc.Echo.RawEcho"}"#,
            r#"{"error":"org.varlink.service.ExpectedUpgrade"}"#,
        ),
        (
            "GetInterfaceDescription of an unknown interface",
            r#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.localrpc.Nope"}}"#,
            r#"{"parameters":{"interface":"io.localrpc.Nope"},"error":"org.varlink.service.InterfaceNotFound"}"#,
        ),
        (
            "an interface's own error keeps its parameters",
            r#"{"method":"io.localrpc.Echo.Fail","parameters":{"reason":"because"}}"#,
            r#"{"parameters":{"reason":"because"},"error":"io.localrpc.Echo.Failed"}"#,
        ),
    ];
    for (what, call, expected) in cases {
        assert_eq!(&client.call(call).await, expected, "{what}");
        // The connection stays open after every error.
        assert_eq!(
            client.call(&echo_call("ok")).await,
            echo_reply("ok"),
            "after {what}"
        );
    }
    assert_eq!(
        server
            .server
            .stats()
            .protocol_errors
            .load(Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_canonical_bytes() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    // Reply = compact JSON object + NUL; the raw client splits on the NUL, so check the
    // exact bytes including it by reading raw.
    client.send_message(&echo_call("hi")).await;
    assert_eq!(
        client
            .read_raw(br#"{"parameters":{"text":"hi"}}"#.len() + 1)
            .await,
        b"{\"parameters\":{\"text\":\"hi\"}}\0"
    );
    // Empty parameters are omitted entirely.
    assert_eq!(
        client
            .call(r#"{"method":"io.localrpc.Echo.Sleep","parameters":{"milliseconds":0}}"#)
            .await,
        "{}"
    );
    // A streamed call: "continues" only when true, never "continues":false.
    client
        .send_message(r#"{"method":"io.localrpc.Echo.Count","parameters":{"count":3,"text":"t"},"more":true}"#)
        .await;
    assert_eq!(
        client.read_message().await,
        r#"{"parameters":{"index":0,"text":"t"},"continues":true}"#
    );
    assert_eq!(
        client.read_message().await,
        r#"{"parameters":{"index":1,"text":"t"},"continues":true}"#
    );
    assert_eq!(
        client.read_message().await,
        r#"{"parameters":{"index":2,"text":"t"}}"#
    );
    // Strings are escaped as JSON, unicode passes through.
    assert_eq!(
        client
            .call(
                r#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":"a\"b\\c\u0000d é 🎉"}}"#
            )
            .await,
        "{\"parameters\":{\"text\":\"a\\\"b\\\\c\\u0000d é 🎉\"}}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_null_and_empty_parameters_are_equivalent() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    let absent = client
        .call(r#"{"method":"org.varlink.service.GetInfo"}"#)
        .await;
    let null = client
        .call(r#"{"method":"org.varlink.service.GetInfo","parameters":null}"#)
        .await;
    let empty = client
        .call(r#"{"method":"org.varlink.service.GetInfo","parameters":{}}"#)
        .await;
    // What the Python reference client sends: spaces, false flags, whitespace around.
    let python = client
        .call(" \n{\"method\": \"org.varlink.service.GetInfo\", \"more\": false, \"oneway\": false, \"upgrade\": false, \"parameters\": {}}\n ")
        .await;
    assert!(absent.contains(r#""interfaces":["#), "{absent}");
    assert_eq!(null, absent);
    assert_eq!(empty, absent);
    assert_eq!(python, absent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_calls_get_no_reply_and_keep_the_order() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    // Oneway calls, including failing ones, produce nothing: the first bytes read answer
    // the normal call that follows them in the same write.
    let mut bytes = String::new();
    for call in [
        r#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":"one"},"oneway":true}"#,
        r#"{"method":"io.localrpc.Echo.Fail","parameters":{"reason":"x"},"oneway":true}"#,
        r#"{"method":"io.localrpc.Echo.Nope","oneway":true}"#,
        r#"{"method":"io.localrpc.Nope.Nope","oneway":true}"#,
        r#"{"method":"io.localrpc.Echo.Echo","parameters":{"bad":1},"oneway":true}"#,
        r#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":"two"}}"#,
    ] {
        bytes.push_str(call);
        bytes.push('\0');
    }
    client.send(bytes).await;
    assert_eq!(client.read_message().await, echo_reply("two"));
    // Ordering holds: a oneway Sleep runs before the next call is answered.
    let start = Instant::now();
    client
        .send_message(r#"{"method":"io.localrpc.Echo.Sleep","parameters":{"milliseconds":300},"oneway":true}"#)
        .await;
    assert_eq!(client.call(&echo_call("three")).await, echo_reply("three"));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "the call after a oneway Sleep was answered after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_streams_replies_then_a_final_one_and_errors_end_the_stream() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    client
        .send_message(r#"{"method":"io.localrpc.Echo.Count","parameters":{"count":5},"more":true}"#)
        .await;
    for index in 0..4 {
        assert_eq!(
            client.read_message().await,
            format!(r#"{{"parameters":{{"index":{index}}},"continues":true}}"#)
        );
    }
    assert_eq!(client.read_message().await, r#"{"parameters":{"index":4}}"#);
    // An error is a final reply: it ends the call, and the connection stays usable.
    assert_eq!(
        client
            .call(r#"{"method":"io.localrpc.Echo.Count","parameters":{"count":0},"more":true}"#)
            .await,
        r#"{"parameters":{"parameter":"count"},"error":"org.varlink.service.InvalidParameter"}"#
    );
    // A method that does not stream answers a `more` call with one final reply.
    assert_eq!(
        client
            .call(r#"{"method":"io.localrpc.Echo.Echo","parameters":{"text":"m"},"more":true}"#)
            .await,
        echo_reply("m")
    );
    // Pipelined behind a stream: the next call is answered only after the final reply.
    let mut bytes =
        r#"{"method":"io.localrpc.Echo.Count","parameters":{"count":3},"more":true}"#.to_owned();
    bytes.push('\0');
    bytes.push_str(&echo_call("behind"));
    bytes.push('\0');
    client.send(bytes).await;
    assert_eq!(
        client.read_message().await,
        r#"{"parameters":{"index":0},"continues":true}"#
    );
    assert_eq!(
        client.read_message().await,
        r#"{"parameters":{"index":1},"continues":true}"#
    );
    assert_eq!(client.read_message().await, r#"{"parameters":{"index":2}}"#);
    assert_eq!(client.read_message().await, echo_reply("behind"));
}

const UPGRADE_CALL: &str = r#"{"method":"io.localrpc.Echo.RawEcho","upgrade":true}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_confirms_then_carries_raw_bytes_both_ways() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    assert_eq!(client.call(UPGRADE_CALL).await, "{}");
    // Raw bytes, NULs and non-JSON included, come back verbatim.
    let raw: Vec<u8> = b"\0raw\0{\"method\":\"x.y.Z\"}\0\xff\xfe"
        .iter()
        .copied()
        .chain(0..=255u8)
        .collect();
    client.send(&raw).await;
    assert_eq!(client.read_raw(raw.len()).await, raw);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    client.send(&big).await;
    assert_eq!(client.read_raw(big.len()).await, big);
    // Closing our side ends the raw stream; the server closes its side too.
    client.shutdown_write().await;
    client.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_sent_with_the_upgrade_call_are_not_lost() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    let tail = b"sent in the same write\0{\"method\":\"io.localrpc.Echo.Echo\"}\0end";
    let mut bytes = UPGRADE_CALL.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(tail);
    client.send(&bytes).await;
    assert_eq!(client.read_message().await, "{}");
    assert_eq!(client.read_raw(tail.len()).await, tail.to_vec());
    client.shutdown_write().await;
    client.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pipelined_calls_are_answered_in_order() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    let mut bytes = Vec::new();
    for i in 0..1000 {
        bytes.extend_from_slice(echo_call(&format!("call-{i}")).as_bytes());
        bytes.push(0);
    }
    client.send(&bytes).await;
    for i in 0..1000 {
        assert_eq!(
            client.read_message().await,
            echo_reply(&format!("call-{i}")),
            "reply {i}"
        );
    }
    // Replies are coalesced into few writes, not one write (and one read) per reply.
    assert!(
        client.reads < 100,
        "1000 replies took {} reads",
        client.reads
    );
    assert_eq!(client.call(&echo_call("after")).await, echo_reply("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_split_into_single_bytes_is_reassembled() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    let mut bytes = echo_call("bytewise").into_bytes();
    bytes.push(0);
    bytes.extend_from_slice(echo_call("second").as_bytes());
    bytes.push(0);
    for byte in &bytes {
        client.send([*byte]).await;
    }
    assert_eq!(client.read_message().await, echo_reply("bytewise"));
    assert_eq!(client.read_message().await, echo_reply("second"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_info_and_interface_descriptions() {
    let server = TestServer::start().await;
    let mut client = server.raw().await;
    let info = parse(
        &client
            .call(r#"{"method":"org.varlink.service.GetInfo"}"#)
            .await,
    );
    let parameters = &info["parameters"];
    assert_eq!(info.get("error"), None);
    assert_eq!(
        parameters["interfaces"],
        serde_json::json!(["org.varlink.service", "io.localrpc.Echo"])
    );
    assert_eq!(parameters["vendor"], "localrpc");
    assert_eq!(parameters["product"], "localrpcd");
    assert_eq!(parameters["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(parameters["url"], "https://github.com/localrpc/localrpc");

    let echo = parse(
        &client
            .call(r#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.localrpc.Echo"}}"#)
            .await,
    );
    assert_eq!(
        echo["parameters"]["description"].as_str(),
        Some(localrpcd::ECHO_IDL),
        "served verbatim"
    );

    let service = parse(
        &client
            .call(
                r#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"org.varlink.service"}}"#,
            )
            .await,
    );
    let text = service["parameters"]["description"]
        .as_str()
        .expect("description is a string");
    let idl = localrpc::idl::parse(text).expect("org.varlink.service's description parses");
    assert_eq!(idl.name, "org.varlink.service");
    let mut names: Vec<&str> = idl
        .members
        .iter()
        .map(|member| match member {
            Member::Method(m) => m.name.as_str(),
            Member::Error(e) => e.name.as_str(),
            Member::Type(t) => t.name.as_str(),
        })
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "ExpectedMore",
            "ExpectedUpgrade",
            "GetInfo",
            "GetInterfaceDescription",
            "InterfaceNotFound",
            "InvalidParameter",
            "MethodNotFound",
            "MethodNotImplemented",
            "PermissionDenied",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_closing_mid_message_does_not_disturb_the_server() {
    let server = TestServer::start().await;
    {
        let mut half = server.raw().await;
        half.send(br#"{"method":"io.localrpc.Echo.Echo","para"#)
            .await;
        half.shutdown_write().await;
        half.expect_closed().await;
    }
    let mut client = RawClient::connect(&server.path).await;
    assert_eq!(client.call(&echo_call("fine")).await, echo_reply("fine"));
}
