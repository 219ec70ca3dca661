//! DEL, STATUS and GC. DEL works from the record alone: no prevResult, no `portMappings` and no netns needed
//! (the reference leaks its rules when a runtime omits `portMappings` on DEL), and DEL twice succeeds.

use corral_cni::{failpoint, CniError, Request};
use corral_nat::Source;

use crate::config;
use crate::effects::{nat, nat_manager, owner, state_dir};
use crate::pending;

/// Runs DEL: records the flows to flush, removes the attachment's mappings, then flushes their UDP/SCTP flows
/// (also those a DEL killed half-way left pending).
pub fn del(req: &Request) -> Result<(), CniError> {
    let manager = nat_manager(req);
    let owner = owner(req);
    let state = state_dir(req);
    failpoint::hit("portmap-del-before-nat");
    if let Some(record) = manager.record(&owner, Source::Portmap).map_err(nat)? {
        pending::record(&state, &owner, record.mappings());
    }
    manager.del(&owner, Source::Portmap).map_err(nat)?;
    failpoint::hit("portmap-del-after-nat");
    pending::run(&state, &owner);
    Ok(())
}

/// STATUS: the config is valid and nft is usable (code 50 otherwise).
pub fn status(req: &Request) -> Result<(), CniError> {
    config::load(req)?;
    nat_manager(req)
        .status()
        .map_err(|e| CniError::not_available(format!("nftables: {e}")))
}

/// GC: port mappings of this network whose attachment is not in `cni.dev/valid-attachments`, and the
/// conntrack flows of their UDP/SCTP host ports.
pub fn gc(req: &Request) -> Result<(), CniError> {
    let valid = req.conf.gc_valid_pairs();
    let manager = nat_manager(req);
    let state = state_dir(req);
    let listing = manager.records().map_err(nat)?;
    for record in listing.records.iter().filter(|r| {
        r.source == Source::Portmap
            && r.owner.network == req.conf.name
            && !valid
                .iter()
                .any(|(id, ifname)| *id == r.owner.container_id && *ifname == r.owner.ifname)
    }) {
        pending::record(&state, &record.owner, record.mappings());
    }
    let collected = manager
        .gc(&req.conf.name, Source::Portmap, &valid)
        .map_err(|e| nat(e).context("NAT GC"));
    pending::run_network(&state, &req.conf.name);
    collected
}
