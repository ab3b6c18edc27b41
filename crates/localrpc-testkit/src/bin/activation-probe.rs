//! Test helper (run by this crate's `tests/activation_env.rs`): takes the socket-activation fds the way a
//! daemon's `main` does, then prints the outcome and whatever `LISTEN_*` variables are left in
//! this process's environment, one per line. A separate process because removing
//! environment variables needs a single-threaded process, which the test harness is not.

fn main() {
    let outcome = match localrpc::transport::take_listen_fds() {
        Ok(fds) => format!("ok {}", fds.len()),
        Err(e) => format!("error {e}"),
    };
    println!("{outcome}");
    for (key, value) in std::env::vars() {
        if key.starts_with("LISTEN_") {
            println!("left {key}={value}");
        }
    }
}
