//! Interfaces, routing and dispatch: everything between a parsed call and its replies.
//!
//! A [`Service`] is a set of interfaces, each an IDL text plus handlers. It takes one message's
//! bytes and writes the replies into an [`Output`]; it never touches a socket, so a test can
//! drive a whole service with byte strings. `org.varlink.service` is built in.

mod context;
mod error;
mod policy;
mod registry;

pub(crate) use context::PidfdSocketGuard;
pub use context::{CallContext, InvalidOpId, OpId, Peer, PeerCredentials, PeerPidfd};
pub use error::{ErrorReply, ORG_VARLINK_SERVICE};
pub use policy::AccessPolicy;
pub(crate) use registry::LastMethod;
pub use registry::{
    BoxFuture, BuildError, CALL_LOG, CALL_TIMED_OUT, Call, Dispatched, FDS_NOT_ACCEPTED,
    FDS_NOT_SUPPORTED, HandlerFuture, InterfaceBuilder, MethodHandler, MethodResult, Output,
    RawStream, Replies, Reply, ReplyError, Requires, SentReply, Service, ServiceBuilder,
    UpgradeHandler,
};
