//! `localrpc bench ADDRESS METHOD [PARAMETERS]`: calls one method over and over on
//! `--connections N` connections with `--pipeline N` calls in flight each, for `--duration`
//! seconds, and prints calls/s, latency percentiles (p50, p99, p99.9, max) and the CPU time
//! per call of this client and, where it can be read, of the server (its pid from
//! SO_PEERCRED on Unix sockets, its CPU time from /proc/PID/stat).
//!
//! The first call is sent alone and must succeed: an error reply stops the benchmark with
//! exit code 1 before anything is measured. Later error replies are counted, not fatal.
//! A progress bar is drawn on stderr when it is a terminal (never with `--json`).
//!
//! Pipelining keeps between N/2 and N calls outstanding per connection: N calls go out in one
//! write, then N/2 more each time N/2 replies have come back. Latency is measured from the
//! write that carried a call to the reply that answered it.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use localrpc::client::{Connection, Error as ClientError};
use localrpc::transport::{Address, Stream};
use localrpc::wire::CallFlags;
use serde_json::{Map, Value, json};

use crate::cli::BenchArgs;
use crate::exit::{self, Failure, client_failure, connect_failure};

pub async fn run(args: BenchArgs) -> Result<(), Failure> {
    let parameters = parse_parameters(args.parameters.as_deref())?;
    check_method(&args.method)?;
    let address = crate::address::resolve(&args.address)?;
    let connections = args.connections as usize;
    let pipeline = args.pipeline as usize;

    // Connect everything first: connection set-up is not part of the measurement.
    let mut opened = Vec::with_capacity(connections);
    let mut server_pid = None;
    for _ in 0..connections {
        let stream = Stream::connect(&address)
            .await
            .map_err(|e| connect_failure(&address, &e))?;
        if server_pid.is_none() {
            server_pid = stream
                .peer_credentials()
                .and_then(|c| c.pid)
                .and_then(|p| u32::try_from(p).ok())
                .filter(|&p| p != 0);
        }
        let mut connection = Connection::from_stream(stream);
        connection.set_timeout(args.timeout.0);
        opened.push(connection);
    }

    // The first call, alone: it must succeed (and warms up each connection).
    for connection in &mut opened {
        first_call(connection, &address, &args.method, &parameters).await?;
    }

    let calls = Arc::new(AtomicU64::new(0));
    let work = Arc::new(Work {
        method: args.method.clone(),
        parameters,
        pipeline,
        calls: calls.clone(),
    });
    let progress = (!args.json && std::io::stderr().is_terminal())
        .then(|| progress_bar(args.duration, connections, pipeline));

    let server_before = server_pid.and_then(process_cpu);
    let client_before = process_cpu(std::process::id());
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for connection in opened {
        let work = work.clone();
        tasks.spawn(async move { work.drive(connection, deadline).await });
    }
    let ticker = progress.clone().map(|bar| {
        let calls = calls.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let elapsed = started.elapsed().min(args.duration);
                bar.set_position(elapsed.as_millis() as u64);
                let done = calls.load(Ordering::Relaxed);
                let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
                bar.set_message(format!("{done} calls, {} calls/s", round(rate)));
            }
        })
    });

    let mut totals = Tally::default();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(tally)) => totals.merge(tally),
            Ok(Err(error)) => {
                failure.get_or_insert(error);
                // The others would stop at the deadline anyway; stop now.
                tasks.abort_all();
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                failure.get_or_insert(ClientError::ConnectionLost(format!("task failed: {e}")));
            }
        }
    }
    // Replies that come after the deadline (to calls still in flight then) are read but not
    // counted, so the measured interval is exactly the duration.
    let elapsed = args.duration.as_secs_f64();
    let server_after = server_pid.and_then(process_cpu);
    let client_after = process_cpu(std::process::id());
    if let Some(task) = ticker {
        task.abort();
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    if let Some(error) = failure {
        return Err(client_failure(
            &address,
            &format!("benchmark of {}()", args.method),
            error,
        ));
    }

    let per_call = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(b), Some(a)) if totals.calls > 0 => {
            Some(a.saturating_sub(b).as_secs_f64() * 1e6 / totals.calls as f64)
        }
        _ => None,
    };
    let report = Report {
        address: &address,
        method: &args.method,
        connections,
        pipeline,
        seconds: elapsed,
        calls: totals.calls,
        errors: totals.errors,
        first_error: totals.first_error.as_deref(),
        calls_per_sec: totals.calls as f64 / elapsed,
        p50_us: totals.latency.percentile(0.50),
        p99_us: totals.latency.percentile(0.99),
        p999_us: totals.latency.percentile(0.999),
        max_us: totals.latency.max(),
        client_cpu_us: per_call(client_before, client_after),
        server_cpu_us: per_call(server_before, server_after),
        server_pid,
    };
    let text = if args.json {
        let mut line = report.json().to_string();
        line.push('\n');
        line
    } else {
        report.table()
    };
    super::write_stdout(&text)
}

