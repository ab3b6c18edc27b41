//! A generated client talking to a generated server over a Unix socket: the certification
//! sequence, every type of the interface in both directions, typed errors, streaming through
//! `futures_core::Stream`, pipelined batches, and tolerance of newer peers.

use std::pin::Pin;
use std::sync::Arc;

use localrpc::client::{CallError, Connection};
use localrpc::service::{CallContext, ErrorReply, Service};
use localrpc_certification::certification::{self as cert, Client, Error, ReplySink};
use localrpc_certification::server::CertificationServer;
use localrpc_testkit::InProcessServer;
use serde_json::json;

/// Serves `implementation` in-process; dropping the result stops the server.
async fn serve(implementation: impl cert::Service) -> InProcessServer {
    let service = Service::builder()
        .vendor("test")
        .interface(cert::interface(Arc::new(implementation)).expect("interface"))
        .build()
        .expect("service");
    InProcessServer::start(service).await
}

#[tokio::test]
async fn certification_sequence_passes_between_generated_client_and_server() {
    let server = serve(CertificationServer::new()).await;
    let mut client = Client::connect(&server.address()).await.expect("connect");
    let mut lines = Vec::new();
    localrpc_certification::client::run(&mut client, |line| lines.push(line))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lines.join("\n")));
    assert_eq!(lines.len(), 22, "{lines:#?}");
}

#[tokio::test]
async fn certification_client_fails_on_wrong_values() {
    // Echo answers Test01 with `false` for this client id: the sequence must stop there.
    let server = serve(Echo).await;
    let mut client = Client::connect(&server.address()).await.expect("connect");
    let failed = localrpc_certification::client::run(&mut client, |_| {})
        .await
        .expect_err("must fail");
    assert_eq!(failed.step, "Test01", "{failed}");
}

#[tokio::test]
async fn errors_come_back_as_the_typed_enum() {
    let server = serve(CertificationServer::new()).await;
    let mut connection = Connection::connect(&server.address())
        .await
        .expect("connect");
    let mut client = Client::new(&mut connection);

    // Unknown client id: the interface's error without parameters.
    let error = client
        .test01("nobody".into())
        .await
        .expect_err("unknown client id");
    assert!(
        matches!(error, CallError::Reply(Error::ClientIdError)),
        "{error:?}"
    );

    // Out of order: the error with parameters, decoded into its fields.
    let id = client.start().await.expect("start").client_id;
    let error = client
        .test02(id.clone(), true)
        .await
        .expect_err("Test02 before Test01");
    match error {
        CallError::Reply(Error::CertificationError { wants, got }) => {
            assert_eq!(wants, json!({"method": "org.varlink.certification.Test01"}));
            assert_eq!(got, json!({"method": "org.varlink.certification.Test02"}));
        }
        other => panic!("expected CertificationError, got {other:?}"),
    }

    // A standard error is kept as it came, in Error::Other.
    let error = client
        .test09(id.clone(), ["x".to_owned()].into())
        .await
        .expect_err("the run was failed by the previous error");
    assert!(
        matches!(error, CallError::Reply(Error::ClientIdError)),
        "{error:?}"
    );
    let mut bad_enum = localrpc_certification::expected_mytype();
    bad_enum.r#enum = cert::MyTypeEnum::Unknown("four".into());
    let error = client
        .test10(id, bad_enum)
        .await
        .expect("sent")
        .next()
        .await
        .expect("a reply");
    match error {
        Err(CallError::Reply(Error::Other(reply))) => {
            assert_eq!(reply.name, "org.varlink.service.InvalidParameter");
            assert_eq!(reply.parameters["parameter"], json!("mytype.enum"));
        }
        other => panic!("expected InvalidParameter, got {other:?}"),
    }

    // A method that requires `more` answers ExpectedMore without it.
    let parameters = json!({"client_id": "x", "mytype": localrpc_certification::expected_mytype()});
    let raw = connection
        .call("org.varlink.certification.Test10", parameters)
        .await;
    let Err(localrpc::client::Error::Reply(reply)) = raw else {
        panic!("expected an error reply: {raw:?}")
    };
    assert_eq!(
        Error::from(reply.clone()),
        Error::Other(ErrorReply::expected_more()),
        "{reply:?}"
    );

    // Typed errors convert back to the same error reply.
    let typed = Error::CertificationError {
        wants: json!({"a": 1}),
        got: json!(null),
    };
    let reply: ErrorReply = typed.clone().into();
    assert_eq!(reply.name, "org.varlink.certification.CertificationError");
    assert_eq!(Error::from(reply), typed);
}

