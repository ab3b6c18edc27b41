//! The whole server-side protocol path without sockets: bytes arrive in 143-byte writes and
//! are taken in 137-byte reads (as systemd's fuzz-varlink does), go through the `Framer`,
//! and every complete message goes through `Service::handle` of localrpcd's service (which
//! parses the call envelope, routes, checks parameters against the IDL and runs the
//! handler). Time is paused, so `Sleep` costs nothing.
//!
//! Input: byte 0 selects the peer (none, root, uid 1000, uid 65534), the access policy
//! (none, or root and self plus uid 1000) and the message size limit (16 MiB or 512 bytes);
//! the rest is the byte stream a client sends.
//!
//! Oracles: `handle` fails exactly when `CallMessage::parse` does; every reply written is a
//! valid reply message; a oneway call gets no reply; a call without `more` gets exactly one
//! reply, without `continues`; a `more` call gets replies with `continues` followed by one
//! final reply without it (unless the simulated peer went away mid-stream). An
//! `io.localrpc.Echo.Echo` call answered without an error gets back the `text` it sent (as
//! serde_json decodes the call's parameters), in exactly the bytes `serde_json::to_writer`
//! writes for that reply, which holds the hand-written reply serializer (`wire::to_writer`
//! and its string escaping) to serde_json's output.

#![no_main]

use std::collections::VecDeque;
use std::io;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use localrpc::service::{AccessPolicy, BoxFuture, Dispatched, Output, PeerCredentials, Service};
use localrpc::wire::{CallMessage, Framer, ReplyMessage};
use serde_json::{Map, Value};

/// Bytes per simulated client write.
const WRITE_SIZE: usize = 143;
/// Bytes per simulated server read.
const READ_SIZE: usize = 137;
/// After this many reply bytes the simulated peer "disconnects": flushes fail, so a
/// streaming handler (`Count` with a count of a million) stops early.
const PEER_READS_AT_MOST: usize = 16 * 1024;

static OPEN: LazyLock<Service> = LazyLock::new(|| localrpcd::service().expect("service builds"));
static RESTRICTED: LazyLock<Service> = LazyLock::new(|| {
    localrpcd::service_with_policy(Some(AccessPolicy::root_and_self().allow_uid(1000)))
        .expect("service with policy builds")
});
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
});

/// Collects replies; checks each complete one as it goes out.
struct FuzzOutput {
    pending: Vec<u8>,
    /// Every reply of the current call that has been "written", in order.
    sent: Vec<ReplyMessage>,
    /// The bytes of each of `sent` (without the NUL).
    sent_bytes: Vec<Vec<u8>>,
    written_bytes: usize,
    peer_gone: bool,
}

impl FuzzOutput {
    fn take_replies(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.written_bytes += pending.len();
        if !pending.is_empty() {
            assert_eq!(pending.last(), Some(&0), "replies end with NUL");
            for message in pending[..pending.len() - 1].split(|b| *b == 0) {
                let reply = ReplyMessage::parse(message).unwrap_or_else(|e| {
                    panic!("invalid reply {:?}: {e}", String::from_utf8_lossy(message))
                });
                self.sent.push(reply);
                self.sent_bytes.push(message.to_vec());
            }
        }
    }
}

impl Output for FuzzOutput {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    fn flush(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            if self.peer_gone || self.written_bytes > PEER_READS_AT_MOST {
                self.peer_gone = true;
                self.pending.clear();
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            self.take_replies();
            Ok(())
        })
    }
}

