//! A container's root: an overlayfs of the image's unpacked layers (read-only lower dirs) under a per-container
//! upper and work dir, mounted at the bundle's `rootfs`.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

/// Overlay mount options: lower dirs topmost first, as overlayfs wants them.
pub fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> Result<String, String> {
    let mut lower = Vec::new();
    for l in layers.iter().rev() {
        let s = l.to_str().ok_or_else(|| format!("{}: not UTF-8", l.display()))?;
        if s.contains([',', ':']) {
            return Err(format!("{s}: a layer path cannot contain ',' or ':'"));
        }
        lower.push(s);
    }
    if lower.is_empty() {
        return Err("image has no layers".into());
    }
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    ))
}

/// Mounts the overlay at `target`, creating upper, work and target dirs.
pub fn mount_overlay(layers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), String> {
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let opts = overlay_options(layers, upper, work)?;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| format!("mount overlay at {}: {e}", target.display()))
}

/// Unmounts `target` if mounted (lazily, so a straggling reader does not block it).
pub fn unmount(target: &Path) -> Result<(), String> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(format!("unmount {}: {e}", target.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_dirs_topmost_first() {
        let o = overlay_options(&["/l/a".into(), "/l/b".into()], Path::new("/u"), Path::new("/w")).unwrap();
        assert_eq!(o, "lowerdir=/l/b:/l/a,upperdir=/u,workdir=/w");
        assert!(overlay_options(&[], Path::new("/u"), Path::new("/w")).is_err());
        assert!(overlay_options(&["/l:x".into()], Path::new("/u"), Path::new("/w")).is_err());
    }
}
