//! The `localrpc::client::Connection` against localrpcd's service over real Unix sockets:
//! call, typed error replies, call_more/collect, oneway ordering, upgrade round trip,
//! pipelining with mixed errors, timeouts that make the connection unusable, the server
//! dying mid-call, and a client leaving in the middle of a long `more` stream.

mod common;

use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, TestServer};
use localrpc::client::{Connection, Error};
use localrpc::service::ErrorReply;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

async fn connect(server: &TestServer) -> Connection {
    timeout(IO_TIMEOUT, Connection::connect(&server.address()))
        .await
        .expect("connect timed out")
        .expect("connect to the test server")
}

fn reply_error(result: Result<impl std::fmt::Debug, Error>) -> ErrorReply {
    match result {
        Err(Error::Reply(error)) => error,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_returns_parameters_and_typed_error_replies() {
    let server = TestServer::start().await;
    let mut conn = connect(&server).await;
    let reply = conn
        .call("io.localrpc.Echo.Echo", json!({"text": "hello"}))
        .await
        .expect("Echo");
    assert_eq!(Value::Object(reply), json!({"text": "hello"}));

    let error = reply_error(
        conn.call("io.localrpc.Echo.Fail", json!({"reason": "on purpose"}))
            .await,
    );
    assert_eq!(
        error,
        ErrorReply {
            name: "io.localrpc.Echo.Failed".into(),
            parameters: json!({"reason": "on purpose"})
                .as_object()
                .expect("object")
                .clone(),
        }
    );
    let error = reply_error(conn.call("io.localrpc.Echo.Nope", json!({})).await);
    assert_eq!(error.name, "org.varlink.service.MethodNotFound");
    assert_eq!(error.parameters["method"], "io.localrpc.Echo.Nope");
    let error = reply_error(conn.call("io.localrpc.Echo.Echo", json!({"text": 1})).await);
    assert_eq!(error, ErrorReply::invalid_parameter("text"));
    let error = reply_error(
        conn.call("io.localrpc.Echo.Count", json!({"count": 2}))
            .await,
    );
    assert_eq!(error, ErrorReply::expected_more());

    // Error replies leave the connection usable.
    let reply = conn
        .call("io.localrpc.Echo.Echo", json!({"text": "again"}))
        .await
        .expect("Echo after errors");
    assert_eq!(reply["text"], "again");
    let info = conn
        .call("org.varlink.service.GetInfo", json!({}))
        .await
        .expect("GetInfo");
    assert_eq!(
        info["interfaces"],
        json!(["org.varlink.service", "io.localrpc.Echo"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_more_streams_and_collects() {
    let server = TestServer::start().await;
    let mut conn = connect(&server).await;
    let replies = conn
        .call_more("io.localrpc.Echo.Count", json!({"count": 10, "text": "x"}))
        .await
        .expect("start Count")
        .collect()
        .await
        .expect("collect Count");
    assert_eq!(replies.len(), 10);
    for (index, reply) in replies.iter().enumerate() {
        assert_eq!(
            Value::Object(reply.clone()),
            json!({"index": index, "text": "x"})
        );
    }

    // One at a time with next(); None after the final reply.
    let mut stream = conn
        .call_more("io.localrpc.Echo.Count", json!({"count": 2}))
        .await
        .expect("start");
    assert_eq!(stream.next().await.expect("first").expect("ok")["index"], 0);
    assert_eq!(
        stream.next().await.expect("second").expect("ok")["index"],
        1
    );
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the final reply"
    );

    // An error ends the stream.
    let mut stream = conn
        .call_more("io.localrpc.Echo.Count", json!({"count": 0}))
        .await
        .expect("start");
    let error = reply_error(stream.next().await.expect("an error reply"));
    assert_eq!(error, ErrorReply::invalid_parameter("count"));
    assert!(stream.next().await.is_none(), "an error is final");
    let error = reply_error(
        conn.call_more("io.localrpc.Echo.Count", json!({"count": 0}))
            .await
            .expect("start")
            .collect()
            .await,
    );
    assert_eq!(error.name, "org.varlink.service.InvalidParameter");

    // A non-streaming method called with more: one final reply.
    let replies = conn
        .call_more("io.localrpc.Echo.Echo", json!({"text": "once"}))
        .await
        .expect("start")
        .collect()
        .await
        .expect("collect");
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["text"], "once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_then_call_keeps_order() {
    let server = TestServer::start().await;
    let mut conn = connect(&server).await;
    conn.oneway("io.localrpc.Echo.Echo", json!({"text": "ignored"}))
        .await
        .expect("oneway Echo");
    conn.oneway("io.localrpc.Echo.Fail", json!({"reason": "silent"}))
        .await
        .expect("oneway Fail");
    let start = Instant::now();
    conn.oneway("io.localrpc.Echo.Sleep", json!({"milliseconds": 300}))
        .await
        .expect("oneway Sleep");
    let reply = conn
        .call("io.localrpc.Echo.Echo", json!({"text": "after"}))
        .await
        .expect("call after oneway");
    assert_eq!(
        reply["text"], "after",
        "the reply read is the call's, not a oneway's"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "oneway Sleep ran before the call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_round_trip() {
    let server = TestServer::start().await;
    let conn = connect(&server).await;
    let (parameters, mut raw) = timeout(
        IO_TIMEOUT,
        conn.upgrade("io.localrpc.Echo.RawEcho", json!({})),
    )
    .await
    .expect("timed out")
    .expect("upgrade");
    assert!(
        parameters.is_empty(),
        "RawEcho confirms with no parameters: {parameters:?}"
    );
    let payload: Vec<u8> = b"\0hello\0raw world\0"
        .iter()
        .copied()
        .chain((0..100_000u32).map(|i| (i % 256) as u8))
        .collect();
    let writer = async {
        raw.write_all(&payload).await.expect("write raw");
    };
    // Write and read concurrently is not possible on one &mut; write first (the echo handler
    // echoes as it reads, and 100 kB fits in socket buffers plus its 64 KiB chunking).
    timeout(IO_TIMEOUT, writer)
        .await
        .expect("raw write timed out");
    let mut back = vec![0u8; payload.len()];
    timeout(IO_TIMEOUT, raw.read_exact(&mut back))
        .await
        .expect("raw read timed out")
        .expect("read raw");
    assert_eq!(back, payload);
    raw.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    timeout(IO_TIMEOUT, raw.read_to_end(&mut rest))
        .await
        .expect("EOF timed out")
        .expect("read to EOF");
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_of_a_thousand_with_mixed_errors() {
    let server = TestServer::start().await;
    let mut conn = connect(&server).await;
    let calls: Vec<(&str, Value)> = (0..1000)
        .map(|i| match i % 4 {
            0 => (
                "io.localrpc.Echo.Echo",
                json!({"text": format!("echo-{i}")}),
            ),
            1 => (
                "io.localrpc.Echo.Fail",
                json!({"reason": format!("fail-{i}")}),
            ),
            2 => ("io.localrpc.Echo.Nope", json!({})),
            _ => ("io.localrpc.Echo.Echo", json!({"wrong": i})),
        })
        .collect();
    let results = timeout(IO_TIMEOUT, conn.pipeline(&calls))
        .await
        .expect("pipeline timed out")
        .expect("pipeline");
    assert_eq!(results.len(), 1000);
    for (i, result) in results.into_iter().enumerate() {
        match i % 4 {
            0 => assert_eq!(result.expect("Echo")["text"], format!("echo-{i}")),
            1 => {
                let error = result.expect_err("Fail fails");
                assert_eq!(error.name, "io.localrpc.Echo.Failed");
                assert_eq!(error.parameters["reason"], format!("fail-{i}"));
            }
            2 => assert_eq!(
                result.expect_err("Nope"),
                ErrorReply::method_not_found("io.localrpc.Echo.Nope")
            ),
            _ => assert_eq!(
                result.expect_err("wrong parameter"),
                ErrorReply::invalid_parameter("wrong")
            ),
        }
    }
    let reply = conn
        .call("io.localrpc.Echo.Echo", json!({"text": "done"}))
        .await
        .expect("after pipeline");
    assert_eq!(reply["text"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_fails_the_call_and_makes_the_connection_unusable() {
    let server = TestServer::start().await;
    let mut conn = connect(&server).await;
    conn.set_timeout(Some(Duration::from_millis(200)));
    let start = Instant::now();
    let result = timeout(
        IO_TIMEOUT,
        conn.call("io.localrpc.Echo.Sleep", json!({"milliseconds": 2000})),
    )
    .await
    .expect("the client's own timeout did not fire");
    let waited = start.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout(limit)) if limit == Duration::from_millis(200)),
        "{result:?}"
    );
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_millis(1500),
        "timed out after {waited:?}"
    );
    // The late reply would be out of step with the next call: the connection refuses.
    let next = conn
        .call("io.localrpc.Echo.Echo", json!({"text": "x"}))
        .await;
    assert!(
        matches!(&next, Err(Error::ConnectionLost(why)) if why.contains("unusable")),
        "a timed-out connection must report itself unusable, got {next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_mid_stream_does_not_hurt_the_server() {
    let server = TestServer::start().await;
    {
        let mut conn = connect(&server).await;
        let mut stream = conn
            .call_more("io.localrpc.Echo.Count", json!({"count": 1_000_000}))
            .await
            .expect("start Count");
        for expected in 0..3 {
            let reply = timeout(IO_TIMEOUT, stream.next())
                .await
                .expect("timed out")
                .expect("a reply")
                .expect("ok");
            assert_eq!(reply["index"], expected);
        }
        // Dropping the stream and the connection closes the socket mid-stream.
    }
    server.wait_active_connections(0).await;
    // The server still serves new connections.
    let mut conn = connect(&server).await;
    let reply = conn
        .call("io.localrpc.Echo.Echo", json!({"text": "alive"}))
        .await
        .expect("Echo");
    assert_eq!(reply["text"], "alive");
    drop(conn);
    server.wait_active_connections(0).await;
}

#[test]
fn daemon_killed_mid_call_gives_connection_lost_promptly() {
    let dir = localrpc_testkit::temp_dir();
    let socket = dir.path().join("localrpcd.sock");
    let mut daemon = localrpc_testkit::spawn_localrpcd(&socket, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut conn = Connection::connect(&format!("unix:{}", socket.display()))
            .await
            .expect("connect to localrpcd");
        let reply = conn
            .call("io.localrpc.Echo.Echo", json!({"text": "up"}))
            .await
            .expect("Echo");
        assert_eq!(reply["text"], "up");
        // The call is on the wire (flushed) when the daemon dies.
        conn.send(
            "io.localrpc.Echo.Sleep",
            &json!({"milliseconds": 5000}),
            Default::default(),
        )
        .expect("queue Sleep");
        conn.flush().await.expect("send Sleep");
        daemon.0.kill().expect("SIGKILL localrpcd");
        let killed = Instant::now();
        let result = timeout(Duration::from_secs(5), conn.receive())
            .await
            .expect("no error within 5 s");
        let waited = killed.elapsed();
        assert!(
            matches!(result, Err(Error::ConnectionLost(_))),
            "{result:?}"
        );
        assert!(
            waited < Duration::from_secs(2),
            "ConnectionLost took {waited:?}"
        );
        // And the connection stays failed.
        assert!(matches!(
            conn.call("io.localrpc.Echo.Echo", json!({"text": "x"}))
                .await,
            Err(Error::ConnectionLost(_))
        ));
    });
}

/// Dropping a `more` stream before its final reply must not leak the rest of its replies
/// into the next call on the same connection: the next call either gets its own replies
/// or fails with `Error::OutOfStep` without sending the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_more_stream_early_does_not_leak_replies_into_the_next_call() {
    let server = TestServer::start().await;
    let mut conn = connect(&server).await;
    {
        let mut stream = conn
            .call_more("io.localrpc.Echo.Count", json!({"count": 5}))
            .await
            .expect("start Count");
        let first = timeout(IO_TIMEOUT, stream.next())
            .await
            .expect("timed out")
            .expect("a reply")
            .expect("ok");
        assert_eq!(first["index"], 0);
        // Dropped here with four replies still to come.
    }
    let next = timeout(
        IO_TIMEOUT,
        conn.call_more("io.localrpc.Echo.Echo", json!({"text": "mine"})),
    )
    .await
    .expect("timed out");
    let result = match next {
        Ok(stream) => timeout(IO_TIMEOUT, stream.collect())
            .await
            .expect("timed out"),
        Err(error) => Err(error),
    };
    match result {
        Ok(replies) => assert_eq!(
            replies.into_iter().map(Value::Object).collect::<Vec<_>>(),
            vec![json!({"text": "mine"})],
            "the next call received replies of the dropped stream"
        ),
        Err(Error::OutOfStep) => {}
        Err(other) => panic!("unexpected error {other:?}"),
    }
}
