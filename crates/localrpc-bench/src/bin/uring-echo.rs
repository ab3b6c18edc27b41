//! `uring-echo SOCKET_PATH`: raw-echo with io_uring. One thread per connection writes back
//! every byte it reads, but each round is a single `io_uring_enter` that both sends the echo
//! of the last read and waits for the next bytes, where raw-echo makes a `read` and a `write`.
//!
//! It answers one question in docs/PERFORMANCE.md: does a server that makes fewer syscalls per
//! sequential call than raw-echo get closer to the kernel's limit? (Here it does not: 0.92×
//! raw-echo, pinned.) Not a varlink server, and not used by scripts/bench-compare.

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};

use io_uring::{IoUring, opcode, types};

const RECV: u64 = 1;
const SEND: u64 = 2;

fn serve(stream: UnixStream) -> std::io::Result<()> {
    let fd = types::Fd(stream.as_raw_fd());
    let mut input = vec![0u8; 256 * 1024];
    let mut output = vec![0u8; 256 * 1024];
    let mut ring = IoUring::new(4)?;
    let mut to_send = 0usize;
    loop {
        let recv = opcode::Recv::new(fd, input.as_mut_ptr(), input.len() as u32)
            .build()
            .user_data(RECV);
        let send = opcode::Send::new(fd, output.as_ptr(), to_send as u32)
            .build()
            .user_data(SEND);
        let expected = if to_send > 0 { 2 } else { 1 };
        {
            let mut queue = ring.submission();
            // SAFETY: the buffers stay untouched and alive while the operations are in
            // flight: every completion is reaped below before they are used again, and if
            // waiting fails with operations pending, the buffers are leaked, not freed.
            unsafe {
                if to_send > 0 {
                    queue.push(&send).map_err(std::io::Error::other)?;
                }
                queue.push(&recv).map_err(std::io::Error::other)?;
            }
        }
        let (mut received, mut sent_all, mut completed) = (None, true, 0);
        while completed < expected {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    std::mem::forget(input);
                    std::mem::forget(output);
                    return Err(e);
                }
            }
            for entry in ring.completion() {
                completed += 1;
                match entry.user_data() {
                    RECV => received = Some(entry.result()),
                    _ => sent_all = entry.result() as usize == to_send,
                }
            }
        }
        match received {
            Some(n) if n > 0 && sent_all => {
                let n = n as usize;
                output[..n].copy_from_slice(&input[..n]);
                to_send = n;
            }
            _ => return Ok(()), // EOF, an error or a short send: the client is gone
        }
    }
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: uring-echo SOCKET_PATH");
        std::process::exit(2);
    };
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap_or_else(|e| {
        eprintln!("uring-echo: cannot bind {path}: {e}");
        std::process::exit(1);
    });
    localrpc_bench::thread_per_connection(listener, "uring-echo", |stream| {
        if let Err(e) = serve(stream) {
            eprintln!("uring-echo: {e}");
        }
    })
}
