//! On-disk attachment records: `<state_dir>/nat/<network>/<container_id>.<ifname>.<source>.json`, one per
//! attachment and plugin (`source` is `bridge` or `portmap`),
//! written atomically (temp file in the same directory, fsync, rename, fsync directory) under an exclusive
//! `flock` on `<state_dir>/nat/lock`. Every read and write takes a [`StoreLock`] so the borrow checker keeps
//! callers honest about holding the lock.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::NatError;
use crate::model::{AttachmentRecord, Owner, Source};

/// How long to wait for the lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(5);

/// The exclusive state lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _flock: Flock<File>,
}

/// What a listing found: good records, and errors for files that could not be read or parsed.
#[derive(Debug, Default)]
pub struct Listing {
    /// Parsed records, sorted by owner.
    pub records: Vec<AttachmentRecord>,
    /// One error per unreadable record file (listing keeps going).
    pub errors: Vec<NatError>,
}

/// The record directory `<state_dir>/nat`.
#[derive(Debug, Clone)]
pub struct RecordStore {
    root: PathBuf,
    lock_timeout: Duration,
}

impl RecordStore {
    /// A store under `state_dir` (the directory that holds `nat/`).
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        Self {
            root: state_dir.as_ref().join("nat"),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// Changes how long [`RecordStore::lock`] waits.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// `<state_dir>/nat`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding `owner`'s record written by `source` (the owner must be valid).
    pub fn record_path(&self, owner: &Owner, source: Source) -> PathBuf {
        self.root
            .join(&owner.network)
            .join(format!("{}.{}.{source}.json", owner.container_id, owner.ifname))
    }

    /// Takes the exclusive lock, polling until the timeout (then an error with code 11).
    pub fn lock(&self) -> Result<StoreLock, NatError> {
        fs::create_dir_all(&self.root).map_err(|e| NatError::io("create directory", &self.root, e))?;
        let path = self.root.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| NatError::io("open lock", &path, e))?;
        let deadline = Instant::now() + self.lock_timeout;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => return Ok(StoreLock { _flock: flock }),
                Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(POLL);
                }
                Err((_, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                    return Err(NatError::LockTimeout {
                        path,
                        timeout: self.lock_timeout,
                    })
                }
                Err((_, errno)) => return Err(NatError::io("lock", &path, errno.into())),
            }
        }
    }

    /// `owner`'s record from `source`, or `None` (a file with the same name that belongs to another owner is
    /// not ours).
    pub fn read(
        &self,
        _lock: &StoreLock,
        owner: &Owner,
        source: Source,
    ) -> Result<Option<AttachmentRecord>, NatError> {
        owner.validate()?;
        let path = self.record_path(owner, source);
        Ok(read_record(&path)?.filter(|r| r.owner == *owner && r.source == source))
    }

    /// Writes `record` atomically, replacing the owner's previous record.
    pub fn write(&self, _lock: &StoreLock, record: &AttachmentRecord) -> Result<(), NatError> {
        record.validate()?;
        let path = self.record_path(&record.owner, record.source);
        if let Some(existing) = read_record(&path)? {
            if existing.owner != record.owner || existing.source != record.source {
                return Err(NatError::InvalidData {
                    field: "attachment",
                    value: record.owner.to_string(),
                    reason: "its record file name is taken by another attachment (ids with dots)",
                });
            }
        }
        let dir = self.root.join(&record.owner.network);
        fs::create_dir_all(&dir).map_err(|e| NatError::io("create directory", &dir, e))?;
        let body =
            serde_json::to_vec_pretty(record).map_err(|e| NatError::io("encode record", &path, e.into()))?;
        let tmp = dir.join(format!(".{}.tmp", file_name(&path)));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&body)?;
            file.sync_all()
        };
        write().map_err(|e| NatError::io("write record", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| NatError::io("rename record into place", &path, e))?;
        sync_dir(&dir)
    }

    /// Deletes `owner`'s record from `source`; a missing record is fine.
    pub fn remove(&self, lock: &StoreLock, owner: &Owner, source: Source) -> Result<(), NatError> {
        if self.read(lock, owner, source)?.is_none() {
            return Ok(());
        }
        let path = self.record_path(owner, source);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(NatError::io("remove record", &path, e)),
            _ => {}
        }
        let dir = self.root.join(&owner.network);
        sync_dir(&dir)?;
        // Drop the network's directory once its last record is gone; fails harmlessly while others remain.
        let _ = fs::remove_dir(&dir);
        Ok(())
    }

    /// Every record of `network`, or of all networks when `None`.
    pub fn list(&self, _lock: &StoreLock, network: Option<&str>) -> Result<Listing, NatError> {
        let mut listing = Listing::default();
        let dirs = match network {
            Some(n) => vec![self.root.join(n)],
            None => subdirectories(&self.root)?,
        };
        for dir in dirs {
            let entries = match fs::read_dir(&dir) {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                other => other.map_err(|e| NatError::io("list records", &dir, e))?,
            };
            for entry in entries {
                let path = match entry {
                    Ok(entry) => entry.path(),
                    Err(e) => {
                        listing.errors.push(NatError::io("list records", &dir, e));
                        continue;
                    }
                };
                let name = file_name(&path);
                let Some(source) = source_of(&name) else {
                    continue;
                };
                match read_record(&path) {
                    Ok(Some(record)) if record.source == source => listing.records.push(record),
                    Ok(Some(_)) => listing.errors.push(NatError::InvalidData {
                        field: "record",
                        value: path.display().to_string(),
                        reason: "its source differs from its file name",
                    }),
                    Ok(None) => {}
                    Err(e) => listing.errors.push(e),
                }
            }
        }
        listing.records.sort_by(|a, b| a.owner.cmp(&b.owner));
        Ok(listing)
    }
}

