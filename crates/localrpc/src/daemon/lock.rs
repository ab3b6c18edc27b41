//! The single-instance lock: an exclusive flock on a file held for the process lifetime.
//!
//! The lock file is never unlinked: unlinking after unlock would let two later instances
//! each lock a different inode and both believe they are alone.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("another instance of {name} is already running (pid={pid}); lock file {}", .path.display())]
    Held {
        /// Program name, for the message.
        name: String,
        /// The pid recorded by the holder (`unknown` if unreadable).
        pid: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}: {source}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// A held single-instance lock; released when the process exits (or this is dropped).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock at `path` (created with mode 0644) and records this process's pid in it.
    pub fn acquire(path: &Path, name: &str) -> Result<InstanceLock, LockError> {
        let io_err = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::CLOEXEC.bits() as i32)
            .open(path)
            .map_err(io_err)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    name: name.to_owned(),
                    pid: if pid.is_empty() {
                        "unknown".to_owned()
                    } else {
                        pid.to_owned()
                    },
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(io_err(e.into())),
        }
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(InstanceLock {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.lock");
        let first = InstanceLock::acquire(&path, "x").expect("first lock");
        let err = InstanceLock::acquire(&path, "x").expect_err("second lock must fail");
        let pid = std::process::id().to_string();
        assert!(
            matches!(&err, LockError::Held { pid: p, .. } if *p == pid),
            "{err}"
        );
        assert!(err.to_string().starts_with(&format!(
            "another instance of x is already running (pid={pid})"
        )));
        drop(first);
        let again = InstanceLock::acquire(&path, "x").expect("lock after release");
        assert!(again.path().exists(), "the lock file is never removed");
    }
}
