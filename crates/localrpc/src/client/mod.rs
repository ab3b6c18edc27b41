//! The client: connect to an address, call methods, stream `more` replies, send `oneway`
//! calls, `upgrade` to a raw stream, and pipeline many calls on one connection.
//!
//! On the wire it writes what varlinkctl writes: no false flags, no empty parameters.
//!
//! File descriptors ([`Connection::call_with_fds`], Unix sockets only): the call's descriptors
//! go with its first byte. A connection reads with plain `read` (the kernel discards any
//! descriptors the server sends) until its first `call_with_fds` (or
//! [`Connection::accept_fds`]); from then on it reads with `recvmsg` and closes descriptors
//! that come with replies nobody asked descriptors of.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use crate::service::{ErrorReply, OpId};
use crate::transport::{
    Address, AddressError, FdReceiver, Received, Stream, UpgradedStream, write_all_with_fds,
};
use crate::wire::{
    CallFlags, DEFAULT_MAX_MESSAGE_SIZE, Framer, ProtocolError, ReplyMessage, SCM_MAX_FD,
    encode_call_with_op_id,
};

/// How long a call waits for its reply unless told otherwise (as sd-varlink: 45 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(45);

/// Bytes asked of the kernel per read.
const READ_SIZE: usize = 64 * 1024;

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address does not parse.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// Nobody could be reached at the address.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address tried.
        address: String,
        /// Why the connection failed.
        #[source]
        source: io::Error,
    },
    /// The connection broke; whether the call took effect is unknown.
    #[error("connection lost ({0}); the outcome of the call is unknown")]
    ConnectionLost(String),
    /// No reply came in time; the connection is closed because replies would now be
    /// out of step with calls.
    #[error("no reply within {0:?}; the outcome of the call is unknown")]
    Timeout(Duration),
    /// The server sent something that is not a valid reply.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The parameters could not be encoded as a JSON object.
    #[error("parameters must be a JSON object: {0}")]
    Encode(#[from] serde_json::Error),
    /// Replies to an earlier call are still unread (a `more` stream dropped before its end, or
    /// a call whose future was cancelled), so replies would no longer match calls. The new
    /// call was not sent.
    #[error(
        "an earlier call on this connection was abandoned before its final reply, so replies \
         would not match calls; the call was not sent: open a new connection"
    )]
    OutOfStep,
    /// The service answered with an error reply.
    #[error("the service replied with error {0}")]
    Reply(ErrorReply),
    /// File descriptors cannot be passed here (not a Unix socket, more than 253); nothing
    /// was sent and the descriptors are closed.
    #[error("cannot pass file descriptors: {0}")]
    FileDescriptors(String),
}

/// A reply parameter object.
pub type Parameters = Map<String, Value>;

/// One connection to a varlink service.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    framer: Framer,
    out: Vec<u8>,
    timeout: Option<Duration>,
    /// Set once the connection can no longer be used (lost, timed out, protocol error).
    broken: Option<String>,
    /// Calls sent whose final reply has not been read yet.
    owed_replies: usize,
    /// Descriptors to send with the queued call starting at each offset of `out`.
    out_fds: Vec<(usize, Vec<OwnedFd>)>,
    /// Set once the connection reads with `recvmsg` (descriptors in replies are received).
    fds_in: Option<FdReceiver>,
    /// The op id sent with each call ([`Connection::set_op_id`]).
    op_id: Option<OpId>,
}

impl Connection {
    /// Connects to an address such as `unix:/run/x.sock`, `unix:@name`, `/path` or
    /// `tcp:127.0.0.1:5000`.
    pub async fn connect(address: &str) -> Result<Connection, Error> {
        Connection::connect_to(&Address::parse(address)?).await
    }

    /// Connects to a parsed address.
    pub async fn connect_to(address: &Address) -> Result<Connection, Error> {
        let stream = Stream::connect(address)
            .await
            .map_err(|source| Error::Connect {
                address: address.to_string(),
                source,
            })?;
        Ok(Connection::from_stream(stream))
    }