/// The source a record file's name says it holds; `None` for temp files, the lock and anything else.
fn source_of(name: &str) -> Option<Source> {
    if name.starts_with('.') {
        return None;
    }
    Source::ALL
        .into_iter()
        .find(|s| name.ends_with(&format!(".{s}.json")))
}

fn read_record(path: &Path) -> Result<Option<AttachmentRecord>, NatError> {
    let body = match fs::read(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        other => other.map_err(|e| NatError::io("read record", path, e))?,
    };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|source| NatError::InvalidRecord {
            path: path.into(),
            source,
        })
}

fn subdirectories(root: &Path) -> Result<Vec<PathBuf>, NatError> {
    let entries = match fs::read_dir(root) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(|e| NatError::io("list networks", root, e))?,
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NatError::io("list networks", root, e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sync_dir(dir: &Path) -> Result<(), NatError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| NatError::io("sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MasqEntry;

    fn record(container: &str, ifname: &str) -> AttachmentRecord {
        let mut r = AttachmentRecord::new(Owner::new("net1", container, ifname));
        r.masq = vec![MasqEntry {
            ip: "10.1.0.2".parse().unwrap(),
            subnet: "10.1.0.0/24".parse().unwrap(),
        }];
        r
    }

    #[test]
    fn write_read_list_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path());
        let lock = store.lock().unwrap();
        let r = record("abc", "eth0");
        store.write(&lock, &r).unwrap();
        assert!(dir.path().join("nat/net1/abc.eth0.bridge.json").is_file());
        assert_eq!(
            store.read(&lock, &r.owner, Source::Bridge).unwrap(),
            Some(r.clone())
        );
        assert_eq!(store.read(&lock, &r.owner, Source::Portmap).unwrap(), None);
        store.write(&lock, &record("def", "eth0")).unwrap();
        let listing = store.list(&lock, Some("net1")).unwrap();
        assert_eq!(listing.records.len(), 2);
        assert_eq!(store.list(&lock, None).unwrap().records.len(), 2);
        store.remove(&lock, &r.owner, Source::Bridge).unwrap();
        store.remove(&lock, &r.owner, Source::Bridge).unwrap();
        assert_eq!(store.read(&lock, &r.owner, Source::Bridge).unwrap(), None);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("nat/net1")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn lock_times_out_with_code_11() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path()).with_lock_timeout(Duration::from_millis(30));
        let _held = store.lock().unwrap();
        let err = store.lock().unwrap_err();
        assert_eq!(err.code(), 11, "{err}");
    }

    #[test]
    fn corrupt_record_is_reported_and_listing_continues() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path());
        let lock = store.lock().unwrap();
        store.write(&lock, &record("abc", "eth0")).unwrap();
        fs::write(dir.path().join("nat/net1/bad.eth0.bridge.json"), "{not json").unwrap();
        fs::write(dir.path().join("nat/net1/legacy.eth0.json"), "{not json").unwrap();
        let listing = store.list(&lock, None).unwrap();
        assert_eq!(listing.records.len(), 1);
        assert_eq!(listing.errors.len(), 1);
        assert_eq!(listing.errors[0].code(), 7);
    }

    #[test]
    fn colliding_file_names_do_not_mix_owners() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path());
        let lock = store.lock().unwrap();
        store.write(&lock, &record("a.b", "c")).unwrap();
        let other = record("a", "b.c");
        assert_eq!(store.read(&lock, &other.owner, Source::Bridge).unwrap(), None);
        assert_eq!(store.write(&lock, &other).unwrap_err().code(), 7);
        store.remove(&lock, &other.owner, Source::Bridge).unwrap();
        assert!(store
            .read(&lock, &record("a.b", "c").owner, Source::Bridge)
            .unwrap()
            .is_some());
    }

    #[test]
    fn bridge_and_portmap_records_of_one_attachment_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path());
        let lock = store.lock().unwrap();
        let bridge = record("abc", "eth0");
        let mut portmap = AttachmentRecord::with_source(bridge.owner.clone(), Source::Portmap);
        portmap.netns = Some("/run/netns/x".into());
        store.write(&lock, &bridge).unwrap();
        store.write(&lock, &portmap).unwrap();
        assert_eq!(store.list(&lock, None).unwrap().records.len(), 2);
        store.remove(&lock, &bridge.owner, Source::Portmap).unwrap();
        assert_eq!(
            store.read(&lock, &bridge.owner, Source::Bridge).unwrap(),
            Some(bridge.clone())
        );
        assert_eq!(store.read(&lock, &bridge.owner, Source::Portmap).unwrap(), None);
    }
}
