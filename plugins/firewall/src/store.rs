//! Records: one JSON file per attachment, `<state>/firewall/<network>/<containerID>_<ifname>.json`, holding
//! the addresses ADD allowed, so DEL and GC work without prevResult or netns. Every verb holds an exclusive
//! lock on `<state>/firewall/.lock` while it reads records and changes the sets: an address two attachments
//! claim stays allowed until the last one goes.

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use corral_cni::CniError;
use corral_nat::Owner;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// What one attachment allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Network name.
    pub network: String,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// Container addresses (from prevResult).
    pub ips: Vec<IpAddr>,
}

/// The record directory, locked.
pub struct Store {
    root: PathBuf,
    _lock: Flock<File>,
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> CniError {
    CniError::io(format!("{what} {}: {e}", path.display()))
}

/// Validates the owner key, so it is safe as a file name.
pub fn validate(network: &str, container_id: &str, ifname: &str) -> Result<(), CniError> {
    Owner::new(network, container_id, ifname)
        .validate()
        .map_err(|e| CniError::invalid_config(e.to_string()))
}

impl Store {
    /// Opens `<state>/firewall` and takes its lock (blocking).
    pub fn open(state_dir: &Path) -> Result<Self, CniError> {
        let root = state_dir.join("firewall");
        std::fs::create_dir_all(&root).map_err(|e| io("create", &root, e))?;
        let lock_path = root.join(".lock");
        let file = File::create(&lock_path).map_err(|e| io("open", &lock_path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io("lock", &lock_path, e))?;
        Ok(Store { root, _lock: lock })
    }

    fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.root
            .join(network)
            .join(format!("{container_id}_{ifname}.json"))
    }

    /// The record of one attachment, if any.
    pub fn get(&self, network: &str, container_id: &str, ifname: &str) -> Result<Option<Record>, CniError> {
        validate(network, container_id, ifname)?;
        read(&self.path(network, container_id, ifname))
    }

    /// Writes a record atomically.
    pub fn put(&self, record: &Record) -> Result<(), CniError> {
        validate(&record.network, &record.container_id, &record.ifname)?;
        let path = self.path(&record.network, &record.container_id, &record.ifname);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        }
        let bytes = serde_json::to_vec(record).map_err(|e| CniError::internal(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        File::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .map_err(|e| io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("rename into", &path, e))
    }

    /// Removes a record; absence is fine.
    pub fn remove(&self, record: &Record) -> Result<(), CniError> {
        let path = self.path(&record.network, &record.container_id, &record.ifname);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &path, e)),
            _ => Ok(()),
        }
    }

    /// Every record of every network.
    pub fn all(&self) -> Result<Vec<Record>, CniError> {
        let mut out = Vec::new();
        for dir in read_dir(&self.root)? {
            if dir.is_dir() {
                for file in read_dir(&dir)? {
                    if file.extension().is_some_and(|e| e == "json") {
                        out.extend(read(&file)?);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", dir, e)),
    };
    entries
        .map(|e| e.map(|e| e.path()).map_err(|e| io("read", dir, e)))
        .collect()
}

fn read(path: &Path) -> Result<Option<Record>, CniError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CniError::decode(format!("firewall record {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_list_across_networks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = Record {
            network: "n1".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            ips: vec!["10.0.0.2".parse().unwrap()],
        };
        let b = Record {
            network: "n2".into(),
            ..a.clone()
        };
        store.put(&a).unwrap();
        store.put(&b).unwrap();
        assert_eq!(store.get("n1", "c1", "eth0").unwrap(), Some(a.clone()));
        assert_eq!(store.all().unwrap().len(), 2);
        store.remove(&a).unwrap();
        store.remove(&a).unwrap();
        assert_eq!(store.get("n1", "c1", "eth0").unwrap(), None);
        assert!(store.get("../x", "c1", "eth0").is_err());
    }
}