async fn first_call(
    connection: &mut Connection,
    address: &Address,
    method: &str,
    parameters: &Map<String, Value>,
) -> Result<(), Failure> {
    match connection.call(method, parameters).await {
        Ok(_) => Ok(()),
        Err(ClientError::Reply(reply)) => {
            let params = Value::Object(reply.parameters).to_string();
            Err(Failure::new(
                exit::REPLY_ERROR,
                format!(
                    "the first call of {method}() failed with error {} {params}; nothing was measured",
                    reply.name
                ),
            )
            .with_hint(format!(
                "check the method and its parameters with: localrpc call {address} {method} '...'"
            )))
        }
        Err(other) => Err(client_failure(
            address,
            &format!("first call of {method}()"),
            other,
        )),
    }
}

/// What every connection's task shares.
struct Work {
    method: String,
    parameters: Map<String, Value>,
    pipeline: usize,
    /// Calls answered so far, for the progress bar.
    calls: Arc<AtomicU64>,
}

impl Work {
    /// Calls until `deadline` with up to `pipeline` calls in flight.
    async fn drive(
        &self,
        mut connection: Connection,
        deadline: Instant,
    ) -> Result<Tally, ClientError> {
        let mut tally = Tally::default();
        let refill = if self.pipeline == 1 {
            1
        } else {
            self.pipeline / 2
        };
        let mut sent: VecDeque<Instant> = VecDeque::with_capacity(self.pipeline);
        self.send(&mut connection, &mut sent, self.pipeline).await?;
        let mut counting = true;
        while let Some(at) = sent.pop_front() {
            let reply = connection.receive().await?;
            let now = Instant::now();
            if reply.continues && reply.error.is_none() {
                return Err(ClientError::Protocol(localrpc::wire::ProtocolError {
                    reason:
                        "the method streams replies (\"continues\"): bench calls without 'more'"
                            .into(),
                }));
            }
            if counting && now > deadline {
                counting = false;
            }
            if counting {
                tally.calls += 1;
                tally.latency.record(now - at);
                if let Some(name) = reply.error {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(name);
                }
                if tally.calls % 256 == 0 {
                    self.calls.fetch_add(256, Ordering::Relaxed);
                }
            }
            // Refill once `refill` replies of the window have come back.
            if counting && sent.len() == self.pipeline - refill {
                self.send(&mut connection, &mut sent, refill).await?;
            }
        }
        Ok(tally)
    }

    async fn send(
        &self,
        connection: &mut Connection,
        sent: &mut VecDeque<Instant>,
        count: usize,
    ) -> Result<(), ClientError> {
        for _ in 0..count {
            connection.send(&self.method, &self.parameters, CallFlags::default())?;
        }
        connection.flush().await?;
        let now = Instant::now();
        sent.extend(std::iter::repeat_n(now, count));
        Ok(())
    }
}

/// One connection's results.
#[derive(Default)]
struct Tally {
    calls: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency.merge(&other.latency);
    }
}

/// Latencies in nanoseconds, log-linear: 64 buckets per power of two (error under 1.6 %).
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BUCKETS: u64 = 64;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; (SUB_BUCKETS * 60) as usize],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(nanos: u64) -> usize {
        if nanos < SUB_BUCKETS {
            return nanos as usize;
        }
        let shift = (63 - nanos.leading_zeros()) as u64 - 6;
        let sub = (nanos >> shift) - SUB_BUCKETS;
        (SUB_BUCKETS + shift * SUB_BUCKETS + sub) as usize
    }

    /// The middle of bucket `index`, in nanoseconds.
    fn value(index: usize) -> u64 {
        let index = index as u64;
        if index < SUB_BUCKETS {
            return index;
        }
        let shift = (index - SUB_BUCKETS) / SUB_BUCKETS;
        let sub = (index - SUB_BUCKETS) % SUB_BUCKETS;
        ((SUB_BUCKETS + sub) << shift) + (1u64 << shift) / 2
    }

    fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let index = Self::index(nanos).min(self.counts.len() - 1);
        self.counts[index] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The `q` quantile in microseconds.
    fn percentile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::value(index).min(self.max) as f64 / 1000.0);
            }
        }
        Some(self.max as f64 / 1000.0)
    }

    fn max(&self) -> Option<f64> {
        (self.total > 0).then(|| self.max as f64 / 1000.0)
    }
}

struct Report<'a> {
    address: &'a Address,
    method: &'a str,
    connections: usize,
    pipeline: usize,
    seconds: f64,
    calls: u64,
    errors: u64,
    first_error: Option<&'a str>,
    calls_per_sec: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    max_us: Option<f64>,
    client_cpu_us: Option<f64>,
    server_cpu_us: Option<f64>,
    server_pid: Option<u32>,
}

