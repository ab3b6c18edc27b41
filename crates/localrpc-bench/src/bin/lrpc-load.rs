//! `lrpc-load`: a minimal load generator for any varlink server on a Unix socket.
//!
//! It sends one pre-serialized call over and over and only scans the replies for their
//! terminating NUL: no JSON parsing, no allocation per call, blocking std sockets and one
//! thread per connection. So its own cost is the same for every server and small, and the
//! server's CPU time (read from /proc/PID/stat; the pid from SO_PEERCRED, or `--pid`) divided
//! by the calls answered is the server's cost per call.
//!
//! ```text
//! lrpc-load run   SOCKET [--method M] [--params JSON | --text-size N] [--connections C]
//!                        [--depth D] [--duration SECS] [--warmup SECS] [--pid PID] [--json]
//! lrpc-load idle  SOCKET --connections N [--method M] [--params JSON]
//!                 (opens N connections, one call on each, prints "ready", holds them until
//!                  stdin closes)
//! lrpc-load first SOCKET [--method M] [--params JSON] [--wait SECS]
//!                 (waits for the socket file, then times connect + call + first reply)
//! ```
//!
//! Only the first reply is checked (it must not be an error reply); later replies are counted.
//! With `--depth D` each connection keeps between D/2 and D calls in flight: it sends D calls,
//! then D/2 more each time D/2 replies have come back.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use localrpc_bench::{own_cpu, peer_pid, process_cpu};

struct Options {
    command: String,
    socket: PathBuf,
    method: String,
    params: String,
    connections: usize,
    depth: usize,
    duration: f64,
    warmup: f64,
    pid: Option<u32>,
    json: bool,
    wait: f64,
}

fn usage(message: &str) -> ! {
    eprintln!("lrpc-load: {message}");
    eprintln!(
        "usage: lrpc-load run|idle|first SOCKET [--method M] [--params JSON | --text-size N] \
         [--connections C] [--depth D] [--duration S] [--warmup S] [--pid PID] [--json] [--wait S]"
    );
    std::process::exit(2);
}

fn parse_options() -> Options {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| usage("no command"));
    let socket = args.next().unwrap_or_else(|| usage("no socket path"));
    let mut options = Options {
        command,
        socket: PathBuf::from(socket.strip_prefix("unix:").unwrap_or(&socket)),
        method: "io.localrpc.Echo.Echo".into(),
        params: r#"{"text":"hello"}"#.into(),
        connections: 1,
        depth: 1,
        duration: 5.0,
        warmup: 0.5,
        pid: None,
        json: false,
        wait: 5.0,
    };
    while let Some(flag) = args.next() {
        if flag == "--json" {
            options.json = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |v: &str| -> f64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: {v:?} is not a number")))
        };
        match flag.as_str() {
            "--method" => options.method = value,
            "--params" => options.params = value,
            "--text-size" => {
                options.params = format!(r#"{{"text":"{}"}}"#, "x".repeat(number(&value) as usize))
            }
            "--connections" => options.connections = (number(&value) as usize).max(1),
            "--depth" => options.depth = (number(&value) as usize).max(1),
            "--duration" => options.duration = number(&value),
            "--warmup" => options.warmup = number(&value),
            "--pid" => options.pid = Some(number(&value) as u32),
            "--wait" => options.wait = number(&value),
            other => usage(&format!("unknown option {other}")),
        }
    }
    options
}

/// `{"method":M,"parameters":P}` and its NUL.
fn call_bytes(options: &Options) -> Vec<u8> {
    let mut call = format!(
        r#"{{"method":"{}","parameters":{}}}"#,
        options.method, options.params
    )
    .into_bytes();
    call.push(0);
    call
}

/// Counts reply ends (NULs) as they arrive; a read may bring more than are waited for, and
/// those are kept for the next wait.
struct Replies {
    buffer: Vec<u8>,
    banked: usize,
}

impl Replies {
    fn new(size: usize) -> Self {
        Replies {
            buffer: vec![0; size],
            banked: 0,
        }
    }

    /// Blocks until `count` more replies have ended; `in_flight` bounds what can arrive.
    fn wait(
        &mut self,
        stream: &mut UnixStream,
        count: usize,
        in_flight: usize,
    ) -> std::io::Result<()> {
        while self.banked < count {
            let n = stream.read(&mut self.buffer)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.banked += memchr::memchr_iter(0, &self.buffer[..n]).count();
            if self.banked > in_flight {
                return Err(std::io::Error::other(
                    "more replies than calls (a streaming method?)",
                ));
            }
        }
        self.banked -= count;
        Ok(())
    }
}