/// A server that answers with values derived from its input, so every type travels both ways.
struct Echo;

fn not_used(method: &str) -> Error {
    Error::Other(ErrorReply::method_not_implemented(method))
}

fn full_mytype() -> cert::MyType {
    let mut mytype = localrpc_certification::expected_mytype();
    mytype.object = json!({"nested": [1, 2.5, "x", null, {"deep": true}], "empty": {}});
    mytype.r#enum = cert::MyTypeEnum::Three;
    mytype.r#struct = cert::MyTypeStruct {
        first: i64::MIN,
        second: "ünïcødé \"quoted\" \\ \n".into(),
    };
    mytype.nullable = Some(String::new());
    mytype.nullable_array_struct = Some(vec![
        cert::MyTypeNullableArrayStruct {
            first: i64::MAX,
            second: "max".into(),
        },
        cert::MyTypeNullableArrayStruct {
            first: 0,
            second: String::new(),
        },
    ]);
    mytype.interface.foo = Some(vec![
        Some([("baz".to_owned(), cert::InterfaceFoo::Baz)].into()),
        None,
        Some([].into()),
    ]);
    mytype
}

impl cert::Service for Echo {
    async fn start(
        &self,
        _: &CallContext,
        _: cert::StartInput,
    ) -> Result<cert::StartOutput, Error> {
        Ok(cert::StartOutput {
            client_id: "echo".into(),
        })
    }
    async fn test01(
        &self,
        _: &CallContext,
        input: cert::Test01Input,
    ) -> Result<cert::Test01Output, Error> {
        Ok(cert::Test01Output {
            r#bool: input.client_id == "true",
        })
    }
    async fn test02(
        &self,
        _: &CallContext,
        input: cert::Test02Input,
    ) -> Result<cert::Test02Output, Error> {
        Ok(cert::Test02Output {
            int: if input.r#bool { i64::MAX } else { i64::MIN },
        })
    }
    async fn test03(
        &self,
        _: &CallContext,
        input: cert::Test03Input,
    ) -> Result<cert::Test03Output, Error> {
        Ok(cert::Test03Output {
            float: input.int as f64,
        })
    }
    async fn test04(
        &self,
        _: &CallContext,
        input: cert::Test04Input,
    ) -> Result<cert::Test04Output, Error> {
        Ok(cert::Test04Output {
            string: format!("{:e}", input.float),
        })
    }
    async fn test05(
        &self,
        _: &CallContext,
        input: cert::Test05Input,
    ) -> Result<cert::Test05Output, Error> {
        let len = input.string.chars().count() as i64;
        Ok(cert::Test05Output {
            r#bool: len > 3,
            int: len,
            float: -(len as f64) / 7.0,
            string: input.string,
        })
    }
    async fn test06(
        &self,
        _: &CallContext,
        input: cert::Test06Input,
    ) -> Result<cert::Test06Output, Error> {
        let cert::Test06Input {
            r#bool,
            int,
            float,
            string,
            ..
        } = input;
        Ok(cert::Test06Output {
            r#struct: cert::Test06OutputStruct {
                r#bool,
                int,
                float,
                string,
            },
        })
    }
    async fn test07(
        &self,
        _: &CallContext,
        input: cert::Test07Input,
    ) -> Result<cert::Test07Output, Error> {
        let s = input.r#struct;
        let map = [
            ("bool", s.r#bool.to_string()),
            ("int", s.int.to_string()),
            ("float", s.float.to_string()),
            ("string", s.string),
        ];
        Ok(cert::Test07Output {
            map: map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })
    }
    async fn test08(
        &self,
        _: &CallContext,
        input: cert::Test08Input,
    ) -> Result<cert::Test08Output, Error> {
        Ok(cert::Test08Output {
            set: input
                .map
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        })
    }
    async fn test09(
        &self,
        _: &CallContext,
        input: cert::Test09Input,
    ) -> Result<cert::Test09Output, Error> {
        let mut mytype = full_mytype();
        mytype.stringset = input.set;
        Ok(cert::Test09Output { mytype })
    }
    async fn test10(
        &self,
        call: &CallContext,
        input: cert::Test10Input,
        mut replies: ReplySink<'_, cert::Test10Output>,
    ) -> Result<cert::Test10Output, Error> {
        assert!(call.flags.more && replies.streaming());
        let encoded = serde_json::to_string(&input.mytype).map_err(|e| not_used(&e.to_string()))?;
        replies
            .send(cert::Test10Output {
                string: input.client_id,
            })
            .await
            .map_err(|e| not_used(&e.to_string()))?;
        replies
            .send(cert::Test10Output { string: encoded })
            .await
            .map_err(|e| not_used(&e.to_string()))?;
        Ok(cert::Test10Output {
            string: "last".into(),
        })
    }
    async fn test11(
        &self,
        _: &CallContext,
        _: cert::Test11Input,
    ) -> Result<cert::Test11Output, Error> {
        Err(not_used("Test11"))
    }
    async fn end(&self, _: &CallContext, input: cert::EndInput) -> Result<cert::EndOutput, Error> {
        if input.client_id == "fail" {
            return Err(Error::Other(ErrorReply::permission_denied()));
        }
        Ok(cert::EndOutput { all_ok: true })
    }
}

