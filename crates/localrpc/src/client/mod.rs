//! The client: connect to an address, call methods, stream `more` replies, send `oneway`
//! calls, `upgrade` to a raw stream, and pipeline many calls on one connection.
//!
//! On the wire it writes what varlinkctl writes: no false flags, no empty parameters.

use std::io;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use crate::service::ErrorReply;
use crate::transport::{Address, AddressError, Stream, UpgradedStream};
use crate::wire::{
    CallFlags, DEFAULT_MAX_MESSAGE_SIZE, Framer, ProtocolError, ReplyMessage, encode_call,
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
    /// The service answered with an error reply.
    #[error("the service replied with error {0}")]
    Reply(ErrorReply),
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
        }
    }

    /// Sets how long to wait for each reply (`None`: forever). Default 45 s.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Sets the largest reply accepted, in bytes (default 16 MiB).
    pub fn set_max_message_size(&mut self, bytes: usize) {
        let buffered = self.framer.take_buffered();
        self.framer = Framer::new(bytes);
        self.framer.buffer_mut().extend_from_slice(&buffered);
    }

    /// Calls `method` and waits for its single reply.
    pub async fn call(
        &mut self,
        method: &str,
        parameters: impl Serialize,
    ) -> Result<Parameters, Error> {
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

    /// Calls `method` with `more` and returns the stream of its replies.
    pub async fn call_more(
        &mut self,
        method: &str,
        parameters: impl Serialize,
    ) -> Result<ReplyStream<'_>, Error> {
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
        encode_call(&mut self.out, method, parameters, flags)?;
        Ok(())
    }

    /// Writes all queued calls.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.check_usable()?;
        let result = self.stream.write_all(&self.out).await;
        self.out.clear();
        result.map_err(|e| self.fail(Error::ConnectionLost(e.to_string())))
    }

    /// Reads the next reply, whatever call it answers (replies come in call order).
    pub async fn receive(&mut self) -> Result<ReplyMessage, Error> {
        self.check_usable()?;
        let bytes = match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, self.read_message()).await {
                Ok(result) => result,
                Err(_) => return Err(self.fail(Error::Timeout(limit))),
            },
            None => self.read_message().await,
        };
        let bytes = bytes.map_err(|e| self.fail(e))?;
        ReplyMessage::parse(&bytes).map_err(|e| self.fail(Error::Protocol(e)))
    }

    /// Calls every `(method, parameters)` pipelined (one write), then collects the replies in
    /// order. An error reply for one call does not stop the others.
    pub async fn pipeline<P: Serialize>(
        &mut self,
        calls: &[(&str, P)],
    ) -> Result<Vec<Result<Parameters, ErrorReply>>, Error> {
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

    async fn read_message(&mut self) -> Result<bytes::BytesMut, Error> {
        loop {
            match self.framer.next_message() {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(too_large) => return Err(Error::ConnectionLost(too_large.to_string())),
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
