//! The registry of interfaces and the dispatcher that routes one call to its handler.

use std::future::Future;

// Method and interface names come from peers, but the maps are never written after the
// service is built, so a fast non-cryptographic hash (foldhash, randomly seeded) is safe.
use foldhash::{HashMap, HashMapExt};
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use localrpc_idl::{Interface, Member};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

use super::context::{CallContext, OpId, Peer, PeerCredentials, PeerPidfd};
use super::error::{ErrorReply, ORG_VARLINK_SERVICE};
use super::policy::AccessPolicy;
use crate::wire::{CallMessage, ProtocolError, encode_reply, validate_json};

/// A boxed, sendable future (what closure handlers return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a handler returns: its final reply or an error reply.
pub type MethodResult = Result<Reply, ErrorReply>;

/// Room for a handler's future inside a [`HandlerFuture`], in bytes. The future of a
/// generated handler holds its [`Call`] and the service method's future: 160 bytes for
/// `io.localrpc.Echo.Echo`. Every connection's future keeps one such slot, idle or not, so
/// this is not larger than ordinary methods need.
const HANDLER_FUTURE_INLINE: usize = 192;

pin_project_lite::pin_project! {
    /// A running handler ([`MethodHandler::call`]). Its future is kept inline when it fits in
    /// 192 bytes (a generated handler's usually does, and a [`BoxFuture`] always does), so a
    /// call costs no allocation for it; a larger one is boxed.
    pub struct HandlerFuture<'a> {
        #[pin]
        inner: stackfuture::StackFuture<'a, MethodResult, HANDLER_FUTURE_INLINE>,
    }
}

impl<'a> HandlerFuture<'a> {
    /// Wraps a handler's future: inline if it fits, boxed if not (the size of an `async`
    /// block's future is known at compile time, so the check costs nothing at run time).
    pub fn new(future: impl Future<Output = MethodResult> + Send + 'a) -> Self {
        HandlerFuture {
            inner: stackfuture::StackFuture::from_or_box(future),
        }
    }
}

impl<'a> From<BoxFuture<'a, MethodResult>> for HandlerFuture<'a> {
    fn from(future: BoxFuture<'a, MethodResult>) -> Self {
        HandlerFuture::new(future)
    }
}

impl Future for HandlerFuture<'_> {
    type Output = MethodResult;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<MethodResult> {
        self.project().inner.poll(cx)
    }
}

/// A raw byte stream left after an `upgrade` (socket plus any bytes already buffered).
pub trait RawStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> RawStream for T {}

/// Takes over a connection after the upgrade confirmation has been sent.
pub type UpgradeHandler = Box<dyn FnOnce(Box<dyn RawStream>) -> BoxFuture<'static, ()> + Send>;

/// A handler's final reply.
pub enum Reply {
    /// An ordinary reply with these parameters (empty ones are omitted on the wire).
    Parameters(ReplyParameters),
    /// An ordinary reply that also passes file descriptors, sent with the reply's first byte
    /// (`SCM_RIGHTS`) and closed here once sent. Only a Unix socket can carry them: elsewhere
    /// the caller gets [`FDS_NOT_SUPPORTED`] instead and the descriptors are closed.
    WithFds {
        /// The reply's parameters.
        parameters: ReplyParameters,
        /// Descriptors to pass (at most 253, the kernel's limit per message).
        fds: Vec<OwnedFd>,
    },
    /// Confirm an `upgrade` call with these parameters, then hand the raw stream to `handler`.
    Upgrade {
        /// Parameters of the confirming reply.
        parameters: ReplyParameters,
        /// Runs with the raw connection once the confirmation is written.
        handler: UpgradeHandler,
    },
    /// The final reply was written already, by [`Call::reply`].
    Sent(SentReply),
}

/// Proof that [`Call::reply`] wrote a call's final reply; only it makes one.
#[derive(Debug)]
pub struct SentReply(());

/// A final reply's parameters: the handler's own value, serialized straight into the
/// connection's output buffer when the dispatcher writes the reply (no `serde_json::Value`
/// and no buffer of its own, so large replies go into the connection's kept buffer).
pub struct ReplyParameters(Option<Box<dyn ReplyValue>>);

/// A value that can be written as reply parameters.
trait ReplyValue: Send {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
}

impl<T: Serialize + Send> ReplyValue for T {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        crate::wire::to_writer(out, self)
    }
}

/// What a reply with parameters starts with.
const PARAMETERS_PREFIX: &[u8] = b"{\"parameters\":";

impl ReplyParameters {
    /// No parameters.
    pub fn empty() -> ReplyParameters {
        ReplyParameters(None)
    }

    /// `value`, to be serialized when the reply is written; it must serialize to a JSON object
    /// (or `null`, meaning none). Otherwise the caller gets `io.localrpc.InternalError`.
    pub fn new(value: impl Serialize + Send + 'static) -> ReplyParameters {
        ReplyParameters(Some(Box::new(value)))
    }

    /// Appends the final (not `continues`) reply and its NUL to `out`. Returns false when the
    /// parameters were not a JSON object: an `io.localrpc.InternalError` reply went out instead.
    fn append_to(self, out: &mut Vec<u8>) -> bool {
        match self.0 {
            None => {
                out.extend_from_slice(b"{}\0");
                true
            }
            Some(value) => append_final_reply(out, |out| value.write_json(out)),
        }
    }
}

/// Appends the final (not `continues`) reply and its NUL to `out`, the parameters written by
/// `write_json`. Returns false when they are not a JSON object (or `null`): an
/// `io.localrpc.InternalError` reply went out instead.
fn append_final_reply(
    out: &mut Vec<u8>,
    write_json: impl FnOnce(&mut Vec<u8>) -> Result<(), serde_json::Error>,
) -> bool {
    let start = out.len();
    out.extend_from_slice(PARAMETERS_PREFIX);
    let problem = match write_json(out) {
        Err(e) => Some(format!("reply does not serialize: {e}")),
        Ok(()) => match &out[start + PARAMETERS_PREFIX.len()..] {
            b"{}" | b"null" => {
                out.truncate(start + 1);
                None
            }
            [b'{', ..] => None,
            other => Some(format!(
                "reply is not a JSON object: {}",
                String::from_utf8_lossy(&other[..other.len().min(200)])
            )),
        },
    };
    if let Some(message) = problem {
        out.truncate(start);
        let error = internal_error(message);
        // A Map always serializes to an object, so encoding cannot fail.
        let _ = encode_reply(out, &error.parameters, false, Some(&error.name));
        return false;
    }
    out.extend_from_slice(b"}\0");
    true
}

