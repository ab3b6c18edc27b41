//! `zlink-echo SOCKET`: io.localrpc.Echo.Echo served by zlink 0.8 on a Unix socket, the Rust
//! peer in `scripts/bench-compare`. Also accepts a socket passed by systemd
//! (`LISTEN_FDS`) is not supported: the comparison only needs a plain bound socket.

use serde::{Deserialize, Serialize};
use zlink::{Server, introspect, service, tokio::unix};

#[derive(Debug, Serialize, Deserialize, introspect::Type)]
struct EchoReply {
    text: String,
}

struct Echo;

#[service(interface = "io.localrpc.Echo")]
impl Echo {
    async fn echo(&mut self, text: String) -> EchoReply {
        EchoReply { text }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: zlink-echo SOCKET_PATH")?;
    let _ = std::fs::remove_file(&path);
    let listener = unix::bind(&path)?;
    let server = Server::new(listener, Echo);
    tokio::select! {
        result = server.run() => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}