    /// Uses an already connected stream.
    pub fn from_stream(stream: Stream) -> Connection {
        Connection {
            stream,
            framer: Framer::new(DEFAULT_MAX_MESSAGE_SIZE),
            out: Vec::new(),
            timeout: Some(DEFAULT_TIMEOUT),
            broken: None,
            owed_replies: 0,
            out_fds: Vec::new(),
            fds_in: None,
            op_id: None,
        }
    }

    /// Sends `op_id` with every following call (`None`: stop). A handler that calls another
    /// daemon passes its call's id (`call.context.op_id`): a localrpc server adopts it for the
    /// call it serves, so that one id names the work in the logs of every daemon it passes
    /// through. It travels as a vendor key (`"io.localrpc":{"op_id":"op-…"}`), which varlink
    /// servers are asked to ignore and the Python and Go implementations do; systemd's
    /// sd-varlink (262) closes the connection on any key it does not know, so set it only for
    /// localrpc peers.
    pub fn set_op_id(&mut self, op_id: Option<OpId>) {
        self.op_id = op_id;
    }

    /// From now on, read with `recvmsg` so that descriptors the server passes with replies
    /// are received ([`Connection::call_with_fds`] returns them; replies to other calls have
    /// theirs closed). Before this (or the first `call_with_fds`) the connection reads plainly
    /// and the kernel discards them. Fails on streams other than Unix sockets.
    pub fn accept_fds(&mut self) -> Result<(), Error> {
        if !self.stream.can_pass_fds() {
            return Err(Error::FileDescriptors(
                "file descriptors can only be passed over Unix sockets".into(),
            ));
        }
        if self.fds_in.is_none() {
            self.fds_in = Some(FdReceiver::new(SCM_MAX_FD, 2 * SCM_MAX_FD));
        }
        Ok(())
    }

    /// Sets how long to wait for each reply (`None`: forever). Default 45 s.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Sets the largest reply accepted, in bytes (default 16 MiB).
    pub fn set_max_message_size(&mut self, bytes: usize) {
        self.framer.set_max_message_size(bytes);
    }

    /// Calls `method` and waits for its single reply.
    pub async fn call(
        &mut self,
        method: &str,
        parameters: impl Serialize,
    ) -> Result<Parameters, Error> {
        self.check_in_step()?;
        self.send(method, &parameters, CallFlags::default())?;
        self.flush().await?;
        let reply = self.receive().await?;
        if reply.continues {
            return Err(self.fail(Error::Protocol(ProtocolError {
                reason: "a reply to a call without 'more' has \"continues\": true".into(),
            })));
        }
        into_result(reply)
    }

    /// Calls `method`, passing `fds` with the call's first byte (`SCM_RIGHTS`; Unix sockets
    /// only, at most 253), and waits for its single reply: its parameters and the descriptors
    /// the server passed with it (often none). Our copies of `fds` are closed once sent. The
    /// method must accept descriptors, or the service answers
    /// `io.localrpc.FileDescriptorsNotAccepted` (see `InterfaceBuilder::accept_fds`).
    pub async fn call_with_fds(
        &mut self,
        method: &str,
        parameters: impl Serialize,
        fds: Vec<OwnedFd>,
    ) -> Result<(Parameters, Vec<OwnedFd>), Error> {
        self.check_in_step()?;
        self.accept_fds()?;
        if fds.len() > SCM_MAX_FD {
            return Err(Error::FileDescriptors(format!(
                "{} file descriptors with one call; at most {SCM_MAX_FD} can be passed",
                fds.len()
            )));
        }
        let start = self.out.len();
        self.send(method, &parameters, CallFlags::default())?;
        if !fds.is_empty() {
            self.out_fds.push((start, fds));
        }
        self.flush().await?;
        let (reply, fds) = self.receive_with_fds().await?;
        if reply.continues {
            return Err(self.fail(Error::Protocol(ProtocolError {
                reason: "a reply to a call without 'more' has \"continues\": true".into(),
            })));
        }
        Ok((into_result(reply)?, fds))
    }

