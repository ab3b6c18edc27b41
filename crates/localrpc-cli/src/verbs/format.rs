//! `localrpc format [FILE...]`: the canonical IDL layout (`localrpc_idl::format`).

use std::path::PathBuf;

use crate::cli::FormatArgs;
use crate::exit::{self, Failure};

pub fn run(args: FormatArgs) -> Result<(), Failure> {
    let files = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files
    };
    let mut out = String::new();
    for (i, file) in files.iter().enumerate() {
        let (name, text) = super::validate::read_input(file)?;
        let iface = localrpc_idl::parse(&text).map_err(|e| {
            Failure::new(
                exit::DATA,
                format!("{name}:{}:{}: {}", e.line, e.column, e.message),
            )
            .with_hint("fix the interface first; `localrpc validate-idl FILE` checks it")
        })?;
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&localrpc_idl::format(&iface));
    }
    super::write_stdout(&out)
}
