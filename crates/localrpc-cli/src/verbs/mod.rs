//! One module per verb; each exposes `run` (or a few entry points) returning `Result<(), Failure>`.

pub mod bench;
pub mod bridge;
pub mod call;
pub mod control;
pub mod format;
pub mod generate;
pub mod info;
pub mod introspect;
pub mod list;
pub mod validate;

use localrpc::client::{Connection, Error as ClientError, Parameters};
use localrpc::transport::Address;
use serde_json::Value;

use crate::exit::{Failure, REPLY_ERROR, client_failure};

/// The GetInfo reply.
pub struct Info {
    pub raw: Parameters,
    pub interfaces: Vec<String>,
}

/// Calls a method of org.varlink.service, turning error replies into failures.
pub async fn service_call(
    connection: &mut Connection,
    address: &Address,
    method: &str,
    parameters: Value,
) -> Result<Parameters, Failure> {
    let full = format!("org.varlink.service.{method}");
    match connection.call(&full, parameters).await {
        Ok(reply) => Ok(reply),
        Err(ClientError::Reply(reply)) => {
            let mut failure = Failure::new(
                REPLY_ERROR,
                format!("Method call {full}() failed: {}", reply.name),
            );
            if reply.name == "org.varlink.service.InterfaceNotFound" {
                let name = reply
                    .parameters
                    .get("interface")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                failure = failure.with_hint(format!(
                    "the service does not implement {name}; see: localrpc list-interfaces {address}"
                ));
            }
            Err(failure)
        }
        Err(other) => Err(client_failure(address, &format!("call {full}()"), other)),
    }
}

pub async fn get_info(connection: &mut Connection, address: &Address) -> Result<Info, Failure> {
    let raw = service_call(connection, address, "GetInfo", serde_json::json!({})).await?;
    let interfaces = raw
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Info { raw, interfaces })
}

/// The text of an interface's description.
pub async fn describe(
    connection: &mut Connection,
    address: &Address,
    interface: &str,
) -> Result<String, Failure> {
    let reply = service_call(
        connection,
        address,
        "GetInterfaceDescription",
        serde_json::json!({ "interface": interface }),
    )
    .await?;
    reply
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::new(
                crate::exit::PROTOCOL,
                format!("{address}: the description of {interface} is missing from the reply"),
            )
        })
}

/// `interfaces` if given, else all of the service's interfaces, sorted (as varlinkctl).
pub async fn selected_interfaces(
    connection: &mut Connection,
    address: &Address,
    interfaces: &[String],
) -> Result<Vec<String>, Failure> {
    if !interfaces.is_empty() {
        return Ok(interfaces.to_vec());
    }
    let mut all = get_info(connection, address).await?.interfaces;
    all.sort();
    all.dedup();
    Ok(all)
}

pub fn write_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Failure::output)
}
