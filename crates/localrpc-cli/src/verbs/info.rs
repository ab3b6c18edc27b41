//! `localrpc info ADDRESS`: the GetInfo reply as varlinkctl's table (or JSON with --json).

use serde_json::Value;

use crate::address;
use crate::cli::InfoArgs;
use crate::exit::Failure;
use crate::output::{self, JsonMode, JsonStyle};

pub async fn run(args: InfoArgs) -> Result<(), Failure> {
    let (address, mut connection) = address::connect(&args.address, args.timeout).await?;
    let info = super::get_info(&mut connection, &address).await?;
    if let Some(style) = json_style(args.json.as_deref(), args.j)? {
        return output::print(&Value::Object(info.raw), style).map_err(Failure::output);
    }
    let mut out = String::new();
    for (label, key) in [
        ("Vendor", "vendor"),
        ("Product", "product"),
        ("Version", "version"),
        ("URL", "url"),
    ] {
        if let Some(value) = info.raw.get(key).and_then(Value::as_str) {
            out.push_str(&format!("{label:>10}: {value}\n"));
        }
    }
    let mut interfaces = info.interfaces;
    interfaces.sort();
    for (i, name) in interfaces.iter().enumerate() {
        let label = if i == 0 { "Interfaces:" } else { "" };
        out.push_str(&format!("{label:>11} {name}\n"));
    }
    super::write_stdout(&out)
}

/// `--json[=pretty|short]` / `-j` for the listing verbs.
pub fn json_style(json: Option<&str>, j: bool) -> Result<Option<JsonStyle>, Failure> {
    let mode = match (json, j) {
        (Some("pretty"), _) => Some(Some(JsonMode::Pretty)),
        (Some("short"), _) => Some(Some(JsonMode::Short)),
        (Some("off"), _) => None,
        (Some("auto"), _) | (None, true) => Some(None),
        (None, false) => None,
        (Some(other), _) => {
            return Err(Failure::usage(format!(
                "unknown --json format {other:?}; use pretty, short or off"
            )));
        }
    };
    Ok(mode.map(JsonStyle::for_stdout))
}
