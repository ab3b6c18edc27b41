//! localrpc: varlink services and clients for the local RPC APIs of Linux daemons.
//!
//! Layers, lowest first (a layer never uses a higher one):
//! - [`wire`]: NUL framing and the call/reply envelopes; no I/O.
//! - [`service`]: interfaces, routing, parameter checks against the IDL, handlers.
//! - [`transport`]: addresses, listeners, streams, peer credentials.
//! - [`server`] and [`client`]: the async glue on tokio.
//!
//! The IDL itself lives in the `localrpc-idl` crate, re-exported here as [`idl`].

pub mod client;
pub mod daemon;
pub mod server;
pub mod service;
pub mod transport;
pub mod wire;

pub use localrpc_idl as idl;

/// Compiles the README's example as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;
