//! Drives a whole `Service` with byte strings, no sockets: routing, the standard errors,
//! parameter checks against the IDL, flags, and canonical reply bytes.

use std::io;

use localrpc::service::{
    BoxFuture, Dispatched, ErrorReply, InterfaceBuilder, Output, Reply, Service,
};
use localrpc_testkit::handlers;
use serde_json::json;

const IDL: &str = "\
# A test interface.
interface org.example.test

type Point (x: int, y: int)

method Add(a: int, b: int) -> (sum: int)
method Move(p: Point, by: ?Point, tags: []string, labels: [string]string) -> (p: Point)
method Stream(n: int) -> (i: int)
method Raw() -> ()
method Declared() -> ()

error Overflow (limit: int)
";

/// Collects replies in memory; `flush` records how many bytes each flush carried.
#[derive(Default)]
struct Recorder {
    buffer: Vec<u8>,
    flushed: Vec<u8>,
    flushes: usize,
}

impl Output for Recorder {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }
    fn flush(&mut self) -> BoxFuture<'_, io::Result<()>> {
        self.flushes += 1;
        self.flushed.append(&mut self.buffer);
        Box::pin(async { Ok(()) })
    }
}

impl Recorder {
    fn all(&mut self) -> String {
        self.flushed.append(&mut self.buffer);
        String::from_utf8(std::mem::take(&mut self.flushed)).expect("replies are UTF-8")
    }
}

fn service() -> Service {
    let iface = InterfaceBuilder::new(IDL)
        .expect("test IDL parses")
        .method("Add", |call| {
            Box::pin(async move {
                let a: i64 = call.parameter("a")?;
                let b: i64 = call.parameter("b")?;
                match a.checked_add(b) {
                    Some(sum) => Reply::with(json!({ "sum": sum })),
                    None => Err(ErrorReply::new(
                        "org.example.test.Overflow",
                        json!({ "limit": i64::MAX }),
                    )),
                }
            })
        })
        .method("Move", |call| {
            Box::pin(async move {
                let p = call.parameters().get("p").cloned().unwrap_or_default();
                Reply::with(json!({ "p": p }))
            })
        })
        .streaming_method("Stream", handlers::count)
        .upgrade_method("Raw", |_call| {
            Box::pin(async move {
                Ok(Reply::Upgrade {
                    parameters: Default::default(),
                    handler: Box::new(|_raw| Box::pin(async {})),
                })
            })
        });
    Service::builder()
        .vendor("v")
        .product("p")
        .version("1")
        .url("u")
        .interface(iface)
        .build()
        .expect("service builds")
}

/// Handles one message and returns the reply bytes (NULs shown as `|`).
async fn exchange(service: &Service, message: &str) -> String {
    let mut out = Recorder::default();
    match service.handle(message.as_bytes(), None, &mut out).await {
        Ok(Dispatched::Continue) | Ok(Dispatched::Upgrade(_)) => out.all().replace('\0', "|"),
        Err(violation) => format!("CLOSE: {}", violation.reason),
    }
}

#[tokio::test]
async fn routes_and_answers_with_canonical_bytes() {
    let s = service();
    assert_eq!(
        exchange(
            &s,
            r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":2}}"#
        )
        .await,
        r#"{"parameters":{"sum":3}}|"#
    );
    assert_eq!(
        exchange(
            &s,
            r#"{"method":"org.example.test.Add","parameters":{"a":9223372036854775807,"b":1}}"#
        )
        .await,
        r#"{"parameters":{"limit":9223372036854775807},"error":"org.example.test.Overflow"}|"#
    );
}

