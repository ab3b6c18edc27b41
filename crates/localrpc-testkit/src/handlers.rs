//! Method handlers the in-process server tests share; each fits any interface that declares
//! the method with the parameters named here.

use std::time::Duration;

use localrpc::service::{BoxFuture, Call, ErrorReply, MethodResult, Reply};
use serde_json::json;

/// `Echo(text: string) -> (text: string)`.
pub fn echo(call: Call<'_>) -> BoxFuture<'_, MethodResult> {
    Box::pin(async move { Reply::with(json!({ "text": call.parameters().get("text") })) })
}

/// `Sleep(ms: int) -> ()`: answers after `ms` milliseconds.
pub fn sleep(call: Call<'_>) -> BoxFuture<'_, MethodResult> {
    Box::pin(async move {
        let ms: u64 = call.parameter("ms")?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Reply::empty())
    })
}

/// A streaming method `(n: int) -> (i: int)`: replies with `i` = 0 to `n` - 1, the last
/// one final. A reply that cannot be sent (the peer left) ends the call with
/// `PermissionDenied`.
pub fn count(mut call: Call<'_>) -> BoxFuture<'_, MethodResult> {
    Box::pin(async move {
        let n: i64 = call.parameter("n")?;
        for i in 0..n - 1 {
            call.replies
                .send(json!({ "i": i }))
                .await
                .map_err(|_| ErrorReply::permission_denied())?;
        }
        Reply::with(json!({ "i": n - 1 }))
    })
}
