//! Varlink as raw bytes over blocking unix stream sockets (connect, read one NUL-terminated
//! message, one round trip), what the kernel says about a socket (bytes the peer has not
//! read yet, whether a path listens) and the inode and mode of socket files.
//!
//! Every wait here is bounded: a bug fails a test, it never hangs it.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::TIMEOUT;

/// Connects with read/write timeouts of [`TIMEOUT`].
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Reads one NUL-terminated message (the NUL included). `Err(UnexpectedEof)` when the peer
/// closed first; the bytes received so far are in `partial`.
pub fn read_message(stream: &mut UnixStream, partial: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "peer closed before the reply ended ({} bytes of it)",
                    partial.len()
                ),
            ));
        }
        partial.push(byte[0]);
        if byte[0] == 0 {
            return Ok(std::mem::take(partial));
        }
    }
}

/// One raw round trip on a new connection: `request` in, one reply (NUL included) out.
/// Panics when the connection or the exchange fails.
pub fn raw_call(path: &Path, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(path).unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    stream.write_all(request).expect("send the call");
    read_message(&mut stream, &mut Vec::new()).expect("read the reply")
}

/// Unread bytes this socket has sent (`SIOCOUTQ`): 0 once the peer has read all of it.
pub fn unread_output(stream: &UnixStream) -> usize {
    let mut pending: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int to the pointer, which is valid for the call.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut pending) };
    assert_eq!(r, 0, "SIOCOUTQ: {}", io::Error::last_os_error());
    pending as usize
}

/// Waits (bounded) until the server has read everything sent on `stream`: the readiness
/// signal "the call is in flight" without guessing with a sleep.
pub fn wait_until_read(stream: &UnixStream) {
    let deadline = Instant::now() + TIMEOUT;
    while unread_output(stream) > 0 {
        assert!(
            Instant::now() < deadline,
            "the server did not read the request within {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits (bounded) until a unix socket at `path` is in the listening state, from
/// /proc/net/unix (flag `__SO_ACCEPTCON`), without connecting: a probe connection would
/// itself trigger `systemd-socket-activate`. The file exists from bind(), before listen().
pub fn wait_for_listening(path: &Path) {
    let wanted = path.to_str().expect("UTF-8 path");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let table = std::fs::read_to_string("/proc/net/unix").expect("read /proc/net/unix");
        let listening = table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() >= 8
                && fields[7] == wanted
                && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & 0x10000 != 0)
        });
        if listening {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} is not listening",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The inode of a file (not following symlinks).
pub fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

/// The permission bits (with setuid/setgid/sticky) of a file, not following symlinks.
pub fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}
