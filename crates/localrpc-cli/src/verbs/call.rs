//! `localrpc call ADDRESS METHOD [PARAMETERS]` with `--more`, `--collect`, `--oneway`,
//! `--upgrade`, `--timeout`, `--json`, `-q` and `--graceful`, printing what varlinkctl prints:
//! replies as JSON on stdout; for an error reply `Method call M() failed: NAME` on stderr, its
//! parameters on stdout, exit code 1.

use std::io::{IsTerminal, Read};

use localrpc::client::{Connection, Error as ClientError, Parameters};
use localrpc::service::ErrorReply;
use localrpc::transport::Address;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::address;
use crate::cli::{CallArgs, Timeout};
use crate::exit::{self, Failure, client_failure};
use crate::output::{self, JsonStyle};

pub async fn run(args: CallArgs) -> Result<(), Failure> {
    check_method_name(&args.method)?;
    let parameters = read_parameters(args.parameters.as_deref())?;
    let more = args.more || args.more_forever;
    let timeout = match (args.timeout, args.more_forever) {
        (Some(t), _) => t,
        (None, true) => Timeout(None),
        (None, false) => Timeout(Some(localrpc::client::DEFAULT_TIMEOUT)),
    };
    let (address, mut connection) = address::connect(&args.address, timeout).await?;
    let mut style = JsonStyle::for_stdout(args.json);
    let call = Call {
        args: &args,
        address: &address,
    };

    if args.oneway {
        connection
            .oneway(&args.method, &parameters)
            .await
            .map_err(|e| call.failure(e))?;
        return Ok(());
    }
    if args.upgrade {
        return upgrade(&call, connection, &parameters).await;
    }
    if args.collect {
        let replies = collect(&mut connection, &args.method, &parameters).await;
        return match replies {
            Ok(replies) => call.print(
                &Value::Array(replies.into_iter().map(Value::Object).collect()),
                style,
            ),
            Err(e) => call.error(e, style),
        };
    }
    if more {
        style.seq = true;
        let mut stream = connection
            .call_more(&args.method, &parameters)
            .await
            .map_err(|e| call.failure(e))?;
        while let Some(reply) = stream.next().await {
            match reply {
                Ok(parameters) => call.print(&Value::Object(parameters), style)?,
                Err(e) => return call.error(e, style),
            }
        }
        return Ok(());
    }
    match connection.call(&args.method, &parameters).await {
        Ok(reply) => call.print(&Value::Object(reply), style),
        Err(e) => call.error(e, style),
    }
}

async fn collect(
    connection: &mut Connection,
    method: &str,
    parameters: &Parameters,
) -> Result<Vec<Parameters>, ClientError> {
    connection
        .call_more(method, parameters)
        .await?
        .collect()
        .await
}

struct Call<'a> {
    args: &'a CallArgs,
    address: &'a Address,
}

impl Call<'_> {
    fn print(&self, value: &Value, style: JsonStyle) -> Result<(), Failure> {
        if self.args.quiet {
            return Ok(());
        }
        output::print(value, style).map_err(Failure::output)
    }

    fn failure(&self, error: ClientError) -> Failure {
        client_failure(self.address, &format!("call {}()", self.args.method), error)
    }

    /// An error reply (printed like varlinkctl) or another failure.
    fn error(&self, error: ClientError, style: JsonStyle) -> Result<(), Failure> {
        let ClientError::Reply(reply) = error else {
            return Err(self.failure(error));
        };
        let method = &self.args.method;
        let graceful = self.args.graceful.contains(&reply.name);
        if graceful {
            eprintln!(
                "Method call {method}() returned expected error: {}",
                reply.name
            );
        } else {
            eprintln!("Method call {method}() failed: {}", reply.name);
            if let Some(hint) = error_hint(&reply, self.address, method) {
                eprintln!("hint: {hint}");
            }
        }
        // In --more mode the parameters are one more JSON-SEQ record, as varlinkctl prints them.
        self.print(&Value::Object(reply.parameters), style)?;
        if graceful {
            Ok(())
        } else {
            Err(Failure::silent(exit::REPLY_ERROR))
        }
    }
}

