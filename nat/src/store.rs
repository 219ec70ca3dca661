//! On-disk attachment records: `<state_dir>/nat/<network>/<container_id>.<ifname>.<source>.json`, one per
//! attachment and plugin (`source` is `bridge` or `portmap`),
//! written atomically (temp file in the same directory, fsync, rename, fsync directory) under an exclusive
//! `flock` on `<state_dir>/nat/lock`. Every read and write takes a [`StoreLock`] so the borrow checker keeps
//! callers honest about holding the lock.
//!
//! [`RecordStore::write`] and [`RecordStore::remove`] keep the ownership [`Index`] in step, and
//! [`RecordStore::claimants`] answers "whose records have an element in these slots" from it, reading only
//! those records: the per-attachment verbs never list the whole directory.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::NatError;
use crate::index::{record_slots, Index};
use crate::model::{AttachmentRecord, Owner, Source};

/// How long to wait for the lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(5);

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The exclusive state lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _flock: Flock<File>,
    /// Whether the index was found current (or rebuilt) under this lock: checked once per verb.
    index_checked: Cell<bool>,
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
                Ok(flock) => {
                    return Ok(StoreLock {
                        _flock: flock,
                        index_checked: Cell::new(false),
                    })
                }
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
    pub fn write(&self, lock: &StoreLock, record: &AttachmentRecord) -> Result<(), NatError> {
        record.validate()?;
        let path = self.record_path(&record.owner, record.source);
        let existing = read_record(&path)?;
        if let Some(existing) = &existing {
            if existing.owner != record.owner || existing.source != record.source {
                return Err(NatError::InvalidData {
                    field: "attachment",
                    value: record.owner.to_string(),
                    reason: "its record file name is taken by another attachment (ids with dots)",
                });
            }
        }
        // Index entries go in before the record and out after it: a crash leaves extra entries, never
        // missing ones.
        let index = self.index(lock)?;
        let slots = record_slots(record);
        index.insert(&slots, &record.owner, record.source)?;
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
        sync_dir(&dir)?;
        if let Some(old) = existing {
            let before = record_slots(&old);
            forget(&index, before.difference(&slots), &record.owner, record.source);
        }
        Ok(())
    }

    /// Deletes `owner`'s record from `source`; a missing record is fine.
    pub fn remove(&self, lock: &StoreLock, owner: &Owner, source: Source) -> Result<(), NatError> {
        let Some(record) = self.read(lock, owner, source)? else {
            return Ok(());
        };
        let path = self.record_path(owner, source);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(NatError::io("remove record", &path, e)),
            _ => {}
        }
        let dir = self.root.join(&owner.network);
        sync_dir(&dir)?;
        // Drop the network's directory once its last record is gone; fails harmlessly while others remain.
        let _ = fs::remove_dir(&dir);
        match self.index(lock) {
            Ok(index) => forget(&index, &record_slots(&record), owner, source),
            Err(error) => tracing::warn!(%error, %owner, "NAT index not updated after removing a record"),
        }
        Ok(())
    }

    /// The ownership index, rebuilt from the records first when it is missing, of another format or from
    /// another boot (checked once per lock).
    pub fn index(&self, lock: &StoreLock) -> Result<Index, NatError> {
        let index = Index::new(&self.root);
        if !lock.index_checked.get() {
            let boot = current_boot_id();
            if !index.is_current(boot.as_deref()) {
                let listing = self.list(lock, None)?;
                tracing::debug!(
                    records = listing.records.len(),
                    "rebuilding the NAT ownership index"
                );
                index.rebuild(&listing.records, boot.as_deref())?;
            }
            lock.index_checked.set(true);
        }
        Ok(index)
    }

    /// Rebuilds the index from `records` (every readable record: `reconcile` has just listed them).
    pub fn rebuild_index(&self, lock: &StoreLock, records: &[AttachmentRecord]) -> Result<(), NatError> {
        Index::new(&self.root).rebuild(records, current_boot_id().as_deref())?;
        lock.index_checked.set(true);
        Ok(())
    }

    /// The records that have an element in one of `slots` (see [`crate::index::slot`]), sorted by owner.
    /// Reads only those records. Index entries whose record is gone or no longer has that slot are dropped;
    /// an unreadable record is skipped with a warning (it claims nothing, as in a full listing).
    pub fn claimants(
        &self,
        lock: &StoreLock,
        slots: &BTreeSet<String>,
    ) -> Result<Vec<AttachmentRecord>, NatError> {
        let index = self.index(lock)?;
        let mut wanted: BTreeSet<(Owner, Source)> = BTreeSet::new();
        let mut seen: Vec<((Owner, Source), String)> = Vec::new();
        for slot in slots {
            for claimant in index.claimants(slot)? {
                wanted.insert(claimant.clone());
                seen.push((claimant, slot.clone()));
            }
        }
        let mut records = Vec::new();
        for (owner, source) in wanted {
            let record = match self.read(lock, &owner, source) {
                Ok(record) => record,
                Err(error) => {
                    tracing::warn!(%error, "ignoring unreadable NAT record");
                    continue;
                }
            };
            let held = record.as_ref().map(record_slots).unwrap_or_default();
            let claimed: Vec<&String> = seen
                .iter()
                .filter(|(c, _)| c.0 == owner && c.1 == source)
                .map(|(_, slot)| slot)
                .collect();
            let (backed, phantom): (Vec<&String>, Vec<&String>) =
                claimed.into_iter().partition(|slot| held.contains(*slot));
            if !phantom.is_empty() {
                tracing::debug!(%owner, %source, "dropping NAT index lines its record does not back");
                forget(&index, phantom, &owner, source);
            }
            if !backed.is_empty() {
                records.extend(record);
            }
        }
        Ok(records)
    }

    /// Every record of `network`, or of all networks when `None`.
    pub fn list(&self, _lock: &StoreLock, network: Option<&str>) -> Result<Listing, NatError> {
        let mut listing = Listing::default();
        let dirs = match network {
            Some(n) => vec![self.root.join(n)],
            None => subdirectories(&self.root)?,
        };
        let mut files: Vec<(PathBuf, Source)> = Vec::new();
        for dir in dirs {
            let entries = match fs::read_dir(&dir) {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                other => other.map_err(|e| NatError::io("list records", &dir, e))?,
            };
            for entry in entries {
                match entry {
                    Ok(entry) => {
                        let path = entry.path();
                        if let Some(source) = source_of(&file_name(&path)) {
                            files.push((path, source));
                        }
                    }
                    Err(e) => listing.errors.push(NatError::io("list records", &dir, e)),
                }
            }
        }
        for read in read_all(&files) {
            match read {
                Ok(record) => listing.records.push(record),
                Err(e) => listing.errors.push(e),
            }
        }
        listing.records.sort_by(|a, b| a.owner.cmp(&b.owner));
        Ok(listing)
    }
}