impl Default for ReplyParameters {
    fn default() -> Self {
        ReplyParameters::empty()
    }
}

impl Reply {
    /// A reply without parameters.
    pub fn empty() -> Reply {
        Reply::Parameters(ReplyParameters::empty())
    }

    /// A reply whose parameters are `value` serialized; it must serialize to a JSON object
    /// (checked when the reply is written: otherwise the caller gets
    /// `io.localrpc.InternalError`).
    pub fn with(value: impl Serialize + Send + 'static) -> MethodResult {
        Ok(Reply::Parameters(ReplyParameters::new(value)))
    }

    /// Like [`Reply::with`], and passes `fds` with the reply (see [`Reply::WithFds`]).
    pub fn with_fds(value: impl Serialize + Send + 'static, fds: Vec<OwnedFd>) -> MethodResult {
        Ok(Reply::WithFds {
            parameters: ReplyParameters::new(value),
            fds,
        })
    }

    /// Confirms an `upgrade` call with `value` as parameters, then runs `handler` on the raw
    /// stream (see [`Reply::Upgrade`]).
    pub fn upgrade(
        value: impl Serialize + Send + 'static,
        handler: UpgradeHandler,
    ) -> MethodResult {
        Ok(Reply::Upgrade {
            parameters: ReplyParameters::new(value),
            handler,
        })
    }
}

impl From<Map<String, Value>> for Reply {
    fn from(parameters: Map<String, Value>) -> Reply {
        Reply::Parameters(ReplyParameters::new(parameters))
    }
}

fn internal_error(message: String) -> ErrorReply {
    tracing::error!(%message, "handler produced an invalid reply");
    ErrorReply::new("io.localrpc.InternalError", json!({ "message": message }))
}

/// Where replies go: a connection's output buffer and a way to write it out.
pub trait Output: Send {
    /// The buffer replies are appended to, in order.
    fn buffer(&mut self) -> &mut Vec<u8>;
    /// Writes out everything buffered so far (used for streamed replies).
    fn flush(&mut self) -> BoxFuture<'_, io::Result<()>>;

    /// Passes `fds` with the reply that starts at `offset` in [`Output::buffer`] (already
    /// appended): they must go out with its first byte. The default refuses (and closes them):
    /// only a connection on a Unix socket can carry descriptors.
    fn attach_fds(&mut self, offset: usize, fds: Vec<OwnedFd>) -> io::Result<()> {
        let _ = (offset, fds);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this connection cannot carry file descriptors",
        ))
    }
}

/// Why a streamed reply could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The call was made without `more`, so only the final reply may be sent.
    #[error("the call was made without the 'more' flag; only a final reply may be sent")]
    NotStreaming,
    /// The parameters do not serialize to a JSON object.
    #[error("reply parameters do not serialize to a JSON object: {0}")]
    Encode(#[from] serde_json::Error),
    /// The peer is gone; stop producing replies.
    #[error("the peer disconnected: {0}")]
    Disconnected(#[from] io::Error),
    /// The descriptors cannot be passed on this connection (not a Unix socket, too many);
    /// they are closed and the reply was not sent.
    #[error("cannot pass file descriptors: {0}")]
    FileDescriptors(io::Error),
    /// The final reply was sent already ([`Call::reply`]); nothing may follow it.
    #[error("the final reply was sent already; no reply may follow it")]
    Finished,
}

/// Lets a handler send `continues` replies to a `more` call before its final reply.
pub struct Replies<'a> {
    out: &'a mut dyn Output,
    more: bool,
    /// Set once [`Call::reply`] has written the final reply.
    finished: &'a mut bool,
}

impl Replies<'_> {
    /// True when the caller set `more`, so intermediate replies may be sent.
    pub fn streaming(&self) -> bool {
        self.more
    }

    /// Whether a `continues` reply may be sent now.
    fn may_continue(&self) -> Result<(), ReplyError> {
        if !self.more {
            return Err(ReplyError::NotStreaming);
        }
        if *self.finished {
            return Err(ReplyError::Finished);
        }
        Ok(())
    }

    /// Sends one reply with `"continues": true` and writes it out at once.
    pub async fn send(&mut self, parameters: impl Serialize) -> Result<(), ReplyError> {
        self.may_continue()?;
        encode_reply(self.out.buffer(), &parameters, true, None)?;
        self.out.flush().await?;
        Ok(())
    }

    /// Like [`Replies::send`], and passes `fds` with this reply (sent with its first byte,
    /// then closed here). Fails with [`ReplyError::FileDescriptors`] where the connection
    /// cannot carry them (not a Unix socket).
    pub async fn send_with_fds(
        &mut self,
        parameters: impl Serialize,
        fds: Vec<OwnedFd>,
    ) -> Result<(), ReplyError> {
        self.may_continue()?;
        let start = self.out.buffer().len();
        encode_reply(self.out.buffer(), &parameters, true, None)?;
        if !fds.is_empty()
            && let Err(e) = self.out.attach_fds(start, fds)
        {
            self.out.buffer().truncate(start);
            return Err(ReplyError::FileDescriptors(e));
        }
        self.out.flush().await?;
        Ok(())
    }
}

/// One call as a handler sees it.
pub struct Call<'a> {
    /// The parameters, already checked against the method's IDL.
    parameters: Parameters<'a>,
    /// Op id, peer credentials, flags.
    pub context: &'a CallContext,
    /// For streamed (`more`) replies.
    pub replies: Replies<'a>,
    /// File descriptors that came with the call (`SCM_RIGHTS`, with its first byte), in the
    /// order sent. Always empty unless the method accepts them
    /// ([`InterfaceBuilder::accept_fds`]); those not taken are closed when the call is dropped.
    pub fds: Vec<OwnedFd>,
}

