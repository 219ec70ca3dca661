//! The disk store, in the reference host-local's format so a node can switch between the two plugins:
//!
//! ```text
//! <dataDir>/<network>/lock                  flock held by every verb (the reference's go-filemutex file)
//! <dataDir>/<network>/<ip>                  "<containerID>\r\n<ifname>", mode 0600, one per reservation
//! <dataDir>/<network>/last_reserved_ip.<N>  last address handed out in range set N (round-robin hint)
//! <dataDir>/<network>/.corral/<id>@<ifname> corral's index of one attachment (addresses, boot id, netns)
//! ```
//!
//! Unlike the reference, every write is atomic: a temporary `.<name>.tmp` beside the target, then `link()`
//! (exclusive, for reservations) or `rename()` (hint and index). At the end of a verb, before its result is
//! returned, the new reservation files and then each directory are fsynced (one journal commit on ext4). The
//! index lets DEL and the duplicate check read one file instead of walking the directory; the `@` cannot occur
//! in a container id, so the name splits unambiguously. The reference walks the directory recursively and
//! compares each file's trimmed content with `<id>\r\n<ifname>` or `<id>`: index files start with a header
//! line, temporary files start with `.` (not an address), so it never mistakes them for reservations.

use super::fs::{self, Publish};
use super::{Holder, IndexEntry, Store};
use crate::error::StoreError;
use corral_cni::{failpoint, Attachment};
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The index directory inside a network directory.
pub const INDEX_DIR: &str = ".corral";
/// Prefix of the round-robin hint files.
pub const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
/// The lock file inside a network directory.
pub const LOCK_FILE: &str = "lock";
/// How long a verb waits for the lock before failing with code 11.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Test hook: `CORRAL_FAIL_AT=ipam-after-index` kills the process right after an index entry is written.
pub const FAIL_AFTER_INDEX: &str = "ipam-after-index";
/// Test hook: `CORRAL_FAIL_AT=ipam-after-ipfile` kills the process right after a reservation file is linked.
pub const FAIL_AFTER_IPFILE: &str = "ipam-after-ipfile";

/// One network's directory.
#[derive(Debug, Clone)]
pub struct DiskStore {
    dir: PathBuf,
    index_dir: PathBuf,
    /// Reservation files created by this verb, fsynced by [`Store::sync`] before the verb returns.
    unsynced: Vec<PathBuf>,
}

/// The network's lock, held until dropped.
#[derive(Debug)]
pub struct LockGuard {
    _lock: fs::FileLock,
}

impl DiskStore {
    /// Opens `<data_dir>/<network>`, creating it (0755) and the index directory (0700) if needed.
    pub fn open(data_dir: &Path, network: &str) -> Result<DiskStore, StoreError> {
        let store = DiskStore::at(data_dir, network);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&store.dir)
            .map_err(|e| StoreError::io("create", &store.dir, e))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&store.index_dir)
            .map_err(|e| StoreError::io("create", &store.index_dir, e))?;
        Ok(store)
    }

    /// Opens `<data_dir>/<network>` if it exists, creating nothing.
    pub fn open_existing(data_dir: &Path, network: &str) -> Result<Option<DiskStore>, StoreError> {
        let store = DiskStore::at(data_dir, network);
        match std::fs::metadata(&store.dir) {
            Ok(_) => Ok(Some(store)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("open", &store.dir, e)),
        }
    }

    fn at(data_dir: &Path, network: &str) -> DiskStore {
        let dir = data_dir.join(network);
        let index_dir = dir.join(INDEX_DIR);
        DiskStore {
            dir,
            index_dir,
            unsynced: Vec::new(),
        }
    }

    /// The network directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the network's lock (the file the reference locks too), waiting up to `timeout`.
    pub fn lock(&self, timeout: Duration) -> Result<LockGuard, StoreError> {
        let lock = fs::lock_file(&self.dir.join(LOCK_FILE), timeout)?;
        Ok(LockGuard { _lock: lock })
    }

    /// Checks that a file can be written and removed in the network directory (STATUS).
    pub fn probe_writable(&self) -> Result<(), StoreError> {
        let probe = fs::tmp_path(&self.dir, &format!("status.{}", std::process::id()));
        std::fs::write(&probe, b"probe").map_err(|e| StoreError::io("write", &probe, e))?;
        fs::remove_if_present(&probe)
    }

    /// The reservation file of `ip`.
    pub fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// The index file of `owner`.
    pub fn index_path(&self, owner: &Attachment) -> PathBuf {
        self.index_dir.join(index_name(owner))
    }
}

