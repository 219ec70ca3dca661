//! Small adapters between the plugin and the effect crates: error mapping, the container netns, where state
//! and sysfs are, random bytes, the boot id.

use crate::state::{Store, DEFAULT_STATE_DIR};
use crate::sysfs::{Sysfs, SYS};
use corral_cni::{CniError, Request};
use corral_netops::{open_netns, NetopsError};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

/// A kernel failure as a CNI error, keeping netops' code.
pub fn net(what: &str) -> impl Fn(NetopsError) -> CniError + '_ {
    move |e| CniError::new(e.code(), format!("{what}: {e}"))
}

/// The record store under `CORRAL_STATE_DIR` (tests) or the default.
pub fn store(req: &Request) -> Store {
    let dir = req
        .env
        .get("CORRAL_STATE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    Store::new(dir)
}

/// sysfs at `CORRAL_SYSFS` (a fixture tree in tests) or /sys.
pub fn sysfs(req: &Request) -> Sysfs {
    Sysfs::new(
        req.env
            .get("CORRAL_SYSFS")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SYS)),
    )
}

/// Opens CNI_NETNS for ADD/CHECK: a missing or invalid path is an environment error naming it (code 4).
pub fn open_container_netns(req: &Request) -> Result<File, CniError> {
    let path = req.require_netns()?;
    open_netns(path).map_err(|e| CniError::invalid_env(format!("CNI_NETNS {}: {e}", path.display())))
}

/// CNI_NETNS as the result's `sandbox`.
pub fn sandbox(req: &Request) -> String {
    req.netns
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Four random bytes from /dev/urandom.
pub fn random4() -> Result<[u8; 4], CniError> {
    const URANDOM: &str = "/dev/urandom";
    let mut bytes = [0u8; 4];
    File::open(URANDOM)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CniError::io(format!("read {URANDOM}")).with_details(e))?;
    Ok(bytes)
}

/// The kernel's boot id, recorded with state so GC can tell a record from an earlier boot.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}
