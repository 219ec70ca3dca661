//! CHECK: the recorded mappings are the ones runtimeConfig asks for, and every element of the record (map
//! entries, masquerade elements, base chains) is in the kernel. A difference is code 101 naming the element.

use corral_cni::{codes, CniError, Request};
use corral_nat::{NatError, PortMapping, Source};

use crate::config;
use crate::effects::{nat, nat_manager, owner};
use crate::plan::{build_record, container_addresses};

/// Runs CHECK.
pub fn check(req: &Request) -> Result<(), CniError> {
    let conf = config::load(req)?;
    let prev = req
        .prev_result()?
        .ok_or_else(|| CniError::invalid_config("must be called as chained plugin"))?;
    let manager = nat_manager(req);
    let me = owner(req);
    let record = manager.record(&me, Source::Portmap).map_err(nat)?;
    if !conf.mappings.is_empty() {
        let want = build_record(me.clone(), &conf, &container_addresses(&prev, &req.ifname), None)?;
        let Some(have) = &record else {
            return Err(CniError::check_mismatch(format!(
                "{me}: no port mappings are recorded"
            )));
        };
        if sorted(have.mappings()) != sorted(want.mappings()) {
            return Err(CniError::check_mismatch(format!(
                "{me}: the recorded port mappings differ from runtimeConfig.portMappings"
            )));
        }
    }
    if record.is_none() {
        return Ok(());
    }
    manager.check(&me, Source::Portmap).map_err(|e| match e {
        NatError::Missing { .. } | NatError::NoRecord { .. } => {
            CniError::new(codes::CHECK_MISMATCH, e.to_string())
        }
        other => nat(other),
    })
}

fn sorted(mappings: &[PortMapping]) -> Vec<PortMapping> {
    let mut v = mappings.to_vec();
    v.sort();
    v
}