#[tokio::test]
async fn every_type_round_trips() {
    let server = serve(Echo).await;
    let mut client = Client::connect(&server.address()).await.expect("connect");
    assert!(client.test01("true".into()).await.expect("Test01").r#bool);
    assert!(!client.test01("false".into()).await.expect("Test01").r#bool);
    assert_eq!(
        client.test02("".into(), true).await.expect("Test02").int,
        i64::MAX
    );
    assert_eq!(
        client.test02("".into(), false).await.expect("Test02").int,
        i64::MIN
    );
    assert_eq!(
        client
            .test03("".into(), -(1 << 53))
            .await
            .expect("Test03")
            .float,
        -9007199254740992.0
    );
    assert_eq!(
        client
            .test04("".into(), 1.5e300)
            .await
            .expect("Test04")
            .string,
        "1.5e300"
    );
    let text = "ünïcødé \"quoted\" \\ \n\t \u{1}";
    let ret = client.test05("".into(), text.into()).await.expect("Test05");
    let len = text.chars().count() as i64;
    assert_eq!(
        (ret.r#bool, ret.int, ret.string.as_str()),
        (true, len, text)
    );
    assert_eq!(ret.float, -(len as f64) / 7.0);
    let ret = client
        .test06("".into(), true, -7, 0.1, "s".into())
        .await
        .expect("Test06");
    assert_eq!(
        ret.r#struct,
        cert::Test06OutputStruct {
            r#bool: true,
            int: -7,
            float: 0.1,
            string: "s".into()
        }
    );
    let input = cert::Test07InputStruct {
        r#bool: false,
        int: 42,
        float: 2.5,
        string: "x".into(),
    };
    let map = client.test07("".into(), input).await.expect("Test07").map;
    assert_eq!(map["bool"], "false");
    assert_eq!(map["int"], "42");
    assert_eq!(map["float"], "2.5");
    assert_eq!(map["string"], "x");
    let set = client.test08("".into(), map).await.expect("Test08").set;
    assert_eq!(
        set,
        ["bool=false", "float=2.5", "int=42", "string=x"]
            .map(str::to_owned)
            .into()
    );
    let mytype = client
        .test09("".into(), set.clone())
        .await
        .expect("Test09")
        .mytype;
    let mut wants = full_mytype();
    wants.stringset = set;
    assert_eq!(mytype, wants);

    // Streaming through futures_core::Stream.
    let mut stream = client
        .test10("id".into(), mytype.clone())
        .await
        .expect("Test10");
    let mut strings = Vec::new();
    while let Some(reply) =
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut stream), cx)).await
    {
        strings.push(reply.expect("Test10 reply").string);
    }
    drop(stream);
    assert_eq!(strings.len(), 3, "{strings:?}");
    assert_eq!(strings[0], "id");
    let echoed: cert::MyType = serde_json::from_str(&strings[1]).expect("echoed MyType");
    assert_eq!(echoed, mytype);
    assert_eq!(strings[2], "last");

    // The wire form of sets and nullable fields.
    let value = serde_json::to_value(&mytype).expect("serialize");
    assert_eq!(
        value["stringset"],
        json!({"bool=false": {}, "float=2.5": {}, "int=42": {}, "string=x": {}})
    );
    assert_eq!(value["interface"]["foo"], json!([{"baz": "baz"}, null, {}]));
    let mut without = mytype;
    without.nullable = None;
    without.nullable_array_struct = None;
    let value = serde_json::to_value(&without).expect("serialize");
    assert!(
        value.get("nullable").is_none() && value.get("nullable_array_struct").is_none(),
        "{value}"
    );
}

