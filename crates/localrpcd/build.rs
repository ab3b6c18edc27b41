//! Generates the Rust code of `io.localrpc.Echo` (types, error enum, server trait, typed
//! client) from `src/io.localrpc.Echo.varlink` into `$OUT_DIR/io_localrpc_Echo.rs`, and links
//! optimised builds with `hot-text.ld`, which puts the code that start-up and calls run
//! together (regenerate it with `scripts/order-text`; see docs/PERFORMANCE.md), and with
//! libgcc's unwinder linked in statically instead of loading libgcc_s.so.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    localrpc_build::compile_interfaces(&["src/io.localrpc.Echo.varlink"])
        .unwrap_or_else(|e| panic!("{e}"));

    println!("cargo:rerun-if-changed=hot-text.ld");
    println!("cargo:rerun-if-env-changed=LOCALRPC_NO_TEXT_ORDER");
    // Linux (ELF) names function sections `.text.SYMBOL`, and only optimised builds have the
    // symbols the list names; a debug build would just pay for matching the patterns. lld and
    // GNU ld read the script; mold takes no SECTIONS commands.
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let optimised = env::var("OPT_LEVEL").is_ok_and(|level| level != "0");
    let mold = env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|flags| flags.contains("mold"));
    let opted_out = env::var_os("LOCALRPC_NO_TEXT_ORDER").is_some();
    if linux && optimised && !mold && !opted_out {
        let script = format!("{}/hot-text.ld", env!("CARGO_MANIFEST_DIR"));
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{script}");
    }
    link_unwinder_statically();
}

/// Links libgcc's unwinder (`libgcc_eh.a`, what std links for `+crt-static` builds) into the
/// program, so that it does not need libgcc_s.so: one shared library less for ld.so to open,
/// map, relocate and search for every symbol at each start (7 page faults; see
/// docs/PERFORMANCE.md). std still names `-lgcc_s`, but later on the linker's command line
/// than this crate's libraries and under `--as-needed`, so with every `_Unwind_*` symbol
/// already defined it is not recorded as needed. Panics unwind as before (the tests that
/// catch a handler's panic run with it). Skipped, leaving the shared library, when the C
/// compiler that links does not know a libgcc_eh.a (clang with compiler-rt, musl).
fn link_unwinder_statically() {
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    // Set when the unwinder is linked in, so that the test which checks that libgcc_s.so is
    // not mapped runs only where build.rs made it so.
    println!("cargo::rustc-check-cfg=cfg(static_unwinder)");
    let gnu_linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux")
        && env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|target_env| target_env == "gnu");
    if !gnu_linux {
        return;
    }
    let linker = env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_owned());
    let Ok(output) = Command::new(&linker)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    // Prints the path when it knows the file, the bare name otherwise.
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !output.status.success() || !path.is_absolute() || !path.is_file() {
        return;
    }
    if let Some(dir) = path.parent() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        // `-bundle`: the library stays a linker argument of the final link (this package's
        // library crate is linked into its programs and tests) instead of being copied into
        // the rlib.
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
        println!("cargo:rustc-cfg=static_unwinder");
    }
}
