//! The originals saved on ADD and restored on DEL: `<dataDir>/<containerID>_<ifname>.json` with the
//! reference's keys (`mac`, `promisc`, `mtu`, `allmulti`, `txQLen`), plus corral's `sysctl` (the originals of
//! the sysctls set; the reference does not restore those). Written once per attachment: a repeated ADD keeps
//! the values from before the first one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use corral_cni::CniError;
use serde::{Deserialize, Serialize};

/// Original values of what tuning changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Original MAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Original promiscuous mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promisc: Option<bool>,
    /// Original MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Original all-multicast mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allmulti: Option<bool>,
    /// Original transmit queue length.
    #[serde(default, rename = "txQLen", skip_serializing_if = "Option::is_none")]
    pub txqlen: Option<u32>,
    /// Original sysctl values (corral's addition).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
}

/// The file of one attachment.
pub fn path(data_dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    data_dir.join(format!("{container_id}_{ifname}.json"))
}

/// Reads a saved file; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Saved>, CniError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CniError::decode(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::io(format!("read {}: {e}", path.display()))),
    }
}

/// Writes `saved` atomically (temporary file, then rename), creating the directory.
pub fn write(path: &Path, saved: &Saved) -> Result<(), CniError> {
    let io = |what: &str, e: std::io::Error| CniError::io(format!("{what} {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create directory for", e))?;
    }
    let bytes =
        serde_json::to_vec(saved).map_err(|e| CniError::internal(format!("encode saved values: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename into", e))
}

/// Removes the file; absence is fine.
pub fn remove(path: &Path) -> Result<(), CniError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io(format!("remove {}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_values_use_the_reference_keys_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "ctr1", "eth0");
        assert_eq!(read(&p).unwrap(), None);
        let saved = Saved {
            mac: Some("02:00:00:00:00:01".into()),
            mtu: Some(1500),
            txqlen: Some(1000),
            ..Default::default()
        };
        write(&p, &saved).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"txQLen\":1000"), "{text}");
        assert_eq!(read(&p).unwrap(), Some(saved));
        remove(&p).unwrap();
        remove(&p).unwrap();
    }
}