/// A call's parameters: the JSON text as received, parsed into a map only if a handler asks
/// for one (typed handlers decode the text directly with [`Call::decode`]).
struct Parameters<'a> {
    json: &'a str,
    /// Boxed: only handlers that ask for a map pay for the box, while the map inline would
    /// make every handler's future 64 bytes larger (see [`HandlerFuture`]).
    map: OnceLock<Box<Map<String, Value>>>,
}

impl<'a> Call<'a> {
    /// The parameters decoded into `T` (typically the method's generated input struct): one
    /// pass over the JSON text, by a reader that relies on the IDL check having read it (the
    /// result is serde_json's). They were checked against the IDL already, so this fails only
    /// when `T` does not match the IDL; the caller then gets `InvalidParameter`.
    pub fn decode<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ErrorReply> {
        let decoded = match self.parameters.map.take() {
            Some(map) => serde_json::from_value(Value::Object(*map)),
            None => crate::wire::decode_prechecked(self.parameters.json),
        };
        decoded.map_err(|e| {
            tracing::debug!(method = %self.context.method, op_id = %self.context.op_id, error = %e,
                "parameters do not decode");
            ErrorReply::invalid_parameter(field_named_in(&e.to_string()).unwrap_or("parameters"))
        })
    }

    /// Sends the final reply with `value` as its parameters, serialized straight into the
    /// connection's output; the handler then returns what this returns
    /// (`return call.reply(&output);`). Cheaper than [`Reply::with`], which keeps the value
    /// (boxed) until the dispatcher writes it. `value` must serialize to a JSON object (or
    /// `null`, meaning none); otherwise the caller gets `io.localrpc.InternalError`. Nothing
    /// is written for a `oneway` call. Only the first final reply counts: a second one, or a
    /// different result returned after this, is dropped and logged.
    pub fn reply(&mut self, value: &(impl Serialize + ?Sized)) -> MethodResult {
        if *self.replies.finished {
            tracing::error!(method = %self.context.method, op_id = %self.context.op_id,
                "a second final reply was dropped");
        } else {
            *self.replies.finished = true;
            if !self.context.flags.oneway {
                append_final_reply(self.replies.out.buffer(), |out| {
                    crate::wire::to_writer(out, value)
                });
            }
        }
        Ok(Reply::Sent(SentReply(())))
    }

    /// The parameters as JSON text, exactly as the caller sent them (`{}` when it sent none).
    pub fn parameters_json(&self) -> &'a str {
        self.parameters.json
    }

    /// The parameters as a map (parsed on first use).
    pub fn parameters(&self) -> &Map<String, Value> {
        // The text was parsed and checked already, so it is a valid object.
        self.parameters.map.get_or_init(|| {
            Box::new(serde_json::from_str(self.parameters.json).unwrap_or_default())
        })
    }

    /// A parameter deserialized into `T`, or `InvalidParameter` naming it.
    pub fn parameter<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ErrorReply> {
        let value = self.parameters().get(name).cloned().unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|_| ErrorReply::invalid_parameter(name))
    }

    /// Like [`Call::parameter`], but moves the value out instead of copying it (absent is
    /// `null`, so `Option` parameters decode to `None`).
    pub fn take_parameter<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<T, ErrorReply> {
        self.parameters();
        let value = self
            .parameters
            .map
            .get_mut()
            .and_then(|map| map.remove(name))
            .unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|_| ErrorReply::invalid_parameter(name))
    }
}

/// The field a serde error message names in backquotes (`missing field \`name\``), if any.
fn field_named_in(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

/// A method implementation.
///
/// Implemented for closures `|call: Call<'_>| Box::pin(async move { ... })`; generated code
/// implements it directly and returns `HandlerFuture::new(async move { ... })`, which needs
/// no allocation per call.
pub trait MethodHandler: Send + Sync + 'static {
    /// Serves one call.
    fn call<'a>(&'a self, call: Call<'a>) -> HandlerFuture<'a>;
}

impl<F> MethodHandler for F
where
    F: for<'a> Fn(Call<'a>) -> BoxFuture<'a, MethodResult> + Send + Sync + 'static,
{
    fn call<'a>(&'a self, call: Call<'a>) -> HandlerFuture<'a> {
        HandlerFuture::from(self(call))
    }
}

/// Which flag a method insists on; without it callers get `ExpectedMore` or
/// `ExpectedUpgrade` before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requires {
    /// Any call (a method that streams when `more` is set may still answer plain calls once).
    #[default]
    Nothing,
    /// Only calls with `more`.
    More,
    /// Only calls with `upgrade`.
    Upgrade,
}

struct MethodSlot {
    /// `interface.Method`, shared with every call's context.
    full_name: Arc<str>,
    /// Index of the method's declaration in the interface's members.
    member: usize,
    handler: Option<Box<dyn MethodHandler>>,
    requires: Requires,
    /// Overrides the interface's policy for this method.
    policy: Option<AccessPolicy>,
    /// Calls may pass file descriptors ([`InterfaceBuilder::accept_fds`]).
    accepts_fds: bool,
}

/// The method a connection called last, if it was found: a connection that calls one method
/// again and again (as most do) finds it with one comparison of its name instead of a hash
/// lookup. Kept by the connection, for the one service it was found in.
/// (Its indexes, as the service's map holds them: one word in every connection's future.)
#[derive(Default)]
pub(crate) struct LastMethod<'s>(Option<&'s (usize, usize)>);

/// A method found in the registry.
#[derive(Clone, Copy)]
struct Target<'s> {
    entry: &'s InterfaceEntry,
    slot: &'s MethodSlot,
}

