//! File primitives of the disk store: atomic writes (temp file, then `link` or `rename`), fsyncs of files and
//! directories and the flock over a network directory, polled until a deadline.

use crate::error::StoreError;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Suffix of temporary files; they also start with `.`, so no reader takes them for a reservation.
pub const TMP_SUFFIX: &str = ".tmp";

/// The temporary file used to write `name` in `dir`: `.<name>.tmp`. One writer at a time holds the lock, so
/// the name is fixed; one found while holding the lock is a crash's leftover.
pub fn tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}{TMP_SUFFIX}"))
}

/// How a finished temporary file takes its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// `link()`: fails if the name exists, like `O_EXCL`.
    Exclusive,
    /// `rename()`: replaces the old content atomically.
    Replace,
}

/// Writes `content` to `dir/name` atomically with mode 0600: a crashed process never leaves a partial file.
/// Nothing is fsynced here: the store fsyncs new files and their directories once per verb, before the verb
/// returns ([`sync_dir`]). Returns `false` only for [`Publish::Exclusive`] when the name is taken.
pub fn write_atomic(dir: &Path, name: &str, content: &[u8], how: Publish) -> Result<bool, StoreError> {
    let tmp = tmp_path(dir, name);
    let target = dir.join(name);
    remove_if_present(&tmp)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StoreError::io("create", &tmp, e))?;
    f.write_all(content)
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    drop(f);
    let published = match how {
        Publish::Exclusive => match std::fs::hard_link(&tmp, &target) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(StoreError::io("link", &target, e));
            }
        },
        Publish::Replace => {
            std::fs::rename(&tmp, &target).map_err(|e| StoreError::io("rename", &target, e))?;
            true
        }
    };
    if how == Publish::Exclusive {
        remove_if_present(&tmp)?;
    }
    Ok(published)
}

/// Deletes a file; absent is fine.
pub fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Reads a file; `None` if absent.
pub fn read_if_present(path: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", path, e)),
    }
}

/// Makes a directory's entries durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync", dir, e))
}

/// The names in a directory (not `.` or `..`).
pub fn list_dir(dir: &Path) -> Result<Vec<String>, StoreError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Removes `.*.tmp` files in `dir`; returns the failures.
pub fn sweep_tmp(dir: &Path) -> Vec<StoreError> {
    match list_dir(dir) {
        Err(e) => vec![e],
        Ok(names) => names
            .iter()
            .filter(|n| n.starts_with('.') && n.ends_with(TMP_SUFFIX))
            .filter_map(|n| remove_if_present(&dir.join(n)).err())
            .collect(),
    }
}

/// An exclusive flock, released on drop.
#[derive(Debug)]
pub struct FileLock {
    _lock: Flock<File>,
}

/// Takes an exclusive flock on `path` (created if needed, as the reference's go-filemutex does), polling until
/// `timeout`; a timeout is [`StoreError::LockTimeout`] (code 11).
pub fn lock_file(path: &Path, timeout: Duration) -> Result<FileLock, StoreError> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CREAT)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io("open", path, e))?;
    let began = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(FileLock { _lock: lock }),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => file = f,
            Err((_, errno)) => return Err(StoreError::io("lock", path, errno.into())),
        }
        if began.elapsed() >= timeout {
            return Err(StoreError::LockTimeout {
                path: path.to_path_buf(),
                waited_ms: began.elapsed().as_millis(),
            });
        }
        std::thread::sleep(pause);
        // Holders keep the lock for a few milliseconds: a short cap keeps waiters from oversleeping it.
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}
