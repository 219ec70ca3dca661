//! Network namespaces: open one by path, compare two, and run code inside one.
//!
//! A netns is a property of a *thread*: `setns(CLONE_NEWNET)` moves only the calling thread, and sockets keep
//! the netns of the thread that opened them. So there are two safe ways to work in another netns:
//! - enter, open a netlink socket, leave, with nothing else running in between ([`crate::Netlink::in_netns`]);
//! - a dedicated thread that enters once and ends when the work is done ([`run_in_netns`]), needed for
//!   `/proc/sys` writes, which follow the calling thread's netns.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};

use crate::error::{NetopsError, Result};

/// The netns of the calling thread (`/proc/self` would name the thread-group leader's instead).
pub const THREAD_NETNS_PATH: &str = "/proc/thread-self/ns/net";

/// Opens a network namespace by its path (`/run/netns/NAME`, `/proc/PID/ns/net`, ...).
///
/// A missing path gives [`NetopsError::NetnsNotFound`]; a path that is not a namespace (the empty file left
/// under /run/netns after the namespace was unmounted) gives [`NetopsError::NotANetns`]. Both answer true to
/// [`NetopsError::is_not_found`].
pub fn open_netns(path: impl AsRef<Path>) -> Result<File> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => NetopsError::NetnsNotFound {
            path: path.to_path_buf(),
        },
        _ => NetopsError::io("open netns", path, e),
    })?;
    let fs = fstatfs(&file).map_err(|e| NetopsError::io("statfs netns", path, e.into()))?;
    if fs.filesystem_type() != NSFS_MAGIC {
        return Err(NetopsError::NotANetns {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Opens the calling thread's own network namespace.
pub fn current_netns() -> Result<File> {
    open_netns(THREAD_NETNS_PATH)
}

/// True when both files refer to the same network namespace (same device and inode).
pub fn same_netns(a: &File, b: &File) -> Result<bool> {
    let ma = a
        .metadata()
        .map_err(|e| NetopsError::io("stat netns", "<fd>", e))?;
    let mb = b
        .metadata()
        .map_err(|e| NetopsError::io("stat netns", "<fd>", e))?;
    Ok(ma.dev() == mb.dev() && ma.ino() == mb.ino())
}

/// The inode number of a network namespace, the id that `ip netns identify` and state files record.
pub fn netns_inode(netns: &File) -> Result<u64> {
    Ok(netns
        .metadata()
        .map_err(|e| NetopsError::io("stat netns", "<fd>", e))?
        .ino())
}

/// Runs `f` on a new thread that first enters `netns`, and returns what `f` returned.
///
/// Everything `f` does that depends on the netns (sockets, `/proc/sys/net` writes, spawned processes) lands
/// in `netns`. The thread ends afterwards, so it never has to leave the namespace. A panic in `f` becomes
/// [`NetopsError::ThreadPanicked`].
pub fn run_in_netns<R, F>(netns: &File, f: F) -> Result<R>
where
    R: Send,
    F: FnOnce() -> R + Send,
{
    std::thread::scope(|s| {
        let worker = s.spawn(move || -> Result<R> {
            setns(netns, CloneFlags::CLONE_NEWNET).map_err(|source| NetopsError::Setns { source })?;
            Ok(f())
        });
        worker.join().map_err(|_| NetopsError::ThreadPanicked)?
    })
}

/// Runs `f` on the calling thread while it is inside `netns`, then moves the thread back.
///
/// `f` must be synchronous and short (opening a socket). If the thread cannot return to its own namespace
/// the process aborts: every later socket it opened would silently land in the wrong namespace.
pub(crate) fn with_thread_in_netns<R>(netns: &File, f: impl FnOnce() -> R) -> Result<R> {
    let home = current_netns()?;
    setns(netns, CloneFlags::CLONE_NEWNET).map_err(|source| NetopsError::Setns { source })?;
    let out = f();
    if let Err(err) = setns(&home, CloneFlags::CLONE_NEWNET) {
        tracing::error!(%err, "cannot return to the original network namespace; aborting");
        std::process::abort();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_netns_is_same_as_itself() {
        let a = current_netns().unwrap();
        let b = current_netns().unwrap();
        assert!(same_netns(&a, &b).unwrap());
        assert_eq!(netns_inode(&a).unwrap(), netns_inode(&b).unwrap());
    }

    #[test]
    fn missing_path_is_netns_not_found() {
        let err = open_netns("/run/netns/corral-does-not-exist-42").unwrap_err();
        assert!(matches!(err, NetopsError::NetnsNotFound { .. }), "{err}");
        assert!(err.is_not_found());
    }

    #[test]
    fn regular_file_is_not_a_netns() {
        let err = open_netns("/proc/self/status").unwrap_err();
        assert!(matches!(err, NetopsError::NotANetns { .. }), "{err}");
    }
}