/// Sends the call once and returns the whole first reply (without its NUL).
fn first_reply(stream: &mut UnixStream, call: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    std::thread::scope(|scope| {
        // Written from another thread: a server that echoes bytes as they come (raw-echo)
        // would otherwise dead-lock with us on a large call.
        let mut writer = stream.try_clone()?;
        let sender = scope.spawn(move || writer.write_all(call));
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before replying",
                ));
            }
            if let Some(end) = memchr::memchr(0, &buffer[..n]) {
                reply.extend_from_slice(&buffer[..end]);
                if end + 1 != n {
                    return Err(std::io::Error::other("bytes after the first reply"));
                }
                break;
            }
            reply.extend_from_slice(&buffer[..n]);
        }
        sender.join().expect("writer thread")
    })?;
    Ok(reply)
}

/// Fails on an error reply. The raw echo server "replies" with the call itself.
fn check_reply(reply: &[u8]) -> Result<(), String> {
    let head = String::from_utf8_lossy(&reply[..reply.len().min(300)]).into_owned();
    let is_error = reply.windows(8).take(64).any(|w| w == b"\"error\":")
        || reply.windows(9).take(64).any(|w| w == b"\"error\" :");
    if is_error {
        return Err(format!("the first reply is an error reply: {head}"));
    }
    if !reply.starts_with(b"{") {
        return Err(format!("the first reply is not a JSON object: {head}"));
    }
    Ok(())
}

/// No reply within this long fails the run instead of hanging it (a server that stalls on a
/// message it cannot take, or stops accepting).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Exits with the reason the first call failed; a read that timed out (the socket reports it
/// as `EAGAIN`) is named as such.
fn first_call_failed(error: &std::io::Error) -> ! {
    if matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ) {
        eprintln!(
            "lrpc-load: the first call failed: no reply within {} s (is the message too large \
             for the server, or is it stalled?)",
            REPLY_TIMEOUT.as_secs()
        );
    } else {
        eprintln!("lrpc-load: the first call failed: {error}");
    }
    std::process::exit(76);
}

fn connect(socket: &Path) -> UnixStream {
    let stream = UnixStream::connect(socket).unwrap_or_else(|e| {
        eprintln!("lrpc-load: cannot connect to {}: {e}", socket.display());
        std::process::exit(69);
    });
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("set a read timeout");
    stream
}

fn run(options: &Options) {
    let call = call_bytes(options);
    let large = call.len() > 64 * 1024;
    if large && options.depth > 1 {
        usage("--depth > 1 is for small calls only");
    }
    let mut streams: Vec<UnixStream> = (0..options.connections)
        .map(|_| connect(&options.socket))
        .collect();
    let pid = options.pid.or_else(|| peer_pid(&streams[0]));
    // Validate (and warm) every connection with one call.
    for stream in &mut streams {
        match first_reply(stream, &call) {
            Ok(reply) => {
                if let Err(message) = check_reply(&reply) {
                    eprintln!("lrpc-load: {message}");
                    std::process::exit(1);
                }
            }
            Err(e) => first_call_failed(&e),
        }
    }

    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(options.connections + 1));
    let call = Arc::new(call);
    let depth = options.depth;
    let workers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let (counting, stop, start, call) =
                (counting.clone(), stop.clone(), start.clone(), call.clone());
            std::thread::spawn(move || -> (u64, Vec<u32>, Option<String>) {
                let mut latencies = Vec::new();
                let mut counted = 0u64;
                let result = (|| -> std::io::Result<()> {
                    start.wait();
                    if large {
                        // One at a time, written from a helper thread (see first_reply).
                        while !stop.load(Ordering::Relaxed) {
                            let began = Instant::now();
                            first_reply(&mut stream, &call)?;
                            if counting.load(Ordering::Relaxed) {
                                latencies.push(began.elapsed().as_micros() as u32);
                                counted += 1;
                            }
                        }
                        return Ok(());
                    }
                    let refill = if depth == 1 { 1 } else { depth / 2 };
                    let window: Vec<u8> = call.repeat(depth);
                    let chunk: Vec<u8> = call.repeat(refill);
                    let mut replies = Replies::new(64 * 1024);
                    stream.write_all(&window)?;
                    let mut in_flight = depth;
                    let mut sent_at = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        replies.wait(&mut stream, refill, in_flight)?;
                        in_flight -= refill;
                        if depth == 1 && counting.load(Ordering::Relaxed) {
                            latencies
                                .push(sent_at.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                        }
                        if counting.load(Ordering::Relaxed) {
                            counted += refill as u64;
                        }
                        sent_at = Instant::now();
                        stream.write_all(&chunk)?;
                        in_flight += refill;
                    }
                    // Drain what is still in flight so the server is idle when we leave.
                    replies.wait(&mut stream, in_flight, in_flight)
                })();
                (counted, latencies, result.err().map(|e| e.to_string()))
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(Duration::from_secs_f64(options.warmup));
    let server_before = pid.and_then(process_cpu);
    let client_before = own_cpu();
    let began = Instant::now();
    counting.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs_f64(options.duration));
    counting.store(false, Ordering::SeqCst);
    let elapsed = began.elapsed().as_secs_f64();
    let server_after = pid.and_then(process_cpu);
    let client_after = own_cpu();
    stop.store(true, Ordering::SeqCst);
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut total = 0;
    for worker in workers {
        let (counted, mut l, failure) = worker.join().expect("worker");
        total += counted;
        latencies.append(&mut l);
        failures.extend(failure);
    }
    if let Some(failure) = failures.first() {
        eprintln!("lrpc-load: a connection failed during the run: {failure}");
        std::process::exit(76);
    }
    let total = total.max(1);
    let per_call = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(b), Some(a)) => Some((a - b).as_secs_f64() * 1e6 / total as f64),
        _ => None,
    };
    let server_cpu = per_call(server_before, server_after);
    let client_cpu = per_call(client_before, client_after);
    latencies.sort_unstable();
    // Small calls: nanoseconds; large calls: microseconds.
    let scale = if large { 1.0 } else { 1e-3 };
    let percentile = |p: f64| -> Option<f64> {
        if latencies.is_empty() {
            return None;
        }
        let i = ((latencies.len() as f64 * p) as usize).min(latencies.len() - 1);
        Some(latencies[i] as f64 * scale)
    };
    let rate = total as f64 / elapsed;
    let opt = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.3}"));
    if options.json {
        println!(
            "{{\"calls\":{total},\"seconds\":{elapsed:.3},\"calls_per_sec\":{rate:.0},\
             \"connections\":{},\"depth\":{},\"call_bytes\":{},\"server_pid\":{},\
             \"server_cpu_us_per_call\":{},\"client_cpu_us_per_call\":{},\
             \"p50_us\":{},\"p99_us\":{}}}",
            options.connections,
            options.depth,
            call.len(),
            pid.map_or("null".to_owned(), |p| p.to_string()),
            opt(server_cpu),
            opt(client_cpu),
            opt(percentile(0.5)),
            opt(percentile(0.99)),
        );
    } else {
        println!(
            "{total} calls in {elapsed:.2} s: {rate:.0} calls/s; server CPU/call {} µs, client CPU/call {} µs; p50 {} µs, p99 {} µs",
            opt(server_cpu),
            opt(client_cpu),
            opt(percentile(0.5)),
            opt(percentile(0.99))
        );
    }
}