impl<'s> Target<'s> {
    /// The method's input parameters.
    fn input(&self) -> &'s [localrpc_idl::Field] {
        &self.entry.declaration(self.slot).input
    }

    /// The length of the parameters object `text` starts with, if the fast check surely
    /// accepts it ([`localrpc_idl::accepts_parameters_prefix`]); never for an interface that
    /// fills in zero values first.
    fn accepts_prefix(&self, text: &str) -> Option<usize> {
        if self.entry.zero_values {
            return None;
        }
        localrpc_idl::accepts_parameters_prefix(&self.entry.idl, self.input(), text)
    }
}

struct InterfaceEntry {
    text: String,
    idl: Interface,
    /// One slot per method, in declaration order.
    methods: Vec<MethodSlot>,
    /// Fill missing non-nullable parameters with zero values before checking.
    zero_values: bool,
    /// Who may call this interface's methods (unless a method has its own policy).
    policy: Option<AccessPolicy>,
}

impl InterfaceEntry {
    /// The declaration of the method in `slot`.
    fn declaration(&self, slot: &MethodSlot) -> &localrpc_idl::Method {
        let Member::Method(declaration) = &self.idl.members[slot.member] else {
            unreachable!("method slots index method declarations");
        };
        declaration
    }

    /// The index of method `name`'s slot, if the interface declares it.
    fn slot_index(&self, name: &str) -> Option<usize> {
        self.methods
            .iter()
            .position(|slot| self.declaration(slot).name == name)
    }

    /// The slot of method `name`, if the interface declares it.
    fn slot_mut(&mut self, name: &str) -> Option<&mut MethodSlot> {
        let index = self.slot_index(name)?;
        Some(&mut self.methods[index])
    }
}

/// A mistake in how a service was put together.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The IDL text does not parse.
    #[error("invalid interface definition: {0}")]
    Idl(#[from] localrpc_idl::ParseError),
    /// A handler was registered for a method the IDL does not declare.
    #[error("interface {interface} declares no method {method}")]
    UndeclaredMethod {
        /// The interface.
        interface: String,
        /// The method name.
        method: String,
    },
    /// The service's identity (GetInfo) does not serialize.
    #[error("invalid service information: {0}")]
    Info(String),
    /// The same interface was registered twice.
    #[error("interface {0} is registered twice")]
    DuplicateInterface(String),
}

/// One interface under construction: its IDL text and the handlers of its methods.
pub struct InterfaceBuilder {
    entry: InterfaceEntry,
    error: Option<BuildError>,
}

impl InterfaceBuilder {
    /// Starts an interface from its IDL text (served verbatim by GetInterfaceDescription).
    pub fn new(idl_text: impl Into<String>) -> Result<Self, BuildError> {
        let text = idl_text.into();
        let idl = localrpc_idl::parse(&text)?;
        let methods = idl
            .members
            .iter()
            .enumerate()
            .filter_map(|(member, m)| match m {
                Member::Method(m) => Some(MethodSlot {
                    full_name: format!("{}.{}", idl.name, m.name).into(),
                    member,
                    handler: None,
                    requires: Requires::Nothing,
                    policy: None,
                    accepts_fds: false,
                }),
                _ => None,
            })
            .collect();
        Ok(InterfaceBuilder {
            entry: InterfaceEntry {
                text,
                idl,
                methods,
                zero_values: false,
                policy: None,
            },
            error: None,
        })
    }

    /// Accepts calls that leave out (or send `null` for) non-nullable parameters that have an
    /// obvious zero value (`""`, `0`, `false`, `[]`, `{}`), as Go implementations do, instead of
    /// answering `InvalidParameter`. Off by default: use it for parity with such peers.
    pub fn fill_zero_values(mut self) -> Self {
        self.entry.zero_values = true;
        self
    }

    /// Restricts every method of this interface to the callers `policy` allows (others get
    /// `PermissionDenied`). Overrides the service-wide policy.
    pub fn policy(mut self, policy: AccessPolicy) -> Self {
        self.entry.policy = Some(policy);
        self
    }

    /// Restricts one method; overrides the interface's and the service's policy.
    pub fn method_policy(mut self, name: &str, policy: AccessPolicy) -> Self {
        match self.entry.slot_mut(name) {
            Some(slot) => slot.policy = Some(policy),
            None => {
                self.error.get_or_insert(BuildError::UndeclaredMethod {
                    interface: self.entry.idl.name.clone(),
                    method: name.to_owned(),
                });
            }
        }
        self
    }

    /// Lets calls of method `name` pass file descriptors (UAPI.20: `SCM_RIGHTS` with the
    /// call's first byte); the handler finds them in [`Call::fds`]. Off by default: a call of
    /// any other method that comes with descriptors gets [`FDS_NOT_ACCEPTED`] and they are
    /// closed. Connections of a service where no method accepts descriptors read without
    /// ancillary data, so the kernel discards any a peer sends.
    pub fn accept_fds(mut self, name: &str) -> Self {
        match self.entry.slot_mut(name) {
            Some(slot) => slot.accepts_fds = true,
            None => {
                self.error.get_or_insert(BuildError::UndeclaredMethod {
                    interface: self.entry.idl.name.clone(),
                    method: name.to_owned(),
                });
            }
        }
        self
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.entry.idl.name
    }

    fn register(mut self, name: &str, handler: Box<dyn MethodHandler>, requires: Requires) -> Self {
        match self.entry.slot_mut(name) {
            Some(slot) => {
                slot.handler = Some(handler);
                slot.requires = requires;
            }
            None => {
                self.error.get_or_insert(BuildError::UndeclaredMethod {
                    interface: self.entry.idl.name.clone(),
                    method: name.to_owned(),
                });
            }
        }
        self
    }

