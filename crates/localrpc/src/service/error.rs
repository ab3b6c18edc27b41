//! Error replies: a qualified error name plus its parameters, and the standard ones.

use serde::Serialize;
use serde_json::{Map, Value};

/// The name of the interface every varlink service implements.
pub const ORG_VARLINK_SERVICE: &str = "org.varlink.service";

/// An error reply: `{"error": name, "parameters": {...}}`. Handlers return it to fail a call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name}{}", display_parameters(.parameters))]
pub struct ErrorReply {
    /// Fully qualified error name, e.g. `org.varlink.service.InvalidParameter`.
    pub name: String,
    /// The error's parameters as declared in its interface.
    pub parameters: Map<String, Value>,
}

fn display_parameters(parameters: &Map<String, Value>) -> String {
    if parameters.is_empty() {
        String::new()
    } else {
        format!(" {}", Value::Object(parameters.clone()))
    }
}

impl ErrorReply {
    /// An error with the given name and parameters; parameters that do not serialize to a
    /// JSON object are dropped.
    pub fn new(name: impl Into<String>, parameters: impl Serialize) -> Self {
        let parameters = match serde_json::to_value(parameters) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        ErrorReply {
            name: name.into(),
            parameters,
        }
    }

    fn standard(error: &str, key_value: Option<(&str, &str)>) -> Self {
        let mut parameters = Map::new();
        if let Some((key, value)) = key_value {
            parameters.insert(key.to_owned(), Value::String(value.to_owned()));
        }
        ErrorReply {
            name: format!("{ORG_VARLINK_SERVICE}.{error}"),
            parameters,
        }
    }

    /// `InterfaceNotFound(interface)`.
    pub fn interface_not_found(interface: &str) -> Self {
        Self::standard("InterfaceNotFound", Some(("interface", interface)))
    }
    /// `MethodNotFound(method)`, with the fully qualified method as systemd sends it.
    pub fn method_not_found(method: &str) -> Self {
        Self::standard("MethodNotFound", Some(("method", method)))
    }
    /// `MethodNotImplemented(method)`.
    pub fn method_not_implemented(method: &str) -> Self {
        Self::standard("MethodNotImplemented", Some(("method", method)))
    }
    /// `InvalidParameter(parameter)`, naming the offending field.
    pub fn invalid_parameter(parameter: &str) -> Self {
        Self::standard("InvalidParameter", Some(("parameter", parameter)))
    }
    /// `PermissionDenied()`.
    pub fn permission_denied() -> Self {
        Self::standard("PermissionDenied", None)
    }
    /// `ExpectedMore()`: the method streams and needs the `more` flag.
    pub fn expected_more() -> Self {
        Self::standard("ExpectedMore", None)
    }
    /// `ExpectedUpgrade()`: the method needs the `upgrade` flag.
    pub fn expected_upgrade() -> Self {
        Self::standard("ExpectedUpgrade", None)
    }
}
