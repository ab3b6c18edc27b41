//! Helpers shared by the CLI tests: run `localrpc` (and peers) as real processes.

#![allow(dead_code, unused_imports)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub use localrpc_testkit::{
    ChildGuard, Peer, require_peer, spawn_localrpcd, temp_dir, workspace_binary,
};

/// What a process printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `program args...` with `stdin` as its standard input.
pub fn run_program(program: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child.wait_with_output().unwrap().into()
}

/// Runs `localrpc args...` with empty stdin.
pub fn localrpc(args: &[&str]) -> Run {
    run_program(&workspace_binary("localrpc"), args, b"")
}

/// A running localrpcd on a fresh socket; keep the tuple alive for the test.
pub fn daemon() -> (tempfile::TempDir, ChildGuard, String) {
    let dir = temp_dir();
    let socket = dir.path().join("echo.sock");
    let guard = spawn_localrpcd(&socket, &[]);
    let address = format!("unix:{}", socket.display());
    (dir, guard, address)
}
