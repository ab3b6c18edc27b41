//! `localrpc introspect ADDRESS [INTERFACE...]`: interface definitions as varlinkctl prints
//! them (systemd's layout), coloured on a terminal.

use std::io::IsTerminal;

use crate::address;
use crate::cli::InterfacesArgs;
use crate::exit::Failure;
use crate::idl_dump::{Colors, dump};

pub async fn run(args: InterfacesArgs) -> Result<(), Failure> {
    let (address, mut connection) = address::connect(&args.address, args.timeout).await?;
    let interfaces =
        super::selected_interfaces(&mut connection, &address, &args.interfaces).await?;
    let colors = Colors::new(std::io::stdout().is_terminal() && crate::output::color_allowed());
    let mut out = String::new();
    for (i, name) in interfaces.iter().enumerate() {
        let text = super::describe(&mut connection, &address, name).await?;
        if i > 0 {
            out.push_str("\n\n");
        }
        match localrpc_idl::parse(&text) {
            Ok(iface) => out.push_str(&dump(&iface, colors)),
            Err(e) => {
                // Show what the service sent rather than nothing.
                eprintln!(
                    "localrpc: warning: the description of {name} does not parse ({e}); printing it as sent"
                );
                out.push_str(&text);
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
    super::write_stdout(&out)
}