    /// Calls `method` with `more` and returns the stream of its replies.
    pub async fn call_more(
        &mut self,
        method: &str,
        parameters: impl Serialize,
    ) -> Result<ReplyStream<'_>, Error> {
        self.check_in_step()?;
        self.send(
            method,
            &parameters,
            CallFlags {
                more: true,
                ..CallFlags::default()
            },
        )?;
        self.flush().await?;
        Ok(ReplyStream {
            connection: self,
            done: false,
        })
    }

    /// Sends a `oneway` call: no reply will come, not even an error.
    pub async fn oneway(&mut self, method: &str, parameters: impl Serialize) -> Result<(), Error> {
        self.check_in_step()?;
        self.send(
            method,
            &parameters,
            CallFlags {
                oneway: true,
                ..CallFlags::default()
            },
        )?;
        self.flush().await
    }

    /// Calls `method` with `upgrade`; after the confirming reply the connection carries raw
    /// bytes both ways. Bytes the server sent right after its reply are kept.
    pub async fn upgrade(
        mut self,
        method: &str,
        parameters: impl Serialize,
    ) -> Result<(Parameters, UpgradedStream), Error> {
        self.check_in_step()?;
        self.send(
            method,
            &parameters,
            CallFlags {
                upgrade: true,
                ..CallFlags::default()
            },
        )?;
        self.flush().await?;
        let reply = self.receive().await?;
        let parameters = into_result(reply)?;
        Ok((
            parameters,
            UpgradedStream::new(self.framer.take_buffered(), self.stream),
        ))
    }

    /// Queues a call without writing it (pipelining): follow with [`Connection::flush`] and
    /// one [`Connection::receive`] per reply, in call order.
    pub fn send(
        &mut self,
        method: &str,
        parameters: &impl Serialize,
        flags: CallFlags,
    ) -> Result<(), Error> {
        let op_id = self.op_id.map(OpId::get);
        encode_call_with_op_id(&mut self.out, method, parameters, flags, op_id)?;
        if !flags.oneway {
            self.owed_replies += 1;
        }
        Ok(())
    }

    /// Writes all queued calls.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.check_usable()?;
        let result = if self.out_fds.is_empty() {
            self.stream.write_all(&self.out).await
        } else {
            let fds = std::mem::take(&mut self.out_fds);
            write_all_with_fds(&mut self.stream, &self.out, fds).await
        };
        self.out.clear();
        result.map_err(|e| self.fail(Error::ConnectionLost(e.to_string())))
    }

    /// Reads the next reply, whatever call it answers (replies come in call order).
    /// Descriptors passed with it, if the connection receives any, are closed.
    pub async fn receive(&mut self) -> Result<ReplyMessage, Error> {
        let (reply, fds) = self.receive_with_fds().await?;
        if !fds.is_empty() {
            tracing::debug!(
                count = fds.len(),
                "closing file descriptors passed with a reply to a call that did not ask for any"
            );
        }
        Ok(reply)
    }

    /// Like [`Connection::receive`], with the descriptors passed with the reply (always none
    /// before [`Connection::accept_fds`] or the first `call_with_fds`).
    pub async fn receive_with_fds(&mut self) -> Result<(ReplyMessage, Vec<OwnedFd>), Error> {
        self.check_usable()?;
        let bytes = match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, self.read_message()).await {
                Ok(result) => result,
                Err(_) => return Err(self.fail(Error::Timeout(limit))),
            },
            None => self.read_message().await,
        };
        let (bytes, fds) = bytes.map_err(|e| self.fail(e))?;
        let reply = ReplyMessage::parse(&bytes).map_err(|e| self.fail(Error::Protocol(e)))?;
        if !reply.continues || reply.error.is_some() {
            self.owed_replies = self.owed_replies.saturating_sub(1);
        }
        Ok((reply, fds))
    }

    /// Fails when replies to an earlier call are still unread (a `more` stream dropped before
    /// its end, or a call whose future was cancelled): they would be taken for the replies to
    /// the next call, so the connection cannot be used for new calls any more.
    fn check_in_step(&mut self) -> Result<(), Error> {
        self.check_usable()?;
        if self.owed_replies > 0 {
            return Err(self.fail(Error::OutOfStep));
        }
        Ok(())
    }

    /// Calls every `(method, parameters)` pipelined (one write), then collects the replies in
    /// order. An error reply for one call does not stop the others.
    pub async fn pipeline<P: Serialize>(
        &mut self,
        calls: &[(&str, P)],
    ) -> Result<Vec<Result<Parameters, ErrorReply>>, Error> {
        self.check_in_step()?;
        for (method, parameters) in calls {
            self.send(method, parameters, CallFlags::default())?;
        }
        self.flush().await?;
        let mut results = Vec::with_capacity(calls.len());
        for _ in calls {
            results.push(match into_result(self.receive().await?) {
                Ok(parameters) => Ok(parameters),
                Err(Error::Reply(error)) => Err(error),
                Err(other) => return Err(other),
            });
        }
        Ok(results)
    }

    async fn read_message(&mut self) -> Result<(bytes::BytesMut, Vec<OwnedFd>), Error> {
        loop {
            let start = self.framer.position();
            match self.framer.next_message() {
                Ok(Some(message)) => {
                    let fds = match &mut self.fds_in {
                        Some(receiver) => receiver.take(start),
                        None => Vec::new(),
                    };
                    return Ok((message, fds));
                }
                Ok(None) => {}
                Err(too_large) => return Err(Error::ConnectionLost(too_large.to_string())),
            }
            if let Some(receiver) = &mut self.fds_in {
                let lost = |e: io::Error| Error::ConnectionLost(e.to_string());
                self.stream.readable().await.map_err(lost)?;
                match receiver.try_read(&self.stream, &mut self.framer) {
                    Ok(Received::Bytes(_)) => continue,
                    Ok(Received::Eof) => {
                        return Err(Error::ConnectionLost(
                            "the server closed the connection".into(),
                        ));
                    }
                    Ok(Received::Refused(why)) => {
                        return Err(Error::Protocol(ProtocolError { reason: why }));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(lost(e)),
                }
            }
            let buffer = self.framer.buffer_mut();
            buffer.reserve(READ_SIZE);
            let n = tokio::io::AsyncReadExt::read_buf(&mut self.stream, buffer)
                .await
                .map_err(|e| Error::ConnectionLost(e.to_string()))?;
            if n == 0 {
                return Err(Error::ConnectionLost(
                    "the server closed the connection".into(),
                ));
            }
        }
    }

    fn check_usable(&self) -> Result<(), Error> {
        match &self.broken {
            Some(why) => Err(Error::ConnectionLost(format!("connection unusable: {why}"))),
            None => Ok(()),
        }
    }

    fn fail(&mut self, error: Error) -> Error {
        self.broken = Some(error.to_string());
        error
    }
}

