//! `localrpc bridge ADDRESS`: stdin/stdout <-> a varlink address, byte for byte. Use it as the
//! remote program of `ssh-exec:` to reach a socket on a host whose ssh lacks `-W` for Unix
//! sockets: `localrpc info ssh-exec:host:'localrpc bridge unix:/run/example.sock'`.

use localrpc::transport::Stream;

use crate::address;
use crate::cli::BridgeArgs;
use crate::exit::{Failure, connect_failure};

pub async fn run(args: BridgeArgs) -> Result<(), Failure> {
    let address = address::resolve(&args.address)?;
    let stream = Stream::connect(&address)
        .await
        .map_err(|e| connect_failure(&address, &e))?;
    super::call::pump(stream).await
}
