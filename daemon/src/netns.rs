//! Network namespaces for containers: created by corrald before the container starts (a new namespace
//! bind-mounted on a file under the state dir, as `ip netns add` does under /run/netns) and removed after CNI
//! DEL. corrald never configures them itself: the CNI plugins do.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::path::Path;

/// Creates a new, empty network namespace and pins it at `path` (which must not exist).
pub fn create(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let target = path.to_path_buf();
    // A fresh thread: unshare(CLONE_NEWNET) moves only the calling thread, which then ends; the bind mount
    // keeps the namespace alive.
    let pinned = std::thread::spawn(move || -> nix::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .map_err(|_| std::io::Error::other("netns thread panicked"))?;
    pinned.map_err(|e| {
        let _ = std::fs::remove_file(path);
        std::io::Error::other(format!("pin network namespace at {}: {e}", path.display()))
    })
}

/// Unpins and removes a namespace file; absent is fine.
pub fn delete(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(std::io::Error::other(format!("unmount {}: {e}", path.display()))),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
