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

/// Seeds an empty volume with what the container's root holds at its mount point, as Docker does (copied with
/// `cp -a`: modes, owners, links and xattrs kept). Nothing is copied when the volume has content, or when the path
/// is not a directory in the root or passes through a symlink (which could lead out of the root).
pub fn seed_from_image(rootfs: &Path, destination: &str, data: &Path) -> Result<(), String> {
    let mut entries = std::fs::read_dir(data).map_err(|e| format!("{}: {e}", data.display()))?;
    if entries.next().is_some() {
        return Ok(());
    }
    let mut src = rootfs.to_path_buf();
    for c in Path::new(destination).components() {
        if let std::path::Component::Normal(name) = c {
            src.push(name);
            match std::fs::symlink_metadata(&src) {
                Ok(m) if m.file_type().is_dir() => {}
                _ => return Ok(()),
            }
        }
    }
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(src.join("."))
        .arg(data)
        .output()
        .map_err(|e| format!("cp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "seed volume at {destination} from the image: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_an_empty_volume_but_never_through_a_symlink() {
        let dir = std::env::temp_dir().join(format!("corral-seed-{}", file::random_hex(4).unwrap()));
        let (root, data) = (dir.join("root"), dir.join("data"));
        std::fs::create_dir_all(root.join("srv/sub")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(root.join("srv/sub/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        // A symlink on the way (here to the host's /etc) copies nothing.
        seed_from_image(&root, "/escape", &data).unwrap();
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
        seed_from_image(&root, "/missing", &data).unwrap();
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
        seed_from_image(&root, "/srv", &data).unwrap();
        assert_eq!(std::fs::read_to_string(data.join("sub/f")).unwrap(), "x");
        // A volume with content is left alone.
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("other/g"), "y").unwrap();
        seed_from_image(&root, "/other", &data).unwrap();
        assert!(!data.join("g").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