#[tokio::test]
async fn standard_errors_carry_their_parameters() {
    let s = service();
    let cases = [
        (
            r#"{"method":"org.nope.X"}"#,
            r#"{"parameters":{"interface":"org.nope"},"error":"org.varlink.service.InterfaceNotFound"}|"#,
        ),
        (
            r#"{"method":"org.example.test.Nope"}"#,
            r#"{"parameters":{"method":"org.example.test.Nope"},"error":"org.varlink.service.MethodNotFound"}|"#,
        ),
        (
            r#"{"method":"org.example.test.Declared"}"#,
            r#"{"parameters":{"method":"org.example.test.Declared"},"error":"org.varlink.service.MethodNotImplemented"}|"#,
        ),
        (
            r#"{"method":"org.example.test.Add","parameters":{"a":1}}"#,
            r#"{"parameters":{"parameter":"b"},"error":"org.varlink.service.InvalidParameter"}|"#,
        ),
        (
            r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":"2"}}"#,
            r#"{"parameters":{"parameter":"b"},"error":"org.varlink.service.InvalidParameter"}|"#,
        ),
        (
            r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":2,"c":3}}"#,
            r#"{"parameters":{"parameter":"c"},"error":"org.varlink.service.InvalidParameter"}|"#,
        ),
        (
            r#"{"method":"org.example.test.Add","parameters":{"a":1.5,"b":2}}"#,
            r#"{"parameters":{"parameter":"a"},"error":"org.varlink.service.InvalidParameter"}|"#,
        ),
        (
            r#"{"method":"org.example.test.Stream","parameters":{"n":2}}"#,
            r#"{"error":"org.varlink.service.ExpectedMore"}|"#,
        ),
        (
            r#"{"method":"org.example.test.Raw"}"#,
            r#"{"error":"org.varlink.service.ExpectedUpgrade"}|"#,
        ),
    ];
    for (call, expected) in cases {
        assert_eq!(exchange(&s, call).await, expected, "for {call}");
    }
}