fn index_name(owner: &Attachment) -> String {
    format!("{}@{}", owner.container_id.trim(), owner.ifname)
}

impl Store for DiskStore {
    fn holder(&self, ip: IpAddr) -> Result<Option<Holder>, StoreError> {
        Ok(fs::read_if_present(&self.ip_path(ip))?.map(|c| Holder::parse(&c)))
    }

    fn is_reserved(&self, ip: IpAddr) -> Result<bool, StoreError> {
        let path = self.ip_path(ip);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("stat", path, e)),
        }
    }

    fn create(&mut self, ip: IpAddr, owner: &Attachment) -> Result<bool, StoreError> {
        let content = Holder::encode(owner);
        let created = fs::write_atomic(&self.dir, &ip.to_string(), content.as_bytes(), Publish::Exclusive)?;
        if created {
            tracing::debug!(%ip, id = %owner.container_id, ifname = %owner.ifname, "reserved");
            self.unsynced.push(self.ip_path(ip));
            failpoint::hit(FAIL_AFTER_IPFILE);
        }
        Ok(created)
    }

    fn remove(&mut self, ip: IpAddr) -> Result<(), StoreError> {
        tracing::debug!(%ip, "released");
        fs::remove_if_present(&self.ip_path(ip))
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        // New reservations' contents, then the directories that name them: on ext4 the first fsync commits the
        // journal with everything, so the rest are cheap, and all of it is durable before the verb returns.
        for path in std::mem::take(&mut self.unsynced) {
            match std::fs::File::open(&path).and_then(|f| f.sync_all()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::io("fsync", &path, e))
                }
                _ => {}
            }
        }
        fs::sync_dir(&self.dir)?;
        match fs::sync_dir(&self.index_dir) {
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn reservations(&self) -> Result<Vec<(IpAddr, Holder)>, StoreError> {
        let mut out = Vec::new();
        for ip in self.reserved_ips()? {
            let path = self.ip_path(ip);
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                if let Some(content) = fs::read_if_present(&path)? {
                    out.push((ip, Holder::parse(&content)));
                }
            }
        }
        Ok(out)
    }

    fn reserved_ips(&self) -> Result<Vec<IpAddr>, StoreError> {
        // Only names that are addresses: this skips `lock`, `last_reserved_ip.*`, dotfiles and the index.
        Ok(fs::list_dir(&self.dir)?
            .iter()
            .filter_map(|n| n.parse::<IpAddr>().ok())
            .collect())
    }

    fn last_reserved(&self, set: usize) -> Result<Option<IpAddr>, StoreError> {
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{set}"));
        Ok(fs::read_if_present(&path)?.and_then(|c| c.trim().parse().ok()))
    }

    fn set_last_reserved(&mut self, set: usize, ip: IpAddr) -> Result<(), StoreError> {
        let name = format!("{LAST_RESERVED_PREFIX}{set}");
        fs::write_atomic(&self.dir, &name, ip.to_string().as_bytes(), Publish::Replace).map(|_| ())
    }

    fn read_index(&self, owner: &Attachment) -> Result<Option<IndexEntry>, StoreError> {
        Ok(fs::read_if_present(&self.index_path(owner))?.and_then(|c| IndexEntry::decode(&c)))
    }

    fn write_index(&mut self, owner: &Attachment, entry: &IndexEntry) -> Result<(), StoreError> {
        let name = index_name(owner);
        fs::write_atomic(
            &self.index_dir,
            &name,
            entry.encode().as_bytes(),
            Publish::Replace,
        )?;
        failpoint::hit(FAIL_AFTER_INDEX);
        Ok(())
    }

    fn remove_index(&mut self, owner: &Attachment) -> Result<(), StoreError> {
        fs::remove_if_present(&self.index_path(owner))?;
        match fs::sync_dir(&self.index_dir) {
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn indexed(&self) -> Result<Vec<Attachment>, StoreError> {
        Ok(fs::list_dir(&self.index_dir)?
            .iter()
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.split_once('@'))
            .map(|(id, ifname)| Attachment {
                container_id: id.to_string(),
                ifname: ifname.to_string(),
            })
            .collect())
    }

    fn sweep(&mut self) -> Vec<StoreError> {
        let mut errors = fs::sweep_tmp(&self.dir);
        errors.extend(fs::sweep_tmp(&self.index_dir));
        errors
    }
}

#[cfg(test)]
mod tests;
