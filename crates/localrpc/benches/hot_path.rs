//! Micro benchmarks of each stage a call passes through: framing, envelope parse, parameter
//! check, reply encode, and a whole sans-I/O dispatch; small and large (1 MiB, 16 MiB)
//! messages, and the client's side (call encode, reply parse). Run: `cargo bench -p localrpc --bench hot_path`.

use std::hint::black_box;
use std::io;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use localrpc::service::{BoxFuture, InterfaceBuilder, Output, Reply, Service};
use localrpc::wire::{CallFlags, CallMessage, Framer, ReplyMessage, encode_call, encode_reply};
use serde_json::json;

const IDL: &str = "interface org.example.bench\nmethod Echo(text: string) -> (text: string)\n";

fn call_bytes(text_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    encode_call(
        &mut out,
        "org.example.bench.Echo",
        &json!({ "text": "x".repeat(text_len) }),
        CallFlags::default(),
    )
    .expect("encodes");
    out
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing");
    for len in [16, 1 << 20, 16 << 20] {
        let message = call_bytes(len);
        group.throughput(Throughput::Bytes(message.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &message, |b, message| {
            let mut framer = Framer::new(32 << 20);
            b.iter(|| {
                framer.buffer_mut().extend_from_slice(message);
                black_box(framer.next_message().expect("fits").expect("complete"));
            })
        });
    }
    group.finish();
}

fn envelope_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope_parse");
    for len in [16, 1 << 20] {
        let message = call_bytes(len);
        let body = &message[..message.len() - 1];
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), body, |b, body| {
            b.iter(|| black_box(CallMessage::parse(body).expect("valid")))
        });
    }
    group.finish();
}

fn parameter_check(c: &mut Criterion) {
    let iface = localrpc::idl::parse(IDL).expect("parses");
    let method = iface.method("Echo").expect("declared");
    let params = json!({ "text": "hello" })
        .as_object()
        .cloned()
        .expect("object");
    c.bench_function("parameter_check/small", |b| {
        b.iter(|| {
            localrpc::idl::check_parameters(&iface, &method.input, black_box(&params))
                .expect("valid")
        })
    });
}

fn reply_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply_encode");
    for len in [16, 1 << 20] {
        let params = json!({ "text": "x".repeat(len) });
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &params, |b, params| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                encode_reply(&mut out, params, false, None).expect("encodes");
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// The client's side: encoding a call, parsing its reply.
fn client_side(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_encode");
    for len in [16, 1 << 20] {
        let params = json!({ "text": "x".repeat(len) });
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &params, |b, params| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                encode_call(
                    &mut out,
                    "org.example.bench.Echo",
                    params,
                    CallFlags::default(),
                )
                .expect("encodes");
                black_box(&out);
            })
        });
    }
    group.finish();
    let mut group = c.benchmark_group("reply_parse");
    for len in [16, 1 << 20] {
        let mut reply = Vec::new();
        encode_reply(&mut reply, &json!({ "text": "x".repeat(len) }), false, None)
            .expect("encodes");
        let body = reply[..reply.len() - 1].to_vec();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &body, |b, body| {
            b.iter(|| black_box(ReplyMessage::parse(body).expect("valid")))
        });
    }
    group.finish();
}

/// Collects replies; never flushed (no streaming in this benchmark).
struct Sink(Vec<u8>);

impl Output for Sink {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
    fn flush(&mut self) -> BoxFuture<'_, io::Result<()>> {
        self.0.clear();
        Box::pin(async { Ok(()) })
    }
}

fn dispatch(c: &mut Criterion) {
    let echo = InterfaceBuilder::new(IDL)
        .expect("parses")
        .method("Echo", |call| {
            Box::pin(async move { Reply::with(json!({ "text": call.parameters().get("text") })) })
        });
    let service = Service::builder().interface(echo).build().expect("builds");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("dispatch");
    group.sample_size(10);
    for len in [16, 1 << 20, 16 << 20] {
        let message = call_bytes(len);
        let body = message[..message.len() - 1].to_vec();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(len), &body, |b, body| {
            let mut sink = Sink(Vec::new());
            b.iter(|| {
                sink.0.clear();
                runtime
                    .block_on(service.handle(body, None, &mut sink))
                    .expect("valid call");
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    framing,
    envelope_parse,
    parameter_check,
    reply_encode,
    client_side,
    dispatch
);
criterion_main!(benches);
