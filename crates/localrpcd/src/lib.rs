//! The services of `localrpcd`, the localrpc reference daemon, as a library so tests and
//! benchmarks can run them in-process too.

use std::time::Duration;

use localrpc::service::{AccessPolicy, BuildError, ErrorReply, InterfaceBuilder, Reply, Service};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The IDL of `io.localrpc.Echo`.
pub const ECHO_IDL: &str = include_str!("io.localrpc.Echo.varlink");

/// Largest `count` that `Count` accepts.
const MAX_COUNT: i64 = 1_000_000;
/// Longest `Sleep`, in milliseconds.
const MAX_SLEEP_MS: u64 = 600_000;

/// The `io.localrpc.Echo` interface with its handlers.
pub fn echo_interface() -> Result<InterfaceBuilder, BuildError> {
    Ok(InterfaceBuilder::new(ECHO_IDL)?
        .method("Echo", |call| {
            Box::pin(async move {
                let text = call.parameters.get("text").cloned().unwrap_or_default();
                Reply::with(json!({ "text": text }))
            })
        })
        .streaming_method("Count", |mut call| {
            Box::pin(async move {
                let count: i64 = call.parameter("count")?;
                if !(1..=MAX_COUNT).contains(&count) {
                    return Err(ErrorReply::invalid_parameter("count"));
                }
                let text = call
                    .parameters
                    .get("text")
                    .filter(|t| !t.is_null())
                    .cloned();
                let reply = |index: i64| match &text {
                    Some(text) => json!({ "index": index, "text": text }),
                    None => json!({ "index": index }),
                };
                for index in 0..count - 1 {
                    if call.replies.send(reply(index)).await.is_err() {
                        // The caller went away; stop producing replies.
                        return Err(ErrorReply::new("io.localrpc.Echo.Cancelled", json!({})));
                    }
                }
                Reply::with(reply(count - 1))
            })
        })
        .method("Fail", |call| {
            Box::pin(async move {
                let reason: String = call.parameter("reason")?;
                Err(ErrorReply::new(
                    "io.localrpc.Echo.Failed",
                    json!({ "reason": reason }),
                ))
            })
        })
        .method("Sleep", |call| {
            Box::pin(async move {
                let milliseconds: u64 = call.parameter("milliseconds")?;
                if milliseconds > MAX_SLEEP_MS {
                    return Err(ErrorReply::invalid_parameter("milliseconds"));
                }
                tokio::time::sleep(Duration::from_millis(milliseconds)).await;
                Ok(Reply::empty())
            })
        })
        .upgrade_method("RawEcho", |_call| {
            Box::pin(async move {
                Ok(Reply::Upgrade {
                    parameters: Default::default(),
                    handler: Box::new(|mut raw| {
                        Box::pin(async move {
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
                        })
                    }),
                })
            })
        }))
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