    /// Serves `name` with a closure `|call| Box::pin(async move { ... })`. Declared methods
    /// without a handler answer `MethodNotImplemented`.
    pub fn method<F>(self, name: &str, handler: F) -> Self
    where
        F: for<'a> Fn(Call<'a>) -> BoxFuture<'a, MethodResult> + Send + Sync + 'static,
    {
        self.register(name, Box::new(handler), Requires::Nothing)
    }

    /// Serves a method that only works with `more`; without it callers get `ExpectedMore`.
    pub fn streaming_method<F>(self, name: &str, handler: F) -> Self
    where
        F: for<'a> Fn(Call<'a>) -> BoxFuture<'a, MethodResult> + Send + Sync + 'static,
    {
        self.register(name, Box::new(handler), Requires::More)
    }

    /// Serves a method that only works with `upgrade`; without it callers get
    /// `ExpectedUpgrade`.
    pub fn upgrade_method<F>(self, name: &str, handler: F) -> Self
    where
        F: for<'a> Fn(Call<'a>) -> BoxFuture<'a, MethodResult> + Send + Sync + 'static,
    {
        self.register(name, Box::new(handler), Requires::Upgrade)
    }

    /// Serves `name` with any [`MethodHandler`] (generated code uses this).
    pub fn handler(self, name: &str, handler: impl MethodHandler, requires: Requires) -> Self {
        self.register(name, Box::new(handler), requires)
    }
}

/// Builds a [`Service`]: identity for GetInfo plus interfaces in registration order.
#[derive(Default)]
pub struct ServiceBuilder {
    policy: Option<AccessPolicy>,
    vendor: String,
    product: String,
    version: String,
    url: String,
    interfaces: Vec<InterfaceBuilder>,
}

impl ServiceBuilder {
    /// GetInfo's `vendor`.
    pub fn vendor(mut self, vendor: impl Into<String>) -> Self {
        self.vendor = vendor.into();
        self
    }
    /// GetInfo's `product`.
    pub fn product(mut self, product: impl Into<String>) -> Self {
        self.product = product.into();
        self
    }
    /// GetInfo's `version`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }
    /// GetInfo's `url`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }
    /// The policy of every added interface that has none of its own; `org.varlink.service`
    /// (introspection) stays open to everyone.
    pub fn policy(mut self, policy: AccessPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Adds an interface; GetInfo lists interfaces in the order they were added.
    pub fn interface(mut self, interface: InterfaceBuilder) -> Self {
        self.interfaces.push(interface);
        self
    }

    /// Checks the registrations and builds the service.
    pub fn build(mut self) -> Result<Service, BuildError> {
        let mut names = vec![ORG_VARLINK_SERVICE.to_owned()];
        let mut texts = HashMap::new();
        texts.insert(
            ORG_VARLINK_SERVICE.to_owned(),
            ORG_VARLINK_SERVICE_IDL.to_owned(),
        );
        for builder in &mut self.interfaces {
            if let Some(error) = builder.error.take() {
                return Err(error);
            }
            let name = builder.name().to_owned();
            if texts
                .insert(name.clone(), builder.entry.text.clone())
                .is_some()
            {
                return Err(BuildError::DuplicateInterface(name));
            }
            names.push(name);
        }
        let info = json!({
            "vendor": self.vendor,
            "product": self.product,
            "version": self.version,
            "url": self.url,
            "interfaces": names,
        });
        let introspection = serve_introspection(
            InterfaceBuilder::new(ORG_VARLINK_SERVICE_IDL)?,
            shared_info(&info)?,
            texts,
        );
        let accepts_fds = self
            .interfaces
            .iter()
            .any(|i| i.entry.methods.iter().any(|slot| slot.accepts_fds));
        let mut interfaces = vec![introspection.entry];
        for builder in self.interfaces {
            let mut entry = builder.entry;
            if entry.policy.is_none() {
                entry.policy = self.policy.clone();
            }
            interfaces.push(entry);
        }
        Ok(Service {
            methods: method_index(&interfaces),
            interfaces,
            call_timeout: None,
            accepts_fds,
            info,
            policy: self.policy,
        })
    }
}

/// Every method of `interfaces` by its full name, with the indexes of its interface and slot.
fn method_index(interfaces: &[InterfaceEntry]) -> HashMap<Arc<str>, (usize, usize)> {
    let mut methods = HashMap::new();
    for (interface, entry) in interfaces.iter().enumerate() {
        for (index, slot) in entry.methods.iter().enumerate() {
            methods.insert(slot.full_name.clone(), (interface, index));
        }
    }
    methods
}

/// The IDL of `org.varlink.service`, served for GetInterfaceDescription.
pub(crate) const ORG_VARLINK_SERVICE_IDL: &str = include_str!("org.varlink.service.varlink");

/// GetInfo's answer, serialized once for every call.
fn shared_info(info: &Value) -> Result<SharedJson, BuildError> {
    let info =
        serde_json::value::to_raw_value(info).map_err(|e| BuildError::Info(e.to_string()))?;
    Ok(SharedJson(Arc::from(info)))
}

/// `org.varlink.service` (its IDL already in `builder`) answering GetInfo with `info` and
/// GetInterfaceDescription from `texts`.
fn serve_introspection(
    builder: InterfaceBuilder,
    info: SharedJson,
    texts: HashMap<String, String>,
) -> InterfaceBuilder {
    let texts = Arc::new(texts);
    builder
        .handler("GetInfo", GetInfo(info), Requires::Nothing)
        .method("GetInterfaceDescription", move |mut call| {
            #[derive(serde::Deserialize)]
            struct Input {
                interface: String,
            }
            let texts = texts.clone();
            Box::pin(async move {
                let Input { interface } = call.decode()?;
                match texts.get(&interface) {
                    Some(text) => Reply::with(json!({ "description": text })),
                    None => Err(ErrorReply::interface_not_found(&interface)),
                }
            })
        })
}

/// `org.varlink.service.GetInfo`: the answer, serialized once, written straight into the
/// connection's output. (A handler of its own rather than a closure: a closure's future is
/// boxed, and `Reply::with` boxes its value; GetInfo is called often, by monitors and peers
/// checking a service, and this way it allocates nothing.)
struct GetInfo(SharedJson);

impl MethodHandler for GetInfo {
    fn call<'a>(&'a self, mut call: Call<'a>) -> HandlerFuture<'a> {
        HandlerFuture::new(std::future::ready(call.reply(&self.0)))
    }
}

/// JSON text serialized once and shared by every reply that carries it.
#[derive(Clone)]
struct SharedJson(Arc<serde_json::value::RawValue>);

impl Serialize for SharedJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// What the connection does after a call was dispatched.
pub enum Dispatched {
    /// Go on reading calls.
    Continue,
    /// The confirmation is buffered; flush it, then give the raw stream to this handler.
    Upgrade(UpgradeHandler),
}

/// A set of interfaces ready to serve calls.
pub struct Service {
    /// Every interface, `org.varlink.service` included.
    interfaces: Vec<InterfaceEntry>,
    /// Every method by its full name (`interface.Method`): the indexes of its interface in
    /// `interfaces` and of its slot there. Calls find their method with this one lookup.
    methods: HashMap<Arc<str>, (usize, usize)>,
    /// Longest a handler may run before the call fails with `io.localrpc.CallTimedOut`.
    call_timeout: Option<std::time::Duration>,
    /// Some method accepts file descriptors.
    accepts_fds: bool,
    /// GetInfo's answer, kept for [`Service::add_interfaces`].
    info: Value,
    /// The service-wide policy ([`ServiceBuilder::policy`]), for [`Service::add_interfaces`].
    policy: Option<AccessPolicy>,
}

/// The log target of the line every call gets at debug level ("call completed" or "call
/// failed", with the method, the op id, the time from routing to its result and the error's
/// name), also a call refused before its handler (unknown method, invalid parameters,
/// permission denied); a message that breaks the protocol closes its connection instead.
/// `LOCALRPC_LOG=info,localrpc::call=debug` turns on just these lines.
pub const CALL_LOG: &str = "localrpc::call";

/// The error a call gets when its handler outlives the per-call deadline.
pub const CALL_TIMED_OUT: &str = "io.localrpc.CallTimedOut";

/// The error a call gets when it came with file descriptors but its method does not accept
/// them (`method`: the fully qualified method). The descriptors are closed.
pub const FDS_NOT_ACCEPTED: &str = "io.localrpc.FileDescriptorsNotAccepted";

/// The error a call gets instead of a reply with file descriptors when the connection
/// cannot carry them (not a Unix socket, or more than 253); `reason` says which. The
/// descriptors are closed.
pub const FDS_NOT_SUPPORTED: &str = "io.localrpc.FileDescriptorsNotSupported";

impl Service {
    /// Starts building a service.
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder::default()
    }

