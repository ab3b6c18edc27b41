//! `localrpc list-interfaces` and `localrpc list-methods`, sorted like varlinkctl.

use crate::address;
use crate::cli::{InfoArgs, InterfacesArgs};
use crate::exit::{self, Failure};

pub async fn interfaces(args: InfoArgs) -> Result<(), Failure> {
    let (address, mut connection) = address::connect(&args.address, args.timeout).await?;
    let mut names = super::get_info(&mut connection, &address).await?.interfaces;
    names.sort();
    names.dedup();
    if let Some(style) = super::info::json_style(args.json.as_deref(), args.j)? {
        let value = serde_json::json!({ "interfaces": names });
        return crate::output::print(&value, style).map_err(Failure::output);
    }
    super::write_stdout(&names.iter().map(|n| format!("{n}\n")).collect::<String>())
}

pub async fn methods(args: InterfacesArgs) -> Result<(), Failure> {
    let (address, mut connection) = address::connect(&args.address, args.timeout).await?;
    let interfaces =
        super::selected_interfaces(&mut connection, &address, &args.interfaces).await?;
    let mut methods = Vec::new();
    for name in &interfaces {
        let text = super::describe(&mut connection, &address, name).await?;
        let iface = localrpc_idl::parse(&text).map_err(|e| {
            Failure::new(
                exit::DATA,
                format!("{address}: the description of {name} does not parse: {e}"),
            )
        })?;
        methods.extend(
            iface
                .methods()
                .map(|m| format!("{}.{}", iface.name, m.name)),
        );
    }
    methods.sort();
    methods.dedup();
    super::write_stdout(&methods.iter().map(|m| format!("{m}\n")).collect::<String>())
}
