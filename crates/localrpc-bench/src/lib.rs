//! Shared bits of the benchmark helpers: reading a process's CPU time and memory from /proc,
//! and the echo servers' thread-per-connection accept loop.
//!
//! Nothing here is part of localrpc's API; the binaries are driven by `scripts/bench-compare`.

use std::time::Duration;

/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on every Linux ABI in use).
const USER_HZ: f64 = 100.0;

/// User + system CPU time of a whole process (all its threads, living and exited), from
/// `/proc/PID/stat` fields 14 and 15. Resolution: 10 ms, so measure for seconds.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / USER_HZ))
}

/// CPU time of this process (see [`process_cpu`]).
pub fn own_cpu() -> Option<Duration> {
    process_cpu(std::process::id())
}

/// Resident set size in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The pid of the process at the other end of a Unix socket (SO_PEERCRED).
pub fn peer_pid(stream: &std::os::unix::net::UnixStream) -> Option<u32> {
    let cred = rustix::net::sockopt::socket_peercred(stream).ok()?;
    u32::try_from(cred.pid.as_raw_nonzero().get()).ok()
}

/// Serves every connection `listener` accepts on its own thread, with `serve`; never returns.
/// Small stacks: 10 000 idle connections are 10 000 threads. `name` prefixes error messages.
pub fn thread_per_connection(
    listener: std::os::unix::net::UnixListener,
    name: &'static str,
    serve: fn(std::os::unix::net::UnixStream),
) -> ! {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let spawned = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || serve(stream));
                if let Err(e) = spawned {
                    eprintln!("{name}: cannot start a thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("{name}: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
