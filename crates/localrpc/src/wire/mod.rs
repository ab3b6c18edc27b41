//! The varlink wire format: NUL framing and the call/reply envelopes.
//!
//! Pure data transformations with no I/O, so the whole protocol surface can be tested and fuzzed
//! with byte strings. The strictness rules are those of UAPI.20 (see `shared/docs/VARLINK.md`).

mod envelope;
mod fds;
mod framer;
// A serde_json-identical string escaper for the serialization path.
mod json_escape;
mod json_writer;
// Decoding parameters that the IDL check has read already.
mod prechecked;
// memchr without run-time CPU detection on x86_64.
mod search;

pub use envelope::{
    CallFlags, CallMessage, MAX_JSON_DEPTH, ProtocolError, ReplyMessage, encode_call,
    encode_call_with_op_id, encode_reply,
};
pub(crate) use envelope::{format_op_id, parse_op_id, validate_json};
pub use fds::{FdError, FdQueue, SCM_MAX_FD};
pub use framer::{DEFAULT_MAX_MESSAGE_SIZE, FrameTooLarge, Framer, READ_RESERVE};
pub use json_writer::to_writer;
pub(crate) use prechecked::from_str as decode_prechecked;
