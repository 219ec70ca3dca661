//! Small adapters between the plugin and the effect crates: error mapping, the NAT manager, netns opening.

use corral_cni::{CniError, Request};
use corral_nat::{NatError, NatManager, NftCli, Owner};
use corral_netops::{open_netns, NetopsError};
use std::fs::File;
use std::path::PathBuf;

/// Where corral keeps state that outlives a plugin run, unless `CORRAL_STATE_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/corral";

/// A kernel failure as a CNI error, keeping netops' code.
pub fn net(what: &str) -> impl Fn(NetopsError) -> CniError + '_ {
    move |e| CniError::new(e.code(), format!("{what}: {e}"))
}

/// A NAT failure as a CNI error, keeping the nat crate's code.
pub fn nat(e: NatError) -> CniError {
    CniError::new(e.code(), e.to_string())
}

/// The NAT manager over the `nft` binary, with state under `CORRAL_STATE_DIR` (tests) or the default.
pub fn nat_manager(req: &Request) -> NatManager<NftCli> {
    let dir = req
        .env
        .get("CORRAL_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    NatManager::new(dir, NftCli::new())
}

/// The NAT owner key of this attachment.
pub fn owner(req: &Request) -> Owner {
    Owner::new(&req.conf.name, &req.container_id, &req.ifname)
}

/// Opens CNI_NETNS for ADD/CHECK: a missing or invalid path is an environment error naming it (code 4).
pub fn open_container_netns(req: &Request) -> Result<File, CniError> {
    let path = req.require_netns()?;
    open_netns(path).map_err(|e| CniError::invalid_env(format!("CNI_NETNS {}: {e}", path.display())))
}

/// The kernel's boot id, recorded with state so GC can tell a record from an earlier boot.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}
