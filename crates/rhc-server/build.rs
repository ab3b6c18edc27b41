//! Generates the code of `com.redhat.rhc.internal` (server trait and typed client).

fn main() {
    localrpc_build::compile_interfaces(&["src/com.redhat.rhc.internal.varlink"])
        .unwrap_or_else(|e| panic!("{e}"));
}
