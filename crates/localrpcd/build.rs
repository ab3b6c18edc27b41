//! Generates the Rust code of `io.localrpc.Echo` (types, error enum, server trait, typed
//! client) from `src/io.localrpc.Echo.varlink` into `$OUT_DIR/io_localrpc_Echo.rs`, and links
//! optimised builds with `hot-text.ld`, which puts the code that start-up and calls run
//! together (regenerate it with `scripts/order-text`; see docs/PERFORMANCE.md).

use std::env;

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
}
