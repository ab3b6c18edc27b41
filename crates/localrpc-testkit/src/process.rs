//! Daemons as child processes: signals, bounded waits for their exit (on a pidfd where the
//! kernel has them), and their stderr, whole or line by line as it arrives.
//!
//! Every wait here is bounded: a bug fails a test, it never hangs it.

use std::io::{BufRead, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::TIMEOUT;

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a nonzero pid");
    rustix::process::kill_process(pid, signal).expect("send a signal");
}

/// Waits until `fd` is readable (`POLLIN`) or `timeout` passes; true when readable.
pub fn wait_readable(fd: impl AsFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// Waits (bounded, on a pidfd: no polling) for a child to exit; None on timeout.
pub fn wait_exit_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    if let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        if !wait_readable(&pidfd, timeout) {
            return None;
        }
        return Some(child.wait().expect("reap the child"));
    }
    // Already reaped or pidfds unsupported.
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Like [`wait_exit_within`] with [`TIMEOUT`]; kills the child and panics on timeout.
pub fn wait_exit_pidfd(child: &mut Child) -> ExitStatus {
    wait_exit_within(child, TIMEOUT).unwrap_or_else(|| kill_and_panic(child, TIMEOUT))
}

/// Waits (bounded, polling) for a child to exit; kills it and panics on timeout.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if Instant::now() >= deadline {
            kill_and_panic(child, timeout);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill_and_panic(child: &mut Child, timeout: Duration) -> ! {
    let _ = child.kill();
    let _ = child.wait();
    panic!("process {} did not exit within {timeout:?}", child.id());
}

/// Reads everything the child wrote on stderr (after it exited); empty unless piped.
pub fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

/// Collects a child's stderr lines in the background, so a test can wait for one.
///
/// Each line is also echoed on the test's stderr as `  [label] line`.
pub struct StderrLines {
    lines: Arc<Mutex<Vec<String>>>,
    done: mpsc::Receiver<()>,
}

impl StderrLines {
    /// Takes the child's piped stderr (panics if it is not piped) and starts collecting.
    pub fn take(child: &mut Child, label: &str) -> StderrLines {
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = lines.clone();
        let label = label.to_owned();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("  [{label}] {line}");
                sink.lock().expect("lines").push(line);
                let _ = tx.send(());
            }
        });
        StderrLines { lines, done }
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// How many lines so far contain `needle`.
    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits (bounded by [`TIMEOUT`]) until a line contains `needle`; false on timeout or
    /// once the output ended without one.
    pub fn wait_for(&self, needle: &str) -> bool {
        self.wait_for_count(needle, 1)
    }

    /// Waits (bounded by [`TIMEOUT`]) until `count` lines contain `needle`; false on timeout
    /// or once the output ended with fewer.
    pub fn wait_for_count(&self, needle: &str, count: usize) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self.count(needle) >= count {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Err(mpsc::RecvTimeoutError::Disconnected) = self.done.recv_timeout(left) {
                return self.count(needle) >= count;
            }
        }
    }
}
