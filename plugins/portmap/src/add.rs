//! ADD: validate, plan the record from prevResult, apply it as one transaction (replacing stale owners of the
//! same host ports), set `route_localnet`, flush stale UDP/SCTP flows, and pass prevResult through.

use corral_cni::{failpoint, CniError, CniResult, Request};
use corral_nat::Source;

use crate::config;
use crate::effects::{enable_route_localnet, flush_conntrack, nat, nat_manager, owner};
use crate::plan::{build_record, container_addresses, flushes};

/// Runs ADD; on failure nothing of this ADD stays applied.
pub fn add(req: &Request) -> Result<CniResult, CniError> {
    let conf = config::load(req)?;
    let prev = req
        .prev_result()?
        .ok_or_else(|| CniError::invalid_config("must be called as chained plugin"))?;
    let manager = nat_manager(req);
    if conf.mappings.is_empty() {
        // A re-ADD without mappings drops whatever an earlier ADD of this attachment forwarded.
        if let Some(old) = manager.del(&owner(req), Source::Portmap).map_err(nat)? {
            flush_conntrack(&flushes(old.mappings()));
        }
        return Ok(prev);
    }
    let addrs = container_addresses(&prev, &req.ifname);
    let record = build_record(owner(req), &conf, &addrs, req.netns.as_deref())?;
    failpoint::hit("portmap-before-nat");
    manager.add(&record).map_err(nat)?;
    failpoint::hit("portmap-after-nat");
    let v4 = record.mappings().iter().find(|m| m.container_ip.is_ipv4());
    if let (true, Some(m)) = (conf.snat, v4) {
        if let Err(e) = enable_route_localnet(m.container_ip) {
            if let Err(undo) = manager.del(&owner(req), Source::Portmap) {
                tracing::warn!(error = %undo, "rollback: NAT record");
            }
            return Err(e);
        }
    }
    failpoint::hit("portmap-before-flush");
    flush_conntrack(&flushes(record.mappings()));
    Ok(prev)
}