fn into_result(reply: ReplyMessage) -> Result<Parameters, Error> {
    match reply.error {
        Some(name) => Err(Error::Reply(ErrorReply {
            name,
            parameters: reply.parameters,
        })),
        None => Ok(reply.parameters),
    }
}

/// The replies to a `more` call. The call ends with the first reply without `continues`
/// or with an error.
#[derive(Debug)]
pub struct ReplyStream<'a> {
    connection: &'a mut Connection,
    done: bool,
}

impl ReplyStream<'_> {
    /// The next reply, or `None` after the final one.
    pub async fn next(&mut self) -> Option<Result<Parameters, Error>> {
        if self.done {
            return None;
        }
        let reply = match self.connection.receive().await {
            Ok(reply) => reply,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.done = !reply.continues || reply.error.is_some();
        Some(into_result(reply))
    }

    /// Reads all remaining replies.
    pub async fn collect(mut self) -> Result<Vec<Parameters>, Error> {
        let mut all = Vec::new();
        while let Some(reply) = self.next().await {
            all.push(reply?);
        }
        Ok(all)
    }
}

// ---------------------------------------------------------------------------------------
// Typed calls: the support that code generated by `localrpc-build` builds its clients on.
// ---------------------------------------------------------------------------------------

/// The error of a typed call: the service's error reply decoded into the interface's error
/// type `E`, a reply that does not match the interface, or a failure of the connection.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The service answered with an error reply (decoded into the interface's error type,
    /// which keeps errors it does not know as they came).
    #[error("the service replied with error {0}")]
    Reply(E),
    /// The reply's parameters do not decode into the method's output type.
    #[error("the reply to {method} does not match its interface: {source}")]
    InvalidReply {
        /// The fully qualified method.
        method: String,
        /// What did not match.
        #[source]
        source: serde_json::Error,
    },
    /// The call failed before a reply came (address, connection, timeout, protocol).
    #[error(transparent)]
    Connection(Error),
}

