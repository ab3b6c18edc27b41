//! Generates the Rust code of `io.localrpc.Echo` (types, error enum, server trait, typed
//! client) from `src/io.localrpc.Echo.varlink` into `$OUT_DIR/io_localrpc_Echo.rs`.

fn main() {
    localrpc_build::compile_interfaces(&["src/io.localrpc.Echo.varlink"])
        .unwrap_or_else(|e| panic!("{e}"));
}