    /// Sets the per-call deadline: a handler still running after `timeout` is dropped and
    /// the call fails with `io.localrpc.CallTimedOut` (`seconds`: the deadline). Replies a
    /// streaming handler sent before that stay sent. `None` (the default): no deadline.
    pub fn set_call_timeout(&mut self, timeout: Option<std::time::Duration>) {
        self.call_timeout = timeout;
    }

    /// Adds interfaces to a built service, after the interfaces it was built with: GetInfo
    /// lists them and GetInterfaceDescription describes them. Each gets the service-wide
    /// policy ([`ServiceBuilder::policy`]) unless it has its own. The daemon runtime adds its
    /// control interfaces this way. On an error (e.g. a name the service already has, see
    /// [`Service::has_interface`]) the service is unchanged.
    pub fn add_interfaces(
        &mut self,
        interfaces: impl IntoIterator<Item = InterfaceBuilder>,
    ) -> Result<(), BuildError> {
        let mut info = self.info.clone();
        let mut texts: HashMap<String, String> = self
            .interfaces
            .iter()
            .map(|entry| (entry.idl.name.clone(), entry.text.clone()))
            .collect();
        let mut added = Vec::new();
        for InterfaceBuilder { mut entry, error } in interfaces {
            if let Some(error) = error {
                return Err(error);
            }
            let name = entry.idl.name.clone();
            if texts.insert(name.clone(), entry.text.clone()).is_some() {
                return Err(BuildError::DuplicateInterface(name));
            }
            if let Some(names) = info.get_mut("interfaces").and_then(Value::as_array_mut) {
                names.push(Value::String(name));
            }
            if entry.policy.is_none() {
                entry.policy = self.policy.clone();
            }
            added.push(entry);
        }
        let answer = shared_info(&info)?;
        self.info = info;
        for entry in added {
            self.accepts_fds |= entry.methods.iter().any(|slot| slot.accepts_fds);
            self.interfaces.push(entry);
        }
        // The introspection interface keeps its parsed IDL and gets handlers with the new
        // answers (parsing it again would add to every daemon's start-up).
        if let Some(index) = self.interface_index(ORG_VARLINK_SERVICE) {
            let entry = self.interfaces.swap_remove(index);
            let builder = InterfaceBuilder { entry, error: None };
            let introspection = serve_introspection(builder, answer, texts);
            self.interfaces.push(introspection.entry);
        }
        self.methods = method_index(&self.interfaces);
        Ok(())
    }

    /// True when the service has an interface of this name.
    pub fn has_interface(&self, name: &str) -> bool {
        self.interface_index(name).is_some()
    }