fn idle(options: &Options) {
    let call = call_bytes(options);
    let mut streams = Vec::with_capacity(options.connections);
    for i in 0..options.connections {
        let mut stream = UnixStream::connect(&options.socket).unwrap_or_else(|e| {
            eprintln!("lrpc-load: connection {i}: {e} (raise the open files limit: ulimit -n)");
            std::process::exit(69);
        });
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .expect("set a read timeout");
        match first_reply(&mut stream, &call) {
            Ok(reply) if check_reply(&reply).is_ok() => {}
            Ok(reply) => {
                eprintln!(
                    "lrpc-load: connection {i}: {}",
                    check_reply(&reply).unwrap_err()
                );
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("lrpc-load: connection {i}: {e}");
                std::process::exit(76);
            }
        }
        streams.push(stream);
    }
    println!("ready {}", streams.len());
    std::io::stdout().flush().ok();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(streams);
}

fn first(options: &Options) {
    let call = call_bytes(options);
    let deadline = Instant::now() + Duration::from_secs_f64(options.wait);
    while !options.socket.exists() {
        if Instant::now() > deadline {
            eprintln!("lrpc-load: {} did not appear", options.socket.display());
            std::process::exit(69);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // The file exists from bind(); until listen() a connect is refused: retry, and start
    // the clock at the connect that succeeds.
    let mut stream = loop {
        match UnixStream::connect(&options.socket) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => {
                eprintln!(
                    "lrpc-load: cannot connect to {}: {e}",
                    options.socket.display()
                );
                std::process::exit(69);
            }
        }
    };
    let began = Instant::now();
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("set a read timeout");
    let reply = first_reply(&mut stream, &call).unwrap_or_else(|e| first_call_failed(&e));
    let elapsed = began.elapsed();
    if let Err(message) = check_reply(&reply) {
        eprintln!("lrpc-load: {message}");
        std::process::exit(1);
    }
    if options.json {
        println!("{{\"first_reply_us\":{}}}", elapsed.as_micros());
    } else {
        println!("first reply after {} µs", elapsed.as_micros());
    }
}

fn main() {
    let options = parse_options();
    match options.command.as_str() {
        "run" => run(&options),
        "idle" => idle(&options),
        "first" => first(&options),
        other => usage(&format!("unknown command {other}")),
    }
}