impl<E> CallError<E> {
    /// Splits a connection-level error: error replies become [`CallError::Reply`].
    pub fn from_client_error(error: Error) -> Self
    where
        E: From<ErrorReply>,
    {
        match error {
            Error::Reply(reply) => CallError::Reply(E::from(reply)),
            other => CallError::Connection(other),
        }
    }

    /// The decoded error reply, if the service answered with one.
    pub fn reply(&self) -> Option<&E> {
        match self {
            CallError::Reply(error) => Some(error),
            _ => None,
        }
    }
}

/// Decodes the outcome of an untyped call into the method's output type `T` and the
/// interface's error type `E`.
pub fn decode_reply<T, E>(method: &str, reply: Result<Parameters, Error>) -> Result<T, CallError<E>>
where
    T: serde::de::DeserializeOwned,
    E: From<ErrorReply>,
{
    let parameters = reply.map_err(CallError::from_client_error)?;
    serde_json::from_value(Value::Object(parameters)).map_err(|source| CallError::InvalidReply {
        method: method.to_owned(),
        source,
    })
}

type ReceiveFuture<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (&'a mut Connection, Result<ReplyMessage, Error>)>
            + Send
            + 'a,
    >,
>;

enum TypedState<'a> {
    Idle(&'a mut Connection),
    Receiving(ReceiveFuture<'a>),
    Done,
}

/// The typed replies to a `more` call: each reply decoded into `T`, an error reply into
/// `E`. Implements [`futures_core::Stream`]; [`TypedReplyStream::next`] works without any
/// stream extension trait. The stream ends after the final reply or the first error.
pub struct TypedReplyStream<'a, T, E> {
    method: String,
    state: TypedState<'a>,
    marker: std::marker::PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for TypedReplyStream<'_, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedReplyStream")
            .field("method", &self.method)
            .field("done", &matches!(self.state, TypedState::Done))
            .finish()
    }
}

impl<'a, T, E> TypedReplyStream<'a, T, E>
where
    T: serde::de::DeserializeOwned,
    E: From<ErrorReply>,
{
    /// Calls `method` with `more` on `connection` and returns the stream of its replies.
    pub async fn call(
        connection: &'a mut Connection,
        method: &str,
        parameters: impl Serialize,
    ) -> Result<Self, CallError<E>> {
        connection.check_in_step().map_err(CallError::Connection)?;
        connection
            .send(
                method,
                &parameters,
                CallFlags {
                    more: true,
                    ..CallFlags::default()
                },
            )
            .map_err(CallError::Connection)?;
        connection.flush().await.map_err(CallError::Connection)?;
        Ok(TypedReplyStream {
            method: method.to_owned(),
            state: TypedState::Idle(connection),
            marker: std::marker::PhantomData,
        })
    }

    /// The next reply, or `None` after the final one.
    pub async fn next(&mut self) -> Option<Result<T, CallError<E>>> {
        std::future::poll_fn(|cx| self.poll_reply(cx)).await
    }

    /// Reads all remaining replies; stops at the first error.
    pub async fn collect(mut self) -> Result<Vec<T>, CallError<E>> {
        let mut all = Vec::new();
        while let Some(reply) = self.next().await {
            all.push(reply?);
        }
        Ok(all)
    }

    fn poll_reply(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<T, CallError<E>>>> {
        use std::task::Poll;
        loop {
            match std::mem::replace(&mut self.state, TypedState::Done) {
                TypedState::Done => return Poll::Ready(None),
                TypedState::Idle(connection) => {
                    self.state = TypedState::Receiving(Box::pin(async move {
                        let reply = connection.receive().await;
                        (connection, reply)
                    }));
                }
                TypedState::Receiving(mut future) => match future.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.state = TypedState::Receiving(future);
                        return Poll::Pending;
                    }
                    Poll::Ready((connection, reply)) => {
                        let reply = match reply {
                            Ok(reply) => reply,
                            Err(error) => {
                                return Poll::Ready(Some(Err(CallError::Connection(error))));
                            }
                        };
                        if reply.continues && reply.error.is_none() {
                            self.state = TypedState::Idle(connection);
                        }
                        return Poll::Ready(Some(decode_reply(&self.method, into_result(reply))));
                    }
                },
            }
        }
    }
}

