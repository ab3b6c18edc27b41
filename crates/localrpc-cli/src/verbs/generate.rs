//! Hidden helpers for packagers: `localrpc completions SHELL` and `localrpc man`, both
//! generated from the clap definitions.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::Failure;

pub fn completions(args: CompletionsArgs) -> Result<(), Failure> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "localrpc", &mut out);
    super::write_stdout(&String::from_utf8_lossy(&out))
}

pub fn man() -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| {
            Failure::new(
                crate::exit::SOFTWARE,
                format!("cannot render the man page: {e}"),
            )
        })?;
    super::write_stdout(&String::from_utf8_lossy(&out))
}