fn check_replies(call: &CallMessage, out: &mut FuzzOutput) {
    out.take_replies();
    let replies = std::mem::take(&mut out.sent);
    let bytes = std::mem::take(&mut out.sent_bytes);
    if call.flags.oneway {
        assert!(replies.is_empty(), "a oneway call got replies: {replies:?}");
        return;
    }
    if out.peer_gone {
        return;
    }
    let (last, streamed) = replies.split_last().expect("a call gets a reply");
    assert!(!last.continues, "the final reply has continues: {last:?}");
    if call.flags.more {
        assert!(streamed.iter().all(|r| r.continues && r.error.is_none()));
    } else {
        assert!(
            streamed.is_empty(),
            "several replies without more: {replies:?}"
        );
    }
    if call.method == "io.localrpc.Echo.Echo" && last.error.is_none() {
        check_echo(call, last, bytes.last().expect("bytes of each reply"));
    }
}

/// A successful `Echo` reply: `{"parameters":{"text":...}}` with the call's `text`, written
/// as serde_json writes it.
fn check_echo(call: &CallMessage, reply: &ReplyMessage, reply_bytes: &[u8]) {
    let params: Map<String, Value> = serde_json::from_str(call.parameters)
        .unwrap_or_else(|e| panic!("Echo answered parameters serde_json refuses ({e}): {call:?}"));
    let Some(Value::String(text)) = params.get("text") else {
        panic!("Echo answered without a string text: {call:?} -> {reply:?}");
    };
    assert_eq!(
        reply.parameters.get("text"),
        Some(&Value::String(text.clone())),
        "Echo replied another text: {call:?} -> {reply:?}"
    );
    assert_eq!(reply.parameters.len(), 1, "Echo reply: {reply:?}");
    let expected = format!(
        "{{\"parameters\":{{\"text\":{}}}}}",
        serde_json::to_string(text).expect("a string serializes")
    );
    assert!(
        reply_bytes == expected.as_bytes(),
        "Echo reply bytes differ from serde_json's:\n got  {:?}\n want {expected:?}",
        String::from_utf8_lossy(reply_bytes)
    );
}

/// Returns false once the connection would be closed.
async fn dispatch(
    service: &Service,
    framer: &mut Framer,
    peer: Option<PeerCredentials>,
    out: &mut FuzzOutput,
) -> bool {
    loop {
        let message = match framer.next_message() {
            Ok(Some(message)) => message,
            Ok(None) => return true,
            Err(_too_large) => return false,
        };
        let parsed = CallMessage::parse(&message);
        let result = service.handle(&message, peer, out).await;
        match (&parsed, result) {
            (Ok(call), Ok(dispatched)) => {
                check_replies(call, out);
                if let Dispatched::Upgrade(_) = dispatched {
                    // The rest of the stream is raw bytes for the upgrade handler.
                    assert!(call.flags.upgrade, "upgraded without the upgrade flag");
                    return false;
                }
            }
            (Err(_), Err(_)) => return false,
            (parsed, result) => panic!(
                "handle and CallMessage::parse disagree: {parsed:?} vs {:?}",
                result.map(|_| ())
            ),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let peer = match selector & 3 {
        0 => None,
        1 => Some(0),
        2 => Some(1000),
        _ => Some(65534),
    }
    .map(|uid| PeerCredentials {
        uid,
        gid: uid,
        pid: Some(4242),
    });
    let service: &Service = if selector & 4 == 0 {
        &OPEN
    } else {
        &RESTRICTED
    };
    let max = if selector & 8 == 0 {
        localrpc::wire::DEFAULT_MAX_MESSAGE_SIZE
    } else {
        512
    };
    RUNTIME.block_on(async {
        let mut framer = Framer::new(max);
        let mut out = FuzzOutput {
            pending: Vec::new(),
            sent: Vec::new(),
            sent_bytes: Vec::new(),
            written_bytes: 0,
            peer_gone: false,
        };
        // The socket between client and server.
        let mut socket: VecDeque<u8> = VecDeque::new();
        for write in stream.chunks(WRITE_SIZE) {
            socket.extend(write);
            while !socket.is_empty() {
                let n = socket.len().min(READ_SIZE);
                framer.buffer_mut().extend(socket.drain(..n));
                if !dispatch(service, &mut framer, peer, &mut out).await {
                    return;
                }
            }
        }
    });
});