impl<T, E> futures_core::Stream for TypedReplyStream<'_, T, E>
where
    T: serde::de::DeserializeOwned,
    E: From<ErrorReply>,
{
    type Item = Result<T, CallError<E>>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.get_mut().poll_reply(cx)
    }
}

/// A call queued in a [`Batch`]; redeem it with [`BatchReplies::take`] for its typed result.
#[derive(Debug)]
#[must_use = "a pending call's result is read with BatchReplies::take"]
pub struct Pending<T> {
    index: usize,
    method: String,
    marker: std::marker::PhantomData<fn() -> T>,
}

/// Several typed calls written with one write (pipelining); the replies are read in order
/// by [`Batch::run`]. `oneway` calls may be mixed in; `more` calls may not.
#[derive(Debug)]
pub struct Batch<'c, E> {
    connection: &'c mut Connection,
    expected: usize,
    error: Option<Error>,
    marker: std::marker::PhantomData<fn() -> E>,
}

impl<'c, E: From<ErrorReply>> Batch<'c, E> {
    /// Starts a batch on `connection`. Nothing is written until [`Batch::run`].
    pub fn new(connection: &'c mut Connection) -> Self {
        // Replies still owed to an abandoned call would be taken for this batch's replies.
        let error = connection.check_in_step().err();
        Batch {
            connection,
            expected: 0,
            error,
            marker: std::marker::PhantomData,
        }
    }

    /// Queues a call whose reply decodes into `T`.
    pub fn call<T>(&mut self, method: &str, parameters: impl Serialize) -> Pending<T> {
        self.queue(method, &parameters, CallFlags::default());
        let index = self.expected;
        self.expected += 1;
        Pending {
            index,
            method: method.to_owned(),
            marker: std::marker::PhantomData,
        }
    }

    /// Queues a `oneway` call: it gets no reply.
    pub fn oneway(&mut self, method: &str, parameters: impl Serialize) {
        self.queue(
            method,
            &parameters,
            CallFlags {
                oneway: true,
                ..CallFlags::default()
            },
        );
    }

    fn queue(&mut self, method: &str, parameters: &impl Serialize, flags: CallFlags) {
        if self.error.is_none()
            && let Err(error) = self.connection.send(method, parameters, flags)
        {
            self.error = Some(error);
        }
    }

    /// Writes every queued call at once and reads one reply per non-`oneway` call.
    pub async fn run(self) -> Result<BatchReplies<E>, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        self.connection.flush().await?;
        let mut replies = Vec::with_capacity(self.expected);
        for _ in 0..self.expected {
            let reply = self.connection.receive().await?;
            if reply.continues {
                return Err(self.connection.fail(Error::Protocol(ProtocolError {
                    reason: "a reply to a call without 'more' has \"continues\": true".into(),
                })));
            }
            replies.push(Some(into_result(reply)));
        }
        Ok(BatchReplies {
            replies,
            marker: std::marker::PhantomData,
        })
    }
}

/// The replies of a [`Batch`], in call order.
#[derive(Debug)]
pub struct BatchReplies<E> {
    replies: Vec<Option<Result<Parameters, Error>>>,
    marker: std::marker::PhantomData<fn() -> E>,
}

impl<E: From<ErrorReply>> BatchReplies<E> {
    /// The typed result of one queued call (each can be taken once; a second take reports
    /// [`Error::ConnectionLost`]-free misuse as a protocol error).
    pub fn take<T: serde::de::DeserializeOwned>(
        &mut self,
        pending: Pending<T>,
    ) -> Result<T, CallError<E>> {
        match self.replies.get_mut(pending.index).and_then(Option::take) {
            Some(reply) => decode_reply(&pending.method, reply),
            None => Err(CallError::Connection(Error::Protocol(ProtocolError {
                reason: format!("the reply to {} was already taken", pending.method),
            }))),
        }
    }
}
