//! The services of `localrpcd`, the localrpc reference daemon, as a library so tests and
//! benchmarks can run them in-process too.
//!
//! `io.localrpc.Echo` is built on the code `localrpc-build` generates from
//! `src/io.localrpc.Echo.varlink` (see `build.rs`): [`echo`] holds the generated types, the
//! server trait [`echo::Service`] (implemented here) and the typed client [`echo::Client`].

use std::sync::Arc;
use std::time::Duration;

use localrpc::service::{
    AccessPolicy, BuildError, CallContext, ErrorReply, InterfaceBuilder, RawStream, Service,
    UpgradeHandler,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The code generated for `io.localrpc.Echo`: input and output types, [`echo::Error`], the
/// server trait [`echo::Service`] and the typed client [`echo::Client`], e.g.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = localrpcd::echo::Client::connect("unix:/run/localrpc/localrpcd.sock").await?;
/// assert_eq!(client.echo("hi".into()).await?.text, "hi");
/// # Ok(())
/// # }
/// ```
pub mod echo {
    include!(concat!(env!("OUT_DIR"), "/io_localrpc_Echo.rs"));
}

/// The IDL of `io.localrpc.Echo`.
pub const ECHO_IDL: &str = echo::INTERFACE_DESCRIPTION;

/// Largest `count` that `Count` accepts.
const MAX_COUNT: i64 = 1_000_000;
/// Longest `Sleep`, in milliseconds.
const MAX_SLEEP_MS: u64 = 600_000;

/// The implementation of `io.localrpc.Echo`. `Unimplemented` keeps the generated trait's
/// default body, which answers `org.varlink.service.MethodNotImplemented`.
struct Echo;

impl echo::Service for Echo {
    async fn echo(
        &self,
        _call: &CallContext,
        input: echo::EchoInput,
    ) -> Result<echo::EchoOutput, echo::Error> {
        Ok(echo::EchoOutput { text: input.text })
    }

    async fn count(
        &self,
        _call: &CallContext,
        input: echo::CountInput,
        mut replies: echo::ReplySink<'_, echo::CountOutput>,
    ) -> Result<echo::CountOutput, echo::Error> {
        let echo::CountInput { count, text } = input;
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(ErrorReply::invalid_parameter("count").into());
        }
        for index in 0..count - 1 {
            let reply = echo::CountOutput {
                index,
                text: text.clone(),
            };
            if replies.send(reply).await.is_err() {
                // The caller went away; stop producing replies.
                return Err(
                    ErrorReply::new("io.localrpc.Echo.Cancelled", serde_json::Map::new()).into(),
                );
            }
        }
        Ok(echo::CountOutput {
            index: count - 1,
            text,
        })
    }

    async fn fail(
        &self,
        _call: &CallContext,
        input: echo::FailInput,
    ) -> Result<echo::FailOutput, echo::Error> {
        Err(echo::Error::Failed {
            reason: input.reason,
        })
    }

    async fn sleep(
        &self,
        _call: &CallContext,
        input: echo::SleepInput,
    ) -> Result<echo::SleepOutput, echo::Error> {
        let milliseconds = u64::try_from(input.milliseconds)
            .ok()
            .filter(|ms| *ms <= MAX_SLEEP_MS)
            .ok_or_else(|| ErrorReply::invalid_parameter("milliseconds"))?;
        tokio::time::sleep(Duration::from_millis(milliseconds)).await;
        Ok(echo::SleepOutput {})
    }

    async fn raw_echo(
        &self,
        _call: &CallContext,
        _input: echo::RawEchoInput,
    ) -> Result<(echo::RawEchoOutput, UpgradeHandler), echo::Error> {
        Ok((
            echo::RawEchoOutput {},
            Box::new(|raw| Box::pin(echo_raw(raw))),
        ))
    }
}

/// After `RawEcho`'s confirmation: echoes raw bytes until the peer closes its side.
async fn echo_raw(mut raw: Box<dyn RawStream>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match raw.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if raw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = raw.shutdown().await;
}

/// The `io.localrpc.Echo` interface with its handlers.
pub fn echo_interface() -> Result<InterfaceBuilder, BuildError> {
    echo::interface(Arc::new(Echo))
}

/// Every service localrpcd serves, identified for GetInfo, open to every caller.
pub fn service() -> Result<Service, BuildError> {
    service_with_policy(None)
}

/// Like [`service`], with `policy` (if any) restricting every interface but
/// `org.varlink.service`.
pub fn service_with_policy(policy: Option<AccessPolicy>) -> Result<Service, BuildError> {
    let builder = match policy {
        Some(policy) => Service::builder().policy(policy),
        None => Service::builder(),
    };
    builder
        .vendor("localrpc")
        .product("localrpcd")
        .version(env!("CARGO_PKG_VERSION"))
        .url("https://github.com/localrpc/localrpc")
        .interface(echo_interface()?)
        .build()
}

#[cfg(test)]
mod tests {
    //! The generated typed client against the service, in-process.

    use localrpc::client::CallError;
    use localrpc_testkit::InProcessServer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::echo;

    #[tokio::test]
    async fn the_typed_client_drives_every_method() {
        let mut server = InProcessServer::start(super::service().expect("service")).await;
        let address = server.address();
        let mut client = echo::Client::connect(&address).await.expect("connect");

        assert_eq!(client.echo("hi".into()).await.expect("Echo").text, "hi");

        let replies = client
            .count(3, Some("t".into()))
            .await
            .expect("Count")
            .collect()
            .await
            .expect("Count replies");
        let indices: Vec<i64> = replies.iter().map(|r| r.index).collect();
        assert_eq!(indices, [0, 1, 2]);
        assert!(replies.iter().all(|r| r.text.as_deref() == Some("t")));

        let invalid = |error: &CallError<echo::Error>, parameter: &str| {
            matches!(error, CallError::Reply(echo::Error::Other(r))
                if r.name == "org.varlink.service.InvalidParameter"
                    && r.parameters["parameter"] == parameter)
        };
        let error = client
            .count(0, None)
            .await
            .expect("Count")
            .collect()
            .await
            .expect_err("count 0");
        assert!(invalid(&error, "count"), "{error:?}");

        let error = client.fail("why".into()).await.expect_err("Fail");
        assert!(
            matches!(&error, CallError::Reply(echo::Error::Failed { reason }) if reason == "why"),
            "{error:?}"
        );

        client.sleep(1).await.expect("Sleep");
        for milliseconds in [-1, 600_001] {
            let error = client.sleep(milliseconds).await.expect_err("Sleep limit");
            assert!(invalid(&error, "milliseconds"), "{error:?}");
        }

        let error = client.unimplemented().await.expect_err("Unimplemented");
        assert!(
            matches!(&error, CallError::Reply(echo::Error::Other(r))
                if r.name == "org.varlink.service.MethodNotImplemented"
                    && r.parameters["method"] == "io.localrpc.Echo.Unimplemented"),
            "{error:?}"
        );

        let (_, mut raw) = client.raw_echo().await.expect("RawEcho");
        raw.write_all(b"raw \0 bytes").await.expect("write");
        raw.shutdown().await.expect("shutdown");
        let mut echoed = Vec::new();
        raw.read_to_end(&mut echoed).await.expect("read");
        assert_eq!(echoed, b"raw \0 bytes");

        server.stop().await;
    }
}