#[tokio::test]
async fn nested_parameters_are_checked_and_named_by_path() {
    let s = service();
    let ok = r#"{"method":"org.example.test.Move","parameters":{"p":{"x":1,"y":2},"tags":[],"labels":{}}}"#;
    assert_eq!(
        exchange(&s, ok).await,
        r#"{"parameters":{"p":{"x":1,"y":2}}}|"#
    );
    let null_optional = r#"{"method":"org.example.test.Move","parameters":{"p":{"x":1,"y":2},"by":null,"tags":["a"],"labels":{"k":"v"}}}"#;
    assert!(
        exchange(&s, null_optional)
            .await
            .starts_with(r#"{"parameters":{"p""#)
    );
    let bad = r#"{"method":"org.example.test.Move","parameters":{"p":{"x":1,"y":"2"},"tags":[],"labels":{}}}"#;
    let reply = exchange(&s, bad).await;
    assert!(
        reply.contains(r#""error":"org.varlink.service.InvalidParameter""#),
        "{reply}"
    );
    assert!(reply.contains(r#"{"parameter":"p.y"}"#), "{reply}");
}

#[tokio::test]
async fn absent_null_and_empty_parameters_are_the_same() {
    let s = service();
    let a = exchange(&s, r#"{"method":"org.varlink.service.GetInfo"}"#).await;
    let b = exchange(
        &s,
        r#"{"method":"org.varlink.service.GetInfo","parameters":null}"#,
    )
    .await;
    let c = exchange(
        &s,
        r#"{"method":"org.varlink.service.GetInfo","parameters":{}}"#,
    )
    .await;
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(
        a,
        r#"{"parameters":{"vendor":"v","product":"p","version":"1","url":"u","interfaces":["org.varlink.service","org.example.test"]}}|"#
    );
}

#[tokio::test]
async fn interface_description_is_verbatim() {
    let s = service();
    let reply = exchange(
        &s,
        r#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"org.example.test"}}"#,
    )
    .await;
    let reply: serde_json::Value =
        serde_json::from_str(reply.trim_end_matches('|')).expect("JSON reply");
    assert_eq!(reply["parameters"]["description"], IDL);
}

#[tokio::test]
async fn oneway_never_replies_even_on_error() {
    let s = service();
    assert_eq!(
        exchange(
            &s,
            r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":2},"oneway":true}"#
        )
        .await,
        ""
    );
    assert_eq!(
        exchange(&s, r#"{"method":"org.nope.X","oneway":true}"#).await,
        ""
    );
}

#[tokio::test]
async fn more_streams_replies_flushed_one_by_one() {
    let s = service();
    let mut out = Recorder::default();
    let message = br#"{"method":"org.example.test.Stream","parameters":{"n":3},"more":true}"#;
    assert!(matches!(
        s.handle(message, None, &mut out).await,
        Ok(Dispatched::Continue)
    ));
    assert_eq!(
        out.flushes, 2,
        "each continues reply is flushed as it is sent"
    );
    assert_eq!(
        out.all(),
        "{\"parameters\":{\"i\":0},\"continues\":true}\0{\"parameters\":{\"i\":1},\"continues\":true}\0{\"parameters\":{\"i\":2}}\0"
    );
}

#[tokio::test]
async fn upgrade_confirms_then_hands_over() {
    let s = service();
    let mut out = Recorder::default();
    let result = s
        .handle(
            br#"{"method":"org.example.test.Raw","upgrade":true}"#,
            None,
            &mut out,
        )
        .await;
    assert!(matches!(result, Ok(Dispatched::Upgrade(_))));
    assert_eq!(out.all(), "{}\0");
}

#[tokio::test]
async fn protocol_violations_close_the_connection() {
    let s = service();
    for bad in [
        "{",
        "[]",
        r#"{"parameters":{}}"#,
        r#"{"method":"org.example.test.Add","more":true,"oneway":true}"#,
        r#"{"method":"org.example.test.Add","parameters":[]}"#,
        r#"{"method":"org.example.test.Add","unknown":1}"#,
        // Parameters that are not JSON close the connection whichever reply would come
        // first: the fast envelope path leaves their syntax to these later checks.
        r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":01}}"#,
        r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":1,}}"#,
        r#"{"method":"org.example.test.Nope","parameters":{"a":]}}"#,
        r#"{"method":"org.example.nope.Add","parameters":{"a":tru}}"#,
        r#"{"method":"org.example.test.Declared","parameters":{"a":"\x"}}"#,
        // A number no f64 holds is valid JSON syntax, but unreadable: the same for every
        // method (known, unknown, unimplemented), on the fast and the slow envelope path.
        r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":1e400}}"#,
        r#"{"method":"org.example.test.Nope","parameters":{"a":1e400}}"#,
        r#"{"method":"org.example.test.Declared","parameters":{"a":[-1e999]}}"#,
        r#"{"org.example.trace":1,"method":"org.example.nope.X","parameters":{"a":1e400}}"#,
        // serde_json's raw-value token inside a value stands for the JSON text it holds, which
        // must be valid: the same for known and unknown methods.
        r#"{"method":"org.example.test.Nope","parameters":{"a":{"$serde_json::private::RawValue":"x"}}}"#,
        r#"{"method":"org.example.test.Move","parameters":{"p":{"$serde_json::private::RawValue":"{"}}}"#,
    ] {
        assert!(exchange(&s, bad).await.starts_with("CLOSE: "), "{bad}");
    }
    // A vendor key is ignored.
    assert_eq!(
        exchange(&s, r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":1},"org.example.trace":{"id":1}}"#).await,
        r#"{"parameters":{"sum":2}}|"#
    );
}

/// The parameters are checked against the IDL while the envelope is read (which then skips
/// them): what comes after them is still read as strictly as before.
#[tokio::test]
async fn the_envelope_stays_strict_around_parameters_checked_in_passing() {
    let s = service();
    let add = r#""method":"org.example.test.Add","parameters":{"a":1,"b":2}"#;
    for bad in [
        format!("{{{add},\"method\":\"org.example.test.Add\"}}"),
        format!("{{{add},\"parameters\":{{}}}}"),
        format!("{{{add},\"more\":true,\"oneway\":true}}"),
        format!("{{{add},\"unknown\":1}}"),
        format!("{{{add},\"more\":1}}"),
        format!("{{{add}}} x"),
        format!("{{{add}}}}}"),
        format!("{{{add},}}"),
        format!("{{{add}"),
        format!("{{{add},\"org.example.x\":[}}"),
    ] {
        assert!(exchange(&s, &bad).await.starts_with("CLOSE: "), "{bad}");
    }
    for good in [
        format!("{{{add}}}"),
        format!(" {{ {add} }}\n"),
        r#"{ "method" : "org.example.test.Add" , "parameters" : { "a" : 1 , "b" : 2 } }"#
            .to_owned(),
        r#"{"parameters":{"a":1,"b":2},"method":"org.example.test.Add"}"#.to_owned(),
        format!("{{{add},\"more\":false}}"),
        format!("{{{add},\"io.localrpc\":{{\"op_id\":\"op-00000000abcd\"}}}}"),
        format!("{{{add},\"org.example.trace\":{{\"id\":1}}}}"),
    ] {
        assert_eq!(
            exchange(&s, &good).await,
            r#"{"parameters":{"sum":3}}|"#,
            "{good}"
        );
    }
    // A flag after the parameters counts.
    assert_eq!(
        exchange(&s, &format!("{{{add},\"oneway\":true}}")).await,
        ""
    );
    // Nested parameters, checked in passing or not.
    let moved = r#"{"parameters":{"p":{"x":1,"y":2}}}|"#;
    for good in [
        r#"{"method":"org.example.test.Move","parameters":{"p":{"x":1,"y":2},"tags":["a"],"labels":{"k":"v"}}}"#,
        r#"{"method":"org.example.test.Move","parameters":{"p":{"x":1,"y":2},"by":null,"tags":[],"labels":{}},"more":false}"#,
    ] {
        assert_eq!(exchange(&s, good).await, moved, "{good}");
    }
    // Too deep for the envelope: closed, as before; deep, but not too deep: a wrong type.
    let deep = |depth: usize| {
        format!(
            r#"{{"method":"org.example.test.Move","parameters":{{"tags":{}1{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    assert!(exchange(&s, &deep(200)).await.starts_with("CLOSE: "));
    let reply = exchange(&s, &deep(110)).await;
    assert!(
        reply.contains("org.varlink.service.InvalidParameter"),
        "{reply}"
    );
}

#[test]
fn registering_an_undeclared_method_is_an_error() {
    let iface = InterfaceBuilder::new(IDL)
        .expect("parses")
        .method("Missing", |_call| Box::pin(async { Ok(Reply::empty()) }));
    let error = Service::builder()
        .interface(iface)
        .build()
        .err()
        .expect("build fails");
    assert_eq!(
        error.to_string(),
        "interface org.example.test declares no method Missing"
    );
}

#[test]
fn registering_an_interface_twice_is_an_error() {
    let a = InterfaceBuilder::new(IDL).expect("parses");
    let b = InterfaceBuilder::new(IDL).expect("parses");
    let error = Service::builder()
        .interface(a)
        .interface(b)
        .build()
        .err()
        .expect("build fails");
    assert_eq!(
        error.to_string(),
        "interface org.example.test is registered twice"
    );
}

#[tokio::test]
async fn zero_value_mode_answers_calls_with_missing_fields() {
    const RHC: &str = "interface com.example.rhc\nmethod Test(input: string) -> (output: string)\n";
    let build = |lenient: bool| {
        let mut iface = InterfaceBuilder::new(RHC)
            .expect("parses")
            .method("Test", |call| {
                Box::pin(async move {
                    let input: String = call.parameter("input")?;
                    Reply::with(json!({ "output": format!("Echo: {input}") }))
                })
            });
        if lenient {
            iface = iface.fill_zero_values();
        }
        Service::builder().interface(iface).build().expect("builds")
    };
    let call = r#"{"method":"com.example.rhc.Test"}"#;
    assert_eq!(
        exchange(&build(false), call).await,
        r#"{"parameters":{"parameter":"input"},"error":"org.varlink.service.InvalidParameter"}|"#
    );
    assert_eq!(
        exchange(&build(true), call).await,
        r#"{"parameters":{"output":"Echo: "}}|"#
    );
    // A wrong type is still an error in the lenient mode.
    let wrong = r#"{"method":"com.example.rhc.Test","parameters":{"input":5}}"#;
    assert!(
        exchange(&build(true), wrong)
            .await
            .contains("InvalidParameter")
    );
}

#[tokio::test]
async fn access_policy_is_checked_before_parameters_and_handler() {
    use localrpc::service::{AccessPolicy, PeerCredentials};
    let own = rustix::process::geteuid().as_raw();
    let stranger = PeerCredentials {
        uid: if own == 4000 { 4001 } else { 4000 },
        gid: 4000,
        pid: Some(1),
    };
    let friend = PeerCredentials {
        uid: 5000,
        gid: 5000,
        pid: Some(1),
    };
    let iface = InterfaceBuilder::new(IDL)
        .expect("parses")
        .method("Add", |call| {
            Box::pin(async move {
                Reply::with(
                    json!({ "sum": call.parameter::<i64>("a")? + call.parameter::<i64>("b")? }),
                )
            })
        })
        .method_policy("Add", AccessPolicy::root_and_self().allow_uid(5000));
    let service = Service::builder().interface(iface).build().expect("builds");
    let ask = |peer: PeerCredentials, message: &'static str| {
        let service = &service;
        async move {
            let mut out = Recorder::default();
            service
                .handle(message.as_bytes(), Some(peer), &mut out)
                .await
                .expect("valid call");
            out.all()
        }
    };
    let add = r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":2}}"#;
    assert_eq!(
        ask(stranger, add).await,
        "{\"error\":\"org.varlink.service.PermissionDenied\"}\0"
    );
    // Refused before the parameters are looked at.
    let bad = r#"{"method":"org.example.test.Add","parameters":{"a":"x"}}"#;
    assert_eq!(
        ask(stranger, bad).await,
        "{\"error\":\"org.varlink.service.PermissionDenied\"}\0"
    );
    assert_eq!(ask(friend, add).await, "{\"parameters\":{\"sum\":3}}\0");
    let root = PeerCredentials {
        uid: 0,
        gid: 0,
        pid: None,
    };
    assert_eq!(ask(root, add).await, "{\"parameters\":{\"sum\":3}}\0");
    // Introspection stays open.
    let info = r#"{"method":"org.varlink.service.GetInfo"}"#;
    assert!(ask(stranger, info).await.contains("interfaces"));
}

#[tokio::test]
async fn service_wide_policy_spares_introspection() {
    use localrpc::service::{AccessPolicy, PeerCredentials};
    let iface = InterfaceBuilder::new(IDL).expect("parses");
    let service = Service::builder()
        .policy(AccessPolicy::root_and_self())
        .interface(iface)
        .build()
        .expect("builds");
    let own = rustix::process::geteuid().as_raw();
    let stranger = PeerCredentials {
        uid: if own == 4000 { 4001 } else { 4000 },
        gid: 4000,
        pid: None,
    };
    let mut out = Recorder::default();
    let call = br#"{"method":"org.example.test.Declared"}"#;
    service
        .handle(call, Some(stranger), &mut out)
        .await
        .expect("valid call");
    assert_eq!(
        out.all(),
        "{\"error\":\"org.varlink.service.PermissionDenied\"}\0"
    );
    let describe = br#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"org.example.test"}}"#;
    service
        .handle(describe, Some(stranger), &mut out)
        .await
        .expect("valid call");
    assert!(out.all().contains("description"));
}

#[tokio::test]
async fn a_reply_that_is_not_an_object_becomes_an_internal_error() {
    let iface = InterfaceBuilder::new(IDL)
        .expect("test IDL parses")
        .method("Add", |_call| Box::pin(async move { Reply::with(42) }))
        .upgrade_method("Raw", |_call| {
            Box::pin(async move { Reply::upgrade([1, 2], Box::new(|_raw| Box::pin(async {}))) })
        });
    let s = Service::builder()
        .interface(iface)
        .build()
        .expect("service builds");
    let reply = exchange(
        &s,
        r#"{"method":"org.example.test.Add","parameters":{"a":1,"b":1}}"#,
    )
    .await;
    assert_eq!(
        reply,
        r#"{"parameters":{"message":"reply is not a JSON object: 42"},"error":"io.localrpc.InternalError"}|"#
    );
    // An upgrade whose confirmation cannot be written is not carried out.
    let mut out = Recorder::default();
    let dispatched = s
        .handle(
            br#"{"method":"org.example.test.Raw","upgrade":true}"#,
            None,
            &mut out,
        )
        .await
        .expect("not a protocol violation");
    assert!(matches!(dispatched, Dispatched::Continue));
    assert!(out.all().contains("io.localrpc.InternalError"));
}

/// `Call::reply` writes the final reply at once; it must behave exactly like returning the
/// reply, and nothing may follow it.
#[tokio::test]
async fn a_reply_written_in_place_is_the_only_final_reply() {
    let iface = InterfaceBuilder::new(IDL)
        .expect("test IDL parses")
        .method("Add", |mut call| {
            Box::pin(async move {
                let a: i64 = call.parameter("a")?;
                let b: i64 = call.parameter("b")?;
                match a {
                    // A reply that is not an object: InternalError, as with Reply::with.
                    0 => call.reply(&42),
                    // A different result returned after it is dropped.
                    1 => {
                        call.reply(&json!({ "sum": a + b }))?;
                        Err(ErrorReply::permission_denied())
                    }
                    // A second reply is dropped.
                    2 => {
                        call.reply(&json!({ "sum": a + b }))?;
                        call.reply(&json!({ "sum": -1 }))
                    }
                    _ => call.reply(&json!({ "sum": a + b })),
                }
            })
        })
        .streaming_method("Stream", |mut call| {
            Box::pin(async move {
                call.reply(&json!({ "i": 0 }))?;
                // Nothing may follow the final reply, not even with `more`.
                let refused = call.replies.send(json!({ "i": 1 })).await;
                assert!(matches!(
                    refused,
                    Err(localrpc::service::ReplyError::Finished)
                ));
                Ok(Reply::empty())
            })
        });
    let s = Service::builder()
        .interface(iface)
        .build()
        .expect("service builds");
    let add = |a: i64, extra: &str| {
        format!(r#"{{"method":"org.example.test.Add","parameters":{{"a":{a},"b":10}}{extra}}}"#)
    };
    assert_eq!(
        exchange(&s, &add(5, "")).await,
        r#"{"parameters":{"sum":15}}|"#
    );
    assert_eq!(
        exchange(&s, &add(0, "")).await,
        r#"{"parameters":{"message":"reply is not a JSON object: 42"},"error":"io.localrpc.InternalError"}|"#
    );
    assert_eq!(
        exchange(&s, &add(1, "")).await,
        r#"{"parameters":{"sum":11}}|"#
    );
    assert_eq!(
        exchange(&s, &add(2, "")).await,
        r#"{"parameters":{"sum":12}}|"#
    );
    assert_eq!(exchange(&s, &add(5, r#","oneway":true"#)).await, "");
    assert_eq!(
        exchange(
            &s,
            r#"{"method":"org.example.test.Stream","parameters":{"n":1},"more":true}"#
        )
        .await,
        r#"{"parameters":{"i":0}}|"#
    );
}