/// What the well-known org.varlink.service errors mean and what to do about them.
fn error_hint(reply: &ErrorReply, address: &Address, method: &str) -> Option<String> {
    let interface = method.rsplit_once('.').map_or(method, |(i, _)| i);
    let param = |name: &str| {
        reply
            .parameters
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    Some(match reply.name.as_str() {
        "org.varlink.service.MethodNotFound" => {
            format!(
                "the service has no method {}; see: localrpc list-methods {address} {interface}",
                param("method")
            )
        }
        "org.varlink.service.InterfaceNotFound" => {
            format!(
                "the service does not implement {}; see: localrpc list-interfaces {address}",
                param("interface")
            )
        }
        "org.varlink.service.MethodNotImplemented" => {
            "the method is declared but the service does not implement it".to_owned()
        }
        "org.varlink.service.InvalidParameter" => format!(
            "parameter {:?} is missing, unknown or of the wrong type; see: localrpc introspect {address} {interface}",
            param("parameter")
        ),
        "org.varlink.service.PermissionDenied" => {
            "the service refused the call; retry as a user with access (e.g. with sudo or run0)"
                .to_owned()
        }
        "org.varlink.service.ExpectedMore" => {
            "this method streams replies: call it with --more or --collect".to_owned()
        }
        "org.varlink.service.ExpectedUpgrade" => {
            "this method upgrades the connection: call it with --upgrade".to_owned()
        }
        _ => return None,
    })
}

/// Fully qualified: an interface name with at least two parts, a dot, a capitalised member.
fn check_method_name(method: &str) -> Result<(), Failure> {
    let valid = method.rsplit_once('.').is_some_and(|(interface, member)| {
        interface.contains('.')
            && interface.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && interface.starts_with(|c: char| c.is_ascii_alphabetic())
            && member.starts_with(|c: char| c.is_ascii_uppercase())
            && member.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if valid {
        Ok(())
    } else {
        Err(
            Failure::usage(format!("{method:?} is not a fully qualified method name"))
                .with_hint("write INTERFACE.Method, e.g. org.varlink.service.GetInfo"),
        )
    }
}

/// The PARAMETERS argument, or stdin for "-" (or when absent and stdin is not a terminal).
fn read_parameters(argument: Option<&str>) -> Result<Parameters, Failure> {
    let (text, source) = match argument {
        Some("-") => (read_stdin()?, "stdin"),
        Some(text) => (text.to_owned(), "the PARAMETERS argument"),
        None if std::io::stdin().is_terminal() => (String::new(), ""),
        None => (read_stdin()?, "stdin"),
    };
    if text.trim().is_empty() {
        return Ok(Parameters::new());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Parameters::new()),
        Ok(_) => Err(
            Failure::usage(format!("the parameters in {source} are not a JSON object"))
                .with_hint(r#"pass an object such as '{"name": "value"}' (or '{}')"#),
        ),
        Err(e) => Err(Failure::usage(format!(
            "the parameters in {source} are not valid JSON: {e}"
        ))
        .with_hint(r#"pass an object such as '{"name": "value"}'; quote it for the shell"#)),
    }
}

fn read_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| {
        Failure::new(
            exit::NO_INPUT,
            format!("cannot read the parameters from stdin: {e}"),
        )
    })?;
    Ok(text)
}

/// `--upgrade`: after the reply, stdin goes to the connection and the connection to stdout,
/// until the service closes its side.
async fn upgrade(
    call: &Call<'_>,
    connection: Connection,
    parameters: &Parameters,
) -> Result<(), Failure> {
    let (_reply, stream) = match connection.upgrade(&call.args.method, parameters).await {
        Ok(ok) => ok,
        Err(e) => return call.error(e, JsonStyle::for_stdout(call.args.json)),
    };
    pump(stream).await
}

/// Copies stdin to `stream` (then shuts its write side) and `stream` to stdout until the
/// peer closes; returns when the peer's side is done.
pub async fn pump<S>(stream: S) -> Result<(), Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let upstream = async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = writer.shutdown().await;
        // Keep running until the other direction finishes.
        std::future::pending::<()>().await;
    };
    let downstream = async move {
        let mut stdout = tokio::io::stdout();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    stdout.write_all(&buf[..n]).await.map_err(Failure::output)?;
                    stdout.flush().await.map_err(Failure::output)?;
                }
                Err(e) => {
                    break Err(Failure::new(
                        exit::PROTOCOL,
                        format!("the upgraded connection broke: {e}"),
                    ));
                }
            }
        }
    };
    tokio::select! {
        // main() does not wait for a stdin read still blocked in the runtime's thread pool.
        result = downstream => result,
        _ = upstream => Ok(()),
    }
}