/// Reads and checks record files, on a few threads when there are many (`list-nat` at 10,000 attachments
/// spends most of its time here: one open/read/parse per file).
fn read_all(files: &[(PathBuf, Source)]) -> Vec<Result<AttachmentRecord, NatError>> {
    const PER_THREAD: usize = 512;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8)
        .min(files.len().div_ceil(PER_THREAD).max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let read_chunk = |part: &[(PathBuf, Source)]| -> Vec<Result<AttachmentRecord, NatError>> {
        part.iter()
            .filter_map(|(path, source)| read_checked(path, *source))
            .collect()
    };
    if threads == 1 {
        return read_chunk(files);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| (part, scope.spawn(move || read_chunk(part))))
            .collect();
        handles
            .into_iter()
            .flat_map(|(part, handle)| handle.join().unwrap_or_else(|_| read_chunk(part)))
            .collect()
    })
}

/// One record file whose name says it holds `source`; `None` when it vanished meanwhile.
fn read_checked(path: &Path, source: Source) -> Option<Result<AttachmentRecord, NatError>> {
    match read_record(path) {
        Ok(Some(record)) if record.source == source => Some(Ok(record)),
        Ok(Some(_)) => Some(Err(NatError::InvalidData {
            field: "record",
            value: path.display().to_string(),
            reason: "its source differs from its file name",
        })),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
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
        // Dot names (the index, temp directories) are never networks.
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Removes index entries; a failure leaves an extra entry, which readers drop, so it is only logged.
fn forget<'a>(index: &Index, slots: impl IntoIterator<Item = &'a String>, owner: &Owner, source: Source) {
    if let Err(error) = index.remove(slots, owner, source) {
        tracing::warn!(%error, %owner, "cannot remove NAT index entries");
    }
}

/// `/proc/sys/kernel/random/boot_id`, trimmed.
/// The kernel's boot id; `CORRAL_BOOT_ID_FILE` names another file to read (tests simulate a reboot with it, as
/// host-local does).
pub(crate) fn current_boot_id() -> Option<String> {
    let path = std::env::var_os("CORRAL_BOOT_ID_FILE").unwrap_or_else(|| BOOT_ID.into());
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
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
