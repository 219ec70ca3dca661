//! Attachment records on disk: `<state dir>/host-device/<network>/<container id>@<ifname>.json`, written
//! atomically (temp file, fsync, rename, fsync of the directory).
//!
//! No lock: a record belongs to one (network, container, ifname), the runtime does not run two verbs for one
//! attachment at once, and GC never runs beside ADD or DEL (SPEC.md section 3).

use crate::plan::DeviceRecord;
use corral_cni::CniError;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Where corral keeps state that outlives a plugin run, unless `CORRAL_STATE_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/corral";
/// This plugin's subdirectory of the state dir.
pub const SUBDIR: &str = "host-device";

/// The record directory of host-device.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn io(op: &str, path: &Path, e: std::io::Error) -> CniError {
    CniError::io(format!("{op} {}", path.display())).with_details(e)
}

impl Store {
    /// Records under `<state_dir>/host-device`.
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        Store {
            root: state_dir.as_ref().join(SUBDIR),
        }
    }

    fn dir(&self, network: &str) -> PathBuf {
        self.root.join(network)
    }

    fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir(network).join(format!("{container_id}@{ifname}.json"))
    }

    /// Writes `rec` atomically, replacing an earlier record of the same attachment.
    pub fn write(&self, rec: &DeviceRecord) -> Result<(), CniError> {
        let dir = self.dir(&rec.network);
        fs::create_dir_all(&dir).map_err(|e| io("create directory", &dir, e))?;
        let path = self.path(&rec.network, &rec.container_id, &rec.ifname);
        let tmp = dir.join(format!(".{}@{}.tmp", rec.container_id, rec.ifname));
        let body = serde_json::to_vec_pretty(rec)
            .map_err(|e| CniError::internal("encode host-device record").with_details(e))?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()
        };
        write().map_err(|e| io("write record", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io("rename record into place", &path, e))?;
        sync_dir(&dir)
    }

    /// The attachment's record, if any (a file that names another attachment is not its record).
    pub fn read(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<DeviceRecord>, CniError> {
        let path = self.path(network, container_id, ifname);
        Ok(read_record(&path)?
            .filter(|r| r.network == network && r.container_id == container_id && r.ifname == ifname))
    }

    /// Removes the attachment's record; absent is fine.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<(), CniError> {
        let path = self.path(network, container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir(network)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove record", &path, e)),
        }
    }

    /// Every record of `network`, and the errors met reading them (GC keeps going past a bad file).
    pub fn list(&self, network: &str) -> Result<(Vec<DeviceRecord>, Vec<CniError>), CniError> {
        let dir = self.dir(network);
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            other => other.map_err(|e| io("list records", &dir, e))?,
        };
        let (mut records, mut errors) = (Vec::new(), Vec::new());
        for entry in entries {
            let path = match entry {
                Ok(e) => e.path(),
                Err(e) => {
                    errors.push(io("list records", &dir, e));
                    continue;
                }
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match read_record(&path) {
                Ok(Some(r)) if r.network == network => records.push(r),
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        records.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        Ok((records, errors))
    }
}

fn read_record(path: &Path) -> Result<Option<DeviceRecord>, CniError> {
    let body = match fs::read(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        other => other.map_err(|e| io("read record", path, e))?,
    };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| CniError::decode(format!("host-device record {}", path.display())).with_details(e))
}

fn sync_dir(dir: &Path) -> Result<(), CniError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ifname: &str) -> DeviceRecord {
        DeviceRecord {
            network: "net1".into(),
            container_id: id.into(),
            ifname: ifname.into(),
            original: "enp1s0".into(),
            temp: "cdev00000001".into(),
            mac: None,
            was_up: false,
            netns: None,
            netns_inode: None,
            boot_id: None,
        }
    }

    #[test]
    fn write_read_list_remove() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        assert_eq!(s.read("net1", "a", "eth0").unwrap(), None);
        s.write(&record("a", "eth0")).unwrap();
        s.write(&record("b", "net1")).unwrap();
        let mut changed = record("a", "eth0");
        changed.was_up = true;
        s.write(&changed).unwrap();
        assert_eq!(s.read("net1", "a", "eth0").unwrap(), Some(changed));
        let (all, errors) = s.list("net1").unwrap();
        assert!(errors.is_empty());
        assert_eq!(
            all.iter().map(|r| r.container_id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(t.path().join("host-device/net1/a@eth0.json").is_file());
        let leftovers: Vec<_> = fs::read_dir(t.path().join("host-device/net1"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left behind");
        s.remove("net1", "a", "eth0").unwrap();
        s.remove("net1", "a", "eth0").unwrap();
        assert_eq!(s.read("net1", "a", "eth0").unwrap(), None);
        assert_eq!(s.list("other").unwrap().0, vec![]);
    }

    #[test]
    fn a_corrupt_record_is_reported_not_fatal_to_listing() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::new(t.path());
        s.write(&record("a", "eth0")).unwrap();
        fs::write(t.path().join("host-device/net1/bad@eth0.json"), "{").unwrap();
        let (all, errors) = s.list("net1").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, 6);
    }
}