impl Report<'_> {
    fn json(&self) -> Value {
        let us = |v: Option<f64>| v.map(|v| (v * 1000.0).round() / 1000.0);
        json!({
            "address": self.address.to_string(),
            "method": self.method,
            "connections": self.connections,
            "pipeline": self.pipeline,
            "duration_s": (self.seconds * 1000.0).round() / 1000.0,
            "calls": self.calls,
            "errors": self.errors,
            "first_error": self.first_error,
            "calls_per_sec": self.calls_per_sec.round(),
            "p50_us": us(self.p50_us),
            "p99_us": us(self.p99_us),
            "p999_us": us(self.p999_us),
            "max_us": us(self.max_us),
            "client_cpu_us_per_call": us(self.client_cpu_us),
            "server_cpu_us_per_call": us(self.server_cpu_us),
            "server_pid": self.server_pid,
        })
    }

    fn table(&self) -> String {
        let latency = |v: Option<f64>| v.map_or("-".to_owned(), format_us);
        let cpu = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{} /call", format_us(v)));
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let errors = match self.first_error {
            Some(name) => format!("{} (first: {name})", self.errors),
            None => self.errors.to_string(),
        };
        let server = match (self.server_cpu_us, self.server_pid) {
            (Some(v), Some(pid)) => format!("{} (pid {pid})", cpu(Some(v))),
            (None, Some(pid)) => format!("- (cannot read /proc/{pid}/stat)"),
            _ => "- (the server's pid is not known on this transport)".to_owned(),
        };
        format!(
            "{method} at {address}: {connections}, pipeline {pipeline}, {seconds:.1} s\n\
             \x20     calls/s  {rate}\n\
             \x20       calls  {calls}\n\
             \x20      errors  {errors}\n\
             \x20 latency p50  {p50}\n\
             \x20         p99  {p99}\n\
             \x20       p99.9  {p999}\n\
             \x20         max  {max}\n\
             \x20  client CPU  {client}\n\
             \x20  server CPU  {server}\n",
            method = self.method,
            address = self.address,
            connections = plural(self.connections, "connection"),
            pipeline = self.pipeline,
            seconds = self.seconds,
            rate = round(self.calls_per_sec),
            calls = self.calls,
            p50 = latency(self.p50_us),
            p99 = latency(self.p99_us),
            p999 = latency(self.p999_us),
            max = latency(self.max_us),
            client = cpu(self.client_cpu_us),
        )
    }
}

fn format_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.2} µs")
    }
}

/// Rates to 3 significant digits.
fn round(rate: f64) -> String {
    if rate >= 1000.0 {
        let digits = rate.log10().floor() as i32 - 2;
        let unit = 10f64.powi(digits);
        format!("{:.0}", (rate / unit).round() * unit)
    } else {
        format!("{rate:.1}")
    }
}

fn progress_bar(duration: Duration, connections: usize, pipeline: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(duration.as_millis() as u64);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} [{{bar:30}}] {{elapsed}}/{:.0}s {connections}×{pipeline}  {{msg}}",
        duration.as_secs_f64()
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// User + system CPU time of a process (all threads) from /proc/PID/stat, in USER_HZ ticks
/// (10 ms): a benchmark of a few seconds gives the cost per call to about 1 %.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn parse_parameters(text: Option<&str>) -> Result<Map<String, Value>, Failure> {
    let text = text.unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(Failure::usage("the parameters are not a JSON object")
            .with_hint(r#"pass an object such as '{"text": "hello"}' (or '{}')"#)),
        Err(e) => Err(
            Failure::usage(format!("the parameters are not valid JSON: {e}"))
                .with_hint(r#"pass an object such as '{"text": "hello"}'; quote it for the shell"#),
        ),
    }
}

fn check_method(method: &str) -> Result<(), Failure> {
    let valid = method.rsplit_once('.').is_some_and(|(interface, member)| {
        interface.contains('.') && member.starts_with(|c: char| c.is_ascii_uppercase())
    });
    if valid {
        Ok(())
    } else {
        Err(
            Failure::usage(format!("{method:?} is not a fully qualified method name"))
                .with_hint("write INTERFACE.Method, e.g. io.localrpc.Echo.Echo"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_within_resolution() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.percentile(0.5).unwrap();
        let p99 = h.percentile(0.99).unwrap();
        assert!((p50 - 500.0).abs() / 500.0 < 0.02, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.02, "{p99}");
        assert_eq!(h.max(), Some(1000.0));
        for nanos in [0u64, 1, 63, 64, 65, 127, 128, 1 << 20, (1 << 40) + 12345] {
            let back = Histogram::value(Histogram::index(nanos));
            assert!(
                back.abs_diff(nanos) as f64 <= (nanos as f64 / 64.0).max(0.5),
                "{nanos} -> {back}"
            );
        }
    }

    #[test]
    fn rates_round_to_three_digits() {
        assert_eq!(round(123_456.0), "123000");
        assert_eq!(round(999.4), "999.4");
    }
}
