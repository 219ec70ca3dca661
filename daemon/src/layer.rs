//! Unpacking an image layer (a tar stream) into a directory that serves as an overlayfs lower dir: OCI
//! whiteouts become overlayfs whiteouts (`.wh.NAME` → a 0:0 character device `NAME`; `.wh..wh..opq` → the
//! directory's `trusted.overlay.opaque` xattr). Entries never land outside the directory.

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// What an entry of a layer means for the lower dir.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular entry, unpacked as is.
    Plain,
    /// `dir/.wh.name`: `dir/name` is deleted.
    Whiteout(PathBuf),
    /// `dir/.wh..wh..opq`: `dir` hides lower content.
    Opaque(PathBuf),
}

/// Classifies an entry path; refuses paths that climb out with `..`.
pub fn classify(path: &Path) -> Result<Entry, String> {
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("layer entry {} climbs out of the layer", path.display()));
    }
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    if name == OPAQUE {
        Ok(Entry::Opaque(parent))
    } else if let Some(target) = name.strip_prefix(WHITEOUT) {
        Ok(Entry::Whiteout(parent.join(target)))
    } else {
        Ok(Entry::Plain)
    }
}

/// Unpacks a tar stream into `dir` (which must exist and be empty).
pub fn unpack<R: Read>(tar_stream: R, dir: &Path) -> Result<(), String> {
    let mut archive = tar::Archive::new(tar_stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(|e| format!("read layer: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("read layer entry: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("layer entry path: {e}"))?
            .into_owned();
        match classify(&path)? {
            Entry::Plain => {
                entry
                    .unpack_in(dir)
                    .map_err(|e| format!("unpack {}: {e}", path.display()))?;
            }
            Entry::Whiteout(target) => {
                let at = dir.join(&target);
                if let Some(parent) = at.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                mknod(&at, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(|e| format!("whiteout {}: {e}", at.display()))?;
            }
            Entry::Opaque(target) => {
                let at = dir.join(&target);
                std::fs::create_dir_all(&at).map_err(|e| format!("{}: {e}", at.display()))?;
                xattr::set(&at, "trusted.overlay.opaque", b"y")
                    .map_err(|e| format!("opaque dir {}: {e}", at.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(classify(Path::new("./etc/passwd")).unwrap(), Entry::Plain);
        assert_eq!(
            classify(Path::new("./etc/.wh.shadow")).unwrap(),
            Entry::Whiteout("etc/shadow".into())
        );
        assert_eq!(
            classify(Path::new("var/.wh..wh..opq")).unwrap(),
            Entry::Opaque("var".into())
        );
        assert!(classify(Path::new("../x")).is_err());
    }
}
