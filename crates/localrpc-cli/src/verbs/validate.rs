//! `localrpc validate-idl [FILE...] [--systemd]`: parse interface files; print them as
//! varlinkctl does (systemd's layout) unless `-q`; `--systemd` also lists what systemd's parser
//! rejects.

use std::path::{Path, PathBuf};

use crate::cli::ValidateArgs;
use crate::exit::{self, Failure};
use crate::idl_dump::{Colors, dump};

pub fn run(args: ValidateArgs) -> Result<(), Failure> {
    let files = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files
    };
    let mut problems = 0usize;
    let mut parse_failed = false;
    for file in &files {
        let (name, text) = read_input(file)?;
        let iface = match localrpc_idl::parse(&text) {
            Ok(iface) => iface,
            Err(e) => {
                eprintln!("{name}:{}:{}: {}", e.line, e.column, e.message);
                parse_failed = true;
                continue;
            }
        };
        if args.systemd {
            for finding in localrpc_idl::systemd_lint(&iface) {
                eprintln!("{name}: systemd: {finding}");
                problems += 1;
            }
        }
        if !args.quiet {
            let colors = Colors::new(
                std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && crate::output::color_allowed(),
            );
            super::write_stdout(&dump(&iface, colors))?;
        }
    }
    if parse_failed {
        return Err(Failure::new(exit::DATA, "the interface definition is invalid (see above)")
            .with_hint("fix the reported line:column; `localrpc format FILE` prints the canonical form once it parses"));
    }
    if problems > 0 {
        return Err(Failure::new(
            exit::REPLY_ERROR,
            format!("{problems} construct(s) that systemd's varlink parser rejects (see above)"),
        )
        .with_hint("valid varlink, but sd-varlink peers (varlinkctl, systemd services) will refuse it; rewrite those fields"));
    }
    Ok(())
}

/// Reads a file, or stdin for "-"; returns the name to show in messages and the text.
pub fn read_input(file: &Path) -> Result<(String, String), Failure> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::new(exit::NO_INPUT, format!("cannot read stdin: {e}")))?;
        return Ok(("<stdin>".to_owned(), text));
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        Failure::new(
            exit::NO_INPUT,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    Ok((file.display().to_string(), text))
}