    /// Where interface `name` is in `interfaces`.
    fn interface_index(&self, name: &str) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|entry| entry.idl.name == name)
    }

    /// True when some method accepts file descriptors ([`InterfaceBuilder::accept_fds`]);
    /// only then do connections read ancillary data.
    pub fn accepts_fds(&self) -> bool {
        self.accepts_fds
    }

    /// Handles one message (its bytes without the NUL): parses it, routes it, checks its
    /// parameters, runs the handler and appends the replies to `out`.
    ///
    /// A protocol violation is returned as an error: the caller must close the connection.
    /// Everything else (unknown interface or method, bad parameters, handler errors) becomes
    /// an error reply and the connection stays usable.
    pub async fn handle(
        &self,
        message: &[u8],
        peer: Option<PeerCredentials>,
        out: &mut dyn Output,
    ) -> Result<Dispatched, ProtocolError> {
        let peer = Peer {
            credentials: peer,
            pidfd: PeerPidfd::default(),
        };
        self.handle_peer(message, &peer, out).await
    }

    /// [`Service::handle`] with everything known about the peer (the server uses this).
    pub async fn handle_peer(
        &self,
        message: &[u8],
        peer: &Peer,
        out: &mut dyn Output,
    ) -> Result<Dispatched, ProtocolError> {
        self.handle_peer_with_fds(message, peer, Vec::new(), out)
            .await
    }

    /// [`Service::handle_peer`] for a message that came with file descriptors: they go to
    /// the handler if its method accepts them ([`Call::fds`]); otherwise they are closed and
    /// the call fails with [`FDS_NOT_ACCEPTED`].
    pub async fn handle_peer_with_fds(
        &self,
        message: &[u8],
        peer: &Peer,
        fds: Vec<OwnedFd>,
        out: &mut dyn Output,
    ) -> Result<Dispatched, ProtocolError> {
        self.handle_on_connection(message, peer, fds, out, &mut LastMethod::default())
            .await
    }

    /// [`Service::handle_peer_with_fds`] for a call on a connection that keeps the method it
    /// called last (`last`, only ever used with this service). The call is routed to its
    /// handler here; a protocol violation (the connection must close) is the outer error, and
    /// a call refused before its handler gets its error reply.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would keep a second copy of its arguments in its future"
    )]
    pub(crate) fn handle_on_connection<'s>(
        &'s self,
        message: &[u8],
        peer: &Peer,
        fds: Vec<OwnedFd>,
        out: &mut dyn Output,
        last: &mut LastMethod<'s>,
    ) -> impl Future<Output = Result<Dispatched, ProtocolError>> {
        async move {
            // The method is looked up and its parameters checked while the envelope is read, so
            // that they are read once (the envelope skips them when the check accepts them).
            // (In a block: `found` is borrowed by the check, and a borrowed local would otherwise
            // be kept in this function's future across the handler's `await`, in every
            // connection's future.)
            let (call, prechecked) = {
                let mut found = None;
                let expected = last.0.map(|&at| self.target_at(at));
                let (call, checked) = CallMessage::parse_envelope_expecting(
                    message,
                    expected.map(|target| &*target.slot.full_name),
                    |method, as_expected, parameters| {
                        let target = match expected {
                            Some(target) if as_expected => target,
                            _ => {
                                let at = self.methods.get(method)?;
                                last.0 = Some(at);
                                self.target_at(*at)
                            }
                        };
                        found = Some(target);
                        // A method's full name is its interface's, a dot and the member.
                        let member_start = target.entry.idl.name.len() + 1;
                        Some((member_start, target.accepts_prefix(parameters)?))
                    },
                )?;
                // Unless its check was used, the envelope may have been read another way.
                (call, if checked { found } else { None })
            };
            let flags = call.flags;
            // Routing, in this block rather than a future of its own: awaiting a nested future
            // cost every call its poll, the copy of its result and an out-of-line drop.
            let result: MethodResult = 'route: {
                // Names the call in every log line about it, and in the handler's context.
                let op_id = OpId::adopt_or_mint(call.op_id);
                // One debug line per call (target `localrpc::call`), refused or run: the clock is only
                // read when that line is wanted.
                let started = tracing::enabled!(target: CALL_LOG, tracing::Level::DEBUG)
                    .then(std::time::Instant::now);
                let parameters_checked = prechecked.is_some();
                let target = match prechecked {
                    Some(target) => target,
                    None => match self.target(&call.method) {
                        Some(target) => target,
                        None => {
                            let (interface, _) = call.split_method();
                            let reply = if self.has_interface(interface) {
                                ErrorReply::method_not_found(&call.method)
                            } else {
                                ErrorReply::interface_not_found(interface)
                            };
                            break 'route refuse_unread(started, &call, op_id, reply)?;
                        }
                    },
                };
                let (entry, slot) = (target.entry, target.slot);
                if let Some(policy) = slot.policy.as_ref().or(entry.policy.as_ref())
                    && !policy.allows(peer.credentials.as_ref())
                {
                    tracing::info!(method = %call.method, %op_id, peer = ?peer.credentials, "permission denied");
                    break 'route refuse_unread(
                        started,
                        &call,
                        op_id,
                        ErrorReply::permission_denied(),
                    )?;
                }
                if !fds.is_empty() && !slot.accepts_fds {
                    tracing::warn!(method = %call.method, %op_id, peer = ?peer.credentials, count = fds.len(),
                    "closing file descriptors sent to a method that does not accept them");
                    break 'route refuse_unread(
                        started,
                        &call,
                        op_id,
                        ErrorReply::new(FDS_NOT_ACCEPTED, json!({ "method": call.method })),
                    )?;
                }
                // The declaration is looked up only here, when the envelope's reader did not check
                // the parameters already (most calls need none of it). (In a block: the verdict and
                // the parameters as borrowed here would otherwise be kept in every connection's
                // future across the handler's `await`; the block's result is only moved.)
                let parameters = {
                    let parameters = Parameters {
                        json: call.parameters,
                        map: OnceLock::new(),
                    };
                    let checked = if parameters_checked {
                        Ok(())
                    } else {
                        let input = target.input();
                        if entry.zero_values {
                            // The slow path, for parity with peers that leave parameters out: fill in a
                            // map and check that; handlers then decode from the map.
                            let mut map = parameters_map(call.parameters)?;
                            localrpc_idl::fill_zero_values(&entry.idl, input, &mut map);
                            let checked = localrpc_idl::check_parameters(&entry.idl, input, &map);
                            let _ = parameters.map.set(Box::new(map));
                            checked
                        } else {
                            localrpc_idl::check_parameters_str(&entry.idl, input, call.parameters)
                        }
                    };
                    if let Err(error) = checked {
                        if error.path.is_empty() && error.reason.starts_with("invalid JSON") {
                            return Err(ProtocolError {
                                reason: format!("invalid parameters: {}", error.reason),
                            });
                        }
                        tracing::debug!(method = %call.method, %op_id, %error, "invalid parameters");
                        break 'route refused(
                            started,
                            &call,
                            op_id,
                            ErrorReply::invalid_parameter(&error.path),
                        );
                    }
                    parameters
                };
                let Some(handler) = &slot.handler else {
                    break 'route refused(
                        started,
                        &call,
                        op_id,
                        ErrorReply::method_not_implemented(&call.method),
                    );
                };
                match slot.requires {
                    Requires::More if !call.flags.more => {
                        break 'route refused(started, &call, op_id, ErrorReply::expected_more());
                    }
                    Requires::Upgrade if !call.flags.upgrade => {
                        break 'route refused(
                            started,
                            &call,
                            op_id,
                            ErrorReply::expected_upgrade(),
                        );
                    }
                    _ => {}
                }
                let context = CallContext {
                    method: slot.full_name.clone(),
                    op_id,
                    peer: peer.credentials,
                    peer_pidfd: peer.pidfd.clone(),
                    flags: call.flags,
                };
                let mut finished = false;
                let replies = Replies {
                    out: &mut *out,
                    more: context.flags.more,
                    finished: &mut finished,
                };
                let running = handler.call(Call {
                    parameters,
                    context: &context,
                    replies,
                    fds,
                });
                let result = match self.call_timeout {
                    None => running.await,
                    // Boxed: a timer inline would make every connection's future 128 bytes larger,
                    // with or without a time limit.
                    Some(limit) => match Box::pin(tokio::time::timeout(limit, running)).await {
                        Ok(result) => result,
                        Err(_) => {
                            tracing::warn!(method = %context.method, op_id = %context.op_id, ?limit, "call timed out");
                            Err(ErrorReply::new(
                                CALL_TIMED_OUT,
                                json!({ "seconds": limit.as_secs_f64() }),
                            ))
                        }
                    },
                };
                log_call(started, &context.method, context.op_id, &result);
                if finished && !matches!(result, Ok(Reply::Sent(_))) {
                    tracing::error!(method = %context.method, op_id = %context.op_id,
                    "the handler sent its final reply with Call::reply, then returned another result; it is dropped");
                    break 'route Ok(Reply::Sent(SentReply(())));
                }
                result
            };
            if flags.oneway {
                if let Err(error) = &result {
                    tracing::debug!(%error, "oneway call failed; no reply is sent");
                }
                return Ok(Dispatched::Continue);
            }
            let buffer = out.buffer();
            let start = buffer.len();
            let (fds, upgrade) = match result {
                Ok(Reply::Parameters(parameters)) => {
                    parameters.append_to(buffer);
                    (Vec::new(), None)
                }
                Ok(Reply::WithFds { parameters, fds }) => {
                    // Descriptors go only with a reply that was written as intended.
                    let sent = parameters.append_to(buffer);
                    (if sent { fds } else { Vec::new() }, None)
                }
                Ok(Reply::Upgrade {
                    parameters,
                    handler,
                }) => {
                    let confirmed = parameters.append_to(buffer);
                    (Vec::new(), (flags.upgrade && confirmed).then_some(handler))
                }
                Ok(Reply::Sent(SentReply(()))) => (Vec::new(), None),
                Err(ErrorReply { name, parameters }) => {
                    // A Map always serializes to an object, so encoding cannot fail.
                    let _ = encode_reply(buffer, &parameters, false, Some(&name));
                    (Vec::new(), None)
                }
            };
            if !fds.is_empty()
                && let Err(e) = out.attach_fds(start, fds)
            {
                tracing::warn!(error = %e, "reply not sent: its file descriptors cannot be passed");
                out.buffer().truncate(start);
                let _ = encode_reply(
                    out.buffer(),
                    &json!({ "reason": e.to_string() }),
                    false,
                    Some(FDS_NOT_SUPPORTED),
                );
            }
            Ok(upgrade.map_or(Dispatched::Continue, Dispatched::Upgrade))
        }
    }

    /// The entry and slot of `method` (`interface.Method`), if both exist.
    fn target(&self, method: &str) -> Option<Target<'_>> {
        self.methods.get(method).map(|&at| self.target_at(at))
    }

    /// The entry and slot at these indexes (a value of `methods`).
    fn target_at(&self, (interface, slot): (usize, usize)) -> Target<'_> {
        let entry = &self.interfaces[interface];
        Target {
            entry,
            slot: &entry.methods[slot],
        }
    }
}

