//! Volumes: directories under `volumes/<name>/_data` in the state dir with a `volume.json` beside them. Named
//! volumes outlive their containers and corrald; anonymous ones (`-v /path`) are removed with their container.

use crate::container::valid_name;
use crate::file;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A volume's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    /// Name.
    pub name: String,
    /// The data directory bind-mounted into containers.
    pub mountpoint: PathBuf,
    /// Creation time (Unix seconds).
    pub created_at: u64,
    /// Created for one container by `-v /path`.
    pub anonymous: bool,
}

/// The volume store.
#[derive(Debug)]
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    /// Opens (creates) `volumes/` under the state dir.
    pub fn open(state: &Path) -> Result<Self, String> {
        let dir = state.join("volumes");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Volumes { dir })
    }

    fn record(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("volume.json")
    }

    /// A volume by name.
    pub fn get(&self, name: &str) -> Option<Volume> {
        if !valid_name(name) {
            return None;
        }
        file::read_json(&self.record(name)).ok()
    }

    /// Creates a volume; an existing one of that name is returned as it is.
    pub fn create(&self, name: &str, anonymous: bool) -> Result<Volume, String> {
        if !valid_name(name) {
            return Err(format!(
                "invalid volume name \"{name}\": want [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            ));
        }
        if let Some(v) = self.get(name) {
            return Ok(v);
        }
        let data = self.dir.join(name).join("_data");
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let v = Volume {
            name: name.into(),
            mountpoint: data,
            created_at: file::now(),
            anonymous,
        };
        file::write_json(&self.record(name), &v).map_err(|e| format!("volume {name}: {e}"))?;
        Ok(v)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<Volume> {
        let mut out: Vec<Volume> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| self.get(&e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Removes a volume and its data (the caller checks that no container uses it).
    pub fn remove(&self, name: &str) -> Result<(), String> {
        if self.get(name).is_none() {
            return Err(format!("no such volume: {name}"));
        }
        // The record goes first: a half-removed volume is not listed.
        let _ = std::fs::remove_file(self.record(name));
        let dir = self.dir.join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))
    }
}