#[tokio::test]
async fn batches_pipeline_typed_calls_in_order() {
    let server = serve(Echo).await;
    let mut client = Client::connect(&server.address()).await.expect("connect");
    let mut batch = client.batch();
    let start = batch.start();
    let int = batch.test02("".into(), true);
    batch.test11_oneway("".into(), vec![]);
    let failing = batch.end("fail".into());
    let end = batch.end("ok".into());
    let mut replies = batch.run().await.expect("batch");
    assert_eq!(replies.take(start).expect("Start").client_id, "echo");
    assert_eq!(replies.take(int).expect("Test02").int, i64::MAX);
    let error = replies.take(failing).expect_err("End fails");
    assert!(
        matches!(&error, CallError::Reply(Error::Other(reply)) if reply.name == "org.varlink.service.PermissionDenied"),
        "{error:?}"
    );
    assert!(replies.take(end).expect("End").all_ok);
    // The connection is still in step afterwards.
    assert_eq!(client.start().await.expect("Start").client_id, "echo");
}

#[test]
fn newer_peers_do_not_break_older_clients() {
    // Unknown reply fields are ignored, unknown enum values are kept.
    let mut wire =
        serde_json::to_value(localrpc_certification::expected_mytype()).expect("serialize");
    wire["enum"] = json!("four");
    wire["added_later"] = json!({"x": 1});
    wire["interface"]["foo"][1] = json!({"k": "qux"});
    let reply = json!({"mytype": wire, "client_id": "extra"});
    let output: cert::Test09Output = serde_json::from_value(reply).expect("decode");
    assert_eq!(
        output.mytype.r#enum,
        cert::MyTypeEnum::Unknown("four".into())
    );
    assert_eq!(output.mytype.r#enum.as_str(), "four");
    let foo = output
        .mytype
        .interface
        .foo
        .as_ref()
        .and_then(|f| f[1].as_ref())
        .expect("map");
    assert_eq!(foo["k"], cert::InterfaceFoo::Unknown("qux".into()));
    // An unknown value goes back out unchanged.
    let again = serde_json::to_value(&output.mytype).expect("serialize");
    assert_eq!(again["enum"], json!("four"));

    // Unknown errors, and known errors with unexpected parameters, stay Other.
    let unknown = ErrorReply::new("org.varlink.certification.NewError", json!({"x": 1}));
    assert_eq!(Error::from(unknown.clone()), Error::Other(unknown));
    let malformed = ErrorReply::new(
        "org.varlink.certification.CertificationError",
        json!({"wants": 1}),
    );
    assert_eq!(Error::from(malformed.clone()), Error::Other(malformed));
}