/// The result of a call refused before its handler, logged as every call is ([`log_call`]).
/// (Functions rather than closures in `handle_on_connection`'s routing block: a closure still
/// in scope at the handler's `await` would be kept in every call's future.)
fn refused(
    started: Option<std::time::Instant>,
    call: &CallMessage<'_>,
    op_id: OpId,
    reply: ErrorReply,
) -> MethodResult {
    let result = Err(reply);
    log_call(started, &call.method, op_id, &result);
    result
}

/// [`refused`] for a call whose parameters were not read yet: a reply must not hide a
/// malformed message, for which the connection closes as for any other.
fn refuse_unread(
    started: Option<std::time::Instant>,
    call: &CallMessage<'_>,
    op_id: OpId,
    reply: ErrorReply,
) -> Result<MethodResult, ProtocolError> {
    validate_json(call.parameters)?;
    Ok(refused(started, call, op_id, reply))
}

/// The call's debug line (target [`CALL_LOG`]), if `started` says it is wanted.
///
/// Inlined for its test of `started` alone: the line is off by default, and a call to find
/// that out cost every call a dozen instructions.
#[inline(always)]
fn log_call(started: Option<std::time::Instant>, method: &str, op_id: OpId, result: &MethodResult) {
    if let Some(started) = started {
        write_call_log(started, method, op_id, result);
    }
}

/// [`log_call`]'s line, for a call that started at `started`.
#[inline(never)]
fn write_call_log(started: std::time::Instant, method: &str, op_id: OpId, result: &MethodResult) {
    // A u64, which JSON logs write as a number (a u128 becomes a string).
    let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match result {
        Ok(_) => tracing::debug!(target: CALL_LOG, method = %method, %op_id, duration_us,
            "call completed"),
        Err(error) => tracing::debug!(target: CALL_LOG, method = %method, %op_id, duration_us,
            error = %error.name, "call failed"),
    }
}

/// Parameters text (already parsed once as a JSON object) as a map.
fn parameters_map(json: &str) -> Result<Map<String, Value>, ProtocolError> {
    serde_json::from_str(json).map_err(|e| ProtocolError {
        reason: format!("invalid parameters: {e}"),
    })
}
